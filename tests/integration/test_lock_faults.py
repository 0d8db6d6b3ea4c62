"""`resilient.lock` under faults: stopped holders, lost replies, blackholes, abandoned leases.

Real Redis servers, real holder processes stopped with SIGSTOP, and a FaultProxy between the
lock and Redis; what each fault did is looked at on the server itself.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from cache_support import PATIENCE, eventually, pause
from redis_fixtures import Backends
from redis_infra import FaultProxy

from resilient import Lease, Lock, lock
from resilient.backends.redis import RedisBackend
from resilient.exceptions import BackendUnavailableError, LockLostError

_names = itertools.count()
SOCKET_TIMEOUT = 0.5  # seconds a call through the fault proxy waits for its reply


def fresh_name(prefix: str) -> str:
    """Return a lock name no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def holder_of(server: redis.Redis, guard: Lock) -> bytes | None:
    """Return the owner holding *guard*'s lock on the server itself (None when it is free)."""
    claim: bytes | None = server.get(guard._key() + ":claim")
    return claim


def token_on(server: redis.Redis, guard: Lock) -> int | None:
    """Return the fencing token the server holds for *guard*'s lock."""
    token = server.get(guard._key() + ":token")
    return None if token is None else int(token)


def renewer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "resilient-renewer"]


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the shared server, to look at the locks behind the lock's back."""
    with redis.Redis.from_url(redis_url) as plain:
        yield plain


@pytest.fixture
def proxied(proxy: FaultProxy, backends: Backends) -> RedisBackend:
    """A backend reaching the shared server through the proxy, giving up on a call after 0.5 s."""
    return backends(proxy.url, socket_timeout=SOCKET_TIMEOUT)


# a holder stopped past its term ---------------------------------------------------------------

STOP_TTL = 0.6  # seconds: renewals every 0.2 s, a stop of 0.9 s
STOP_TRIALS, STOP_GROUPS = 50, 5  # trials in groups run side by side, on names of their own
# The next holder must get the lock within TTL + one renewal interval of the stop. The stopped
# lease lasts at most TTL past the stop (the last renewal to reach Redis was sent before it), so
# the renewal interval is margin already; STOP_SLACK only absorbs the test's own scheduling: its
# waiting thread woken and run on a 2-core machine shared with five holder processes.
STOP_SLACK = 0.1
STARTUP = 60.0  # seconds a holder process may take to start, on a machine busy with others

# One process holding a lock per trial: it reads the trial's name, takes the lock with renewal,
# writes through the fenced resource (a SQLite row accepting only a greater token than it
# holds), says so, and blocks reading its next line, which the test sends while the process
# is stopped. Once resumed it checks its lease before writing again, leaves, and reports.
STOPPED_HOLDER = """
import json, sqlite3, sys
import resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import LockLostError

url, path, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
backend = RedisBackend.from_url(url)
db = sqlite3.connect(path, timeout=10, isolation_level=None)

def fenced_write(name, token):
    return db.execute(
        "UPDATE resource SET token = ? WHERE name = ? AND token < ?", (token, name, token)
    ).rowcount == 1

def say(**fields):
    print(json.dumps(fields), flush=True)

say(ready=True)
while name := sys.stdin.readline().strip():
    lost = late = term = None
    try:
        with resilient.lock(name, ttl=ttl, renew=True, backend=backend) as lease:
            say(token=lease.token, wrote=fenced_write(name, lease.token))
            sys.stdin.readline()  # sent while this process is stopped: read once resumed
            lost = lease.lost
            if not lost:
                late = fenced_write(name, lease.token)
            term = lease.valid_until
    except LockLostError:
        left = "LockLostError"
    else:
        left = "released"
    say(lost=lost, late_write_accepted=late, valid_until=term, left=left)
"""


