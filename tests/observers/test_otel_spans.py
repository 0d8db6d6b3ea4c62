"""OpenTelemetryObserver's spans: one per decorated call, through the real SDK's exporters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, python_processes, run
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.export import Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import resilient
from resilient.events import LockContended, RetryScheduled
from resilient.exceptions import CircuitOpenError
from resilient.observers import OpenTelemetryObserver
from resilient.observers._otel import metric_specs

Collect = Callable[[], dict[str, Metric]]


@pytest.fixture
def traced(meter: Meter, tracer_provider: TracerProvider) -> OpenTelemetryObserver:
    """Install an observer recording metrics with *meter* and spans with *tracer_provider*."""
    observer = OpenTelemetryObserver(meter, tracer_provider=tracer_provider)
    resilient.configure(observers=[observer])
    return observer


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Callable[[], list[ReadableSpan]]:
    """Return a function listing the spans finished so far, oldest first."""
    return lambda: list(span_exporter.get_finished_spans())


def events(span: ReadableSpan) -> list[str]:
    """Return the names of a span's events, in order."""
    return [event.name for event in span.events]


def flaky(failures: int) -> Callable[[], int]:
    """Return a function that raises ConnectionError *failures* times, then counts its calls."""
    calls = iter(range(1, 1000))

    def call() -> int:
        count = next(calls)
        if count <= failures:
            raise ConnectionError(f"down ({count})")
        return count

    return call


def test_a_call_retried_twice_makes_one_span_with_two_retry_events(
    traced: OpenTelemetryObserver,
    spans: Callable[[], list[ReadableSpan]],
    collect: Collect,
) -> None:
    """A sync call that succeeds on its third attempt: one span, two retry events, the metrics."""
    attempt = flaky(2)

    @resilient.retry(on=ConnectionError, attempts=3, wait=resilient.wait.none(), name="pay")
    def pay(order: str) -> int:
        return attempt()

    assert pay("order-17") == 3
    [span] = spans()
    assert span.name.startswith(f"{__name__}.")
    assert span.name.endswith(".<locals>.pay")
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert events(span) == ["resilient.retry.scheduled", "resilient.retry.scheduled"]
    assert [dict(event.attributes or {})["attempt"] for event in span.events] == [1, 2]
    assert not any("order-17" in str(value) for value in (span.attributes or {}).values())
    recorded = collect()
    for spec in metric_specs(RetryScheduled):
        assert recorded[spec.name].unit == spec.unit
    point = recorded["resilient.retry.scheduled"].data.data_points[0]
    assert dict(point.attributes or {}) == {"policy": "pay", "error_type": "ConnectionError"}
    assert point.value == 2  # type: ignore[union-attr]  # a counter's point has a value


def test_an_async_call_retried_twice_makes_one_span_with_two_retry_events(
    traced: OpenTelemetryObserver,
    spans: Callable[[], list[ReadableSpan]],
    collect: Collect,
) -> None:
    """The same for a coroutine function: the span lasts while the coroutine runs."""
    attempt = flaky(2)

    @resilient.retry(on=ConnectionError, attempts=3, wait=resilient.wait.none(), name="apay")
    async def apay() -> int:
        await asyncio.sleep(0)
        assert trace.get_current_span().is_recording()  # the call's span, current inside
        return attempt()

    call = apay()
    assert spans() == []  # nothing starts before the coroutine runs
    assert run(call) == 3
    [span] = spans()
    assert span.name.endswith(".apay")
    assert events(span) == ["resilient.retry.scheduled", "resilient.retry.scheduled"]
    assert span.status.status_code is StatusCode.UNSET
    assert sorted(collect()) == [spec.name for spec in metric_specs(RetryScheduled)]


