"""A shared breaker's reading of the store's clock: bounded by every reply, exact behind latency.

The pure part (`ClockOffset`) is checked against a model of two drifting clocks; the rest runs a
real Redis behind a FaultProxy that delays each way, and compares with the server's TIME read
over a direct connection.
"""

from __future__ import annotations

import math
import time
from typing import Final

import pytest
import redis
from cache_support import PATIENCE, pause, run
from hypothesis import given
from hypothesis import strategies as st
from redis_fixtures import Backends
from redis_infra import FaultProxyFactory, RedisServer

from resilient import Breaker, BreakerPolicy, BreakerState
from resilient._breaker_shared import Link
from resilient._core.clock_offset import DRIFT, ClockOffset

# Enough for float rounding of the model's times (a few million seconds).
ROUNDING: Final = 1e-6


def test_one_reply_bounds_the_offset_by_its_round_trip() -> None:
    """The reading fell between sending and arrival: the estimate is the middle of that."""
    offset = ClockOffset()
    assert offset.heard(1000.0, sent=10.0, received=10.5) == 989.75
    assert (offset.low, offset.high) == (989.5, 990.0)


def test_replies_slow_one_way_then_the_other_narrow_it_to_the_truth() -> None:
    """A handshake before one reading and a slow way back after another cancel out."""
    offset = ClockOffset()
    offset.heard(1000.4, sent=10.0, received=10.5)  # read 0.4 s after sending: [989.9, 990.4]
    estimate = offset.heard(1011.1, sent=21.0, received=21.5)  # read 0.1 s after: [989.6, 990.1]
    widened = DRIFT * (21.5 - 10.0)  # the first interval, as of the second reply
    assert offset.low == pytest.approx(989.9 - widened, abs=1e-9)
    assert offset.high == pytest.approx(990.1, abs=1e-9)
    assert estimate == pytest.approx(990.0 - widened / 2, abs=1e-9)  # the truth: 990


def test_a_slow_reply_leaves_a_narrow_interval_as_it_is() -> None:
    """A reply whose round trip held a handshake does not move an estimate it cannot improve."""
    offset = ClockOffset()
    estimate = offset.heard(1000.001, sent=10.0, received=10.002)  # [989.999, 990.001]
    assert estimate == pytest.approx(990.0, abs=1e-9)
    assert offset.heard(1001.5, sent=11.0, received=13.0) == pytest.approx(estimate, abs=1e-9)


def test_a_reply_outside_the_interval_starts_it_again() -> None:
    """A failover to a server whose clock is 10 s ahead: the offset follows at once."""
    offset = ClockOffset()
    offset.heard(1000.001, sent=10.0, received=10.002)
    estimate = offset.heard(1011.001, sent=11.0, received=11.002)
    assert (offset.low, offset.high) == (1011.001 - 11.002, 1011.001 - 11.0)
    assert estimate == pytest.approx(1000.0, abs=1e-9)


def test_an_old_interval_widens_by_the_drift_the_clocks_may_have_had() -> None:
    """991 s after an exact reply, a vague one finds the offset known to DRIFT x 991 s."""
    offset = ClockOffset()
    offset.heard(1000.0, sent=10.0, received=10.0)  # exactly 990, as of 10 s
    offset.heard(1990.0, sent=999.0, received=1001.0)  # somewhere in [989, 991]
    assert offset.low == pytest.approx(990.0 - DRIFT * 991, abs=1e-9)
    assert offset.high == pytest.approx(990.0 + DRIFT * 991, abs=1e-9)


# a reply: local seconds before its request is sent, then on its way there and back
REPLIES = st.lists(
    st.tuples(st.floats(0, 1e5), st.floats(0, 2), st.floats(0, 2)), min_size=1, max_size=30
)


@given(
    start=st.floats(0, 1e5),
    at_start=st.floats(-1e6, 1e6),
    rate=st.floats(-DRIFT, DRIFT),
    replies=REPLIES,
)
def test_the_interval_always_holds_the_offset_and_lies_within_the_newest_reply(
    start: float, at_start: float, rate: float, replies: list[tuple[float, float, float]]
) -> None:
    """Clocks drifting within DRIFT: the truth stays inside, the estimate is its middle."""
    offset = ClockOffset()
    local = start
    for wait, there, back in replies:
        sent = local + wait
        read_at = sent + there
        truth = at_start + rate * (read_at - start)  # the other clock minus this one, then
        received = read_at + back
        estimate = offset.heard(read_at + truth, sent=sent, received=received)
        assert offset.low - ROUNDING <= truth <= offset.high + ROUNDING
        assert read_at + truth - received - ROUNDING <= offset.low
        assert offset.high <= read_at + truth - sent + ROUNDING
        assert estimate == (offset.low + offset.high) / 2
        local = received


# A real Redis behind a slow link ------------------------------------------------------------

ONE_WAY: Final = 0.25  # the proxy's delay each way, so a round trip through it takes 0.5 s or more
GRAIN: Final = 1e-5  # TIME's microseconds, and rounding epoch seconds to a float
ENOUGH: Final = 0.1  # warm up until a sync took at most this beyond the proxy's delays
MOST_SYNCS: Final = 20
OPEN_FOR: Final = 30.0  # long enough never to end during a test, however slow the machine


