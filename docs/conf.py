"""Sphinx configuration: MyST Markdown pages, autodoc for the API reference, the furo theme.

The build must stay warning-free: CI runs ``sphinx-build -W --keep-going``. There is no
intersphinx on purpose (the build must not need the network), so references to the standard
library render as plain text and are listed in ``nitpick_ignore_regex`` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

import resilient
from resilient._core.breaker import TRANSITIONS, BreakerState, Trigger

# -- Project -------------------------------------------------------------------------------------

project = "resilient"
author = "The resilient developers"
copyright = "The resilient developers"
release = resilient.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxcontrib.mermaid",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
pygments_style = "friendly"
pygments_dark_style = "monokai"

# Every cross-reference to our own API must resolve. The standard library and the third-party
# types that appear in signatures have no inventory without intersphinx, so they are exempt.
nitpicky = True
nitpick_ignore_regex = [
    # the standard library and third-party packages (no intersphinx, so no inventories)
    (r"py:.*", r"(datetime|collections|typing|types|asyncio|time|logging|email|json)\..*"),
    (r"py:.*", r"(attrs|attr|wrapt|pytest|_pytest|structlog|opentelemetry)(\..*)?"),
    (r"py:class", r"(float|int|str|bool|bytes|object|type|tuple|list|dict|None|Exception)"),
    (r"py:class", r"(BaseException|TracebackType|NoneType|Ellipsis|function)"),
    (r"py:class", r"(Any|Callable|Iterable|Iterator|AsyncIterator|Awaitable|Mapping|Sequence)"),
    (r"py:class", r"(ClassVar|TypeAlias|Unpack|ParamSpec|TypeVar|P|R|timedelta)"),
    (r"py:class", r"(Meter|MeterProvider|Tracer|TracerProvider|Span|BoundLogger|Logger)"),
    # forward references in resilient.typing's backend protocols (named tuples of backends)
    (r"py:class", r"(Claim|Fetched)"),
    # redis-py client unions aliased in resilient.backends.redis (no inventory for redis-py)
    (r"py:class", r"(SyncClient|AsyncClient)"),
    # a forward reference in resilient.typing; the class is documented in resilient.events
    (r"py:.*", r"Event"),
    # private machinery that appears in public signatures (the decorator object, the handle
    # set_testing returns, the state behind an Attempt) stays out of the reference
    (r"py:class", r"resilient\.(.*\.)?_.*"),
    (r"py:class", r"Budget"),  # the protocol behind RetryBudget, in the private core
]

# -- Generated pages ------------------------------------------------------------------------------

# The breaker's state diagram, drawn from the transition table the code runs on
# (resilient/_core/breaker.py), so the picture cannot drift from the behaviour.
_TRIGGER_LABELS = {
    Trigger.TRIP: "trips",
    Trigger.WAIT_OVER: "open_for has passed",
    Trigger.PROBES_PASSED: "probes succeeded",
    Trigger.FORCE_OPEN: "open()",
    Trigger.DISABLE: "disable()",
    Trigger.CLOSE: "close(), reset()",
}


def breaker_state_diagram() -> str:
    """Return the breaker's transitions as a Mermaid state diagram (self-loops left out)."""
    lines = ["stateDiagram-v2", f"    [*] --> {BreakerState.CLOSED.name}"]
    for (source, trigger), target in TRANSITIONS.items():
        if source is not target:
            lines.append(f"    {source.name} --> {target.name}: {_TRIGGER_LABELS[trigger]}")
    return "\n".join(lines) + "\n"


_GENERATED = Path(__file__).parent / "_generated"
_GENERATED.mkdir(exist_ok=True)
(_GENERATED / "breaker-states.mmd").write_text(breaker_state_diagram(), encoding="utf-8")

# -- MyST ----------------------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc and napoleon ------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- HTML ----------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"resilient {release}"
html_static_path: list[str] = []


# -- Signatures ----------------------------------------------------------------------------------


def _class_signature(  # noqa: PLR0917 - Sphinx passes the event arguments positionally
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, None] | None:
    """Give protocols no signature, and attrs policies the one users write.

    A Protocol's generated ``(*args, **kwargs)`` says nothing. An attrs class with converters
    or factory defaults (RetryPolicy) would show the converters' parameter types and
    ``NOTHING``; this spells its fields with their real defaults instead, from the class itself,
    so the reference cannot drift from the code.
    """
    if what != "class" or not isinstance(obj, type):
        return None
    if getattr(obj, "_is_protocol", False):
        return ("", None)
    if not attrs.has(obj):
        return None
    fields = [field for field in attrs.fields(obj) if field.init]
    if not any(
        field.converter is not None or isinstance(field.default, attrs.Factory) for field in fields
    ):
        return None
    parameters = []
    for field in fields:
        default = field.default
        if isinstance(default, attrs.Factory):
            default = default.factory()
        if default is attrs.NOTHING:
            parameters.append(field.alias)
        else:
            parameters.append(f"{field.alias}={default!r}")
    star = "*, " if all(field.kw_only for field in fields) else ""
    return (f"({star}{', '.join(parameters)})", None)


def setup(app: Any) -> None:
    """Connect the signature hook."""
    app.connect("autodoc-process-signature", _class_signature)
