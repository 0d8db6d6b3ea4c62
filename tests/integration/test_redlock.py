"""RedlockBackend on five real Redis servers: quorum, validity, release everywhere, fencing.

Each server sits behind a FaultProxy: a master is "down" when its proxy resets every
connection (fast and certain), or slow when the proxy delays or swallows traffic. A master is
"held" when another owner took the lock's key on it directly, through its RedisBackend.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from cache_support import pause
from hypothesis import given
from hypothesis import strategies as st
from redis_infra import FaultProxy, RedisServer, commands_sent

from resilient import Lease, lock
from resilient.backends import Locked, MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.backends.redlock import RedlockBackend, _decide
from resilient.exceptions import BackendUnavailableError, LockNotAcquiredError
from resilient.testing.contract import BackendContract

# A master's calls give up after this long: short, so that a swallowed command costs little.
SOCKET_TIMEOUT = 0.2
OTHER = "another-owner-" + "0" * 18  # the owner of the locks "held by someone else"


class Fleet:
    """Five Redis servers, a fault proxy in front of each, and a RedisBackend per proxy."""

    def __init__(self, stack: ExitStack) -> None:
        self.servers = [stack.enter_context(RedisServer()) for _ in range(5)]
        self.proxies = [stack.enter_context(FaultProxy(server.port)) for server in self.servers]
        self.masters = [
            RedisBackend.from_url(
                proxy.url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
            )
            for proxy in self.proxies
        ]
        for master in self.masters:
            stack.callback(master.close)
        # straight to each server, past its proxy: what a master really holds
        self.admins = [redis.Redis.from_url(server.url) for server in self.servers]
        for admin in self.admins:
            stack.callback(admin.close)

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def holders(self, key: str, count: int = 5) -> list[bytes | None]:
        """Who holds the lock *key* on each of the first *count* servers (None: nobody)."""
        return [admin.get(f"{key}:claim") for admin in self.admins[:count]]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Five servers and their proxies, started once for the module."""
    with ExitStack() as stack:
        yield Fleet(stack)


