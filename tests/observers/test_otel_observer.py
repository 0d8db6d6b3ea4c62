"""OpenTelemetryObserver: counters, duration histograms and span events, through the real SDK."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import cast

import pytest
from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.export import HistogramDataPoint, Metric, NumberDataPoint, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import resilient
from resilient.events import Event, RetriesExhausted, RetryScheduled, all_event_types
from resilient.observers import OpenTelemetryObserver
from resilient.testing import FakeClock

Collect = Callable[[], dict[str, Metric]]


Value = int | float | tuple[int, float, float]


def points(metric: Metric) -> list[tuple[dict[str, object], Value]]:
    """Return (attributes, value) of each data point: the sum, or (count, sum, max)."""
    result: list[tuple[dict[str, object], Value]] = []
    for point in metric.data.data_points:
        value: Value
        if isinstance(point, NumberDataPoint):
            value = point.value
        else:
            assert isinstance(point, HistogramDataPoint)
            value = (point.count, point.sum, point.max)
        result.append((dict(point.attributes or {}), value))
    return result


def bounds(metric: Metric) -> Sequence[float]:
    """Return the bucket boundaries of a histogram's first data point."""
    point = metric.data.data_points[0]
    assert isinstance(point, HistogramDataPoint)
    return point.explicit_bounds


def test_retry_calls_record_counters_and_histograms(
    meter: Meter, collect: Collect, fake_clock: FakeClock
) -> None:
    """A failing retried call counts each event and records its delays and elapsed time."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])

    @resilient.retry(on=ConnectionError, attempts=3, wait=resilient.wait.constant(0.5), name="pay")
    def pay() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        pay()
    found = collect()
    scheduled = {"policy": "pay", "error_type": "ConnectionError"}
    exhausted = {**scheduled, "reason": "attempts"}
    assert sorted(found) == [
        "resilient.retry.exhausted",
        "resilient.retry.exhausted.elapsed",
        "resilient.retry.scheduled",
        "resilient.retry.scheduled.delay",
    ]
    assert points(found["resilient.retry.scheduled"]) == [(scheduled, 2)]
    assert points(found["resilient.retry.scheduled.delay"]) == [(scheduled, (2, 1.0, 0.5))]
    assert points(found["resilient.retry.exhausted"]) == [(exhausted, 1)]
    assert points(found["resilient.retry.exhausted.elapsed"]) == [(exhausted, (1, 1.0, 1.0))]


def test_instruments_have_public_names_units_and_types(
    meter: Meter, collect: Collect, failing_call: Callable[..., None]
) -> None:
    """Counters are monotonic sums in {event}; histograms are in seconds with second buckets."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])
    failing_call()
    found = collect()
    for name in ("resilient.retry.scheduled", "resilient.retry.exhausted"):
        data = found[name].data
        assert isinstance(data, Sum)
        assert data.is_monotonic
        assert found[name].unit == "{event}"
    for name in ("resilient.retry.scheduled.delay", "resilient.retry.exhausted.elapsed"):
        assert isinstance(found[name].data, HistogramData)
        assert found[name].unit == "s"
        assert bounds(found[name])[0] == 0.001
        assert bounds(found[name])[-1] == 300.0
    assert found["resilient.retry.scheduled.delay"].description == (
        "Seconds the retry waits before the next attempt."
    )
    assert found["resilient.retry.scheduled"].description == (
        "An attempt failed and another one will be made after delay seconds."
    )


def test_attributes_stay_bounded_whatever_the_arguments(
    meter: Meter, collect: Collect, failing_call: Callable[..., None]
) -> None:
    """Calls with a hundred different arguments make one series per metric, with bounded keys."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])
    for user_id in range(100):
        failing_call(f"user-{user_id}", attempts=2)
    found = collect()
    for metric in found.values():
        [(attributes, _)] = points(metric)
        kind = metric.name.removeprefix("resilient.").removesuffix(".delay")
        cls = {c.kind: c for c in all_event_types()}[kind.removesuffix(".elapsed")]
        assert set(attributes) == {"policy", *cls.attribute_fields}
        assert not any("user" in str(value) for value in attributes.values())
    assert points(found["resilient.retry.scheduled"])[0][1] == 100


def test_nothing_is_registered_before_the_first_event(
    meter: Meter, collect: Collect, sample_event: Callable[..., Event]
) -> None:
    """Building and installing the observer creates no instrument; each kind's appear on use."""
    observer = OpenTelemetryObserver(meter)
    resilient.configure(observers=[observer])
    assert collect() == {}
    observer(sample_event(RetriesExhausted))
    assert sorted(collect()) == [
        "resilient.retry.exhausted",
        "resilient.retry.exhausted.elapsed",
    ]


