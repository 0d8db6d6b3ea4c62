# The span of each decorated call, for OpenTelemetryObserver; imported only when one is built
# with spans on, so opentelemetry-api is imported at the top here.
#
# Rules:
# - One span per decorated call (however many decorators are stacked, as they fuse into one
#   wrapper), of kind INTERNAL, named after the function's module and qualified name: one name
#   per function, never per argument. Its attributes are the semantic conventions' code.*
#   attributes and `resilient.decorators`, made for each call (nothing is kept per function, so
#   functions decorated at run time can be collected; the SDK's span costs far more).
# - The span is the current span while the call runs, so the events the layers report become its
#   span events (the observer adds each event to the current span), and spans the function
#   starts are its children.
# - A call that raises an Exception sets `error.type` (named as events name error types), records
#   the exception, and sets the status ERROR with the exception's message. Anything else that
#   ends the call (cancellation, KeyboardInterrupt, SystemExit) leaves the status unset: it is
#   not a failure of the call. Failures that were retried, or that a fallback turned into a
#   value, never reach here: they are span events only.
# - Without an SDK there is no span. With the global tracer provider, until the application
#   installs one (the API's proxy provider stands in for it), a call asks for no span at all,
#   and once it is installed its tracer is kept for good (a global provider is set once).
#   `get_tracer_provider()` tells whether one is installed (and, asked once when the observer
#   is built, loads one that OTEL_PYTHON_TRACER_PROVIDER names), but until one is installed it
#   looks up that environment variable on every call, which costs more than the whole decorated
#   call; so a call first reads the API's own record of the installed provider,
#   `trace._TRACER_PROVIDER`, and asks `get_tracer_provider()` only once that is set (or if a
#   later API lacks it).
#   Any other no-op tracer returns the current span, or a span with the current span's context:
#   such a span is neither made current nor ended, so the current span stays what it was
#   (events still land on it).
from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from .._drive import type_name
from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from .._decorate import CallSite

__all__ = ["CallSpans"]

_Attributes = dict[str, "AttributeValue"]


def _describe(site: CallSite) -> _Attributes:
    attributes: _Attributes = {
        "code.function.name": site.target.name,
        "resilient.decorators": site.decorators,
    }
    code = getattr(site.target.function, "__code__", None)
    if code is not None:
        attributes["code.file.path"] = code.co_filename
        attributes["code.line.number"] = code.co_firstlineno
    return attributes


class CallSpans:
    """Make the span of each decorated call; the decorators call this.

    Args:
        provider: The tracer provider to use, or ``None`` for the global one, once installed.
    """

    __slots__ = ("_tracer",)

    def __init__(self, provider: TracerProvider | None) -> None:
        if provider is None:
            provider = trace.get_tracer_provider()
        # None until a global provider is installed: see the module's rules
        self._tracer = None if _stand_in(provider) else _tracer(provider)

    def __call__(self, site: CallSite) -> _CallSpan | None:
        """Return the context manager a call of *site* runs in, or None for no span."""
        tracer = self._tracer
        if tracer is None:
            if getattr(trace, "_TRACER_PROVIDER", trace) is None:
                return None
            provider = trace.get_tracer_provider()
            if _stand_in(provider):
                return None
            tracer = self._tracer = _tracer(provider)
        return _CallSpan(tracer, site.target.name, _describe(site))


def _stand_in(provider: TracerProvider) -> bool:
    """Whether *provider* is the API's stand-in for a global provider not installed yet."""
    return isinstance(provider, trace.ProxyTracerProvider)


def _tracer(provider: TracerProvider) -> Tracer:
    return provider.get_tracer("resilient", __version__)


class _CallSpan:
    __slots__ = ("_attributes", "_current", "_name", "_tracer")

    def __init__(self, tracer: Tracer, name: str, attributes: _Attributes) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._current: tuple[Span, Token[Context]] | None = None  # the span made current

    def __enter__(self) -> None:
        span = self._tracer.start_span(
            self._name, kind=SpanKind.INTERNAL, attributes=self._attributes
        )
        if (
            not span.is_recording()
            and span.get_span_context() == trace.get_current_span().get_span_context()
        ):
            return  # a no-op tracer's: see the module's rules
        self._current = span, context.attach(trace.set_span_in_context(span))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._current is None:
            return
        span, token = self._current
        context.detach(token)
        if isinstance(error, Exception) and span.is_recording():
            span.set_attribute("error.type", type_name(error))
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error) or None))
        span.end()