def view(name: str, backend: object) -> Breaker:
    """Return a new view (a process's) of the shared breaker *name*: one failure trips it."""
    policy = BreakerPolicy(
        shared=True,
        backend=backend,
        failure_rate=None,
        consecutive_failures=1,
        open_for=OPEN_FOR,
        sync_interval=0.01,
    )
    return Breaker(name, policy)


def link_of(breaker: Breaker) -> Link:
    """Return the link of a shared breaker's view."""
    link = breaker._link
    assert link is not None
    return link


def warmed(breaker: Breaker, one_way: float) -> float:
    """Sync *breaker* a few times; return the most its reading of the store's clock is off by.

    Its link delays each message by *one_way* at least, so every reply read the store's clock
    *one_way* or more after its request left and before it arrived. The kept interval then
    holds the truth *one_way* + a below its high end and *one_way* + b above its low end (a
    and b the least extra delay seen each way), so its middle is off by |a - b| / 2: at most
    half of any sync's time beyond 2 x *one_way*, which holds an a and a b. The drift the
    view allowed meanwhile comes on top (the caller adds it). Syncs go on until one took at
    most ENOUGH more, or MOST_SYNCS were made (the bound is then looser, and still holds).
    """
    least = math.inf
    for attempt in range(MOST_SYNCS):
        pause(0.02)  # the view is older than its sync_interval: stats() syncs
        began = time.monotonic()
        breaker.stats()
        took = time.monotonic() - began
        assert took >= 2 * one_way - GRAIN  # the sync crossed the link both ways
        least = min(least, took - 2 * one_way)
        if attempt >= 2 and least <= ENOUGH:
            break
    return least / 2


def store_offset(url: str) -> tuple[float, float]:
    """Return the server's TIME minus this process's monotonic clock, and the most it is off by.

    The best of five readings over a direct connection, each between two monotonic readings.
    """
    readings = []
    with redis.Redis.from_url(url) as direct:
        for _ in range(5):
            sent = time.monotonic()
            seconds, micros = direct.time()
            received = time.monotonic()
            readings.append((received - sent, seconds + micros / 1e6 - (sent + received) / 2))
    trip, offset = min(readings)
    return offset, trip / 2 + GRAIN


def test_behind_a_slow_link_the_store_clock_is_not_late_by_the_latency(
    redis_server: RedisServer, redis_url: str, fault_proxy: FaultProxyFactory, backends: Backends
) -> None:
    """0.25 s each way: after a few syncs a view reads the store's clock to within milliseconds.

    Taking each reply's time as the store's at its arrival put it 0.25 s late or more.
    """
    proxy = fault_proxy(redis_server.port)
    proxy.latency(ONE_WAY)
    backend = backends(proxy.url, socket_timeout=PATIENCE, socket_connect_timeout=PATIENCE)
    slow = view("slow-clock", backend)
    started = time.monotonic()
    off_by = warmed(slow, ONE_WAY)
    truth, uncertain = store_offset(redis_url)
    drifted = DRIFT * (time.monotonic() - started)  # the widening the view allowed meanwhile
    assert abs(link_of(slow).offset - truth) <= off_by + uncertain + drifted + GRAIN


def test_a_trip_over_a_slow_link_opens_it_for_open_for_everywhere(
    redis_server: RedisServer, redis_url: str, fault_proxy: FaultProxyFactory, backends: Backends
) -> None:
    """Tripped behind 0.25 s each way, a process on a fast link sees it open for open_for.

    The slow view decides the trip (and its open time) on its reading of the store's clock,
    before its write goes out; a late reading ended the open time early for the whole fleet.
    """
    proxy = fault_proxy(redis_server.port)
    proxy.latency(ONE_WAY)
    slow_backend = backends(proxy.url, socket_timeout=PATIENCE, socket_connect_timeout=PATIENCE)
    slow, fast = view("slow-trip", slow_backend), view("slow-trip", backends(redis_url))
    started = time.monotonic()
    fast_off_by = warmed(fast, 0.0)  # first: it stores the state the slow view then reads
    slow_off_by = warmed(slow, ONE_WAY)
    failed_at: list[float] = []

    async def fail() -> None:
        async with slow:
            failed_at.append(time.monotonic())
            raise ConnectionError

    with pytest.raises(ConnectionError):
        run(fail())
    ended = time.monotonic()
    pause(0.02)
    before = time.monotonic()
    stats = fast.stats()
    after = time.monotonic()
    assert stats.state is BreakerState.OPEN
    assert stats.until_half_open is not None
    # The trip was decided after the call failed and before its write left, so at least a
    # round trip before the call ended; the fast view reads the open time's end as an instant
    # until_half_open after one between before and after. Each reading of the store's clock
    # was off by at most what its warm-up allows, plus the drift the views allowed.
    slack = fast_off_by + slow_off_by + 2 * DRIFT * (after - started) + 4 * GRAIN
    decided_first, decided_last = failed_at[0], ended - 2 * ONE_WAY
    assert after + stats.until_half_open - decided_first >= OPEN_FOR - slack
    assert before + stats.until_half_open - decided_last <= OPEN_FOR + slack