class StoppableHolder:
    """A STOPPED_HOLDER process, spoken to one line at a time."""

    def __init__(self, url: str, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", STOPPED_HOLDER, url, str(path), str(STOP_TTL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.answer(STARTUP) == {"ready": True}

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def answer(self, within: float = PATIENCE) -> dict[str, Any]:
        """Read the holder's next line (it says one per line it reads, so none is buffered)."""
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], within)
        line = stdout.readline() if ready else ""
        assert line, f"the holder said nothing: {self.close()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stopped(self) -> bool:
        """Whether the process is stopped (state T), as SIGSTOP leaves it."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"

    def close(self) -> str:
        """End the process (resumed first, if stopped); return what it wrote on stderr."""
        self.process.send_signal(signal.SIGCONT)
        try:  # communicate() closes its stdin: the holder reads no more names and ends
            _, stderr = self.process.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr


def stop_trial(holder: StoppableHolder, db: sqlite3.Connection, backend: RedisBackend) -> dict:
    """Stop *holder* while it holds a new lock for 1.5 x TTL, taking the lock meanwhile."""
    name = fresh_name("stopped")
    db.execute("INSERT INTO resource VALUES (?, 0)", (name,))
    holder.send(name)
    held = holder.answer()
    assert held["wrote"], held
    pause(random.uniform(0, STOP_TTL / 3))  # the stop lands anywhere in a renewal interval
    holder.process.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    assert eventually(holder.stopped)
    holder.send("go")  # the first thing it reads when it runs again
    with lock(name, ttl=10, timeout=PATIENCE, backend=backend) as lease:
        acquired_at = time.monotonic()
        fenced = db.execute(
            "UPDATE resource SET token = ? WHERE name = ? AND token < ?",
            (lease.token, name, lease.token),
        ).rowcount
        pause(max(0.0, stopped_at + 1.5 * STOP_TTL - time.monotonic()))
        holder.process.send_signal(signal.SIGCONT)
        resumed = holder.answer()
    return {
        "waited": acquired_at - stopped_at,
        "old_term_over": resumed["valid_until"] <= acquired_at,
        "newer_token": lease.token > held["token"],
        "fenced": fenced,
        **resumed,
    }


def test_a_holder_stopped_past_its_ttl_knows_it_lost_the_lock_before_writing_again(
    redis_url: str, tmp_path: Path, backends: Backends
) -> None:
    """50 holders SIGSTOPped for 1.5 x TTL: each finds its lease lost; the next comes in time."""
    backend = backends(redis_url)

    def group(number: int) -> list[dict]:
        path = tmp_path / f"resource-{number}.sqlite"
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        db.execute("CREATE TABLE resource (name TEXT PRIMARY KEY, token INTEGER)")
        holder = StoppableHolder(redis_url, path)
        try:
            return [stop_trial(holder, db, backend) for _ in range(STOP_TRIALS // STOP_GROUPS)]
        finally:
            stderr = holder.close()
            db.close()
            assert holder.process.returncode == 0, stderr

    with ThreadPoolExecutor(STOP_GROUPS) as pool:
        trials = [trial for trials in pool.map(group, range(STOP_GROUPS)) for trial in trials]
    assert len(trials) == STOP_TRIALS
    expected = {
        "lost": True,  # learnt on resuming, before its next fenced write
        "late_write_accepted": None,  # so it wrote nothing more
        "left": "LockLostError",
        "old_term_over": True,  # by its own clock, its lease was over when the next one began
        "newer_token": True,
        "fenced": 1,
    }
    failed = [trial for trial in trials if {**trial, **expected} != trial]
    assert failed == [], f"{len(failed)} of {STOP_TRIALS} trials failed: {failed}"
    waits = sorted(trial["waited"] for trial in trials)
    print(f"the next holder waited {waits[0]:.3f} to {waits[-1]:.3f} s after the stop")
    bound = STOP_TTL + STOP_TTL / 3 + STOP_SLACK
    assert waits[-1] <= bound, f"the next holder waited up to {waits[-1]:.3f} s: {waits}"


# a reply lost on the way back from the acquiring EVALSHA ----------------------------------------

REPLY_DROPPED = 0.1  # seconds the proxy goes on dropping replies after the command ran


def kill_connections(server: redis.Redis) -> None:
    """Close every other client connection from the server's side (the proxy's, here)."""
    server.client_kill_filter(_type="normal", skipme=True)


def acquire_with_reply_dropped(
    proxy: FaultProxy,
    server: redis.Redis,
    guard: Lock,
    then: Callable[[], None],
    *,
    in_loop: bool,
) -> tuple[Lease | Exception, bytes | None, int | None]:
    """Take *guard* while the proxy drops Redis's replies; once the lock was taken on the
    server, heal the proxy and call *then*. Return what the attempt gave, and who held the
    lock (and with which token) on the server right after."""
    ready, go = threading.Event(), threading.Event()

    def seen() -> tuple[bytes | None, int | None]:
        return holder_of(server, guard), token_on(server, guard)

    def sync_attempt() -> tuple[Lease | Exception, bytes | None, int | None]:
        with guard:  # connect and load the scripts through the healthy proxy
            pass
        ready.set()
        go.wait(PATIENCE)
        try:
            lease = guard.__enter__()
        except Exception as error:
            return (error, *seen())
        held = seen()
        guard.__exit__(None, None, None)
        return (lease, *held)

    async def async_attempt() -> tuple[Lease | Exception, bytes | None, int | None]:
        async with guard:
            pass
        ready.set()
        await asyncio.to_thread(go.wait, PATIENCE)
        try:
            lease = await guard.__aenter__()
        except Exception as error:
            return (error, *seen())
        held = seen()
        await guard.__aexit__(None, None, None)
        return (lease, *held)

    with ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(lambda: asyncio.run(async_attempt()) if in_loop else sync_attempt())
        assert ready.wait(PATIENCE)
        proxy.drop_replies()
        go.set()
        assert eventually(lambda: holder_of(server, guard) is not None)  # the command ran
        # Redis wrote the reply as it ran the command; give the proxy's thread time to read
        # and drop it, well within the SOCKET_TIMEOUT the client waits for it
        pause(REPLY_DROPPED)
        proxy.heal()
        then()
        return attempt.result(timeout=PATIENCE)


IN_LOOP = pytest.mark.parametrize("in_loop", [False, True], ids=["sync", "async"])


@IN_LOOP
def test_a_reply_lost_with_its_connection_is_answered_by_ownership(
    in_loop: bool, proxy: FaultProxy, proxied: RedisBackend, server: redis.Redis
) -> None:
    """LOCK ran, its reply and connection were lost: the re-sent LOCK yields the lease it took."""
    guard = lock(fresh_name("dropped"), ttl=30, timeout=0, backend=proxied)
    outcome, owner, token = acquire_with_reply_dropped(
        proxy, server, guard, lambda: kill_connections(server), in_loop=in_loop
    )
    assert isinstance(outcome, Lease), repr(outcome)  # never LockNotAcquiredError: it is ours
    assert owner == outcome.owner.encode()
    assert token == outcome.token
    assert holder_of(server, guard) is None  # and leaving released it


@IN_LOOP
def test_a_reply_that_never_comes_fails_the_acquisition_and_frees_the_lock(
    in_loop: bool, proxy: FaultProxy, proxied: RedisBackend, server: redis.Redis
) -> None:
    """LOCK ran, its reply never came: BackendUnavailableError, and the lock is free at once."""
    guard = lock(fresh_name("silent"), ttl=30, timeout=0, backend=proxied)
    outcome, owner, _ = acquire_with_reply_dropped(
        proxy, server, guard, lambda: None, in_loop=in_loop
    )
    assert isinstance(outcome, BackendUnavailableError), repr(outcome)  # not "not acquired"
    assert owner is None  # given back before the error was raised, not held for 30 s
    with lock(guard.name, ttl=30, timeout=0, backend=proxied) as lease:
        assert lease.token > 0


# a blackhole longer than the ttl ----------------------------------------------------------------

BLACKHOLE_TTL = 0.6  # seconds: renewals every 0.2 s
# Time for the renewer to run once past the lease's term: thread and task wake-ups on a loaded
# machine. The renewal on its way when the term ends may first wait its SOCKET_TIMEOUT out.
BLACKHOLE_SLACK = 0.2


def test_a_blackhole_longer_than_the_ttl_loses_the_lease_and_leaving_raises(
    proxy: FaultProxy,
    proxied: RedisBackend,
    backends: Backends,
    redis_url: str,
    server: redis.Redis,
) -> None:
    """Renewals swallowed past the TTL: lost, on_lost told, another takes it, leaving raises."""
    told: list[float] = []
    guard = lock(
        fresh_name("blackholed"),
        ttl=BLACKHOLE_TTL,
        renew=True,
        on_lost=lambda lease: told.append(time.monotonic()),
        backend=proxied,
    )
    lease = guard.__enter__()
    pause(BLACKHOLE_TTL)  # renewed twice, through the proxy
    assert not lease.lost
    proxy.blackhole()
    cut = time.monotonic()
    assert eventually(lambda: lease.lost, BLACKHOLE_TTL + BLACKHOLE_SLACK)
    assert time.monotonic() - cut <= BLACKHOLE_TTL + BLACKHOLE_SLACK
    assert eventually(lambda: bool(told), BLACKHOLE_TTL + SOCKET_TIMEOUT + BLACKHOLE_SLACK)
    assert told[0] - cut <= BLACKHOLE_TTL + SOCKET_TIMEOUT + BLACKHOLE_SLACK
    # Redis let the lease go, as it was not renewed (by the time it took the last renewal to
    # arrive, at most, after the holder's own term was over)
    with lock(guard.name, ttl=30, timeout=BLACKHOLE_TTL, backend=backends(redis_url)) as other:
        assert other.token > lease.token
        proxy.heal()
        with pytest.raises(LockLostError):
            guard.__exit__(None, None, None)
        assert holder_of(server, guard) == other.owner.encode()  # not released by the loser
    assert len(told) == 1


def test_leaving_a_lost_lease_while_redis_is_out_of_reach_raises_lock_lost(
    proxy: FaultProxy, proxied: RedisBackend
) -> None:
    """Found lost while Redis cannot be reached: leaving says LockLostError, as after any loss,
    not that the release (of a lease Redis has dropped) could not be sent."""
    told: list[Lease] = []
    guard = lock(
        fresh_name("unreachable"),
        ttl=BLACKHOLE_TTL,
        renew=True,
        on_lost=told.append,
        backend=proxied,
    )
    lease = guard.__enter__()
    proxy.blackhole()
    assert eventually(lambda: bool(told), BLACKHOLE_TTL + SOCKET_TIMEOUT + BLACKHOLE_SLACK)
    assert lease.lost
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)


def test_a_task_cut_off_from_redis_past_its_ttl_is_cancelled_with_lock_lost(
    proxy: FaultProxy, proxied: RedisBackend
) -> None:
    """cancel_on_lost: renewals failing past the TTL cancel the holding task, and its block
    raises LockLostError (the task uncancelled), though Redis is still out of reach."""
    told: list[Lease] = []
    guard = lock(
        fresh_name("cut-off"),
        ttl=BLACKHOLE_TTL,
        renew=True,
        on_lost=told.append,
        cancel_on_lost=True,
        backend=proxied,
    )

    async def hold() -> None:
        async with guard as lease:
            await asyncio.sleep(BLACKHOLE_TTL)  # renewed twice
            assert not lease.lost
            proxy.blackhole()
            await asyncio.sleep(PATIENCE)  # the work, cut short

    async def main() -> tuple[str, int, float]:
        started = time.monotonic()
        try:
            await hold()
        except Exception as error:
            outcome = type(error).__name__
        else:
            outcome = "no error"
        task = asyncio.current_task()
        assert task is not None
        return outcome, task.cancelling(), time.monotonic() - started

    outcome, cancelling, took = asyncio.run(main())
    assert (outcome, cancelling) == ("LockLostError", 0)
    assert len(told) == 1
    # cut off after a TTL, lost within a TTL and a renewal's timeout, let go as fast
    assert took <= 2 * BLACKHOLE_TTL + 2 * SOCKET_TIMEOUT + BLACKHOLE_SLACK


# many holders, some of which drop their lease without leaving --------------------------------

CYCLES = 10_000  # acquire/release cycles with renewal: half in threads, half in tasks
WORKERS = 4  # threads, then tasks, cycling side by side on names of their own
CYCLE_TTL = 0.5  # seconds: a lease dropped by its holder runs out this long after its last renewal


def test_ten_thousand_renewed_holds_a_tenth_abandoned_leave_no_renewer_behind(
    redis_url: str, backends: Backends
) -> None:
    """10,000 cycles with renew=True, 10% whose holder ends inside the block: once they are
    over no renewer thread or task is left, and every abandoned lock runs out."""
    backend = backends(redis_url)
    per_worker = CYCLES // 2 // WORKERS
    abandoned: list[str] = []

    def cycle_in_threads(worker: int) -> None:
        guard = lock(fresh_name("cycled"), ttl=CYCLE_TTL, renew=True, backend=backend)
        for number in range(per_worker):
            if number % 10:
                with guard as lease:
                    assert not lease.lost
                continue
            name = fresh_name("abandoned")
            dropped = lock(name, ttl=CYCLE_TTL, renew=True, backend=backend)
            holder = threading.Thread(target=dropped.__enter__)  # it ends holding the lease
            holder.start()
            holder.join()
            abandoned.append(name)

    async def cycle_in_tasks() -> None:
        async def worker() -> None:
            guard = lock(fresh_name("cycled"), ttl=CYCLE_TTL, renew=True, backend=backend)
            for number in range(per_worker):
                if number % 10:
                    async with guard as lease:
                        assert not lease.lost
                    continue
                name = fresh_name("abandoned")
                dropped = lock(name, ttl=CYCLE_TTL, renew=True, backend=backend)
                await asyncio.create_task(dropped.__aenter__())  # it ends holding the lease
                abandoned.append(name)

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        gc.collect()
        alone = {asyncio.current_task()}
        assert await settled(lambda: asyncio.all_tasks() == alone), asyncio.all_tasks()

    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(cycle_in_threads, range(WORKERS)))
    gc.collect()
    assert eventually(lambda: not renewer_threads()), renewer_threads()
    asyncio.run(cycle_in_tasks())
    print(f"{CYCLES} cycles in {time.monotonic() - started:.1f} s")
    assert not renewer_threads()
    assert len(abandoned) == CYCLES // 10
    pause(CYCLE_TTL)
    for name in abandoned:
        with lock(name, ttl=CYCLE_TTL, timeout=CYCLE_TTL, backend=backend):
            pass


async def settled(check: Callable[[], bool], within: float = PATIENCE) -> bool:
    """Let the event loop run until *check* holds (True) or *within* seconds pass (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()
