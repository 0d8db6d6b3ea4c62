# A breaker shared by every process through a backend: the link between one process's view of
# it and the state the backend keeps.
#
# Rules:
# - The backend keeps the breaker's whole state (`BreakerCore.to_data`, with the breaker's name
#   for operators' tools) under a version; it changes only by compare-and-set (`set_versioned`),
#   so every change is linearizable: of two processes that read one version, one stores the
#   next and the other applies its own exchange again on top of it. The rules are the core's,
#   applied by whichever process writes; every time that decides a transition is the store's
#   clock (the Redis server's TIME).
# - Each process keeps a replica: the last stored state, plus what its own calls did since
#   (their closed outcomes, in order, in the replica's journal). Closed calls are admitted and
#   counted against the replica with no round trip. The journal goes to the backend with the
#   next sync, which happens once the view is `sync_interval` old and a call ends, at once
#   when the replica trips (so the fleet learns of it), when a probe ends, and when a call
#   finds the view older than `sync_interval`. A sync is one compare-and-set (plus one read
#   for a process that has no view yet, and one more write per conflict).
# - Only the backend admits probes: a call that finds the replica open past its time, or
#   half-open, asks in a sync, so at most `half_open_calls` probes run in the whole fleet.
# - One sync at a time per process. A call that needs one while another is in flight does not
#   wait for it, except a probe's report and a manual action, which must reach the backend
#   (they wait for it to land, then lead the next), and calls made before the process has
#   seen the stored state at all.
# - Transitions the backend's state makes are reported by the process that wrote them; a
#   replica's own trip is a forecast and is not reported.
# - The store's clock is estimated from every reply: it read its clock between the request's
#   sending and the reply's arrival, which bounds the offset of its clock from this process's;
#   the link keeps the intersection of those bounds (`ClockOffset`) and works on its middle.
#   Only a reply that arrived in this sync shows the store's current state or time: a write
#   that would change nothing of the view this process kept is made all the same, so that
#   the store, not the old view, says whether it is current.
# - A backend that fails (an error, a timeout, a conflict that will not settle) leaves the
#   process on its replica alone, which then decides everything locally, probes included, and
#   reports its transitions; one BackendFailed event says so. After a cool-down a call tries
#   the backend again: the stored state wins, or, if the backend lost it (a restart without
#   persistence), the replica becomes the stored state.
from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._config import DEFAULTS
from ._core.breaker import Admission, BreakerCore, BreakerState, Exchange, Permit, Transition
from ._core.clock_offset import ClockOffset
from ._drive import Join, Op, backend_failed
from ._signal import Signal
from .backends._types import Versioned
from .exceptions import BackendUnavailableError

if TYPE_CHECKING:
    from ._breaker import Breaker

__all__ = ["Acted", "Link", "acting_on_stored", "state_key", "stored_state"]

_COOL_DOWN: Final = 1.0  # seconds on the replica alone before trying a failed backend again
_STATE_TTL: Final = 7 * 86_400.0  # a shared breaker unused for a week is forgotten
_CONFLICTS: Final = 8  # compare-and-set attempts in one sync before leaving it to the next
_HAND_CONFLICTS: Final = 100  # compare-and-set attempts of a manual action before giving up

Steps = Generator[object, Any, Any]


class _Again:
    """A follower's answer: the sync it waited for landed; decide again."""


_AGAIN: Final = _Again()


