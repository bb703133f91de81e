import json
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.messages import INFO, WARNING
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.outbound.signing import generate_secret
from sources.services import (
    RequestError,
    feedback_config_batch_preview,
    feedback_config_build_request,
    feedback_config_criteria_check,
    feedback_config_destination,
    feedback_config_enable,
    feedback_config_problems,
    feedback_config_same_destination,
    feedback_config_send_test,
    field_mapping_problem,
    request_redact,
)
from sources.variables import (
    CORRECTION_VARIABLE_NAMES,
    event_variables,
    sample_variables,
)
from sources.widgets import RuleSetWidget

REASONS_HELP = 'A JSON list, e.g. ["Wrong number", "Disconnected phone"]. '


CORRECTION_NAMES = ", ".join(CORRECTION_VARIABLE_NAMES)


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
    readonly_fields = ("created_at", "updated_at", "forwarding")
    fieldsets = (
        (None, {"fields": ("name", "slug")}),
        ("Forwarding", {"fields": ("forwarding",)}),
        (
            "Conversions",
            {"fields": ("accepts_conversion", "conversion_reasons")},
        ),
        ("Returns", {"fields": ("accepts_return", "return_reasons")}),
        ("Status updates", {"fields": ("accepts_status", "status_reasons")}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="feedback configs")
    def forwarding(self, obj: Source) -> str:
        add_url = reverse("admin:sources_feedbackconfig_add")
        if obj.pk is None:
            return "Save the source first, then add how feedback is forwarded to it."
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a>{}</li>',
            (
                (
                    reverse("admin:sources_feedbackconfig_change", args=[config.pk]),
                    f"{config.get_kind_display()} · {config.get_method_display()}",
                    "" if config.enabled else " (disabled)",
                )
                for config in obj.feedback_configs.all()
            ),
        )
        return format_html(
            '<ul class="forwarding-configs">{}</ul>'
            '<a class="addlink" href="{}?source={}">Add a feedback config</a>',
            items,
            add_url,
            obj.pk,
        )


# Feedback configs ---------------------------------------------------------------

