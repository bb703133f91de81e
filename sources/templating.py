"""Templates for field mappings, URLs, file names and rules (DESIGN §5.2).

Jinja2 (`{{ lead.email|lower }}`) compiled in an immutable sandbox and rendered
over a nested dict of variables; only those variables are reachable, a missing
one renders as "", and autoescaping is off (JSON, XML, query strings and CSV
escape on their own). Anything that goes wrong is raised as `TemplateError`,
with the template line when one is known. The filters and limits are documented
for users in docs/configuration.md, "Templates"; how the limits are enforced is
described above the render budget below.
"""

import contextvars
import datetime as dt
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.filters import do_default, do_urlencode
from jinja2.runtime import ChainableUndefined, Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

from sources.variables import sample_variables

MAX_TEMPLATE_CHARS: Final = 100_000
MAX_OUTPUT_CHARS: Final = 100_000
MAX_VALUE_CHARS: Final = MAX_OUTPUT_CHARS
MAX_EMITTED_CHARS: Final = 10 * MAX_OUTPUT_CHARS
MAX_STEPS: Final = 100_000
MAX_RENDER_SECONDS: Final = 0.1
MAX_INT_BITS: Final = 4096

SAMPLE_VARIABLES: Final[Mapping[str, Any]] = MappingProxyType(sample_variables())
"""Variables `validate()` renders a template against, shaped as DESIGN.md §5.2."""

# Names that are not variables: Jinja's default globals (removed from the
# environment) and `self`, which would expose the template object itself.
_REFUSED_NAMES: Final = frozenset(
    {"self", "range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)
_REFUSED_TAGS: Final[tuple[tuple[type[nodes.Node], str], ...]] = (
    (nodes.Extends, "extends"),
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "from ... import"),
)
# Methods a template may call: none of them can make a value much larger than
# its input (unlike center, ljust, zfill, expandtabs, replace or format).
_CALLABLE_METHODS: Final[
    tuple[tuple[type[Any] | tuple[type[Any], ...], frozenset[str]], ...]
] = (
    (
        str,
        frozenset(
            {
                "capitalize",
                "casefold",
                "count",
                "endswith",
                "find",
                "isalnum",
                "isalpha",
                "isdecimal",
                "isdigit",
                "islower",
                "isnumeric",
                "isspace",
                "isupper",
                "lower",
                "lstrip",
                "partition",
                "removeprefix",
                "removesuffix",
                "rfind",
                "rpartition",
                "rsplit",
                "rstrip",
                "split",
                "splitlines",
                "startswith",
                "strip",
                "swapcase",
                "title",
                "upper",
            }
        ),
    ),
    (dict, frozenset({"get", "items", "keys", "values"})),
    ((list, tuple), frozenset({"count"})),
)
# Filter names with a space cannot be written in a template: only the compiler
# pass below inserts them.
_LOOP_GUARD: Final = "leadback loop guard"
_CONCAT_GUARD: Final = "leadback concat guard"


class TemplateError(ValueError):
    """A template that does not compile, or that failed or was stopped rendering."""

    def __init__(self, message: str, *, lineno: int | None = None) -> None:
        self.message = message
        self.lineno = lineno
        super().__init__(f"line {lineno}: {message}" if lineno else message)


# The render budget ------------------------------------------------------------
# Bounds. A template is admin-authored but runs in the delivery worker, so a
# mistake must not be able to hang it or eat its memory:
#
# - the source is at most `MAX_TEMPLATE_CHARS` and is compiled once per distinct
#   source (`lru_cache`);
# - time: every loop iteration goes through a guard that the compiler inserts
#   around each `{% for %}` iterable (the parsed tree is rewritten before
#   compiling), and every call, operator, filter and output goes through a sandbox
#   hook. Each of those checks a per-render budget kept in a context variable:
#   at most `MAX_STEPS` loop iterations and calls, and `MAX_RENDER_SECONDS` of
#   the rendering thread's CPU time (not wall time, which a loaded host stretches).
#   Between two checks a template can only do a bounded amount of work,
#   so `{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}` stops in
#   milliseconds;
# - memory: `*` and `+` on strings and lists (intercepted binary operators) and `~`
#   (rewritten into a guarded join) refuse a result longer than `MAX_VALUE_CHARS`
#   before building it; `**` and `*` on integers refuse results beyond
#   `MAX_INT_BITS`; `%` on a string is refused (`"%999999999d" % 1`); filters
#   refuse inputs and outputs beyond `MAX_VALUE_CHARS`; every value written out
#   (including inside macros and `{% set %}` blocks) is counted against
#   `MAX_EMITTED_CHARS`; buffered blocks are joined only below `MAX_OUTPUT_CHARS`;
# - output: rendering goes through `generate()` and stops as soon as the text
#   produced passes `MAX_OUTPUT_CHARS`.


class _Budget:
    __slots__ = ("deadline", "emitted", "steps", "ticks")

    def __init__(self) -> None:
        self.deadline = time.thread_time() + MAX_RENDER_SECONDS
        self.steps = 0
        self.emitted = 0
        self.ticks = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "leadback_template_budget", default=None
)


