"""A breaker shared on a real Redis by real processes: exact counts, one trip, bounded probes.

Each process runs a script (below) that makes the breaker with the same settings and prints
what it saw as JSON; the test reads the state Redis keeps. Redis time decides every
transition, so these tests run on real time, with short open times.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import attrs
import redis
from cache_support import PATIENCE, EventLog, pause, python_processes
from redis_fixtures import Backends
from redis_infra import FaultProxyFactory, RedisServer, commands_sent

from resilient import Breaker, BreakerPolicy, BreakerState
from resilient.backends.redis import RedisBackend
from resilient.events import BackendFailed

# Shared by the scripts: make the breaker named argv[2] on the Redis at argv[1], with the
# settings given as JSON in argv[3] (timedelta windows as {"seconds": n}).
PRELUDE = """
import json, sys, threading, time
from datetime import timedelta
import resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import CircuitOpenError

url, name, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if isinstance(settings.get("window"), dict):
    settings["window"] = timedelta(**settings["window"])
backend = RedisBackend.from_url(url)
brk = resilient.breaker(name, shared=True, backend=backend, **settings)
"""


def script(body: str) -> str:
    """Return the prelude followed by *body*."""
    return PRELUDE + textwrap.dedent(body)


def stored_state(url: str, name: str) -> dict[str, Any]:
    """Return the state Redis keeps for the shared breaker *name*."""
    backend = RedisBackend.from_url(url)
    try:
        link = Breaker(name, BreakerPolicy(shared=True))._link
        assert link is not None
        value = backend.get_versioned(link.key()).value
    finally:
        backend.close()
    assert isinstance(value, dict), f"no state stored for {name!r}: {value!r}"
    return value


def test_no_outcome_is_lost_across_four_processes_of_sixteen_threads(redis_url: str) -> None:
    """4 processes x 16 threads x 10,000 calls, every third failing: Redis counts each one."""
    settings = {"window": {"hours": 1}, "failure_rate": 1.0}
    body = """
    failed = 0
    lock = threading.Lock()

    @brk
    def call(number):
        if number % 3 == 0:
            raise ConnectionError

    def work():
        global failed
        mine = 0
        for number in range(10_000):
            try:
                call(number)
            except ConnectionError:
                mine += 1
        with lock:
            failed += mine

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    brk.stats()  # sends what this process counted since its last sync
    print(json.dumps({"failed": failed, "alone": brk._link.degraded}))
    """
    with python_processes(
        script(body), redis_url, "exact", json.dumps(settings), count=4, timeout=240
    ) as results:
        pass
    assert [result["alone"] for result in results] == [False] * 4
    stored = stored_state(redis_url, "exact")
    calls, failures, slow = stored["window"][-3:]
    assert (calls, failures, slow) == (4 * 16 * 10_000, sum(r["failed"] for r in results), 0)
    assert stored["state"] == "closed"


def test_a_threshold_crossed_by_four_processes_at_once_trips_it_once(redis_url: str) -> None:
    """Four processes of eight threads fail together: one trip, reported by one process."""
    settings = {"failure_rate": 0.5, "minimum_calls": 100, "window": 1000, "open_for": 60}
    body = """
    opened = []

    def observe(event):
        if event.kind == "breaker.opened":
            opened.append(event)

    resilient.configure(observers=[observe])
    ran = refused = 0
    lock = threading.Lock()

    @brk
    def call():
        raise ConnectionError

    def work():
        global ran, refused
        mine = [0, 0]
        for _ in range(200):
            try:
                call()
            except ConnectionError:
                mine[0] += 1
            except CircuitOpenError:
                mine[1] += 1
        with lock:
            ran += mine[0]
            refused += mine[1]

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    brk.stats()
    print(json.dumps({"opened": len(opened), "ran": ran, "refused": refused}))
    """
    with python_processes(
        script(body), redis_url, "once", json.dumps(settings), count=4, timeout=120
    ) as results:
        pass
    assert sum(result["opened"] for result in results) == 1
    assert all(result["ran"] + result["refused"] == 8 * 200 for result in results)
    stored = stored_state(redis_url, "once")
    assert (stored["state"], stored["trips"]) == ("open", 1)


PEAK = """
local running = redis.call('INCR', KEYS[1])
if running > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], running)
end
return running
"""


def test_probes_never_exceed_half_open_calls_across_eight_processes(redis_url: str) -> None:
    """8 processes x 50 threads at the open/half-open edge for 1,000 cycles: at most 3 probes."""
    settings = {
        "failure_rate": None,
        "consecutive_failures": 1,
        "open_for": 0.002,
        "half_open_calls": 3,
    }
    backend = RedisBackend.from_url(redis_url)
    first = Breaker(
        "edge",
        BreakerPolicy(
            failure_rate=None,
            consecutive_failures=1,
            open_for=0.002,
            half_open_calls=3,
            shared=True,
            backend=backend,
        ),
    )
    try:
        with first:
            raise ConnectionError  # trips it: from here on every admitted call is a probe
    except ConnectionError:
        pass
    backend.close()
    body = f"""
    import redis
    client = redis.Redis.from_url(url)
    peak = client.register_script({PEAK!r})

    @brk
    def probe():
        peak(keys=["probes:running", "probes:peak"])
        time.sleep(0.01)  # longer than the open time: a failed probe's fellows are still out
        client.decr("probes:running")
        client.incr("probes:done")
        raise ConnectionError

    def work():
        tries = 0
        while True:
            tries += 1
            # 1,000 cycles, counted fleet-wide in the stored state (one process's own view of
            # the trips may lag far behind, and stopped it late)
            if tries % 100 == 0 and backend.get_versioned(brk._link.key()).value["trips"] >= 1000:
                return
            try:
                probe()
            except (ConnectionError, CircuitOpenError):
                time.sleep(0.005)

    threads = [threading.Thread(target=work) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({{"alone": brk._link.degraded}}))
    """
    with python_processes(
        # 400 threads on two CPUs: slow when the machine is, so a generous bound
        script(body),
        redis_url,
        "edge",
        json.dumps(settings),
        count=8,
        timeout=900,
    ) as results:
        pass
    client = redis.Redis.from_url(redis_url)
    assert stored_state(redis_url, "edge")["trips"] >= 1000
    assert int(client.get("probes:done") or 0) >= 1000
    assert int(client.get("probes:peak") or 0) <= 3
    assert results == [{"alone": False}] * 8


def test_the_state_outlives_the_process_that_tripped_it(redis_url: str) -> None:
    """A process trips it and exits; a process started after finds it open, time still running."""
    settings = {"failure_rate": None, "consecutive_failures": 2, "open_for": 30}
    body = """
    @brk
    def call():
        raise ConnectionError

    for _ in range(2):
        try:
            call()
        except ConnectionError:
            pass
    print(json.dumps({"state": brk.state.value}))
    """
    with python_processes(
        script(body), redis_url, "outlives", json.dumps(settings), count=1
    ) as results:
        pass
    assert results == [{"state": "open"}]
    policy = BreakerPolicy(failure_rate=None, consecutive_failures=2, open_for=30, shared=True)
    backend = RedisBackend.from_url(redis_url)
    try:
        later = Breaker("outlives", attrs.evolve(policy, backend=backend))
        stats = later.stats()
        assert stats.state is BreakerState.OPEN
        assert stats.until_half_open is not None
        assert 25 < stats.until_half_open <= 30
    finally:
        backend.close()


def test_a_closed_call_sends_no_command_until_the_view_is_due(
    redis_url: str, backends: Backends
) -> None:
    """1,000 successful calls within sync_interval send no command; the next sync sends one."""
    backend = backends(redis_url)
    brk = Breaker(
        "quiet",
        BreakerPolicy(
            shared=True, backend=backend, window=2000, sync_interval=timedelta(seconds=5)
        ),
    )

    @brk
    def call(number: int) -> int:
        return number

    call(0)  # the first call reads the stored state: one command
    with commands_sent(redis_url) as sent:
        for number in range(1000):
            call(number)
    assert sent == []
    with commands_sent(redis_url) as sent:
        brk.stats()  # sends the 1,000 outcomes
    assert sent == ["EVALSHA"]
    assert brk.stats().calls == 1001


def test_redis_killed_under_four_processes_raises_nothing_at_call_sites(
    fresh_redis: RedisServer,
) -> None:
    """Redis dies while processes call: no Redis error reaches a call, the breaker still trips.

    After the restart every process is back on the shared state, which they store again.
    """
    url = fresh_redis.url
    settings = {"failure_rate": None, "consecutive_failures": 5, "open_for": 0.5}
    body = """
    started = time.monotonic()
    other = []
    refused = 0
    lock = threading.Lock()

    @brk
    def call():
        if time.monotonic() - started > 1.0:  # the dependency fails with Redis
            raise ConnectionError

    def work():
        global refused
        while time.monotonic() - started < 6.0:
            try:
                call()
            except ConnectionError:
                pass
            except CircuitOpenError:
                with lock:
                    refused += 1
            except Exception as error:
                other.append(type(error).__name__)
            time.sleep(0.002)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(1.2)  # past the cool-down: the next look goes to Redis again
    brk.stats()
    print(json.dumps({"other": other, "refused": refused, "alone": brk._link.degraded}))
    """
    with python_processes(
        script(body), url, "killed", json.dumps(settings), count=4, timeout=60
    ) as results:
        pause(1.2)
        fresh_redis.kill()
        pause(2.0)
        fresh_redis.restart()
    assert [result["other"] for result in results] == [[]] * 4
    assert all(result["refused"] > 0 for result in results)
    assert [result["alone"] for result in results] == [False] * 4
    stored = stored_state(url, "killed")
    assert stored["state"] in ("open", "half_open")


def test_a_blackholed_redis_costs_a_call_at_most_its_socket_timeout_once_a_second(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory, backends: Backends, log: EventLog
) -> None:
    """Behind a blackhole, calls go on locally: one waits out the socket timeout per cool-down.

    When the connection heals, the process is back on the stored state.
    """
    proxy = fault_proxy(redis_server.port)
    backend = backends(proxy.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    brk = Breaker("blackholed", BreakerPolicy(shared=True, backend=backend, sync_interval=0.05))

    @brk
    def call() -> str:
        return "answer"

    assert call() == "answer"
    proxy.blackhole()
    slow = 0
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        began = time.monotonic()
        assert call() == "answer"
        took = time.monotonic() - began
        assert took < 0.2 + 0.25
        slow += took > 0.1
        pause(0.01)
    assert 1 <= slow <= 3  # the first, then at most one per second of cool-down
    assert [e.operation for e in log.of(BackendFailed)] == ["breaker"]
    proxy.heal()
    pause(1.1)
    assert call() == "answer"
    link = brk._link
    assert link is not None
    assert not link.degraded


def test_a_shared_breaker_lets_sixteen_threads_into_the_function_at_once(
    redis_url: str, backends: Backends
) -> None:
    """The shared path holds no lock while the function runs: sixteen calls meet inside it."""
    brk = Breaker("meeting", BreakerPolicy(shared=True, backend=backends(redis_url)))
    inside = threading.Barrier(16)

    @brk
    def call() -> str:
        inside.wait(PATIENCE)
        return "met"

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(lambda _: call(), range(16))) == ["met"] * 16


FORK_SCRIPT = """
import json, os, sys
import resilient
from resilient.backends.redis import RedisBackend

backend = RedisBackend.from_url(sys.argv[1])
brk = resilient.breaker("forked", shared=True, backend=backend, window=1000)

@brk
def call(number):
    return number

for number in range(10):
    call(number)
brk._lock.acquire()  # a thread of the parent holds the lock when it forks
child = os.fork()
if child == 0:
    for number in range(5):
        call(number)
    brk.stats()  # the child sends its own five outcomes, not its parent's ten
    os._exit(0)
brk._lock.release()
_, status = os.waitpid(child, 0)
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "calls": brk.stats().calls}))
"""


def test_a_forked_child_uses_the_shared_breaker_on_its_own(redis_url: str) -> None:
    """A child forked while the parent held the lock works, and no outcome is counted twice."""
    with python_processes(FORK_SCRIPT, redis_url, count=1) as results:
        pass
    assert results == [{"child": 0, "calls": 15}]
