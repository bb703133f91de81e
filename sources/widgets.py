"""Form widgets for the admin.

`RuleSetWidget` edits a rule set (DESIGN §5.3). The raw JSON textarea is the real
form value, so the form works with JavaScript off; `criteria.js` adds a simple row
builder on top of it and writes every change back into the textarea.
"""

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.forms.renderers import BaseRenderer
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sources.rules import OPERATORS, UNARY_OPERATORS
from sources.variables import VARIABLE_NAMES

# "lead.<any field>" is help text, not a name anyone could pick from a list.
DEFAULT_SUGGESTIONS: tuple[str, ...] = tuple(
    name for name in VARIABLE_NAMES if "<" not in name
)


class RuleSetWidget(forms.Textarea):
    """A JSON textarea for a rule set, progressively enhanced into a row builder.

    Use it for a `JSONField` (model or form): the field still parses and
    validates the posted JSON; an empty textarea means no rule set (None).
    """

    class Media:
        js = ("sources/criteria.js",)
        css = {"all": ("sources/criteria.css",)}

    def __init__(
        self,
        attrs: dict[str, Any] | None = None,
        *,
        operators: Iterable[str] = OPERATORS,
        unary_operators: Iterable[str] = UNARY_OPERATORS,
        variables: Iterable[str] = DEFAULT_SUGGESTIONS,
    ) -> None:
        defaults = {"cols": "60", "rows": "12", "class": "vLargeTextField rb-json"}
        super().__init__({**defaults, **(attrs or {})})
        self.operators = list(operators)
        # Sorted so the rendered attribute is stable whatever the set's order.
        self.unary_operators = sorted(unary_operators)
        self.variables = list(variables)

    def format_value(self, value: Any) -> str | None:
        """The JSON text to edit: indented, and "" for no rule set.

        A form's JSONField hands over JSON text (its `prepare_value`), or the
        posted text when that was not valid JSON, which is shown unchanged.
        """
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return value
        if value is None:
            return ""
        return json.dumps(value, indent=2, ensure_ascii=False)

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        textarea = super().render(name, value, attrs, renderer)
        # format_html escapes the JSON for the attributes; the script reads it back.
        return format_html(
            '<div class="rule-builder" data-rule-builder="{}" data-operators="{}" '
            'data-unary="{}" data-variables="{}">{}</div>',
            name,
            json.dumps(self.operators),
            json.dumps(self.unary_operators),
            json.dumps(self.variables),
            textarea,
        )
