"""`@deduped(shared=True)` on a real Redis shared by real processes: one execution per flight."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import redis
from cache_support import eventually, pause, python_processes

# Each process calls the function argv[3] times at once, in tasks, once argv[2] processes
# (itself included) are ready; the function counts its executions in Redis. The first
# execution takes argv[4] seconds (a leader to kill, when long), the others argv[5]. Prints
# what each call got, and when the process finished.
CALLERS = """
import asyncio, json, sys, time
import redis, resilient
from resilient.backends.redis import RedisBackend

url, together, callers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first_takes, then_takes = float(sys.argv[4]), float(sys.argv[5])
counter = redis.Redis.from_url(url)
backend = RedisBackend.from_url(url)

@resilient.deduped(shared=True, backend=backend, lease_ttl=2, name="report")
async def report(day):
    execution = counter.incr("executions")
    await asyncio.sleep(first_takes if execution == 1 else then_takes)
    return {"day": day, "execution": execution}

async def main():
    counter.incr("ready")
    while int(counter.get("ready")) < together:
        await asyncio.sleep(0.01)
    return await asyncio.gather(*(report("2026-12-07") for _ in range(callers)))

results = asyncio.run(main())
print(json.dumps({"results": results, "finished": time.time()}))
"""


def test_four_processes_of_250_callers_share_one_execution(redis_url: str) -> None:
    """1,000 callers in 4 processes: the function runs once, and every caller gets its value."""
    with python_processes(CALLERS, redis_url, "4", "250", "0.5", "0.5", count=4) as outputs:
        pass
    results = [result for output in outputs for result in output["results"]]
    assert len(results) == 1000
    assert results == [{"day": "2026-12-07", "execution": 1}] * 1000
    assert int(redis.Redis.from_url(redis_url).get("executions") or 0) == 1


def test_followers_of_a_killed_leader_finish_within_the_lease_ttl_and_a_second(
    redis_url: str,
) -> None:
    """SIGKILL the leading process mid-flight: one follower takes over after its lease ran out."""
    counter = redis.Redis.from_url(redis_url)
    leader = subprocess.Popen(
        [sys.executable, "-c", CALLERS, redis_url, "1", "1", "60", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert eventually(lambda: counter.get("executions") == b"1"), "the leader never ran"
        with python_processes(CALLERS, redis_url, "4", "50", "60", "0.1", count=3) as outputs:
            assert eventually(lambda: counter.get("ready") == b"4"), "the followers never came"
            pause(0.5)  # the followers are waiting on the leader's lease
            leader.send_signal(signal.SIGKILL)
            killed = time.time()
    finally:
        leader.kill()
        leader.communicate()
    results = [result for output in outputs for result in output["results"]]
    assert results == [{"day": "2026-12-07", "execution": 2}] * 150  # one takeover, shared
    latest = max(output["finished"] for output in outputs)
    # the lease (2 s) runs out at most 2 s after the kill; the takeover's 0.1 s is in the 1 s
    assert latest - killed <= 2 + 1, latest - killed
    assert int(counter.get("executions") or 0) == 2
