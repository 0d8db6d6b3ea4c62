# `@idempotent`: the first call with an idempotency key executes; every later call with the key
# gets its stored outcome.
#
# Rules:
# - One round trip decides a call: `get` with a claim reads the key's record and, when there is
#   none and nobody holds the key, claims it for this call. A record is replayed (or, with
#   another payload's fingerprint, refused as a conflict); a claim held by another token is a
#   call in progress; a claim taken means this call executes.
# - The claim token carries the call's payload fingerprint, so a duplicate told "in progress"
#   also learns whether it is a duplicate at all or a reuse of the key (a conflict).
# - The executing call's claim is a lease: renewed by the renewer (`_renewal.py`) every third
#   of `lease_ttl` while the function runs, so a live execution is never taken over, and run
#   out after `lease_ttl` when its process dies, so the key is not stuck.
# - The outcome is stored with the claim's token: one round trip stores the record for `ttl`
#   (the backend expires it), releases the claim and wakes the waiting duplicates.
# - An exception the policy does not store releases the claim (the request may be tried
#   again); cancellation and other BaseExceptions always release it and never store.
# - Fail closed: no claim, no execution (BackendUnavailableError), unless `fail_open`. An
#   outcome that cannot be stored keeps the claim (made to last `ttl` if the backend answers),
#   so that nothing executes again silently. A record that cannot be read is never replayed
#   and never overwritten: IdempotencyRecordError.
# - A call is written once, as a procedure of effects, which `run_sync` and `run_async`
#   perform.
from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, Literal, TypedDict, Unpack

import attrs

from ._config import DEFAULTS
from ._core.idempotency import (
    IdempotencyPolicy,
    Record,
    claim_token,
    fingerprint_of,
    key_problem,
    read_record,
)
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import CALL, Op, Procedure, backend_failed, emit, run_async, run_sync, type_name
from ._keys import CallKeys, digest
from ._lock import Lease, Lock, LockPolicy
from ._renewal import renewed_call
from .backends._types import Claim, Fetched
from .backends.memory import LruStore
from .events import (
    Event,
    IdempotencyBypassed,
    IdempotencyClaimed,
    IdempotencyConflicted,
    IdempotencyInProgress,
    IdempotencyLeaseLost,
    IdempotencyNotStored,
    IdempotencyRenewed,
    IdempotencyReplayed,
    IdempotencyTakenOver,
)
from .exceptions import (
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyRecordError,
    IdempotentFailureError,
)

__all__ = ["IdempotencyOptions", "idempotent", "records_prefix", "record_of_key"]


class IdempotencyOptions(TypedDict, total=False):
    """The keyword arguments of :func:`idempotent`: the fields of :class:`IdempotencyPolicy`."""

    key: str | Callable[..., object]
    ttl: float | timedelta
    lease_ttl: float | timedelta
    principal: Callable[..., object] | None
    payload: list[str] | tuple[str, ...] | Callable[..., object] | None
    on_in_progress: Literal["raise", "wait"]
    wait_timeout: float | timedelta
    store_errors: bool | type[Exception] | tuple[type[Exception], ...] | list[type[Exception]]
    fail_open: bool
    local_ttl: float | timedelta | None
    local_maxsize: int
    name: str | None
    backend: object


class _Claim(Lock):
    """The lease of a running idempotent call on its key: renewed, and reported, as its own."""

    __slots__ = ()

    renewed_event = IdempotencyRenewed
    lost_event = IdempotencyLeaseLost


