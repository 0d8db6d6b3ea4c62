"""@rate_limited on a real Redis: one limit for a fleet of real processes, one command a call.

The acceptance test of the rate-limit issue: four processes hammering a shared limit of 100
calls a second for ten seconds are admitted 1,000 calls (give or take ten) plus the burst.
Each process counts the calls its function ran; nothing is taken from the library's word.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
from cache_support import EventLog, python_processes, run
from redis_fixtures import Backends
from redis_infra import commands_sent

import resilient
from resilient import rate_limited
from resilient.events import BackendFailed
from resilient.exceptions import BackendUnavailableError, RateLimitedError

RATE, SECONDS, BURST = 100, 10.0, 100

# Each process meets the others, then hammers the limit from 4 threads (odd processes: 8
# tasks) until the agreed start time plus SECONDS, and prints how many calls its function ran.
HAMMER = """
import asyncio, json, sys, threading, time
import redis, resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import RateLimitedError

url, processes, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
control = redis.Redis.from_url(url, socket_timeout=60)
backend = RedisBackend.from_url(url, socket_timeout=30)
me = control.incr("processes") - 1
limit = resilient.rate_limited(rate=rate, per=1.0, backend=backend, name="partner")
ran = 0
counting = threading.Lock()


@limit
def call():
    global ran
    with counting:
        ran += 1


@limit
async def acall():
    global ran
    ran += 1


if control.incr("arrived") == processes:  # the last to come sets the start, for every one
    control.rpush("start", *[repr(time.time() + 0.5)] * processes)
start = float(control.blpop(["start"], timeout=60)[1])
stop = start + seconds
time.sleep(max(0.0, start - time.time()))


def hammer():
    while time.time() < stop:
        try:
            call()
        except RateLimitedError:
            pass


async def ahammer():
    while time.time() < stop:
        try:
            await acall()
        except RateLimitedError:
            await asyncio.sleep(0)


async def tasks():
    await asyncio.gather(*(ahammer() for _ in range(8)))


if me % 2:
    asyncio.run(tasks())
else:
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print(json.dumps({"ran": ran, "mode": "tasks" if me % 2 else "threads"}))
"""


def test_four_processes_share_a_limit_of_a_hundred_a_second(redis_url: str) -> None:
    """Four processes, threads and tasks, hammering 100/s for 10 s: 1,000 ± 10 plus the burst."""
    redis.Redis.from_url(redis_url).flushdb()
    args = (redis_url, "4", str(RATE), str(SECONDS))
    with python_processes(HAMMER, *args, count=4, timeout=SECONDS + 60) as results:
        pass
    assert sorted(result["mode"] for result in results) == ["tasks"] * 2 + ["threads"] * 2
    ran = sum(result["ran"] for result in results)
    assert RATE * SECONDS - 10 + BURST <= ran <= RATE * SECONDS + 10 + BURST
    assert all(result["ran"] > 0 for result in results)  # every process got a share


def test_a_decision_is_one_command(redis_url: str, backends: Backends) -> None:
    """An admitted call and a refused one each send exactly one command, sync and async."""
    backend = backends(redis_url)
    limit = rate_limited(rate=1, per=60.0, backend=backend, name="counted")

    @limit
    def work() -> str:
        return "done"

    @limit
    async def awork() -> str:
        return "done"

    async def counted() -> list[str]:
        with pytest.raises(RateLimitedError):
            await awork()  # this loop's client connects
        with commands_sent(redis_url) as sent, pytest.raises(RateLimitedError):
            await awork()
        return sent

    work()  # connect and load the script first: the counts are of calls as they run
    with commands_sent(redis_url) as sent, pytest.raises(RateLimitedError):
        work()
    assert sent == ["EVALSHA"]
    assert run(counted()) == ["EVALSHA"]


def test_a_flushed_script_is_loaded_again(redis_url: str, backends: Backends) -> None:
    """After SCRIPT FLUSH (a restart, a failover) the next decision loads the script again."""
    backend = backends(redis_url)
    limit = rate_limited(rate=2, per=60.0, backend=backend, name="flushed")
    limit.acquire("a")
    redis.Redis.from_url(redis_url).script_flush()
    limit.acquire("a")
    with pytest.raises(RateLimitedError):
        limit.acquire("a")


def test_keys_live_under_the_namespace_and_expire_when_full(
    redis_url: str, backends: Backends
) -> None:
    """A key is stored as a digest under the limit's name, and expires once its bucket refills."""
    client = redis.Redis.from_url(redis_url)
    backend = backends(redis_url)
    resilient.configure(namespace="shop")
    limit = rate_limited(rate=10, per=1.0, backend=backend, name="checkout")
    limit.acquire("customer-42")
    (key,) = client.keys("shop:ratelimit:*")
    assert key.startswith(b"shop:ratelimit:{checkout}:")
    assert b"customer-42" not in key
    assert 0 < client.pttl(key) <= 100  # one token spent: full again in 0.1 s


def test_an_unreachable_redis_fails_open_or_closed_as_asked(backends: Backends) -> None:
    """Redis out of reach: by default the call runs, reported; fail_open=False raises."""
    backend = backends("redis://127.0.0.1:9", socket_connect_timeout=0.2)
    log = EventLog()
    resilient.configure(observers=[log])

    @rate_limited(rate=1, per=60.0, backend=backend, name="open")
    async def opened() -> str:
        return "ran"

    @rate_limited(rate=1, per=60.0, backend=backend, name="closed", fail_open=False)
    def closed() -> str:
        return "ran"

    assert asyncio.run(opened()) == "ran"
    assert [type(event) for event in log.events] == [BackendFailed]
    with pytest.raises(BackendUnavailableError):
        closed()
