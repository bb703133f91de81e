import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect
from tests.e2e.test_config_admin_browser import log_in
from tests.factories import BuyerFactory, BuyerPolicyFactory
from sources.models import Kind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

def test_policy_inline(page: Page, live_server, staff_user):
    buyer = BuyerFactory(slug="acme", name="Acme")
    BuyerPolicyFactory(buyer=buyer, kind=Kind.RETURN, review="manual", cap_percent=10, cap_min=5)
    BuyerPolicyFactory(buyer=buyer, kind=Kind.CONVERSION)
    url = reverse("admin:feedback_buyer_change", args=[buyer.pk])
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, live_server, staff_user, url)
    fs = page.locator("fieldset.returns-resolution")
    expect(fs).to_have_count(2)
    expect(fs.nth(0)).to_be_visible()
    expect(fs.nth(1)).to_be_hidden()
    page.locator("#id_policies-1-kind").select_option("return")
    expect(fs.nth(1)).to_be_visible()
    page.locator("#id_policies-1-kind").select_option("status")
    expect(fs.nth(1)).to_be_hidden()
    page.get_by_role("link", name="Add another Buyer policy").click()
    expect(fs).to_have_count(3)
    page.screenshot(path="/tmp/wt-admin-buyer.png", full_page=True)
    print(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