def _tick(steps: int = 0, emitted: int = 0) -> None:
    """Charge the current render; raise once it is over a bound.

    Outside a render (constant folding at compile time) there is nothing to charge.
    The clock is this thread's CPU time, so a busy host or a descheduled worker
    does not fail a template; it is read every 32nd tick as reading it costs ~1 µs.
    """
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += steps
    budget.emitted += emitted
    budget.ticks += 1
    if budget.steps > MAX_STEPS:
        raise TemplateError(
            f"template stopped: more than {MAX_STEPS} loop iterations and calls"
        )
    if budget.emitted > MAX_EMITTED_CHARS:
        raise TemplateError(
            f"template stopped: it wrote more than {MAX_EMITTED_CHARS} characters"
        )
    if budget.ticks % 32 == 0 and time.thread_time() > budget.deadline:
        raise TemplateError(
            f"template stopped: rendering used more than "
            f"{int(MAX_RENDER_SECONDS * 1000)} ms of CPU time"
        )


def _size(value: Any) -> int:
    """Roughly how long `value` is as text, counting up to just past the limit."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= MAX_VALUE_CHARS:
        item, depth = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Undefined) or item is None:
            continue
        elif isinstance(item, bool):
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, Mapping | list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            if depth < 32 and total <= MAX_VALUE_CHARS:
                children = item.items() if isinstance(item, Mapping) else item
                for child in children:
                    stack.append((child, depth + 1))
        else:
            total += 32
    return total


def _check_size(value: Any, what: str = "a value") -> None:
    if _size(value) > MAX_VALUE_CHARS:
        raise TemplateError(f"{what} is longer than {MAX_VALUE_CHARS} characters")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# The environment --------------------------------------------------------------


class _Undefined(ChainableUndefined):
    """A missing variable: renders as "", and `missing.a.b` is missing too."""

    __slots__ = ()


def _callable_allowed(obj: Any) -> bool:
    if isinstance(obj, Macro):
        return True
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", None)
    if isinstance(owner, LoopContext):
        return name in {"cycle", "changed"}
    return any(
        isinstance(owner, kind) and name in names for kind, names in _CALLABLE_METHODS
    )


def _describe(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or type(obj).__name__)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sequences = (str, list, tuple)
    if operator == "%" and isinstance(left, str):
        raise TemplateError("formatting text with % is not allowed; join with ~")
    if operator == "*":
        if isinstance(left, sequences) and isinstance(right, int):
            length = len(left) * right
        elif isinstance(right, sequences) and isinstance(left, int):
            length = len(right) * left
        elif isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateError(f"a number is larger than {MAX_INT_BITS} bits")
            return
        else:
            return
        if length > MAX_VALUE_CHARS:
            raise TemplateError(f"a value is longer than {MAX_VALUE_CHARS} characters")
    elif (
        operator == "+"
        and isinstance(left, sequences)
        and isinstance(right, sequences)
        and len(left) + len(right) > MAX_VALUE_CHARS
    ):
        raise TemplateError(f"a value is longer than {MAX_VALUE_CHARS} characters")
    elif (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and max(left.bit_length(), 1) * right > MAX_INT_BITS
    ):
        raise TemplateError(f"a number is larger than {MAX_INT_BITS} bits")


def _finalize(value: Any) -> Any:
    """Every expression written out passes here, inside macros and blocks too."""
    if value is None:
        return ""
    size = _size(value)
    if size > MAX_VALUE_CHARS:
        raise TemplateError(f"a value is longer than {MAX_VALUE_CHARS} characters")
    _tick(emitted=size)
    return value


def _bounded_join(parts: Iterable[str]) -> str:
    """The join behind macros, `{% set %}`/`{% filter %}` blocks and call blocks."""
    pieces: list[str] = []
    total = 0
    for piece in parts:
        total += len(piece)
        if total > MAX_OUTPUT_CHARS:
            raise TemplateError(f"output is longer than {MAX_OUTPUT_CHARS} characters")
        pieces.append(piece)
    return "".join(pieces)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%"})
    concat = staticmethod(_bounded_join)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The variables are data: `lead.items` is the lead's "items" field when it
        # has one, not the dict method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise TemplateError(
            f"access to {attribute!r} of a {type(obj).__name__} is not allowed"
        )

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick(steps=1)
        if isinstance(obj, Undefined):
            obj()  # raises UndefinedError, naming what is missing
        if isinstance(obj, LoopContext):
            # A recursive loop: the iterable it is handed is guarded like any other.
            if args:
                args = (_guard_iterable(args[0]), *args[1:])
        elif not _callable_allowed(obj):
            raise TemplateError(f"calling {_describe(obj)}() is not allowed")
        result = super().call(context, obj, *args, **kwargs)
        _check_size(result)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _guard_iterable(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _tick(steps=1)
        yield item


@pass_context
def _loop_guard(context: Context, iterable: Any) -> Iterator[Any]:
    # pass_context keeps the compiler from folding the guard into a constant.
    return _guard_iterable(iterable)


@pass_context
def _concat_guard(context: Context, parts: list[Any]) -> str:
    """`a ~ b`: each part is measured before it is turned into text."""
    _tick()
    texts: list[str] = []
    total = 0
    for part in parts:
        _check_size(part)
        text = _text(part)
        total += len(text)
        if total > MAX_VALUE_CHARS:
            raise TemplateError(f"a value is longer than {MAX_VALUE_CHARS} characters")
        texts.append(text)
    return "".join(texts)


class _GuardInserter(NodeTransformer):
    """Route every `{% for %}` iterable and every `~` through the guards."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(
            node.iter, _LOOP_GUARD, [], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(
            parts, _CONCAT_GUARD, [], [], None, None, lineno=node.lineno
        )