SECRET_FIELDS = ("auth_secret", "signing_secret", "batch_password", "batch_private_key")
BATCH_FIELDS = (
    "batch_every",
    "batch_at",
    "batch_day",
    "batch_timezone",
    "batch_transport",
    "batch_host",
    "batch_port",
    "batch_username",
    "batch_password",
    "batch_private_key",
    "batch_host_key",
    "batch_tls_certificate",
    "batch_directory",
    "batch_s3_bucket",
    "batch_s3_region",
    "batch_s3_endpoint_url",
    "batch_email_to",
    "batch_email_subject",
    "batch_file_name",
    "batch_header",
    "batch_send_empty",
)


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never shows the stored value (a private key)."""

    def format_value(self, value: Any) -> str | None:
        return None


class OptionalJsonField(forms.JSONField):
    """A JSON box that may be left empty: shown empty (not "null") when
    nothing is stored, and indented when something is."""

    def prepare_value(self, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)


class FeedbackConfigForm(forms.ModelForm[FeedbackConfig]):
    """A config; secrets are write-only and everything is checked before saving."""

    url = forms.URLField(
        label="URL",
        max_length=2000,
        required=False,  # batch configs have none; the checks below want one else
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 80}),
        help_text=FeedbackConfig._meta.get_field("url").help_text,
    )
    batch_s3_endpoint_url = forms.URLField(
        label="S3 endpoint URL",
        max_length=2000,
        required=False,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 70}),
        help_text=FeedbackConfig._meta.get_field("batch_s3_endpoint_url").help_text,
    )

    class Meta:
        model = FeedbackConfig
        fields = (
            "source",
            "kind",
            "forward_on",
            "enabled",
            "method",
            "url",
            "criteria",
            "on_erase",
            *FeedbackConfig.HTTP_FIELDS,
            *BATCH_FIELDS,
            "on_retract",
            "on_amend",
        )
        widgets = {
            "criteria": RuleSetWidget(attrs={"rows": 6, "cols": 70}),
            "on_erase": forms.Textarea(attrs={"rows": 3, "cols": 70}),
            "headers": forms.Textarea(attrs={"rows": 2, "cols": 70}),
            "auth_secret": forms.PasswordInput(render_value=False),
            "signing_secret": forms.PasswordInput(render_value=False),
            "batch_password": forms.PasswordInput(render_value=False),
            "batch_private_key": WriteOnlyTextarea(attrs={"rows": 3, "cols": 70}),
            "batch_host_key": forms.Textarea(attrs={"rows": 2, "cols": 70}),
            "batch_tls_certificate": forms.Textarea(attrs={"rows": 3, "cols": 70}),
            "batch_email_to": forms.Textarea(attrs={"rows": 2, "cols": 70}),
            "batch_file_name": forms.TextInput(attrs={"size": 70}),
            "on_retract": forms.Textarea(attrs={"rows": 6, "cols": 70}),
            "on_amend": forms.Textarea(attrs={"rows": 6, "cols": 70}),
        }
        field_classes = {"on_retract": OptionalJsonField, "on_amend": OptionalJsonField}

    # Another enabled config of the same source and kind sending to the same
    # place, found by clean(): the page offers to save anyway.
    duplicate_of: FeedbackConfig | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            field = self.fields.get(name)
            if field is not None and getattr(self.instance, name):
                field.help_text = "A value is stored; leave blank to keep it."
        # Only batch configs use the batch settings: other methods may leave
        # them out (clean() puts the model's defaults back).
        for name in ("batch_every", "batch_timezone", "forward_on"):
            if name in self.fields:
                self.fields[name].required = False
        signing = self.fields.get("signing_secret")
        if signing is not None and not self.instance.signing_secret:
            signing.help_text = "Leave blank to generate one when signing is on."

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        for name in SECRET_FIELDS:
            if name in cleaned_data and not cleaned_data[name]:
                cleaned_data[name] = getattr(self.instance, name)
        if cleaned_data.get("signing_enabled") and not cleaned_data.get(
            "signing_secret"
        ):
            cleaned_data["signing_secret"] = generate_secret()
        if cleaned_data.get("headers") is None:
            cleaned_data["headers"] = {}
        for name, default in (
            ("batch_every", "day"),
            ("batch_timezone", "UTC"),
            ("forward_on", FeedbackConfig.ForwardOn.ACCEPTED),
        ):
            if name in cleaned_data and not cleaned_data[name]:
                cleaned_data[name] = default
        if cleaned_data.get("batch_email_to") is None:
            cleaned_data["batch_email_to"] = []
        if cleaned_data.get("url") is None:
            cleaned_data["url"] = ""
        if self.errors:
            return cleaned_data
        candidate = FeedbackConfig(
            **{
                name: value
                for name, value in cleaned_data.items()
                if name in {f.name for f in FeedbackConfig._meta.fields}
            }
        )
        for field, messages in feedback_config_problems(candidate).items():
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)
        if not self.errors and candidate.enabled:
            self.duplicate_of = feedback_config_same_destination(
                candidate, exclude_pk=self.instance.pk
            )
            if self.duplicate_of is not None and not self.data.get("save_duplicate"):
                self.add_error(None, _duplicate_message(candidate, self.duplicate_of))
        return cleaned_data


def _duplicate_message(config: FeedbackConfig, other: FeedbackConfig) -> str:
    kind = Kind(config.kind).label.lower()
    return (
        f"The config “{other}” already sends {config.source.name}'s {kind} feedback "
        f"to {feedback_config_destination(other)}. With both enabled, every {kind} is "
        "forwarded twice. Change the destination, or tick “Save anyway” to keep both."
    )


class FieldMappingForm(forms.ModelForm[FieldMapping]):
    class Meta:
        model = FieldMapping
        fields = ("position", "target", "value")
        widgets = {
            "target": forms.TextInput(attrs={"size": 30}),
            "value": forms.TextInput(attrs={"size": 60}),
        }

    def clean_value(self) -> str:
        value = str(self.cleaned_data.get("value") or "")
        problem = field_mapping_problem(FieldMapping(value=value))
        if problem:
            raise forms.ValidationError(problem)
        return value


class FieldMappingInline(admin.TabularInline[FieldMapping, FeedbackConfig]):
    model = FieldMapping
    form = FieldMappingForm
    extra = 0
    verbose_name = "field"
    verbose_name_plural = "Fields sent (target ← value template)"


@admin.register(FeedbackConfig)
class FeedbackConfigAdmin(admin.ModelAdmin[FeedbackConfig]):
    form = FeedbackConfigForm
    inlines = (FieldMappingInline,)
    list_display = (
        "__str__",
        "source",
        "kind",
        "method",
        "enabled",
        "disabled_because",
        "sync",
        "host",
    )
    list_filter = ("kind", "method", "enabled", "sync", "source")
    list_select_related = ("source",)
    search_fields = ("source__name", "source__slug", "url")
    autocomplete_fields = ("source",)
    readonly_fields = ("disabled_reason", "created_at", "updated_at")
    change_form_template = "admin/sources/feedbackconfig/change_form.html"
    # The sections a method does not use are hidden by config_form.js (each
    # fieldset's class names the methods it is for); without it all show.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "source",
                    "kind",
                    "forward_on",
                    "enabled",
                    "method",
                    "url",
                    "http_method",
                    "sync",
                    "timeout_s",
                    "headers",
                )
            },
        ),
        (
            "Criteria",
            {
                "fields": ("criteria",),
                "description": "Feedback that fails these conditions is not sent "
                "(skipped, with the reason).",
            },
        ),
        (
            "Authentication",
            {
                "fields": (
                    "auth_type",
                    "auth_username",
                    "auth_header_name",
                    "auth_secret",
                    "wsse_password_digest",
                ),
                "classes": ("for-methods", "query", "form", "json", "xml", "soap"),
            },
        ),
        (
            "Signing",
            {
                "fields": ("signing_enabled", "signing_secret"),
                "classes": ("for-methods", "query", "form", "json", "xml", "collapse"),
            },
        ),
        (
            "SOAP",
            {
                "fields": ("soap_operation", "soap_version"),
                "classes": ("for-methods", "soap"),
            },
        ),
        (
            "Batch file",
            {
                "fields": BATCH_FIELDS,
                "classes": ("for-methods", "batch"),
                "description": "The period's feedback as one CSV file whose columns "
                "are the fields below, sent on this schedule. File names may use "
                "{{ period.start }}, {{ period.end }}, {{ source.slug }}, {{ kind }} "
                "and {{ run.id }}.",
            },
        ),
        (
            "Reading the answer",
            {
                "fields": (
                    "outcome_search_term",
                    "outcome_search_path",
                    "outcome_on_match",
                    "reason_path",
                    "default_reason",
                    "reference_path",
                ),
                "classes": ("for-methods", "query", "form", "json", "xml", "soap"),
            },
        ),
        (
            "Corrections",
            {
                "fields": ("on_retract", "on_amend"),
                "description": "Optional. When a buyer or staff retracts feedback "
                "this config forwarded, or amends a conversion's revenue, the "
                "source is told with this request: its own method, URL and "
                'mappings, e.g. {"method": "json", "url": "https://source.example/'
                'retractions", "mappings": [{"target": "id", "value": '
                '"{{ notification.original_id }}"}, {"target": "reason", "value": '
                '"{{ correction.reason }}"}]}. Authentication, headers, signing and '
                "reading the answer are this config's. Templates may also use "
                f"{CORRECTION_NAMES}. Empty: the source is not told.",
            },
        ),
        (
            "Erasure notice",
            {
                "fields": ("on_erase",),
                "classes": ("collapse",),
                "description": "Where this source is told that a lead was erased "
                "(docs/privacy.md); leave empty to send nothing.",
            },
        ),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="host", ordering="url")
    def host(self, obj: FeedbackConfig) -> str:
        if obj.method == FeedbackConfig.Method.BATCH:
            if obj.batch_transport == FeedbackConfig.Transport.EMAIL:
                return ", ".join(obj.batch_email_to or [])
            if obj.batch_transport == FeedbackConfig.Transport.S3:
                return obj.batch_s3_bucket
            return obj.batch_host
        return urlsplit(obj.url).hostname or ""

    @admin.display(description="disabled because", ordering="disabled_reason")
    def disabled_because(self, obj: FeedbackConfig) -> str | None:
        if obj.enabled or not obj.disabled_reason:
            return None
        return Truncator(obj.disabled_reason).chars(80)

    def get_fieldsets(
        self, request: HttpRequest, obj: FeedbackConfig | None = None
    ) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not obj.disabled_reason:
            return fieldsets
        # Shown next to "enabled" only when Leadback switched the config off.
        (name, options), *rest = fieldsets
        fields = list(options["fields"])
        fields.insert(fields.index("enabled") + 1, "disabled_reason")
        return [(name, {**options, "fields": fields}), *rest]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "GET":
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and not obj.enabled and obj.disabled_reason:
                self.message_user(
                    request,
                    "Leadback switched this config off: "
                    f"{obj.disabled_reason.rstrip('.')}. No feedback is forwarded "
                    "under it. Once the source is fixed, "
                    "tick “Enabled” and save to send again.",
                    level=WARNING,
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(
        self, request: HttpRequest, obj: FeedbackConfig, form: Any, change: bool
    ) -> None:
        re_enabled = change and obj.enabled and "enabled" in form.changed_data
        super().save_model(request, obj, form, change)
        if re_enabled and obj.disabled_reason:
            feedback_config_enable(config=obj)
            self.message_user(
                request,
                "The config is enabled again and its disabled reason cleared. "
                "Feedback received while it was off was not queued for it; "
                "notifications it refused or skipped can be resent from the "
                "notifications list.",
                level=INFO,
            )

    def get_urls(self) -> list[URLPattern]:
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path(
                "add/preview/",
                preview,
                name="sources_feedbackconfig_preview_add",
            ),
            path(
                "<path:object_id>/preview/",
                preview,
                name="sources_feedbackconfig_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(
        self, request: HttpRequest, object_id: str | None = None
    ) -> HttpResponse:
        """Build (and with action=send, send) the request of the form as it is
        on screen, saved or not, and answer with an HTML fragment."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if object_id and obj is None:
            raise Http404("No such feedback config.")
        allowed = (
            self.has_change_permission(request, obj)
            if obj is not None
            else self.has_add_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        context = self._preview(request, obj)
        return TemplateResponse(
            request, "admin/sources/feedbackconfig/partials/preview.html", context
        )

    def _preview(self, request: HttpRequest, obj: FeedbackConfig | None) -> dict:
        form_class = self.get_form(request, obj, change=obj is not None)
        form = form_class(request.POST, instance=obj)
        errors: list[str] = []
        if not form.is_valid():
            errors += _error_lines(form.errors)
        config = form.instance
        mappings: list[FieldMapping] = []
        for formset_class, inline in self.get_formsets_with_inlines(request, obj):
            formset = formset_class(
                data=request.POST,
                files=request.FILES,
                instance=config,
                prefix=formset_class.get_default_prefix(),
                queryset=inline.get_queryset(request),
            )
            if not formset.is_valid():
                errors += [
                    line for e in formset.errors if e for line in _error_lines(e)
                ]
                errors += list(formset.non_form_errors())
                continue
            for mapping_form in formset.forms:
                data = getattr(mapping_form, "cleaned_data", None)
                if data and not data.get("DELETE") and data.get("target"):
                    mappings.append(
                        FieldMapping(
                            position=data.get("position") or 0,
                            target=data["target"],
                            value=data.get("value") or "",
                        )
                    )
        if errors:
            return {"errors": errors}
        mappings.sort(key=lambda mapping: mapping.position)

        event_id = str(request.POST.get("_preview_event_id") or "").strip().lower()
        variables = None
        if event_id:
            # A real delivery's feedback, through the lookup the feedback app
            # provides (sources does not import feedback).
            variables = event_variables(event_id=event_id, kind=config.kind)
            if variables is None:
                return {"errors": [f"No feedback found for event {event_id}."]}
        context: dict[str, Any] = {
            "kind": config.kind,
            "sample": variables is None,
            "event_id": event_id,
        }
        variables = variables or sample_variables(kind=config.kind)
        context["criteria"] = feedback_config_criteria_check(
            config=config, variables=variables
        )
        if config.method == FeedbackConfig.Method.BATCH:
            return context | _batch_preview(request, config, variables, mappings)
        try:
            if request.POST.get("_action") == "send":
                test = feedback_config_send_test(
                    config=config, variables=variables, mappings=mappings
                )
                context |= {
                    "request_sent": request_redact(test.request, config),
                    "response": test.response,
                    "interpretation": test.interpretation,
                }
            else:
                built = feedback_config_build_request(
                    config=config,
                    variables=variables,
                    mappings=mappings,
                    message_id="preview",
                )
                context["request_sent"] = request_redact(built, config)
        except RequestError as exc:
            context["errors"] = [str(exc)]
        return context


def _batch_preview(
    request: HttpRequest,
    config: FeedbackConfig,
    variables: dict[str, Any],
    mappings: list[FieldMapping],
) -> dict[str, Any]:
    if request.POST.get("_action") == "send":
        return {
            "errors": [
                "Batch files are sent on their schedule, not as a test: the "
                "preview shows the file's row for this feedback."
            ]
        }
    try:
        name, text = feedback_config_batch_preview(
            config=config, variables=variables, mappings=mappings
        )
    except RequestError as exc:
        return {"errors": [str(exc)]}
    return {"batch_file": {"name": name, "text": text}}


def _error_lines(errors: Any) -> list[str]:
    lines = []
    for field, messages in errors.items():
        label = "" if field == "__all__" else f"{field}: "
        lines += [f"{label}{message}" for message in messages]
    return lines
