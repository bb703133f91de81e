"""A test-only page with the rule set widget; POST echoes the value as JSON."""

import json

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.urls import path

from sources.widgets import RuleSetWidget

PAGE = engines["django"].from_string(
    """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Criteria</title>{{ form.media }}</head>
<body>
<form method="post" action="">
  {% csrf_token %}
  <label for="{{ form.criteria.id_for_label }}">Criteria</label>
  {{ form.criteria }}
  {{ form.criteria.errors }}
  <button type="submit" id="submit">Save</button>
</form>
</body>
</html>"""
)


class CriteriaForm(forms.Form):
    criteria = forms.JSONField(required=False, widget=RuleSetWidget)


def criteria_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = CriteriaForm(request.POST)
        if form.is_valid():
            return JsonResponse(
                {
                    "raw": request.POST["criteria"],
                    "criteria": form.cleaned_data["criteria"],
                }
            )
    else:
        initial = request.GET.get("initial")
        form = CriteriaForm(
            initial={"criteria": json.loads(initial) if initial else None}
        )
    return HttpResponse(PAGE.render({"form": form}, request))


urlpatterns = [path("criteria/", criteria_page, name="criteria")]