class Link:
    """One process's link to a shared breaker's stored state. Its breaker's lock guards it."""

    __slots__ = (
        "action",
        "base",
        "breaker",
        "degraded",
        "flight",
        "journal_epoch",
        "offset",
        "probes",
        "reported_rejections",
        "retry_at",
        "stem",
        "store_clock",
        "synced_at",
    )

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker
        self.stem = _stem(breaker.name)
        self.base: Versioned | None = None  # the last stored state this process knows of
        self.store_clock = ClockOffset()  # what the replies so far tell of the store's clock
        self.offset = 0.0  # the store's clock minus this process's: the estimate
        self.synced_at = -math.inf
        self.flight: Signal | None = None  # set while this process syncs
        self.degraded = False
        self.retry_at = 0.0
        self.probes: list[tuple[Permit, int]] = []  # finished probes not yet reported
        self.action: str | None = None  # a manual action not yet made
        self.reported_rejections = 0  # the replica's rejections the backend already has
        self.journal_epoch = -1  # the stored closed epoch the replica's journal counts in
        breaker._core.journal = []

    def backend(self) -> Any:
        """Return the backend the breaker keeps its state on."""
        return self.breaker.policy.backend or DEFAULTS.backend

    def key(self) -> str:
        """Return the key of the stored state (its hash tag is the name's digest)."""
        return DEFAULTS.namespace + self.stem

    def forget(self) -> None:
        """Drop the view, so that the next call reads the stored state again (tests)."""
        self.base = None
        self.synced_at = -math.inf

    def forked(self) -> None:
        """Start afresh in a forked child: its parent's sync and unsent outcomes are not its own."""
        self.flight = None
        self.forget()
        replica = self.breaker._core
        if replica.journal is not None:
            replica.journal = []
        self.reported_rejections = replica.rejected
        self.probes = []
        self.action = None

    # what calls do --------------------------------------------------------------------------

    def admitting(self) -> Steps:
        """Decide on a call: a permit, or the seconds a refused call is told."""
        breaker = self.breaker
        while True:
            local = DEFAULTS.clock.monotonic()
            with breaker._lock:
                needed = self._needs_backend(local)
                if not needed:
                    decision, transition = breaker._core.admit(local + self.offset)
            if not needed:
                breaker._report_own(transition)
                return decision
            answer = yield from self._sync(admit=True, must=False)
            if answer is _AGAIN:
                continue
            with breaker._lock:
                if answer is None:  # calls pass: decide on the fresh replica
                    decision, _ = breaker._core.admit(DEFAULTS.clock.monotonic() + self.offset)
                    return decision
                if isinstance(answer, float):
                    breaker._core.rejected += 1  # every process counts the calls it refuses
            return answer

    def finishing(self, permit: Admission, outcome: int) -> Steps:
        """Count how a call ended, and sync when the backend must hear of it."""
        breaker = self.breaker
        local = DEFAULTS.clock.monotonic()
        must = False
        with breaker._lock:
            replica = breaker._core
            if self.degraded:
                transition = replica.record(permit, outcome, local + self.offset)
                needed = False
            elif type(permit) is Permit and permit.probe > 0:
                self.probes.append((permit, outcome))
                transition, needed, must = None, True, True
            else:
                forecast = replica.record(permit, outcome, local + self.offset)
                transition, must = None, forecast is not None
                needed = must or (
                    bool(replica.journal) and local - self.synced_at >= self._interval()
                )
        self._tell(transition)
        if needed:
            yield from self._until_synced(must=must)

    def acting(self, action: str) -> Steps:
        """Make a manual action (force_open, disable, close, reset) on the stored state."""
        breaker = self.breaker
        with breaker._lock:
            alone = self.degraded
            if alone:
                transition = breaker._core.act(action, DEFAULTS.clock.monotonic() + self.offset)
            else:
                self.action = action
        if alone:
            self._tell(transition)
        else:
            yield from self._until_synced(must=True)

    def refreshing(self) -> Steps:
        """Sync if the view is out of date or the backend has not heard every outcome yet."""
        with self.breaker._lock:
            needed = bool(self.breaker._core.journal) or self._needs_backend(
                DEFAULTS.clock.monotonic(), state_only=True
            )
        if needed:
            yield from self._until_synced(must=True)

    # syncing ------------------------------------------------------------------------------------

    def _interval(self) -> float:
        return self.breaker.policy.sync_interval

    def _needs_backend(self, local: float, *, state_only: bool = False) -> bool:
        if self.degraded:
            return local >= self.retry_at
        if self.base is None or local - self.synced_at >= self._interval():
            return True
        if state_only:
            return False
        replica = self.breaker._core
        if replica.state is BreakerState.OPEN:
            return local + self.offset >= replica.open_until
        return replica.state is BreakerState.HALF_OPEN

    def _until_synced(self, *, must: bool) -> Steps:
        while (yield from self._sync(admit=False, must=must)) is _AGAIN:
            pass

    def _sync(self, *, admit: bool, must: bool) -> Steps:
        """Bring this process's exchange to the backend and take its state back.

        Returns the answer to *admit* (a probe's permit, seconds refused, or None when calls
        pass), or `_AGAIN` for a follower whose leader landed.
        """
        breaker = self.breaker
        with breaker._lock:
            flight = self.flight
            if flight is None:
                self.flight = Signal()
                exchange = self._take(admit)
            # a process that never saw the stored state waits for its first look at it
            unseen = self.base is None and not self.degraded
        if flight is not None:
            if must or unseen:
                yield Join(flight)
                return _AGAIN
            return self._refusal_meanwhile(admit)
        try:
            return (yield from self._lead(exchange))
        finally:
            with breaker._lock:
                landed, self.flight = self.flight, None
            assert landed is not None
            landed.fire()

    def _take(self, admit: bool) -> Exchange:
        """Take what the backend has not heard yet (under the lock)."""
        replica = self.breaker._core
        journal = replica.journal or []
        if not self.degraded:
            replica.journal = []
        exchange = Exchange(
            epoch=self.journal_epoch,
            outcomes=tuple(journal),
            rejected=replica.rejected - self.reported_rejections,
            probes=tuple(self.probes),
            action=self.action,
            admit=admit,
        )
        self.reported_rejections = replica.rejected
        self.probes = []
        self.action = None
        return exchange

    def _tell(self, transition: Transition | None) -> None:
        """Report *transition* of a state on the store's clock, on this process's clock."""
        if transition is not None and transition.source is not transition.target:
            self.breaker._report(transition._replace(time=transition.time - self.offset))

    def _refusal_meanwhile(self, admit: bool) -> object:
        """Answer a caller that needed a sync while another one is in flight."""
        if not admit:
            return None
        with self.breaker._lock:
            replica = self.breaker._core
            if replica.state in (BreakerState.CLOSED, BreakerState.DISABLED):
                return None
            return replica.remaining(DEFAULTS.clock.monotonic() + self.offset)

    def _lead(self, exchange: Exchange) -> Steps:
        backend = self.backend()
        key = self.key()
        knew = self.base is not None
        try:
            if self.base is None or not _sends(exchange):
                # no version to write at, or perhaps nothing to write: read what is stored
                base = yield from self._ask(Op("get_versioned", (key,), {}))
                now, answered = base.time, True
            else:  # write at the version last seen: the store says whether it is still current
                base, answered = self.base, False
                now = DEFAULTS.clock.monotonic() + self.offset
            for _ in range(_CONFLICTS):
                core, rest, seeded = self._stored(base, exchange, knew=knew)
                transitions, answer = core.apply(rest, now)
                data = {**core.to_data(now), "name": self.breaker.name}
                if answered and not seeded and base.version and data == base.value:
                    written = base  # nothing changed since the store answered: adopt its state
                    break
                written = yield from self._ask(
                    Op(
                        "set_versioned",
                        (key, data),
                        {"version": base.version, "ttl": _STATE_TTL, "writer": uuid.uuid4().hex},
                    )
                )
                if written.stored:
                    break
                base, now, answered = written, written.time, True
            else:  # the backend works but others keep writing first: try again later
                return self._give_back(exchange)
        except Exception as error:  # noqa: BLE001 - the breaker degrades; it never raises this
            return self._degrade(exchange, error, backend)
        self._install(written, exchange)
        for transition in transitions:
            self._tell(transition)
        return answer

    def _ask(self, op: Op) -> Steps:
        """Run *op* (a versioned read or write); learn the store's clock from its reply."""
        sent = DEFAULTS.clock.monotonic()
        reply: Versioned = yield op
        received = DEFAULTS.clock.monotonic()
        with self.breaker._lock:
            self.offset = self.store_clock.heard(reply.time, sent, received)
        return reply

    def _stored(
        self, base: Versioned, exchange: Exchange, *, knew: bool
    ) -> tuple[BreakerCore, Exchange, bool]:
        """Return the state to apply *exchange* to, what is left of it, and whether to write.

        The state is the one *base* holds; or, where the backend holds none (or a corrupt
        one) although this process had a view or went on alone, its replica, whose own
        outcomes and rejections are then in it already; or else a fresh breaker. The flag
        says whether the state must be written even if nothing else changes.
        """
        policy = self.breaker.policy
        if base.value is not None:
            try:
                return BreakerCore.from_data(policy, base.value), exchange, False
            except ValueError:
                pass  # corrupt: start again from what this process knows, at its version
        if knew or self.degraded or base.version:
            replica = BreakerCore.from_data(policy, self.breaker._core.to_data(base.time))
            return replica, exchange._replace(outcomes=(), rejected=0), True
        return BreakerCore(policy), exchange, True

    def _install(self, written: Versioned, exchange: Exchange) -> None:
        """Make the stored state this process's replica, keeping what calls did meanwhile."""
        breaker = self.breaker
        local = DEFAULTS.clock.monotonic()
        with breaker._lock:
            old = breaker._core
            replica = BreakerCore.from_data(breaker.policy, written.value)
            replica.journal = []
            if replica.state is old.state and replica.epoch == exchange.epoch == old.epoch:
                # the same closed epoch goes on: calls admitted on the old replica still count
                replica.continue_counting(old)
            meanwhile = old.journal or []
            if meanwhile:  # counted while the sync was in flight: they go with the next one
                later = Exchange(epoch=exchange.epoch, outcomes=tuple(meanwhile))
                replica.apply(later, written.time)
            refused_meanwhile = old.rejected - self.reported_rejections
            self.reported_rejections = replica.rejected
            replica.rejected += refused_meanwhile
            breaker._core = replica
            self.journal_epoch = replica.epoch
            self.base = written
            self.synced_at = local
            self.degraded = False

    def _give_back(self, exchange: Exchange) -> object:
        """Keep what *exchange* brought for the next sync; answer its caller from the replica."""
        with self.breaker._lock:
            replica = self.breaker._core
            if replica.journal is not None:
                replica.journal[:0] = exchange.outcomes
            self.reported_rejections -= exchange.rejected
            self.probes[:0] = exchange.probes
            if self.action is None:
                self.action = exchange.action
        return self._refusal_meanwhile(exchange.admit)

    def _degrade(self, exchange: Exchange, error: Exception, backend: Any) -> object:
        """Go on alone on the replica after *error*; return the answer to the exchange."""
        breaker = self.breaker
        local = DEFAULTS.clock.monotonic()
        now = local + self.offset
        with breaker._lock:
            first = not self.degraded
            self.degraded = True
            self.retry_at = local + _COOL_DOWN
            self.base = None
            replica = breaker._core
            replica.journal = None
            transitions = [
                replica.record(permit, outcome, now) for permit, outcome in exchange.probes
            ]
            if exchange.action is not None:
                transitions.append(replica.act(exchange.action, now))
            answer: object = None
            if exchange.admit:
                decision, transition = replica.admit(now)
                transitions.append(transition)
                answer = decision if isinstance(decision, (Permit, float)) else None
        for transition in transitions:
            self._tell(transition)
        if first:
            backend_failed(breaker.name, backend, "breaker", error)
        return answer


