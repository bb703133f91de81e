"""Portal forms. They shape what a person types into what `feedback_receive`
takes; the service does the checking every channel shares."""

from typing import Any, cast

from django import forms

from feedback.intake.parse import MAX_NOTE_CHARS, MAX_REASON_CHARS
from feedback.models import OutcomeCode
from sources.models import Kind

REVENUE_HELP = "What the lead was worth to you, e.g. 1250.00."


def revenue_field(label: str) -> forms.DecimalField:
    """Revenue as the intake takes it: at least 0, two decimals."""
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        help_text=REVENUE_HELP,
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )


class FeedbackForm(forms.Form):
    """Mark one or many deliveries converted, returned or with a status update.

    A reason becomes a list to pick from when the source accepts only listed
    reasons for that kind; otherwise free text with the buyer's usual reasons
    offered as suggestions.
    """

    kind = forms.ChoiceField(
        label="Feedback", choices=Kind.choices, widget=forms.HiddenInput
    )
    revenue = revenue_field("Revenue")
    outcome_code = forms.ModelChoiceField(
        label="Status",
        queryset=OutcomeCode.objects.none(),
        to_field_name="code",
        required=False,
        empty_label="(none)",
    )
    reason = forms.CharField(
        label="Reason", required=False, max_length=MAX_REASON_CHARS
    )
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    # Set by the "record it anyway" button once the page has said what
    # conflicting feedback does to the reports.
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        kind: str | None = None,
        allowed_reasons: list[str] | None = None,
        suggestions: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.suggestions = suggestions or []
        self.list_id = f"{self.prefix or 'feedback'}-reasons"
        if kind is not None:
            kind_field = cast(forms.ChoiceField, self.fields["kind"])
            kind_field.initial = kind
            kind_field.choices = [(kind, Kind(kind).label)]
            self._shape_for(kind, allowed_reasons or [])

    def _shape_for(self, kind: str, allowed_reasons: list[str]) -> None:
        if kind != Kind.CONVERSION:
            del self.fields["revenue"]
        if kind == Kind.STATUS:
            code_field = cast(forms.ModelChoiceField, self.fields["outcome_code"])
            code_field.queryset = OutcomeCode.objects.filter(
                kind=Kind.STATUS, is_active=True
            )
        else:
            del self.fields["outcome_code"]
        reason = self.fields["reason"]
        if kind == Kind.CONVERSION and not allowed_reasons:
            # A conversion needs no reason unless the source lists its own.
            del self.fields["reason"]
            return
        if allowed_reasons:
            reason.widget = forms.Select(
                choices=[("", "Choose a reason"), *((r, r) for r in allowed_reasons)]
            )
            reason.required = kind == Kind.RETURN
            reason.help_text = "The source accepts these reasons only."
        else:
            reason.widget.attrs["list"] = self.list_id
            reason.widget.attrs["autocomplete"] = "off"
            if self.suggestions:
                reason.help_text = "Type a reason or pick one you used before."

    def feedback_data(self, *, event_id: str) -> dict[str, Any]:
        """The item `feedback_receive` takes for one delivery."""
        data = self.cleaned_data
        item: dict[str, Any] = {
            "event_id": event_id,
            "type": data["kind"],
            "reason": data.get("reason", ""),
            "note": data.get("note", ""),
        }
        if data.get("revenue") is not None:
            item["revenue"] = data["revenue"]
        if data.get("outcome_code") is not None:
            item["outcome_code"] = data["outcome_code"].code
        return item


class BulkFeedbackForm(forms.Form):
    """The same feedback for a selection of deliveries from the list.

    Any event id may be posted: `feedback_receive` scopes them to the buyer, so
    another buyer's delivery is answered as unknown, like a typo.
    """

    MAX_SELECTED = 500

    kind = forms.ChoiceField(
        label="Mark selected as",
        choices=[
            (Kind.CONVERSION, "Converted"),
            (Kind.RETURN, "Returned"),
            (Kind.STATUS, "Status update"),
        ],
        widget=forms.RadioSelect,
        # Nothing chosen for the buyer: a slip of the thumb must not return
        # fifty leads.
        error_messages={
            "required": "Choose what to mark the selected deliveries as.",
        },
    )
    revenue = revenue_field("Revenue (conversions)")
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=MAX_REASON_CHARS,
        help_text="Some sources accept listed return reasons only.",
        widget=forms.TextInput(attrs={"list": "bulk-reasons", "autocomplete": "off"}),
    )
    other_reason = forms.CharField(
        label="Or type a reason",
        required=False,
        max_length=MAX_REASON_CHARS,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(
        self,
        *args: Any,
        reason_groups: list[tuple[str, list[str]]] | None = None,
        **kwargs: Any,
    ) -> None:
        """`reason_groups`: (heading, reasons) to pick from, e.g. each source's
        accepted list and the buyer's usual reasons; without them the reason is
        typed, with the usual ones suggested."""
        super().__init__(*args, **kwargs)
        self.reason_groups = [(label, r) for label, r in reason_groups or [] if r]
        if self.reason_groups:
            reason = self.fields["reason"]
            reason.widget = forms.Select(
                choices=[
                    ("", "Choose a reason"),
                    *(
                        (label, [(r, r) for r in reasons])
                        for label, reasons in self.reason_groups
                    ),
                ]
            )
            reason.help_text = (
                "Each source accepts the reasons listed under its name; "
                "a reason a source does not list is refused for its leads."
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        posted = self.data.getlist("event_ids") if hasattr(self.data, "getlist") else []
        event_ids = list(dict.fromkeys(v.strip() for v in posted if v.strip()))
        if not event_ids:
            raise forms.ValidationError("Select at least one delivery.")
        if len(event_ids) > self.MAX_SELECTED:
            raise forms.ValidationError(
                f"Select at most {self.MAX_SELECTED} deliveries at a time."
            )
        data["event_ids"] = event_ids
        if data.get("other_reason"):
            data["reason"] = data["other_reason"]
        if data.get("kind") != Kind.CONVERSION:
            data["revenue"] = None
        return data

    def feedback_items(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        items = []
        for event_id in data["event_ids"]:
            item: dict[str, Any] = {
                "event_id": event_id,
                "type": data["kind"],
                "reason": data.get("reason", ""),
                "note": data.get("note", ""),
            }
            if data.get("revenue") is not None:
                item["revenue"] = data["revenue"]
            items.append(item)
        return items


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text=(
            "A header row, then one feedback per row: event_id or reference, "
            "type or outcome_code, reason, revenue, quality_score, occurred_at, notes."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=200,
        help_text="Where the key is used, e.g. “Salesforce production”.",
    )


class BuyerSwitchForm(forms.Form):
    buyer = forms.SlugField(label="Working in")