class _Idempotent:
    """One policy applied to one function: its keys and its sync and async call steps."""

    __slots__ = ("_keys", "_lease", "_local", "_stem", "inner", "name", "policy")

    def __init__(self, policy: IdempotencyPolicy, keys: CallKeys, name: str, inner: Call) -> None:
        self.policy = policy
        self._keys = keys
        self.name = name
        self.inner = inner
        self._lease = LockPolicy(ttl=policy.lease_ttl, renew=True, backend=policy.backend)
        self._stem = records_prefix("", name)
        self._local: LruStore | None = None
        if policy.local_ttl is not None:
            self._local = LruStore(policy.local_maxsize)

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        claim, fingerprint = self._identify(instance, args, kwargs)
        call = partial(self.inner, wrapped, instance, args, kwargs)
        return run_sync(self._deciding(claim, fingerprint, in_loop=False), call=call)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        claim, fingerprint = self._identify(instance, args, kwargs)
        call = partial(self.inner, wrapped, instance, args, kwargs)
        return await run_async(self._deciding(claim, fingerprint, in_loop=True), call=call)

    # what a call is -------------------------------------------------------------------------

    def _identify(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[_Claim, str]:
        """Return the claim of this call's key, and the fingerprint of its payload."""
        policy = self.policy
        arguments = self._keys.arguments(instance, args, kwargs)
        args = self._keys.split(instance, args)[1]  # callables get the arguments without self
        key = arguments[policy.key] if isinstance(policy.key, str) else policy.key(*args, **kwargs)
        problem = key_problem(key)
        if problem is not None:
            raise IdempotencyKeyError(self.name, problem)
        owner: object = None
        if policy.principal is not None:
            owner = policy.principal(*args, **kwargs)
            if owner is None or owner == "":
                raise IdempotencyKeyError(
                    self.name, "the call has no principal (principal= gave none)"
                )
        where = f"{self.name}() idempotency key"
        stem = f"{self._stem}{{{digest((owner, key), where)}}}"
        if policy.payload is None:
            if isinstance(policy.key, str):
                del arguments[policy.key]
            payload: object = arguments
        elif callable(policy.payload):
            payload = policy.payload(*args, **kwargs)
        else:
            payload = {name: arguments[name] for name in policy.payload}
        fingerprint = digest(payload, f"{self.name}() payload")
        return _Claim(self.name, self._lease, stem=stem), fingerprint

    # the call ---------------------------------------------------------------------------------

    def _deciding(self, claim: _Claim, fingerprint: str, *, in_loop: bool) -> Procedure:
        """Replay the key's record, refuse or wait for a running call, or claim and execute."""
        policy = self.policy
        key, backend = claim._key(), claim._backend()
        clock = DEFAULTS.clock
        start = clock.monotonic()
        if self._local is not None:
            local = self._local.get(key, None, start).value
            if local is not None:
                return self._replay(local, fingerprint, local=True)
        owner = claim_token(fingerprint)
        ask = Op("get", (key,), {"claim": Claim(owner, policy.lease_ttl)}, backend)
        waited: float | None = None  # when this call began waiting for a running one
        while True:
            sent = clock.monotonic()
            try:
                fetched: Fetched = yield ask
            except Exception as error:  # noqa: BLE001 - fail closed, or open if asked to
                yield from claim.let_go(owner)
                return (yield from self._unclaimed(backend, error))
            if fetched.rejected:
                if fetched.claimed:
                    yield from self._release(claim, owner)
                raise IdempotencyRecordError(self.name)
            if fetched.value is not None:
                return self._replay(fetched.value, fingerprint, local=False, key=key)
            if fetched.claimed:
                if waited is not None:
                    self._emit(IdempotencyTakenOver, waited=sent - waited)
                lease = Lease(
                    self.name,
                    0,
                    policy.lease_ttl,
                    owner=owner,
                    taken_at=sent,
                    valid_until=sent + policy.lease_ttl,
                )
                return (yield from self._execute(claim, lease, fingerprint, in_loop=in_loop))
            waited = sent if waited is None else waited
            left = self._in_progress(fetched.holder, fingerprint, waited, sent)
            try:
                yield Op("wait_released", (key, left), {}, backend)
            except Exception as error:
                raise _unavailable(self.name, backend, "wait_released", error) from error

    def _in_progress(
        self, holder: str | None, fingerprint: str, waited: float, now: float
    ) -> float:
        """Another call holds the key: refuse, or return how much longer to wait for it."""
        if fingerprint_of(holder) not in (fingerprint, None):
            self._emit(IdempotencyConflicted)
            raise IdempotencyConflictError(self.name)
        wait = self.policy.on_in_progress == "wait"
        if waited == now:
            self._emit(IdempotencyInProgress, waiting=wait)
        left = waited + self.policy.wait_timeout - now
        ambient = current_deadline()  # the caller's (`resilient.deadline`), if earlier
        if ambient is not None and ambient - now < left:
            left = ambient - now
        if not wait or left <= 0:
            raise IdempotencyInProgressError(self.name, now - waited)
        return left

    def _replay(
        self, stored: object, fingerprint: str, *, local: bool, key: str | None = None
    ) -> Any:
        """Return the value *stored* holds, or raise what it says; keep it near if asked."""
        record = read_record(stored)
        if record is None:
            raise IdempotencyRecordError(self.name)
        if record.fingerprint != fingerprint:
            self._emit(IdempotencyConflicted)
            raise IdempotencyConflictError(self.name)
        if key is not None:
            self._keep(key, record)
        self._emit(IdempotencyReplayed, outcome="value" if record.ok else "error", local=local)
        if record.ok:
            return record.payload
        raise IdempotentFailureError(self.name, *record.payload)

    def _execute(
        self, claim: _Claim, lease: Lease, fingerprint: str, *, in_loop: bool
    ) -> Procedure:
        """Run the function under the claim's lease, renewed meanwhile; store its outcome."""
        self._emit(IdempotencyClaimed)
        try:
            value = yield from renewed_call(claim, lease, in_loop=in_loop)
        except BaseException as error:
            if isinstance(error, Exception) and self.policy.stores(error):
                failure = (type_name(error), str(error))
                yield from self._store(claim, lease, Record(fingerprint, ok=False, payload=failure))
            else:  # the key is free again: the request may be tried again
                yield from self._release(claim, lease.owner)
            raise
        yield from self._store(claim, lease, Record(fingerprint, ok=True, payload=value))
        return value

    def _store(self, claim: _Claim, lease: Lease, record: Record) -> Procedure:
        """Store *record*, which releases the claim and wakes the waiting duplicates.

        Stored only over no record: a call whose lease ran out while it ran never replaces the
        outcome of the call that took its key over, so a replay never changes once served.

        An outcome that cannot be stored keeps the claim, made to last ``ttl`` if the backend
        still answers: the key then stays in progress rather than executing again.
        """
        key, backend, ttl = claim._key(), claim._backend(), self.policy.ttl
        put = Op("put", (key, tuple(record)), {"ttl": ttl, "token": lease.owner, "absent": True})
        try:
            stored = yield put._replace(backend=backend)
        except Exception as error:  # noqa: BLE001 - reported; the call's own outcome stands
            unencodable = isinstance(error, TypeError | ValueError)
            if not unencodable:
                backend_failed(self.name, backend, "put", error)
            self._emit(IdempotencyNotStored, reason="unencodable" if unencodable else "backend")
            with contextlib.suppress(Exception):
                yield Op("extend", (key, lease.owner, ttl), {}, backend)
            return
        if stored:
            self._keep(key, record)
        else:  # the lease ran out while the call ran, and a call that took it over stored first
            claim._lose(lease, DEFAULTS.clock.monotonic())

    def _release(self, claim: _Claim, owner: str) -> Procedure:
        """Give the claim back, if the backend answers (its lease bounds it otherwise)."""
        backend = claim._backend()
        try:
            yield Op("release", (claim._key(), owner), {}, backend)
        except Exception as error:  # noqa: BLE001 - the lease runs out on its own
            backend_failed(self.name, backend, "release", error)

    def _unclaimed(self, backend: object, error: Exception) -> Procedure:
        """The backend could not be asked for the claim: raise, or run unguarded (fail open)."""
        if not self.policy.fail_open:
            raise _unavailable(self.name, backend, "get", error) from error
        backend_failed(self.name, backend, "get", error)
        self._emit(IdempotencyBypassed)
        return (yield CALL)

    def _keep(self, key: str, record: Record) -> None:
        """Keep *record* in this process for replays, with ``local_ttl``."""
        if self._local is not None:
            assert self.policy.local_ttl is not None
            now = DEFAULTS.clock.monotonic()
            self._local.put(
                key, tuple(record), ttl=self.policy.local_ttl, indexes=(), token=None, now=now
            )

    def _emit(self, kind: Callable[..., Event], **fields: object) -> None:
        if DEFAULTS.observers:
            emit(DEFAULTS, kind(policy=self.name, time=DEFAULTS.clock.monotonic(), **fields))


def records_prefix(namespace: str, name: str | None = None) -> str:
    """Return the start of every key of the records of *name* (of every function, for None).

    A record's key is ``{namespace}:idempotent:{name}:{{digest}}``, the digest naming the
    principal and the idempotency key; braces in the name become parentheses, so that the
    digest is the key's one hash tag.
    """
    stem = f"{namespace}:idempotent:"
    return stem if name is None else f"{stem}{name.replace('{', '(').replace('}', ')')}:"


def record_of_key(namespace: str, key: str) -> tuple[str, str] | None:
    """Return the function's name and the digest a record's *key* is made of, if it is one."""
    prefix = records_prefix(namespace)
    if not key.startswith(prefix):
        return None
    name, separator, tag = key[len(prefix) :].rpartition(":{")
    if not separator or not name or not tag.endswith("}"):
        return None
    return name, tag[:-1]


def _unavailable(name: str, backend: object, operation: str, error: Exception) -> Exception:
    backend_name = str(getattr(backend, "name", type(backend).__name__))
    return BackendUnavailableError(
        f"idempotent {name!r}: the backend failed to {operation}: {error!r}; nothing was executed",
        backend=backend_name,
        operation=operation,
    )


@attrs.frozen
class _IdempotentLayer:
    policy: IdempotencyPolicy

    def build(self, inner: Call, target: Target) -> Call:
        keys = CallKeys(target.function, target.name, None)
        name = self.policy.name or target.name
        _check_names(self.policy, keys.parameters(), name)
        idempotent = _Idempotent(self.policy, keys, name, inner)
        return idempotent.call_async if target.is_async else idempotent.call_sync


def _check_names(policy: IdempotencyPolicy, parameters: list[str], name: str) -> None:
    """Refuse a ``key=`` or ``payload=`` naming a parameter the function does not have."""
    named = [policy.key] if isinstance(policy.key, str) else []
    if isinstance(policy.payload, tuple):
        named += policy.payload
    for parameter in named:
        if parameter not in parameters:
            raise ValueError(
                f"{name}() has no parameter {parameter!r} (it has {', '.join(parameters)}); "
                "key= names the parameter carrying the idempotency key, payload= the ones "
                "making up the request"
            )
    if isinstance(policy.payload, tuple) and policy.key in policy.payload:
        raise ValueError(
            f"payload= of {name}() names the key parameter {policy.key!r}: the payload is what "
            "must match for calls with one key, so leave the key out"
        )


def idempotent(
    policy: IdempotencyPolicy | None = None, /, **options: Unpack[IdempotencyOptions]
) -> Decorator:
    """Execute the first call with an idempotency key; give every later call its stored outcome.

    The first call claims the key (one round trip on Redis), runs, and stores its outcome
    (one round trip); a later call with the key gets the stored value back in one round trip,
    without running the function. A call while the first still runs raises
    :class:`~resilient.exceptions.IdempotencyInProgressError`, or waits for its outcome with
    ``on_in_progress="wait"``; a key used again with a different payload raises
    :class:`~resilient.exceptions.IdempotencyConflictError`. Works on sync and async
    functions and methods; on Redis, across every process of the fleet.

    Raises:
        TypeError: At decoration time, for an unknown keyword, a ``key=`` that is neither a
            parameter name nor a callable, or a generator function.
        ValueError: At decoration time, for a ``key=`` or ``payload=`` naming no parameter,
            or a ``ttl`` that is not positive.

    Example:
        >>> from resilient import idempotent
        >>> runs = []
        >>> @idempotent(key="request_id")
        ... def create_order(request_id: str, cents: int) -> dict[str, object]:
        ...     runs.append(request_id)
        ...     return {"order": len(runs), "cents": cents}
        >>> create_order("req-1", 500)
        {'order': 1, 'cents': 500}
        >>> create_order("req-1", 500)
        {'order': 1, 'cents': 500}
        >>> runs
        ['req-1']
    """
    resolved = resolve_policy(
        "idempotent", IdempotencyPolicy, policy, options, "@idempotent(key='request_id')"
    )
    return Decorator(_IdempotentLayer(resolved), "@idempotent")
