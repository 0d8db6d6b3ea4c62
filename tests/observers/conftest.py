"""Fixtures for the observer tests: a real OpenTelemetry SDK, failing retried calls, events."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import resilient
from resilient.events import Event

# Values for hand-built events, by the field's annotation.
_SAMPLES: dict[object, object] = {
    str: "sample",
    int: 2,
    float: 0.25,
    str | None: "sample",
    int | None: 2,
    float | None: 0.25,
    bool: True,
}


def _sample(cls: type[Event], **overrides: object) -> Event:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {f.name: _SAMPLES[hints[f.name]] for f in attrs.fields(cls)}
    values.update(policy="orders.fetch", time=12.5)
    values.update(overrides)
    return cls(**values)


@pytest.fixture
def sample_event() -> Callable[..., Event]:
    """Build an event of any class with plausible values; keywords override fields."""
    return _sample


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """Return an in-memory metric reader for a fresh SDK MeterProvider."""
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """Return a fresh SDK MeterProvider (not installed globally) read by *metric_reader*."""
    provider = MeterProvider(metric_readers=[metric_reader], shutdown_on_exit=False)
    yield provider
    provider.shutdown()


@pytest.fixture
def meter(meter_provider: MeterProvider) -> Meter:
    """Return the ``resilient`` meter of *meter_provider*."""
    return meter_provider.get_meter("resilient")


@pytest.fixture
def collect(metric_reader: InMemoryMetricReader) -> Callable[[], dict[str, Metric]]:
    """Return a function that reads every metric recorded so far, by name."""

    def read() -> dict[str, Metric]:
        data = metric_reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    return read


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """Return an in-memory exporter of finished spans."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """Return a fresh SDK TracerProvider (not installed globally) exporting to *span_exporter*."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def failing_call() -> Callable[..., None]:
    """Return a function that calls a retried, always-failing function and swallows its error.

    The retried function is named ``"fetch"`` and makes *attempts* attempts with no wait.
    """

    def call(*args: object, attempts: int = 3, name: str = "fetch") -> None:
        @resilient.retry(
            on=ConnectionError, attempts=attempts, wait=resilient.wait.none(), name=name
        )
        def fetch(*args: object) -> None:
            raise ConnectionError(f"cannot reach {args}")

        with pytest.raises(ConnectionError):
            fetch(*args)

    return call


@attrs.frozen(kw_only=True)
class Refreshed(Event):
    """A made-up event of a capability that does not exist yet, to prove observers are generic.

    Attributes:
        took: Seconds the refresh took.
        waited: Seconds spent waiting for a slot, or ``None`` when there was no wait.
        outcome: How the refresh ended.
        generation: A counter the event carries but no metric uses.
    """

    kind: ClassVar[str] = "test.refreshed"
    severity: ClassVar[str] = "error"
    attribute_fields: ClassVar[tuple[str, ...]] = ("outcome",)
    duration_fields: ClassVar[tuple[str, ...]] = ("took", "waited")

    took: float
    waited: float | None
    outcome: str
    generation: int


@pytest.fixture
def future_event() -> Refreshed:
    """Return an event of a class no observer was written for."""
    return Refreshed(
        policy="cache.profile", time=3.0, took=0.75, waited=None, outcome="ok", generation=7
    )