# Filters ----------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or _text(value).strip() == ""


def _lower(value: Any) -> str:
    return _text(value).lower()


def _upper(value: Any) -> str:
    return _text(value).upper()


def _trim(value: Any, chars: str | None = None) -> str:
    return _text(value).strip(chars)


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    return do_default(value, default_value, boolean)


def _parse_moment(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.datetime.fromisoformat(_text(value).strip())
    except ValueError:
        return None


def _date(value: Any, fmt: str | None = None) -> str:
    """Format a datetime, date or ISO 8601 string; unparseable text passes through."""
    if _is_blank(value):
        return ""
    moment = _parse_moment(value)
    if moment is None:
        return _text(value)
    if fmt is None:
        return moment.isoformat()
    return moment.strftime(str(fmt))


def _md5(value: Any) -> str:
    text = _text(value)
    if not text:
        return ""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _sha256(value: Any) -> str:
    text = _text(value)
    return hashlib.sha256(text.encode()).hexdigest() if text else ""


def _digits(value: Any) -> str:
    return re.sub(r"[^0-9]", "", _text(value))


def _urlencode(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return ""
    return do_urlencode(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse oversized inputs before a filter runs and oversized results after."""

    @functools.wraps(func)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        for item in (value, *args, *kwargs.values()):
            _check_size(item, "a filter's input")
        result = func(value, *args, **kwargs)
        _check_size(result, "a filter's result")
        return result

    return wrapper


FILTERS: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {
        name: _bounded(func)
        for name, func in {
            "lower": _lower,
            "upper": _upper,
            "trim": _trim,
            "default": _default,
            "date": _date,
            "md5": _md5,
            "sha256": _sha256,
            "digits": _digits,
            "urlencode": _urlencode,
            "tojson": _tojson,
        }.items()
    }
)
"""The filters a template may use, by name."""


def _environment() -> _Environment:
    env = _Environment(
        autoescape=False,
        undefined=_Undefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()
    env.filters.clear()
    env.filters.update(FILTERS)
    env.filters[_LOOP_GUARD] = _loop_guard
    env.filters[_CONCAT_GUARD] = _concat_guard
    return env


_ENV: Final = _environment()


# Compiling and rendering ------------------------------------------------------


def _check_tree(tree: nodes.Template) -> None:
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name in _REFUSED_NAMES:
            raise TemplateError(
                f"{name.name!r} is not available in templates", lineno=name.lineno
            )
    for node_type, tag in _REFUSED_TAGS:
        for node in tree.find_all(node_type):
            raise TemplateError(f"{{% {tag} %}} is not allowed", lineno=node.lineno)


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> jinja2.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _ENV.parse(source)
        _check_tree(tree)
        tree = _GuardInserter().visit(tree)
        tree.set_environment(_ENV)
        return _ENV.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or str(exc), lineno=exc.lineno) from None
    except RecursionError:
        raise TemplateError("template is nested too deeply") from None


def _template_line(traceback: TracebackType | None) -> int | None:
    """The last template line in a traceback Jinja has rewritten to template lines."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _render_error(exc: Exception) -> TemplateError:
    lineno = _template_line(exc.__traceback__)
    if isinstance(exc, TemplateError):
        return TemplateError(exc.message, lineno=exc.lineno or lineno)
    if isinstance(exc, RecursionError):
        message = "template recursion is too deep"
    elif isinstance(exc, jinja2.TemplateError):
        message = exc.message or type(exc).__name__
    else:
        message = str(exc) or type(exc).__name__
    return TemplateError(message, lineno=lineno)


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Render `template` over `variables`; raise TemplateError if it cannot."""
    compiled = _compile(template)
    token = _budget.set(_Budget())
    chunks: list[str] = []
    total = 0
    stream = compiled.generate(dict(variables))
    try:
        for chunk in stream:
            total += len(chunk)
            if total > MAX_OUTPUT_CHARS:
                raise TemplateError(
                    f"output is longer than {MAX_OUTPUT_CHARS} characters"
                )
            chunks.append(chunk)
    except MemoryError:
        raise
    except Exception as exc:
        raise _render_error(exc) from None
    finally:
        if isinstance(stream, Generator):
            stream.close()
        _budget.reset(token)
    return "".join(chunks)


def validate(
    template: str, *, variables: Mapping[str, Any] | None = None
) -> str | None:
    """None when `template` compiles and renders against sample variables, else why.

    Admin forms call this to refuse a broken template on save.
    """
    try:
        render(template, SAMPLE_VARIABLES if variables is None else variables)
    except TemplateError as exc:
        return str(exc)
    return None


def is_template(text: object) -> bool:
    """Whether `text` holds template syntax, as opposed to a literal value."""
    return isinstance(text, str) and ("{{" in text or "{%" in text)
