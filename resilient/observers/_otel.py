# The OpenTelemetry observer, on opentelemetry-api only: the application chooses and installs the
# SDK, and until it does every call here is the API's no-op. Instruments are created on the first
# event of each class and cached by class, so importing, constructing and configuring register
# nothing; the cache is filled under a lock (each instrument is created once) and read without one.
# The names, units and attributes made here are public API; `metric_specs` is the one place that
# derives them from an event class, and the docs' catalogue is checked against it.
# The span of each decorated call is made in _otel_spans.py, through the observer's `call_spans`,
# which the decorators look for among the configured observers (see _decorate.py).
from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import attrs

from .._version import __version__
from ..events import Event

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter
    from opentelemetry.trace import Span, TracerProvider

    from ._otel_spans import CallSpans

__all__ = ["DURATION_BUCKETS", "MetricSpec", "OpenTelemetryObserver", "metric_specs"]

DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Histogram bucket boundaries in seconds, given to the SDK as advice (views may override)."""

_NOT_SPAN_FIELDS = frozenset({"policy", "time"})


class MetricSpec(NamedTuple):
    """One instrument the OpenTelemetry observer records for an event class."""

    name: str
    instrument: str  # "counter" or "histogram"
    unit: str
    attributes: tuple[str, ...]
    field: str | None  # the duration field a histogram records
    description: str


def _plain(text: str) -> str:
    return text.replace("``", "").replace("*", "")


def _summary(cls: type[Event]) -> str:
    doc = cls.__doc__ or ""
    return _plain(doc.strip().partition("\n")[0])


def _field_doc(cls: type[Event], field: str) -> str:
    # The field's entry in the class docstring's "Attributes:" section (Google style), so a new
    # event class documents its histograms by documenting its fields.
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    prefix = f"{field}:"
    for index, line in enumerate(lines):
        if line.strip().startswith(prefix):
            indent = len(line) - len(line.lstrip())
            parts = [line.strip().removeprefix(prefix).strip()]
            for following in lines[index + 1 :]:
                if not following.strip() or len(following) - len(following.lstrip()) <= indent:
                    break
                parts.append(following.strip())
            return _plain(" ".join(parts))
    return f"The {field} of each {cls.kind} event, in seconds."


def metric_specs(cls: type[Event]) -> tuple[MetricSpec, ...]:
    """Return the instruments recorded for events of *cls*: a counter, a histogram per duration."""
    attributes = ("policy", *cls.attribute_fields)
    name = f"resilient.{cls.kind}"
    counter = MetricSpec(name, "counter", "{event}", attributes, None, _summary(cls))
    histograms = tuple(
        MetricSpec(
            f"{name}.{field}",
            "histogram",
            "s",
            attributes,
            field,
            _field_doc(cls, field),
        )
        for field in cls.duration_fields
    )
    return (counter, *histograms)


class _KindInstruments(NamedTuple):
    counter: Counter
    histograms: tuple[tuple[str, Histogram], ...]
    span_event: str
    span_fields: tuple[str, ...]


def _histogram(meter: Meter, spec: MetricSpec) -> Histogram:
    try:
        return meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # opentelemetry-api before 1.30 takes no advice
        return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)


class OpenTelemetryObserver:
    """Record every event as OpenTelemetry metrics and span events, and trace decorated calls.

    For an event of kind *k* the observer adds 1 to the counter ``resilient.<k>`` and records
    each duration field *f* in the histogram ``resilient.<k>.<f>`` (seconds), both with the
    event's bounded :meth:`~resilient.events.Event.attributes` (policy name, error type,
    outcome; never keys, arguments or users). When the current span is recording, it also adds
    the span event ``resilient.<k>`` with those attributes plus the event's numeric fields
    (attempt number, delay...).

    Once configured (:func:`resilient.configure`), and unless *spans* is false, it also runs
    every call of a decorated function in a span of its own, named after the function: the
    events of the call become that span's events, and an exception the call raises is recorded
    on it with the status ``ERROR``. The first configured observer that traces calls does so.

    Only ``opentelemetry-api`` is used: metrics and spans go wherever the application's SDK
    sends them, and nowhere until it installs one. Instruments are created on the first event of
    each kind, not at construction. Thread-safe.

    Args:
        meter: The meter to create instruments with; by default
            ``opentelemetry.metrics.get_meter("resilient", <version>)`` from the global meter
            provider (a provider installed after this observer is built is still picked up).
        tracer_provider: Where the spans of decorated calls come from; by default the global
            tracer provider (likewise picked up when installed later).
        spans: Whether to trace decorated calls; with ``False`` the observer only records
            metrics and adds span events to the spans of others.

    Raises:
        ImportError: If opentelemetry-api is not installed.
    """

    __slots__ = ("_current_span", "_instruments", "_lock", "call_spans", "meter")

    def __init__(
        self,
        meter: Meter | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        spans: bool = True,
    ) -> None:
        try:
            from opentelemetry import metrics, trace  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise ImportError(
                "OpenTelemetryObserver needs opentelemetry-api, an optional extra: "
                "pip install 'resilient[otel]'"
            ) from exc
        from ._otel_spans import CallSpans  # noqa: PLC0415 - it imports opentelemetry

        self.meter = metrics.get_meter("resilient", __version__) if meter is None else meter
        self.call_spans: CallSpans | None = CallSpans(tracer_provider) if spans else None
        self._current_span: Callable[[], Span] = trace.get_current_span
        self._instruments: dict[type[Event], _KindInstruments] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Record *event*."""
        cls = type(event)
        instruments = self._instruments.get(cls) or self._create(cls)
        attributes = event.attributes()
        instruments.counter.add(1, attributes)
        for field, histogram in instruments.histograms:
            value = getattr(event, field)
            if value is not None:
                histogram.record(value, attributes)
        span = self._current_span()
        if span.is_recording():
            span_attributes: dict[str, str | int | float] = dict(attributes)
            for field in instruments.span_fields:
                value = getattr(event, field)
                if isinstance(value, int | float):
                    span_attributes[field] = value
            span.add_event(instruments.span_event, span_attributes)

    def _create(self, cls: type[Event]) -> _KindInstruments:
        with self._lock:
            instruments = self._instruments.get(cls)
            if instruments is None:
                counter_spec, *histogram_specs = metric_specs(cls)
                counter = self.meter.create_counter(
                    counter_spec.name, unit=counter_spec.unit, description=counter_spec.description
                )
                histograms = tuple(
                    (field, _histogram(self.meter, spec))
                    for field, spec in zip(cls.duration_fields, histogram_specs, strict=True)
                )
                span_fields = tuple(
                    field.name
                    for field in attrs.fields(cls)
                    if field.name not in _NOT_SPAN_FIELDS and field.name not in cls.attribute_fields
                )
                instruments = _KindInstruments(counter, histograms, counter_spec.name, span_fields)
                self._instruments[cls] = instruments
            return instruments

    def __repr__(self) -> str:
        spans = self.call_spans is not None
        return f"OpenTelemetryObserver(meter={self.meter!r}, spans={spans})"