@pytest.fixture
def masters(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet with every proxy forwarding, before and after the test."""
    fleet.heal()
    yield fleet
    fleet.heal()


def key_of(guard: Any) -> str:
    """The key a `resilient.lock` takes on each master."""
    key: str = guard._key()
    return key


# --- the acceptance point: every subset of 3 and of 5 masters ----------------------------------


def _cases() -> Iterator[Any]:
    for count in (3, 5):
        for size in range(count + 1):
            for subset in itertools.combinations(range(count), size):
                for mix in ("down", "held", "mixed") if subset else ("none",):
                    yield pytest.param(count, subset, mix, id=f"{count}-{list(subset)}-{mix}")


def _arrange(fleet: Fleet, key: str, subset: Sequence[int], mix: str) -> dict[int, str]:
    """Make the masters of *subset* down or held by OTHER, as *mix* says; return which is which."""
    if mix == "mixed":  # alternate, starting with either kind depending on the subset
        kinds = itertools.cycle(("down", "held") if sum(subset) % 2 else ("held", "down"))
        unavailable = {index: next(kinds) for index in subset}
    else:
        unavailable = dict.fromkeys(subset, mix)
    for index, kind in unavailable.items():
        if kind == "held":
            assert fleet.masters[index].lock(key, OTHER, 30).token is not None
    for index, kind in unavailable.items():
        if kind == "down":
            fleet.proxies[index].reset()
    return unavailable


def _expected(count: int, unavailable: dict[int, str]) -> type[Exception] | None:
    """None when the lock must be acquired, else the error taking it must raise."""
    quorum = count // 2 + 1
    if count - len(unavailable) >= quorum:
        return None
    down = sum(kind == "down" for kind in unavailable.values())
    return BackendUnavailableError if count - down < quorum else LockNotAcquiredError


def _check(
    fleet: Fleet,
    count: int,
    key: str,
    unavailable: dict[int, str],
    outcome: tuple[Lease, list[bytes | None]] | Exception,
) -> None:
    """Acquired iff a majority was free; the free masters held it; nothing of ours is left."""
    expected = _expected(count, unavailable)
    if expected is None:
        assert not isinstance(outcome, Exception), f"refused: {outcome!r}"
        lease, held = outcome
        assert lease.token > 0
        ours = {held[index] for index in range(count) if index not in unavailable}
        assert len(ours) == 1  # every free master held it, for one owner
        assert ours != {None}
        assert ours != {OTHER.encode()}
    else:
        assert isinstance(outcome, expected), f"expected {expected.__name__}, got {outcome!r}"
    fleet.heal()
    assert fleet.holders(key, count) == [
        OTHER.encode() if unavailable.get(index) == "held" else None for index in range(count)
    ]
    for index, kind in unavailable.items():
        if kind == "held":
            assert fleet.masters[index].unlock(key, OTHER)


@pytest.mark.parametrize(("count", "subset", "mix"), list(_cases()))
def test_the_lock_is_taken_iff_a_majority_of_masters_is_free(
    masters: Fleet, count: int, subset: tuple[int, ...], mix: str
) -> None:
    """Any masters down or held by another owner: acquired iff a majority is free, no leak."""
    redlock = RedlockBackend(masters.masters[:count])
    guard = lock(f"subset-{uuid.uuid4().hex}", ttl=10, timeout=0, backend=redlock)
    key = key_of(guard)
    unavailable = _arrange(masters, key, subset, mix)
    outcome: tuple[Lease, list[bytes | None]] | Exception
    try:
        with guard as lease:
            outcome = (lease, masters.holders(key))
    except (BackendUnavailableError, LockNotAcquiredError) as error:
        outcome = error
    _check(masters, count, key, unavailable, outcome)


ASYNC_CASES = [
    pytest.param(3, (), "none", id="3-[]"),
    pytest.param(3, (2,), "down", id="3-[2]-down"),
    pytest.param(3, (0, 1), "mixed", id="3-[0, 1]-mixed"),
    pytest.param(5, (1, 3), "held", id="5-[1, 3]-held"),
    pytest.param(5, (0, 2, 4), "mixed", id="5-[0, 2, 4]-mixed"),
    pytest.param(5, (0, 1, 2), "down", id="5-[0, 1, 2]-down"),
]


@pytest.mark.parametrize(("count", "subset", "mix"), ASYNC_CASES)
def test_async_with_takes_the_lock_iff_a_majority_of_masters_is_free(
    masters: Fleet, count: int, subset: tuple[int, ...], mix: str
) -> None:
    """`async with` asks the masters concurrently and decides as the sync path does."""
    redlock = RedlockBackend(masters.masters[:count])
    guard = lock(f"async-{uuid.uuid4().hex}", ttl=10, timeout=0, backend=redlock)
    key = key_of(guard)
    unavailable = _arrange(masters, key, subset, mix)

    async def attempt() -> tuple[Lease, list[bytes | None]] | Exception:
        try:
            async with guard as lease:
                return lease, masters.holders(key)
        except (BackendUnavailableError, LockNotAcquiredError) as error:
            return error

    _check(masters, count, key, unavailable, asyncio.run(attempt()))


# --- validity ----------------------------------------------------------------------------------


def test_validity_shrinks_by_the_time_taken_and_the_drift(masters: Fleet) -> None:
    """A master that swallows the command costs its socket timeout, taken off the validity."""
    redlock = RedlockBackend(masters.masters[:3], drift=0.1)
    key, owner = f"validity:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    masters.proxies[0].blackhole()
    started = time.monotonic()
    locked = redlock.lock(key, owner, 10.0)
    elapsed = time.monotonic() - started
    allowance = 10.0 * 0.1 + 0.002
    assert locked.token is not None
    assert 10.0 - elapsed - allowance <= locked.ttl <= 10.0 - SOCKET_TIMEOUT - allowance
    assert redlock.unlock(key, owner)  # two of three: a quorum released it
    masters.heal()
    assert masters.holders(key, 3) == [None] * 3


def test_a_quorum_that_took_longer_than_the_ttl_is_not_granted(masters: Fleet) -> None:
    """Two slow masters grant, but after the ttl: refused, and released on every master."""
    redlock = RedlockBackend(masters.masters[:3])
    key, owner = f"slow:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    for proxy in masters.proxies[:2]:
        proxy.latency(0.08)  # each round trip takes 0.16 s or more
    assert redlock.lock(key, owner, 0.25) == Locked(None, 0.05)  # nobody else holds it
    assert masters.holders(key, 3) == [None] * 3
    guard = lock(f"slow-{uuid.uuid4().hex}", ttl=0.25, timeout=0, backend=redlock)
    with pytest.raises(LockNotAcquiredError), guard:
        pass
    assert masters.holders(key_of(guard), 3) == [None] * 3


def test_async_code_asks_every_master_at_once(masters: Fleet) -> None:
    """Three slow masters cost async code one round trip, not three: validity keeps the rest."""
    redlock = RedlockBackend(masters.masters[:3])
    key = f"together:{{{uuid.uuid4().hex}}}"
    for proxy in masters.proxies[:3]:
        proxy.latency(0.06)  # each round trip takes 0.12 s or more

    async def timed() -> tuple[float, Locked]:
        warm = uuid.uuid4().hex  # connect and load the scripts first: those cost round trips
        await redlock.alock(key, warm, 10)
        await redlock.aunlock(key, warm)
        started = time.monotonic()
        locked = await redlock.alock(key, uuid.uuid4().hex, 10)
        return time.monotonic() - started, locked

    elapsed, locked = asyncio.run(timed())
    assert locked.token is not None
    assert 0.12 <= elapsed < 0.3  # in turn, it would take 0.36 s
    assert locked.ttl >= 10 - elapsed - (10 * 0.01 + 0.002)


# --- release, extend, fencing ------------------------------------------------------------------


def test_unlock_releases_the_lock_on_every_master(masters: Fleet) -> None:
    """Unlock reaches all five masters; with two down, the three others still release."""
    redlock = RedlockBackend(masters.masters)
    key, owner = f"unlock:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    assert redlock.lock(key, owner, 30).token is not None
    assert masters.holders(key) == [owner.encode()] * 5
    assert redlock.unlock(key, owner)
    assert masters.holders(key) == [None] * 5
    assert not redlock.unlock(key, owner)  # nothing left to release

    masters.proxies[1].reset()
    masters.proxies[3].reset()
    assert redlock.lock(key, owner, 30).token is not None
    assert masters.holders(key) == [owner.encode(), None, owner.encode(), None, owner.encode()]
    assert redlock.unlock(key, owner)
    assert masters.holders(key) == [None] * 5


def test_unlock_on_a_minority_releases_it_and_says_false(masters: Fleet) -> None:
    """Held for the owner on two of five masters only: both are released, and unlock is False."""
    redlock = RedlockBackend(masters.masters)
    key, owner = f"minority:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    for master in masters.masters[3:]:
        master.lock(key, owner, 30)
    assert not redlock.unlock(key, owner)
    assert masters.holders(key) == [None] * 5


def test_unlock_with_a_quorum_down_raises(masters: Fleet) -> None:
    """Fewer than a quorum answering an unlock is a BackendUnavailableError, not a lost lease."""
    redlock = RedlockBackend(masters.masters[:3])
    key, owner = f"gone:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    assert redlock.lock(key, owner, 30).token is not None
    masters.proxies[0].reset()
    masters.proxies[2].reset()
    with pytest.raises(BackendUnavailableError) as raised:
        redlock.unlock(key, owner)
    assert (raised.value.backend, raised.value.operation) == ("redlock", "unlock")
    masters.heal()
    assert redlock.unlock(key, owner)


def test_extend_needs_a_quorum(masters: Fleet) -> None:
    """Extended when a quorum still holds the lock for the owner; not when only one does."""
    redlock = RedlockBackend(masters.masters[:3])
    key, owner = f"extend:{{{uuid.uuid4().hex}}}", uuid.uuid4().hex
    assert redlock.lock(key, owner, 30).token is not None
    masters.masters[1].unlock(key, owner)  # its lease there was lost
    assert redlock.extend(key, owner, 60)
    assert masters.admins[0].pttl(f"{key}:claim") > 30_000
    masters.masters[2].unlock(key, owner)
    assert not redlock.extend(key, owner, 60)
    masters.proxies[1].reset()
    masters.proxies[2].reset()
    with pytest.raises(BackendUnavailableError):
        redlock.extend(key, owner, 60)
    masters.heal()
    assert not asyncio.run(redlock.aextend(key, owner, 60))
    assert redlock.unlock(key, owner) is False  # one master of three held it
    assert masters.holders(key, 3) == [None] * 3


def test_fencing_tokens_increase_over_sequential_holders(masters: Fleet) -> None:
    """With every master up, each holder's token is greater than the one before."""
    guard = lock(f"fenced-{uuid.uuid4().hex}", ttl=10, backend=RedlockBackend(masters.masters))
    tokens = []
    for _ in range(6):
        with guard as lease:
            tokens.append(lease.token)
    assert tokens == sorted(set(tokens))


# --- waiting -----------------------------------------------------------------------------------


def test_a_waiter_is_woken_when_the_holder_lets_go_without_polling(masters: Fleet) -> None:
    """A holder's quorum without the first master: the waiter waits, woken by the release."""
    redlock = RedlockBackend(masters.masters[:3])
    guard = lock(f"wake-{uuid.uuid4().hex}", ttl=10, timeout=5, backend=redlock)
    key = key_of(guard)
    for master in masters.masters[1:3]:
        assert master.lock(key, OTHER, 30).token is not None

    def let_go() -> None:
        pause(0.3)
        for master in masters.masters[1:3]:
            master.unlock(key, OTHER)

    releaser = threading.Thread(target=let_go)
    with commands_sent(masters.servers[0].url) as sent:
        started = time.monotonic()
        releaser.start()
        with guard as lease:
            waited = time.monotonic() - started
    releaser.join()
    assert lease.token > 0
    assert 0.25 <= waited < 2.0
    # one refused attempt (lock, unlock), the granted one, the release: no spinning
    assert sent.count("EVALSHA") <= 6, sent


def test_waiting_with_every_master_down_pauses_instead_of_spinning(masters: Fleet) -> None:
    """No master answers a wait: it pauses briefly (sync and async), then returns."""
    redlock = RedlockBackend(masters.masters[:3])
    for proxy in masters.proxies[:3]:
        proxy.reset()
    started = time.monotonic()
    redlock.wait_released("down:{1}", 5.0)
    asyncio.run(redlock.await_released("down:{1}", 5.0))
    assert 0.09 <= time.monotonic() - started < 2.0


# --- the lock primitives' contract -------------------------------------------------------------


class TestRedlockKeepsTheLockContract:
    """The lock checks of the backend contract suite, on three masters, sync and async."""

    key_prefix = BackendContract.key_prefix
    primitives = BackendContract.primitives
    key = BackendContract.key
    token = BackendContract.token

    @pytest.fixture
    def backend(self, masters: Fleet) -> RedlockBackend:
        """A RedlockBackend over the first three masters."""
        return RedlockBackend(masters.masters[:3])

    test_taken_again = (
        BackendContract.test_a_free_lock_is_taken_and_taking_it_again_finds_the_same_token
    )
    test_refused = BackendContract.test_a_held_lock_refuses_another_owner_with_the_time_it_has_left
    test_tokens = BackendContract.test_fencing_tokens_increase_with_every_holder
    test_owner_only = BackendContract.test_only_the_owner_releases_or_extends_a_lock
    test_expired = (
        BackendContract.test_an_expired_lease_cannot_be_extended_and_goes_to_the_next_owner
    )
    test_woken = BackendContract.test_a_waiter_is_woken_when_the_lock_is_released


# --- the decision and the constructor ----------------------------------------------------------

_GRANTED = st.builds(Locked, st.integers(1, 2**53), st.just(10.0))
_HELD = st.builds(Locked, st.none(), st.floats(0, 30))
_ANSWERS = st.lists(st.one_of(_GRANTED, _HELD, st.just(ConnectionError("down"))), min_size=1)


@given(
    outcomes=_ANSWERS,
    elapsed=st.floats(0, 12),
    drift=st.floats(0, 0.49),
)
def test_the_decision_follows_the_redlock_rules(
    outcomes: list[Locked | Exception], elapsed: float, drift: float
) -> None:
    """Granted iff a majority granted with validity left; the token is their greatest."""
    quorum = len(outcomes) // 2 + 1
    decision = _decide(outcomes, quorum=quorum, ttl=10.0, elapsed=elapsed, drift=drift)
    grants = [o.token for o in outcomes if isinstance(o, Locked) and o.token is not None]
    held = [o.ttl for o in outcomes if isinstance(o, Locked) and o.token is None and o.ttl > 0]
    validity = 10.0 - elapsed - (10.0 * drift + 0.002)
    assert decision.granted == (len(grants) >= quorum and validity > 0)
    assert decision.answered == sum(not isinstance(o, Exception) for o in outcomes)
    if decision.granted:
        assert (decision.token, decision.ttl) == (max(grants), validity)
    else:
        assert (decision.token, decision.ttl) == (None, min(held, default=0.05))


def test_one_master_is_enough_to_run(masters: Fleet) -> None:
    """N=1 (for benchmarks): a quorum of one, tokens as that master's."""
    redlock = RedlockBackend(masters.masters[:1], name="single")
    assert (redlock.quorum, repr(redlock)) == (
        1,
        "RedlockBackend(name='single', masters=1, quorum=1, drift=0.01)",
    )
    with lock(f"single-{uuid.uuid4().hex}", backend=redlock, timeout=0) as lease:
        assert lease.token > 0


@pytest.mark.parametrize(
    ("masters_given", "options", "error", "says"),
    [
        pytest.param("redis://a", {}, TypeError, "not a sequence", id="a-string"),
        pytest.param(iter(()), {}, TypeError, "not a sequence", id="an-iterator"),
        pytest.param([], {}, ValueError, "at least one master", id="none"),
        pytest.param([object()], {}, TypeError, "lacks the lock primitives", id="not-a-backend"),
        pytest.param(["twice"], {}, ValueError, "given twice", id="one-master-twice"),
        pytest.param(["ok"], {"drift": 0.5}, ValueError, "below 0.5", id="drift-too-large"),
        pytest.param(["ok"], {"drift": -0.01}, ValueError, "at least 0", id="drift-negative"),
        pytest.param(["ok"], {"drift": float("nan")}, ValueError, "drift=nan", id="drift-nan"),
        pytest.param(["ok"], {"drift": "0.01"}, TypeError, "must be a number", id="drift-str"),
        pytest.param(["ok"], {"drift": True}, TypeError, "must be a number", id="drift-bool"),
        pytest.param(["ok"], {"name": ""}, TypeError, "non-empty string", id="name-empty"),
    ],
)
def test_a_wrong_configuration_is_refused_with_a_typed_error(
    masters_given: Any, options: dict[str, Any], error: type[Exception], says: str
) -> None:
    """The constructor checks masters, drift and name, and says what is wrong."""
    memory = MemoryBackend()  # has every lock primitive: a stand-in that needs no server
    if masters_given == ["ok"]:
        masters_given = [memory]
    elif masters_given == ["twice"]:
        masters_given = [memory, MemoryBackend(), memory]
    with pytest.raises(error, match=says):
        RedlockBackend(masters_given, **options)


def test_a_ttl_that_is_not_positive_is_refused_before_any_call() -> None:
    """lock and extend refuse a ttl no master could take, with a ValueError."""
    redlock = RedlockBackend([MemoryBackend()])
    with pytest.raises(ValueError, match="positive"):
        redlock.lock("k", "owner", 0)
    with pytest.raises(ValueError, match="positive"):
        redlock.extend("k", "owner", float("inf"))