def _stem(name: str) -> str:
    """Return where the breaker *name* keeps its state, after the namespace."""
    return f":breaker:{{{hashlib.blake2b(name.encode(), digest_size=16).hexdigest()}}}"


def state_key(namespace: str, name: str) -> str:
    """Return the key under which the shared breaker *name* keeps its state in *namespace*."""
    return namespace + _stem(name)


def stored_state(stored: Versioned) -> tuple[str, BreakerCore] | None:
    """Return the name and the state of the shared breaker *stored* holds, if it holds one.

    The state is read under the settings it shows (`BreakerCore.stored_policy`), for a
    process that has not the breaker's own; None for nothing stored, or nothing readable.
    """
    data = stored.value
    if not isinstance(data, dict) or not isinstance(name := data.get("name"), str):
        return None
    try:
        return name, BreakerCore.from_data(BreakerCore.stored_policy(data), data)
    except ValueError:
        return None


class Acted(NamedTuple):
    """A manual action made on a stored state: whose, the state it left, and when."""

    name: str
    state: BreakerCore
    transitions: list[Transition]
    time: float  # on the store's clock


def acting_on_stored(backend: Any, key: str, action: str) -> Steps:
    """Make the manual *action* on the state *backend* keeps at *key*, without the breaker.

    Read, act, and compare-and-set, again on a conflict: the same rules as a sync, applied by
    an operator's process. Returns an :class:`Acted`, or None when *key* holds no state.
    """
    stored = yield Op("get_versioned", (key,), {}, backend)
    for _ in range(_HAND_CONFLICTS):
        found = stored_state(stored)
        if found is None:
            return None
        name, state = found
        now = stored.time
        made = [state.tick(now), state.act(action, now)]
        written = yield Op(
            "set_versioned",
            (key, {**state.to_data(now), "name": name}),
            {"version": stored.version, "ttl": _STATE_TTL, "writer": uuid.uuid4().hex},
            backend,
        )
        if written.stored:
            changes = [each for each in made if each is not None and each.source is not each.target]
            return Acted(name, state, changes, now)
        stored = written
    raise BackendUnavailableError(
        f"breaker state at {key!r}: {_HAND_CONFLICTS} other writes came first; try again",
        backend=str(getattr(backend, "name", type(backend).__name__)),
        operation="set_versioned",
    )


def _sends(exchange: Exchange) -> bool:
    """Whether *exchange* brings something to write (outcomes, refusals, reports, an action)."""
    return bool(exchange.outcomes or exchange.rejected or exchange.probes or exchange.action)
