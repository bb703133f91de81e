"""The suppression lists in the admin (DESIGN §11): the lists, edited as in
the configuration document, and their entries, listed by digest, added by
email or phone, removed, and exported as a CSV of digests."""

import io
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header, urlencode
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.suppression.digests import (
    HEX_MD5,
    HEX_SHA256,
    digest,
    email_value,
    phone_value,
)
from feedback.suppression.models import SuppressionEntry, SuppressionList
from feedback.suppression.services import (
    suppression_entries_add,
    suppression_entries_remove_ids,
    suppression_list_delete,
    suppression_list_save,
)
from sources.csvcells import write_csv
from sources.models import Kind

CSV_HEADER = ("list", "field", "sha256", "md5", "added_at", "expires_at")
EXPORT_CHUNK = 5000


class SuppressionListForm(forms.ModelForm[SuppressionList]):
    add_kinds = forms.MultipleChoiceField(
        label="Added on",
        choices=Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Accepted feedback of these kinds adds its lead (a return once "
        "approved).",
    )
    add_reasons = forms.CharField(
        label="Only these reasons",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One reason per line; empty: any reason.",
    )

    class Meta:
        model = SuppressionList
        fields = ["slug", "name", "ttl_days", "add_kinds", "add_reasons"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["add_reasons"] = "\n".join(self.instance.add_reasons)

    def clean_add_reasons(self) -> list[str]:
        lines = self.cleaned_data.get("add_reasons") or ""
        return list(
            dict.fromkeys(line.strip() for line in lines.splitlines() if line.strip())
        )


@admin.register(SuppressionList)
class SuppressionListAdmin(admin.ModelAdmin[SuppressionList]):
    form = SuppressionListForm
    list_display = ["slug", "name", "ttl_column", "added_on", "entries_column"]
    search_fields = ["slug", "name"]
    actions = None  # deleting goes through the service, one list at a time

    def get_fields(
        self, request: HttpRequest, obj: SuppressionList | None = None
    ) -> tuple[str, ...]:
        fields = ("slug", "name", "ttl_days", "add_kinds", "add_reasons")
        return fields if obj is None else (*fields, "created_at", "updated_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: SuppressionList | None = None
    ) -> tuple[str, ...]:
        # Lists are saved by slug, as the configuration document names them.
        fixed = ("created_at", "updated_at")
        return fixed if obj is None else ("slug", *fixed)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SuppressionList]:
        return super().get_queryset(request).annotate(entry_count=Count("entries"))

    @admin.display(description="TTL", ordering="ttl_days")
    def ttl_column(self, obj: SuppressionList) -> str:
        return f"{obj.ttl_days} days" if obj.ttl_days else "never expires"

    @admin.display(description="added on")
    def added_on(self, obj: SuppressionList) -> str:
        kinds = ", ".join(obj.add_kinds) or "added by hand only"
        if obj.add_reasons:
            kinds += f" ({'; '.join(obj.add_reasons)})"
        return kinds

    @admin.display(description="entries", ordering="entry_count")
    def entries_column(self, obj: SuppressionList) -> SafeString:
        url = reverse("admin:feedback_suppressionentry_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>',
            url,
            urlencode({"list__id__exact": obj.pk}),
            getattr(obj, "entry_count", 0),
        )

    def save_model(
        self, request: HttpRequest, obj: SuppressionList, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        saved = suppression_list_save(
            slug=obj.slug if change else data["slug"],
            name=data["name"],
            ttl_days=data["ttl_days"],
            add_kinds=data["add_kinds"],
            add_reasons=data["add_reasons"],
        )
        obj.pk = saved.pk

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"title": "Suppression lists", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def delete_model(self, request: HttpRequest, obj: SuppressionList) -> None:
        suppression_list_delete(suppression_list=obj)


class EntryAddForm(forms.Form):
    suppression_list = forms.ModelChoiceField(
        label="List", queryset=SuppressionList.objects.order_by("slug")
    )
    emails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line. Stored as digests of the trimmed, lower-case "
        "address, never as text.",
    )
    phones = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line. Stored as digests of the digits (a North "
        "American number without its leading 1).",
    )

    MAX_LINES = 1000

    def _lines(self, name: str) -> list[str]:
        lines = [
            line.strip() for line in (self.cleaned_data.get(name) or "").splitlines()
        ]
        lines = [line for line in lines if line]
        if len(lines) > self.MAX_LINES:
            raise forms.ValidationError(f"At most {self.MAX_LINES} lines at a time.")
        return lines

    def clean_emails(self) -> list[str]:
        values = []
        for line in self._lines("emails"):
            value = email_value(line)
            if not value:
                raise forms.ValidationError(f"Not an email address: {line[:80]}")
            values.append(value)
        return values

    def clean_phones(self) -> list[str]:
        values = []
        for line in self._lines("phones"):
            value = phone_value(line)
            if not value:
                raise forms.ValidationError(f"No digits in: {line[:80]}")
            values.append(value)
        return values

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and not (cleaned.get("emails") or cleaned.get("phones")):
            raise forms.ValidationError("Enter at least one email or phone.")
        return cleaned


def entry_search(term: str) -> tuple[str, str] | None:
    """What the entries' search box means: an email or phone (compared by its
    digest) or a digest itself. A (column, value) pair, or None."""
    term = term.strip()
    lowered = term.lower()
    if HEX_SHA256.fullmatch(lowered):
        return "sha256", lowered
    if HEX_MD5.fullmatch(lowered):
        return "md5", lowered
    if "@" in term and email_value(term):
        return "sha256", digest("email", email_value(term)).sha256
    if phone_value(term):
        return "sha256", digest("phone", phone_value(term)).sha256
    return None


@admin.register(SuppressionEntry)
class SuppressionEntryAdmin(admin.ModelAdmin[SuppressionEntry]):
    list_display = [
        "list",
        "field",
        "sha256_column",
        "md5_column",
        "origin",
        "added_column",
        "expires_column",
    ]
    list_filter = ["list", "field", "origin"]
    list_select_related = ["list"]
    search_fields = ["sha256"]
    search_help_text = "An email, a phone, or a SHA-256 or MD5 digest."
    readonly_fields = [
        "list",
        "field",
        "sha256",
        "md5",
        "origin",
        "added_at",
        "expires_at",
    ]
    actions = ["remove_entries", "export_entries"]
    add_form_template = "admin/feedback/suppressionentry/add_form.html"
    show_full_result_count = False  # a million rows: no second COUNT per page

    @admin.display(description="SHA-256", ordering="sha256")
    def sha256_column(self, obj: SuppressionEntry) -> SafeString:
        return format_html('<code title="{}">{}…</code>', obj.sha256, obj.sha256[:16])

    @admin.display(description="MD5", ordering="md5")
    def md5_column(self, obj: SuppressionEntry) -> SafeString:
        return format_html('<code title="{}">{}…</code>', obj.md5, obj.md5[:12])

    @admin.display(description="added", ordering="added_at")
    def added_column(self, obj: SuppressionEntry) -> str:
        return f"{timezone.localtime(obj.added_at):%Y-%m-%d %H:%M}"

    @admin.display(description="expires", ordering="expires_at")
    def expires_column(self, obj: SuppressionEntry) -> str:
        if obj.expires_at is None:
            return "never"
        return f"{timezone.localtime(obj.expires_at):%Y-%m-%d}"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # removing goes through the service
        return actions

    def get_search_results(
        self,
        request: HttpRequest,
        queryset: QuerySet[SuppressionEntry],
        search_term: str,
    ) -> tuple[QuerySet[SuppressionEntry], bool]:
        if not search_term.strip():
            return queryset, False
        found = entry_search(search_term)
        if found is None:
            return queryset.none(), False
        column, value = found
        return queryset.filter(**{column: value}), False

    def has_change_permission(
        self, request: HttpRequest, obj: SuppressionEntry | None = None
    ) -> bool:
        return False  # an entry is a digest: remove it, or add another

    def delete_model(self, request: HttpRequest, obj: SuppressionEntry) -> None:
        suppression_entries_remove_ids(ids=[obj.pk])

    @admin.action(description="Remove selected entries", permissions=["delete"])
    def remove_entries(
        self, request: HttpRequest, queryset: QuerySet[SuppressionEntry]
    ) -> None:
        removed = suppression_entries_remove_ids(
            ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(
            request,
            ngettext("Removed %d entry.", "Removed %d entries.", removed) % removed,
            messages.SUCCESS,
        )

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_entries(
        self, request: HttpRequest, queryset: QuerySet[SuppressionEntry]
    ) -> StreamingHttpResponse:
        audit_export(
            request=request,
            export="suppression-selected.csv",
            via=AuditEntry.Via.ADMIN,
            rows=queryset.count(),
        )
        return export_response(queryset, "suppression-selected.csv")

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Add emails and phones to a list: digests are written, the text is
        dropped."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {}
        if request.GET.get("list", "").isdigit():
            initial["suppression_list"] = request.GET["list"]
        form = EntryAddForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            chosen = form.cleaned_data["suppression_list"]
            added = suppression_entries_add(
                suppression_list=chosen,
                digests=[digest("email", v) for v in form.cleaned_data["emails"]]
                + [digest("phone", v) for v in form.cleaned_data["phones"]],
            )
            self.message_user(
                request,
                ngettext(
                    "Added %(n)d entry to %(list)s.",
                    "Added %(n)d entries to %(list)s.",
                    added,
                )
                % {"n": added, "list": chosen},
                messages.SUCCESS,
            )
            url = reverse("admin:feedback_suppressionentry_changelist")
            return HttpResponseRedirect(
                f"{url}?{urlencode({'list__id__exact': chosen.pk})}"
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Add to a suppression list",
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.add_form_template, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"title": "Suppression entries", **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        cl = context.get("cl") if context is not None else None
        if context is not None and cl is not None:
            context["export_url"] = (
                reverse("admin:feedback_suppressionentry_export")
                + cl.get_query_string()
            )
        return response

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="feedback_suppressionentry_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The entries the list's filters select, as a CSV of digests."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            cl = self.get_changelist_instance(request)
        except admin.options.IncorrectLookupParameters:
            return HttpResponseRedirect(
                reverse("admin:feedback_suppressionentry_changelist")
            )
        name = "suppression.csv"
        chosen = request.GET.get("list__id__exact", "")
        if chosen.isdigit():
            slug = (
                SuppressionList.objects.filter(pk=int(chosen))
                .values_list("slug", flat=True)
                .first()
            )
            name = f"suppression-{slug or chosen}.csv"
        # Streamed as it is read: counting first would read a long list twice.
        audit_export(request=request, export=name, via=AuditEntry.Via.ADMIN)
        return export_response(cl.queryset, name)


def export_response(
    entries: QuerySet[SuppressionEntry], name: str
) -> StreamingHttpResponse:
    """The entries as a CSV of digests, streamed: a list may hold millions."""
    response = StreamingHttpResponse(
        _csv_chunks(entries), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=name
    )
    return response


def _csv_chunks(entries: QuerySet[SuppressionEntry]) -> Iterator[str]:
    rows = (
        entries.order_by("list__slug", "field", "sha256")
        .values_list("list__slug", "field", "sha256", "md5", "added_at", "expires_at")
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    stream = io.StringIO()
    write_csv(stream, (), header=CSV_HEADER)
    yield stream.getvalue()
    while chunk := list(islice(rows, EXPORT_CHUNK)):
        stream = io.StringIO()
        write_csv(
            stream,
            (
                (
                    slug,
                    field,
                    sha256,
                    md5,
                    _instant(added_at),
                    _instant(expires_at) if expires_at else "",
                )
                for slug, field, sha256, md5, added_at, expires_at in chunk
            ),
        )
        yield stream.getvalue()


def _instant(value: datetime) -> str:
    return timezone.localtime(value).replace(microsecond=0).isoformat()