def test_every_event_type_records_its_catalogued_metrics(
    meter: Meter, collect: Collect, sample_event: Callable[..., Event]
) -> None:
    """Each event class gets a counter named after its kind and a histogram per duration field."""
    observer = OpenTelemetryObserver(meter)
    for cls in all_event_types():
        observer(sample_event(cls))
    found = collect()
    for cls in all_event_types():
        attributes = sample_event(cls).attributes()
        assert points(found[f"resilient.{cls.kind}"]) == [(attributes, 1)]
        for field in cls.duration_fields:
            assert points(found[f"resilient.{cls.kind}.{field}"]) == [(attributes, (1, 0.25, 0.25))]


def test_future_event_classes_need_no_change(
    meter: Meter, collect: Collect, future_event: Event
) -> None:
    """An unseen event class gets its counter and histograms; a None duration is not recorded."""
    OpenTelemetryObserver(meter)(future_event)
    found = collect()
    attributes = {"policy": "cache.profile", "outcome": "ok"}
    assert points(found["resilient.test.refreshed"]) == [(attributes, 1)]
    assert points(found["resilient.test.refreshed.took"]) == [(attributes, (1, 0.75, 0.75))]
    assert "resilient.test.refreshed.waited" not in found  # created, but nothing recorded
    assert found["resilient.test.refreshed.took"].description == "Seconds the refresh took."


def test_span_events_on_the_recording_span(
    meter: Meter,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    failing_call: Callable[..., None],
) -> None:
    """Inside a recording span, each event becomes a span event with attributes and numbers."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])
    with tracer_provider.get_tracer("tests").start_as_current_span("checkout"):
        failing_call()
    [span] = span_exporter.get_finished_spans()
    events = [(event.name, dict(event.attributes or {})) for event in span.events]
    base = {"policy": "fetch", "error_type": "ConnectionError"}
    elapsed = events[2][1]["elapsed"]
    assert events == [
        ("resilient.retry.scheduled", {**base, "attempt": 1, "delay": 0.0}),
        ("resilient.retry.scheduled", {**base, "attempt": 2, "delay": 0.0}),
        (
            "resilient.retry.exhausted",
            {**base, "reason": "attempts", "attempts": 3, "elapsed": elapsed},
        ),
    ]


def test_no_span_or_unsampled_span_only_records_metrics(
    meter: Meter,
    collect: Collect,
    span_exporter: InMemorySpanExporter,
    failing_call: Callable[..., None],
) -> None:
    """Without a recording span the observer records metrics and touches no span."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])
    failing_call()
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    with unsampled.get_tracer("tests").start_as_current_span("checkout") as span:
        assert not span.is_recording()
        failing_call()
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert points(collect()["resilient.retry.scheduled"])[0][1] == 4
    assert span_exporter.get_finished_spans() == ()


def test_default_meter_is_the_global_resilient_meter(failing_call: Callable[..., None]) -> None:
    """Without a meter the observer uses the global API's "resilient" meter, a no-op until set."""
    observer = OpenTelemetryObserver()
    assert observer.meter.name == "resilient"
    assert observer.meter.version == resilient.__version__
    assert repr(observer).startswith("OpenTelemetryObserver(meter=")
    resilient.configure(observers=[observer])
    failing_call()  # recorded by the API's no-op instruments: nothing to see, nothing raised


def test_concurrent_first_events_create_each_instrument_once(
    meter: Meter, collect: Collect, sample_event: Callable[..., Event]
) -> None:
    """Threads racing on a fresh observer all count, through one set of instruments."""
    observer = OpenTelemetryObserver(meter)
    event = sample_event(RetryScheduled)
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            observer(event)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    found = collect()
    assert points(found["resilient.retry.scheduled"])[0][1] == threads * per_thread
    calls = threads * per_thread
    assert points(found["resilient.retry.scheduled.delay"])[0][1] == (calls, 0.25 * calls, 0.25)
    assert len(observer._instruments) == 1


class _MeterWithoutAdvice:
    """A real SDK meter seen through the API of opentelemetry-api before 1.30 (no bucket advice)."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return self._meter.create_counter(name, unit, description)

    def create_histogram(self, name: str, unit: str = "", description: str = "") -> Histogram:
        return self._meter.create_histogram(name, unit, description)


def test_older_api_without_bucket_advice_still_records(
    meter: Meter, collect: Collect, sample_event: Callable[..., Event]
) -> None:
    """A meter whose create_histogram takes no bucket advice gets histograms without it."""
    old_meter = cast(Meter, _MeterWithoutAdvice(meter))  # only the two methods the observer calls
    OpenTelemetryObserver(old_meter)(sample_event(RetryScheduled))
    histogram = collect()["resilient.retry.scheduled.delay"]
    assert bounds(histogram)[-1] == 10000.0  # the SDK's default boundaries
    assert points(histogram)[0][1] == (1, 0.25, 0.25)