def test_span_attributes_name_the_code_and_the_stacked_decorators(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """code.function.name, code.file.path, code.line.number and resilient.decorators are set."""

    @resilient.retry(on=ConnectionError, attempts=2)
    @resilient.breaker("otel-spans.stock")
    def stock() -> int:
        return 4

    stock()
    [span] = spans()
    attributes = dict(span.attributes or {})
    assert attributes == {
        "code.function.name": span.name,
        "code.file.path": __file__,
        "code.line.number": stock.__wrapped__.__code__.co_firstlineno,  # type: ignore[attr-defined]
        "resilient.decorators": ("retry", "breaker"),
    }


def test_a_failing_call_records_its_exception_and_status_error(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """A call that gives up: retry events, then the exception recorded, error.type, ERROR."""

    @resilient.retry(on=ConnectionError, attempts=2, wait=resilient.wait.none())
    def fetch() -> None:
        raise ConnectionError("inventory down")

    with pytest.raises(ConnectionError):
        fetch()
    [span] = spans()
    assert events(span) == [
        "resilient.retry.scheduled",
        "resilient.retry.exhausted",
        "exception",
    ]
    recorded = dict(span.events[-1].attributes or {})
    assert recorded["exception.type"] == "ConnectionError"
    assert recorded["exception.message"] == "inventory down"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "inventory down"
    assert dict(span.attributes or {})["error.type"] == "ConnectionError"


def test_breaker_rejections_are_events_and_errors(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """A refused call's span has the breaker.rejected event and the CircuitOpenError."""
    guard = resilient.breaker("otel-spans.charges")

    @guard
    def charge() -> str:
        return "charged"

    guard.open()
    with pytest.raises(CircuitOpenError):
        charge()
    [span] = spans()
    assert events(span) == ["resilient.breaker.rejected", "exception"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "resilient.exceptions.CircuitOpenError"


def test_a_fallback_value_leaves_the_status_unset(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """A rejection that a fallback answers is an event on a span that did not fail."""
    guard = resilient.breaker("otel-spans.quotes")

    @resilient.fallback(on=CircuitOpenError, value="cached quote")
    @guard
    def quote() -> str:
        return "live quote"

    guard.open()
    assert quote() == "cached quote"
    [span] = spans()
    assert events(span) == ["resilient.breaker.rejected", "resilient.fallback.used"]
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})


def test_cache_status_is_an_event_of_each_call(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """A cached function's first call has cache.missed, the next one cache.hit."""

    @resilient.cached(ttl=300)
    def profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    profile(7)
    profile(7)
    missed, hit = spans()
    assert events(missed) == ["resilient.cache.missed"]
    assert events(hit) == ["resilient.cache.hit"]
    assert hit.name.endswith(".profile")


def test_lock_waits_are_events_of_the_waiting_call(
    meter: Meter,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    """A call that waited for a lock held elsewhere shows the contention and the wait."""
    log = EventLog()
    resilient.configure(
        observers=[OpenTelemetryObserver(meter, tracer_provider=tracer_provider), log]
    )
    guard = resilient.lock("otel-spans.sheets", ttl=30, timeout=PATIENCE)

    @guard
    def sync_sheets() -> str:
        return "synced"

    results: list[str] = []
    with guard:
        waiter = threading.Thread(target=lambda: results.append(sync_sheets()))
        waiter.start()
        log.wait_for(LockContended)
    waiter.join()
    assert results == ["synced"]
    [span] = spans()
    assert events(span) == [
        "resilient.lock.contended",
        "resilient.lock.acquired",
        "resilient.lock.released",
    ]
    waited = dict(span.events[1].attributes or {})["waited"]
    assert isinstance(waited, float)
    assert waited > 0


def test_nested_decorated_calls_nest_their_spans(
    traced: OpenTelemetryObserver,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    """A decorated call made inside another is its child; spans the function starts, too."""
    tracer = tracer_provider.get_tracer("tests")

    @resilient.retry(on=ConnectionError, attempts=2)
    def inner() -> int:
        with tracer.start_as_current_span("query"):
            return 1

    @resilient.retry(on=ConnectionError, attempts=2)
    async def outer() -> int:
        return inner() + 1

    with tracer.start_as_current_span("request") as request:
        assert run(outer()) == 2
    query, inner_span, outer_span, request_span = spans()
    assert request_span.context.span_id == request.get_span_context().span_id
    assert outer_span.parent is not None
    assert outer_span.parent.span_id == request_span.context.span_id
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert query.parent is not None
    assert query.parent.span_id == inner_span.context.span_id
    assert len({span.context.trace_id for span in spans()}) == 1


def test_methods_and_classmethods_get_their_own_spans(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """Methods (wrapt's path included) are traced under their class's qualified name."""

    class Client:
        @resilient.retry(on=ConnectionError, attempts=2)
        def get(self) -> str:
            return "got"

        @classmethod
        @resilient.retry(on=ConnectionError, attempts=2)
        def build(cls) -> Client:
            return cls()

    assert Client.build().get() == "got"
    assert [span.name.rsplit(".", 2)[-2:] for span in spans()] == [
        ["Client", "build"],
        ["Client", "get"],
    ]


def test_threads_each_trace_their_own_calls(
    traced: OpenTelemetryObserver,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    """Concurrent calls in threads each get a span, under the span current in their thread."""
    tracer = tracer_provider.get_tracer("tests")
    barrier = threading.Barrier(8)

    @resilient.retry(on=ConnectionError, attempts=2)
    def work() -> None:
        barrier.wait(PATIENCE)

    def request(number: int) -> None:
        with tracer.start_as_current_span(f"request-{number}"):
            work()

    threads = [threading.Thread(target=request, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_id = {span.context.span_id: span for span in spans()}
    calls = [span for span in spans() if span.name.endswith(".work")]
    assert len(calls) == 8
    parents = {by_id[span.parent.span_id].name for span in calls if span.parent is not None}
    assert parents == {f"request-{number}" for number in range(8)}


def test_a_cancelled_call_ends_its_span_without_an_error(
    traced: OpenTelemetryObserver, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """Cancellation is not a failure: the span ends, with no exception and no ERROR status."""
    started = asyncio.Event()

    @resilient.retry(on=ConnectionError, attempts=2)
    async def slow() -> None:
        started.set()
        await asyncio.sleep(PATIENCE)

    async def main() -> None:
        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    [span] = spans()
    assert span.end_time is not None
    assert events(span) == []
    assert span.status.status_code is StatusCode.UNSET


def test_no_span_without_an_observer_that_traces(
    meter: Meter,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
    failing_call: Callable[..., None],
) -> None:
    """With no observer, or one built with spans=False, no call makes a span."""
    failing_call()
    resilient.configure(
        observers=[OpenTelemetryObserver(meter, tracer_provider=tracer_provider, spans=False)]
    )
    failing_call()
    with tracer_provider.get_tracer("tests").start_as_current_span("checkout"):
        failing_call()
    [checkout] = spans()
    assert checkout.name == "checkout"  # the observer's events land on the current span
    assert events(checkout)[:2] == ["resilient.retry.scheduled", "resilient.retry.scheduled"]
    resilient.configure(observers=[OpenTelemetryObserver(meter, tracer_provider=tracer_provider)])
    resilient.reset_defaults()
    failing_call()
    assert len(spans()) == 1


def test_functions_decorated_before_tracing_is_configured_are_traced_until_it_stops(
    meter: Meter, tracer_provider: TracerProvider, spans: Callable[[], list[ReadableSpan]]
) -> None:
    """Decorated at import, before the observer is configured: traced from then on, then not.

    The coroutine, the cached function and the method go through wrapt's wrapper, which
    calls the layers directly until tracing turns on.
    """

    @resilient.retry(on=ConnectionError, attempts=3)
    async def fetch() -> int:
        return 1

    @resilient.cached(ttl=60)
    def price(sku: str) -> int:
        return len(sku)

    class Client:
        @resilient.retry(on=ConnectionError, attempts=3)
        async def get(self) -> int:
            return 2

    def call_each() -> None:
        assert run(fetch()) == 1
        assert price("abc") == 3
        assert run(Client().get()) == 2

    call_each()
    assert spans() == []
    resilient.configure(observers=[OpenTelemetryObserver(meter, tracer_provider=tracer_provider)])
    call_each()
    names = [span.name.rpartition(".")[2] for span in spans()]
    assert names == ["fetch", "price", "get"]
    resilient.configure(observers=[])
    call_each()
    assert len(spans()) == 3


def test_the_first_observer_that_traces_makes_the_spans(
    meter: Meter,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
    failing_call: Callable[..., None],
) -> None:
    """Among several observers the first whose spans are on traces; configure() replaces it."""
    other = TracerProvider(shutdown_on_exit=False)
    resilient.configure(
        observers=[
            OpenTelemetryObserver(meter, tracer_provider=other, spans=False),
            OpenTelemetryObserver(meter, tracer_provider=tracer_provider),
            OpenTelemetryObserver(meter, tracer_provider=other),
        ]
    )
    failing_call()
    assert len(spans()) == 1


def test_an_unsampled_call_span_is_current_but_not_exported(
    meter: Meter, spans: Callable[[], list[ReadableSpan]], failing_call: Callable[..., None]
) -> None:
    """A span the sampler drops still becomes current, so the call's children follow it."""
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    resilient.configure(observers=[OpenTelemetryObserver(meter, tracer_provider=unsampled)])
    seen: list[trace.Span] = []

    @resilient.retry(on=ConnectionError, attempts=2)
    def look() -> None:
        seen.append(trace.get_current_span())

    look()
    [current] = seen
    assert not current.is_recording()
    assert current.get_span_context().is_valid  # the dropped span's own context
    assert current is not trace.INVALID_SPAN
    assert spans() == []


def test_without_an_sdk_the_current_span_stays_current(
    meter: Meter,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    """With the API's no-op tracer, calls change no context: events land on the outer span."""
    resilient.configure(observers=[OpenTelemetryObserver(meter)])  # global provider: none set
    seen: list[trace.Span] = []

    @resilient.retry(on=ConnectionError, attempts=2, wait=resilient.wait.none())
    def look() -> None:
        seen.append(trace.get_current_span())
        if len(seen) == 1:
            raise ConnectionError("once")

    look()
    with tracer_provider.get_tracer("tests").start_as_current_span("checkout") as checkout:
        look()
    assert seen[0] is trace.INVALID_SPAN
    assert seen[2] is checkout
    [exported] = spans()
    assert events(exported) == []  # the second call's attempt succeeded at once
    assert exported.name == "checkout"


SCRIPT = """
import json
import resilient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from resilient.observers import OpenTelemetryObserver

resilient.configure(observers=[OpenTelemetryObserver()])

@resilient.retry(on=ConnectionError, attempts=2)
def ping() -> str:
    return "pong"

ping()  # before any SDK: nothing to export
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
ping()
resilient.configure(observers=[OpenTelemetryObserver()])  # built once it is installed
ping()
print(json.dumps([span.name for span in exporter.get_finished_spans()]))
"""


def test_a_global_provider_installed_after_configure_is_used() -> None:
    """The default tracer follows the global provider, even one installed after configure()."""
    with python_processes(SCRIPT, count=1) as results:
        pass
    assert results == [["__main__.ping", "__main__.ping"]]


def test_spans_do_not_touch_the_global_provider(
    traced: OpenTelemetryObserver, failing_call: Callable[..., None]
) -> None:
    """An explicit tracer provider is used as given; nothing is installed globally."""
    failing_call()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert repr(traced).endswith("spans=True)")


def test_results_and_exceptions_pass_through_unchanged(traced: OpenTelemetryObserver) -> None:
    """Tracing returns what the call returns and raises the very exception it raised."""
    error = ValueError("bad input")

    @resilient.retry(on=ConnectionError, attempts=2)
    def parse(value: Any) -> Any:
        if value is None:
            raise error
        return value

    marker = object()
    assert parse(marker) is marker
    with pytest.raises(ValueError, match="bad input") as raised:
        parse(None)
    assert raised.value is error


def test_a_no_op_tracer_provider_leaves_the_current_span_current(
    meter: Meter,
    tracer_provider: TracerProvider,
    spans: Callable[[], list[ReadableSpan]],
) -> None:
    """The API's NoOpTracerProvider given explicitly: no span, events land on the outer one."""
    observer = OpenTelemetryObserver(meter, tracer_provider=trace.NoOpTracerProvider())
    resilient.configure(observers=[observer])
    seen: list[trace.Span] = []

    @resilient.retry(on=ConnectionError, attempts=2, wait=resilient.wait.none())
    async def look() -> None:
        seen.append(trace.get_current_span())
        if len(seen) == 1:
            raise ConnectionError("once")

    with tracer_provider.get_tracer("tests").start_as_current_span("checkout") as checkout:
        run(look())
    assert seen == [checkout, checkout]
    [exported] = spans()
    assert events(exported) == ["resilient.retry.scheduled"]
