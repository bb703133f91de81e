"""OpenAPI schema and interactive docs, with every asset served locally."""

import re

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_schema_is_openapi_3_with_every_endpoint(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/feedback",
        "/api/v1/feedback",
        "/api/v1/feedback/{feedback_id}",
        "/api/v1/events",
        "/api/v1/events/{event_id}",
    } <= set(schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }


def test_docs_load_their_assets_from_this_server(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    asset_urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert asset_urls, html
    for url in asset_urls:
        assert url.startswith("/"), f"external asset {url}"
        if url.startswith("/static/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            body = (
                b"".join(asset.streaming_content) if asset.streaming else asset.content
            )
            assert len(body) > 100, url
    assert any("swagger-ui" in url for url in asset_urls)
