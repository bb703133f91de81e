from typing import Any

from django import forms
from django.contrib import admin

from sources.models import Kind, Source

REASONS_HELP = 'A JSON list, e.g. ["Wrong number", "Disconnected phone"]. '


class SourceForm(forms.ModelForm[Source]):
    """Source settings; the reason lists are checked by the model's validator."""

    class Meta:
        model = Source
        fields = (
            "name",
            "slug",
            "accepts_conversion",
            "conversion_reasons",
            "accepts_return",
            "return_reasons",
            "accepts_status",
            "status_reasons",
        )
        widgets = {
            f"{kind}_reasons": forms.Textarea(attrs={"rows": 3, "cols": 60})
            for kind in Kind.values
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for kind in Kind.values:
            field = self.fields.get(f"{kind}_reasons")
            if field is not None:
                field.help_text = REASONS_HELP + str(field.help_text)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned_data = self.cleaned_data
        for kind in Kind.values:
            name = f"{kind}_reasons"
            # An emptied text box arrives as None, which the NOT NULL column would
            # refuse with a database error instead of meaning "any reason".
            if name in cleaned_data and cleaned_data[name] is None:
                cleaned_data[name] = []
        return cleaned_data


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin[Source]):
    form = SourceForm
    list_display = (
        "name",
        "slug",
        "accepts_conversion",
        "accepts_return",
        "accepts_status",
        "created_at",
    )
    list_filter = ("accepts_conversion", "accepts_return", "accepts_status")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug")}),
        (
            "Conversions",
            {"fields": ("accepts_conversion", "conversion_reasons")},
        ),
        ("Returns", {"fields": ("accepts_return", "return_reasons")}),
        ("Status updates", {"fields": ("accepts_status", "status_reasons")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
