"""Keep `resilient`'s shared state in Redis: one server, Sentinel, or a Cluster.

See :class:`RedisBackend`, and the Backends page of the documentation for timeouts, retries,
the commands each primitive sends, and what Redis does not promise.
"""

# Rules of this module:
# - Nothing connects at import or construction: the clients this module builds are made on
#   first use, under a lock (sync) or per event loop (asyncio).
# - Each primitive is one command on standalone and Sentinel: a Lua script from `_lua`, run
#   by SHA and loaded again after SCRIPT FLUSH. On Cluster, a script may touch one slot only:
#   a put with indexes and a purge add commands of their own (docs/backends.md lists them).
# - Every command is safe to send twice (claims and releases check the token, purge removes a
#   member from its index before deleting the value), because redis-py re-sends a command once
#   after a connection error; only the counts delete and purge return may then fall short.
#   A lock's or a slot's release re-sent after its first run released finds its own receipt
#   and reports released, not a lease lost (_lua.UNLOCK, _lua.SLOTS).
# - The reads of operators' tools (`scan`, `peek`: resilient.typing.Inspector) are the
#   exceptions: a scan walks the keyspace in bounded steps (SCAN with COUNT, on every primary
#   of a Cluster; never KEYS), and a peek pipelines plain reads, which change nothing.
# - redis-py's errors propagate unchanged: the capability above decides whether to fail open.
# - A stored value that fails to decode is absent, claim included, and is reported as one
#   StoredValueRejected event; it never raises into user code.
# - Each primitive is written once, as a generator of I/O steps (`_Steps`) given the client;
#   `run_sync` performs them on the sync client and `run_async` awaits them on the asyncio
#   one (the drivers in _drive.py, the library's one sync/async pair).
# - asyncio clients belong to the event loop that first used their connections. When the
#   backend built its clients, each running loop gets its own, closed when that loop shuts
#   down its async generators (asyncio.run does) or by `aclose()`.
# - Waiting uses real time (time.monotonic): it bounds real socket reads, which a fake clock
#   cannot shorten. Events carry the configured clock's time, as every event does.
from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol, TypeAlias, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from .._config import DEFAULTS
from .._core.ratelimit import ADMITTED
from .._drive import Join, emit, run_async, run_sync
from .._signal import Signal
from ..events import StoredValueRejected
from ..exceptions import CodecError
from ..typing import Subscription
from . import _lua
from ._pubsub import Hub
from ._types import MISS, NOTHING, Claim, Fetched, Held, Locked, Peeked, Throttled, Versioned
from .codec import Codec

__all__ = ["RedisBackend"]

SyncClient: TypeAlias = "redis.Redis | redis.cluster.RedisCluster"
AsyncClient: TypeAlias = "redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"
_SyncOpened: TypeAlias = tuple[SyncClient, Callable[[], None]]
_AsyncOpened: TypeAlias = tuple[AsyncClient, Callable[[], Awaitable[None]]]
_Arg: TypeAlias = str | bytes | int
_T = TypeVar("_T")
# A primitive written once: a generator that yields steps, callables of no arguments that do
# one I/O call on the client it was given. On a sync client a step returns the reply; on an
# asyncio client it returns an awaitable of it. The drivers of _drive.py (`run_sync`,
# `run_async`) perform the steps and send back each reply, or throw its exception in (so
# `except` and `finally` work as written). A wait on the shared pub/sub connection yields a
# `Join` instead, which the drivers perform by blocking the thread or awaiting in the task.
_Steps: TypeAlias = Generator[Callable[[], Any] | Join, Any, _T]

_CLAIM: Final = ":claim"
_RELEASED: Final = ":released"
_PURGE_BATCH: Final = 500
_FOREVER: Final = 1e9  # seconds: any `below` this long claims every stored value
_CLAIMED: Final = Fetched(None, None, claimed=True)
_REJECTED: Final = Fetched(None, None, claimed=False, rejected=True)
_REJECTED_CLAIMED: Final = Fetched(None, None, claimed=True, rejected=True)
_SUBSCRIBED: Final = frozenset({"subscribe", "ssubscribe"})
_WOKEN: Final = frozenset({"message", "smessage"})
_LINGER: Final = 10.0  # seconds a channel stays subscribed on the shared connection after a wait

# Settings for the clients the backend builds; each may be overridden in **redis_options.
# The connection pool of a client built from a URL: a caller finding every connection in use
# waits for one (up to `timeout` seconds) instead of failing at once, which redis-py's default
# pool does past 100 connections; a burst of concurrent calls must queue, not fail.
_POOL_DEFAULTS: Final[Mapping[str, object]] = {"max_connections": 100, "timeout": 5.0}

_CLIENT_DEFAULTS: Final[Mapping[str, object]] = {
    # A dead or unreachable Redis must cost a bounded delay per call, since the cache fails
    # open; redis-py waits 5 s by default.
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
}
_RETRY_OPTIONS: Final = ("retry", "retry_on_error", "retry_on_timeout")
_DECODE_RESPONSES: Final = (
    "RedisBackend needs a client with decode_responses=False: it stores encoded bytes"
)


class _Script:
    """One Lua script: run by SHA, loaded again when the server does not know it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def steps(self, client: Any, keys: Sequence[str], args: Sequence[_Arg]) -> _Steps[Any]:
        """Run the script with *keys* and *args* on *client* (sync or asyncio); its reply."""
        try:
            return (yield partial(client.evalsha, self.sha, len(keys), *keys, *args))
        except NoScriptError:
            # SCRIPT FLUSH, a restart or a failover emptied the script cache: load it (SCRIPT
            # LOAD pins it, where EVAL's copy may be evicted on Redis 7.4+) and run it again
            yield partial(client.script_load, self.source)
            return (yield partial(client.evalsha, self.sha, len(keys), *keys, *args))

    def pipelined(
        self, client: Any, calls: Sequence[tuple[Sequence[str], Sequence[_Arg]]]
    ) -> _Steps[list[Any]]:
        """Run the script once per ``(keys, args)`` of *calls*, pipelined; each reply or error.

        One round trip (on Cluster, one per node, sent together), and one more for the calls
        that found the script unknown, once it is loaded.
        """
        pipeline = self._pipeline(client, calls)
        replies: list[Any] = yield partial(pipeline.execute, raise_on_error=False)
        unknown = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:
            yield partial(client.script_load, self.source)
            again = self._pipeline(client, [calls[index] for index in unknown])
            retried = yield partial(again.execute, raise_on_error=False)
            for index, reply in zip(unknown, retried, strict=True):
                replies[index] = reply
        return replies

    def _pipeline(self, client: Any, calls: Sequence[tuple[Sequence[str], Sequence[_Arg]]]) -> Any:
        pipeline = client.pipeline(transaction=False)
        for keys, args in calls:
            pipeline.evalsha(self.sha, len(keys), *keys, *args)
        return pipeline


_GET: Final = _Script(_lua.GET)
_PUT: Final = _Script(_lua.PUT)
_INDEX: Final = _Script(_lua.INDEX)
_RELEASE: Final = _Script(_lua.RELEASE)
_GET_VERSIONED: Final = _Script(_lua.GET_VERSIONED)
_SET_VERSIONED: Final = _Script(_lua.SET_VERSIONED)
_THROTTLE: Final = _Script(_lua.THROTTLE)
_LOCK: Final = _Script(_lua.LOCK)
_UNLOCK: Final = _Script(_lua.UNLOCK)
_EXTEND: Final = _Script(_lua.EXTEND)
_FENCING: Final = ":token"
_FENCE: Final = ":fence"
_SLOTS: Final = _Script(_lua.SLOTS)
_HOLDERS: Final = ":slots"
_UNLOCKED: Final = ":unlocked"  # the receipts of a lock's releases (see _lua.UNLOCK)
# the keys the backend keeps beside a key, by suffix: a scan lists each such key once, as the key
_BESIDE: Final = (_CLAIM, _FENCING, _FENCE, _HOLDERS, _UNLOCKED)
_SCAN_BATCH: Final = 500  # the COUNT of each SCAN: how much of the keyspace one command walks
_PEEK_BATCH: Final = 200  # keys read per pipeline by a peek
_PEEKED: Final = 5  # commands a peek sends per key
_GLOB: Final = re.compile(r"([*?\[\]\\])")


def _milliseconds(seconds: float, what: str) -> int:
    """Return *seconds* as whole milliseconds for PX, at least 1 (rounded down otherwise)."""
    if not 0 < seconds < math.inf:
        raise ValueError(f"{what}={seconds!r} must be a positive, finite number of seconds")
    return max(1, int(seconds * 1000))


def _claim_args(claim: Claim, *, absent: bool) -> tuple[str, int, int, str]:
    """Return the GET script's ARGV for *claim*; *absent* ignores the stored value."""
    below = int(min(claim.below, _FOREVER) * 1000) if claim.below > 0 else 0
    return (claim.token, _milliseconds(claim.ttl, "claim.ttl"), below, "1" if absent else "0")


def _holder(reply: list[Any]) -> str | None:
    """Return the claim holder's token a GET script's *reply* names, if it names one."""
    if len(reply) < 4 or reply[3] is None:
        return None
    token: bytes | str = reply[3]
    return token.decode() if isinstance(token, bytes) else token


def _seconds_left(pttl: int) -> float:
    """Return a PTTL reply for a stored value in seconds (infinite when it never expires)."""
    return pttl / 1000 if pttl >= 0 else math.inf


def _wait_for(pttl: int, timeout: float) -> float | None:
    """Return how long to wait for a claim with this PTTL, or None when no claim is held.

    A claim expires on its own when its holder dies, without a wake-up: waiting past its
    expiry would only wait for nothing.
    """
    if pttl == -2:
        return None
    return timeout if pttl < 0 else min(timeout, pttl / 1000)


def _members(reply: object) -> list[bytes]:
    """Return a ZRANGE reply (a list of members, without scores) as a typed list."""
    assert isinstance(reply, list)
    return reply


def _own_key(raw: bytes) -> str:
    """Return the key a scan found *raw* under: itself, or the key it is kept beside."""
    key = raw.decode("utf-8", "replace")
    for suffix in _BESIDE:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _primaries(client: Any) -> Any:
    """Return a Cluster client's primaries (awaitable for an asyncio client, which finds them)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):

        async def found() -> list[Any]:
            await client.initialize()
            return client.get_primaries()

        return found()
    return client.get_primaries()


def _held(token: object, pttl: object, fence: object) -> Held | None:
    """Return who holds a claim, from its key's GET and PTTL and its fencing token's GET."""
    if not isinstance(token, bytes) or not isinstance(pttl, int) or pttl == -2:
        return None
    fenced = int(fence) if isinstance(fence, bytes) and fence.isdigit() else None
    return Held(token.decode("utf-8", "replace"), _seconds_left(pttl), fenced)


def _slot_groups(keys: Sequence[str | bytes]) -> list[list[str | bytes]]:
    """Group *keys* by Cluster slot, for multi-key commands that must stay in one slot."""
    groups: dict[int, list[str | bytes]] = {}
    for key in keys:
        slot = key_slot(key if isinstance(key, bytes) else key.encode())
        groups.setdefault(slot, []).append(key)
    return list(groups.values())


def _client_options(redis_options: Mapping[str, Any], *, retries: int) -> dict[str, Any]:
    """Return the keyword arguments for a client the backend builds."""
    for name in _RETRY_OPTIONS:
        if name in redis_options:
            raise TypeError(
                f"{name}= is set by RedisBackend: pass retries=N to choose how many times a "
                "command is re-sent after a connection error, or build the redis-py clients "
                "yourself and pass them to RedisBackend(client, async_client)"
            )
    if redis_options.get("decode_responses"):
        raise TypeError(_DECODE_RESPONSES)
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries={retries!r} must be a whole number >= 0, e.g. retries=1")
    return {**_CLIENT_DEFAULTS, **redis_options}


def _sync_retry(retries: int) -> redis.retry.Retry:
    # Re-send at once after a connection error only: a stale pooled connection (restart,
    # failover, idle close) works again on a fresh one, and every command is safe to repeat.
    # A timeout is not retried: the server is slow or unreachable, and waiting twice would
    # double what a call pays before the cache fails open.
    return redis.retry.Retry(NoBackoff(), retries, (RedisConnectionError,))


def _async_retry(retries: int) -> redis.asyncio.retry.Retry:
    return redis.asyncio.retry.Retry(NoBackoff(), retries, (RedisConnectionError,))


def _sync_node(host: str, port: int) -> redis.cluster.ClusterNode:
    return redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]  # unannotated


def _host_port(node: object) -> tuple[str, int]:
    """Return ``(host, port)`` of a startup node given as a tuple, ``"host:port"`` or a node."""
    if isinstance(node, str):
        host, _, port = node.rpartition(":")
        return host, int(port)
    if isinstance(node, tuple) and len(node) == 2:
        return str(node[0]), int(node[1])
    if hasattr(node, "host") and hasattr(node, "port"):
        return str(node.host), int(node.port)
    raise TypeError(
        f"startup node {node!r} is not (host, port), 'host:port' or a redis ClusterNode"
    )


def _check_clients(client: object, async_client: object) -> bool:
    """Raise TypeError unless the clients fit; return whether they talk to a Cluster."""
    if client is None and async_client is None:
        raise TypeError(
            "RedisBackend needs a redis-py client, an asyncio one, or both; or build one with "
            "RedisBackend.from_url(url), .cluster(...) or .sentinel(...)"
        )
    if client is not None and not isinstance(client, redis.Redis | redis.cluster.RedisCluster):
        hint = (
            ": pass asyncio clients as async_client="
            if isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster)
            else ""
        )
        raise TypeError(f"client={client!r} is not a redis.Redis or RedisCluster{hint}")
    if async_client is not None and not isinstance(
        async_client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
    ):
        raise TypeError(
            f"async_client={async_client!r} is not a redis.asyncio.Redis or RedisCluster"
        )
    for given in (client, async_client):
        if given is not None and given.get_encoder().decode_responses:
            raise TypeError(_DECODE_RESPONSES)
    cluster = {
        isinstance(given, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)
        for given in (client, async_client)
        if given is not None
    }
    if len(cluster) > 1:
        raise TypeError("client and async_client must both talk to a Cluster, or neither")
    return cluster.pop()


class _Held:
    """An asyncio client the backend built for one loop, and the generator that closes it."""

    __slots__ = ("client", "closer")

    def __init__(self, client: AsyncClient, closer: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.closer = closer


class _LoopClients:
    """The asyncio clients a backend built: one per running event loop, made on first use.

    Each client is closed inside its own loop when the loop shuts down its async generators
    (``asyncio.run`` and most runners do), through a generator parked at its ``yield``; that
    also forgets the loop. A plain dict, not a WeakKeyDictionary: a connected client refers to
    its loop, so a weak key would never die anyway; loops closed without that shutdown are
    dropped when the next loop's client is built.
    """

    __slots__ = ("_factory", "_held", "_lock")

    def __init__(self, factory: Callable[[], _AsyncOpened]) -> None:
        self._factory = factory
        self._held: dict[asyncio.AbstractEventLoop, _Held] = {}
        self._lock = threading.Lock()

    async def client(self) -> AsyncClient:
        """Return the running loop's client, building it on the loop's first call."""
        loop = asyncio.get_running_loop()
        held = self._held.get(loop)
        if held is None:
            client, close = self._factory()
            held = _Held(client, self._closer(loop, client, close))
            with self._lock:
                # a loop closed without shutting down its generators left its client behind:
                # it cannot be closed any more, only forgotten
                for closed in [each for each in self._held if each.is_closed()]:
                    del self._held[closed]
                self._held[loop] = held
            await anext(held.closer)  # park it at its yield; the loop now tracks it
        return held.client

    async def aclose(self) -> None:
        """Close the running loop's client, if one was built; the next call builds another."""
        held = self._held.get(asyncio.get_running_loop())
        if held is not None:
            await held.closer.aclose()

    async def _closer(
        self,
        loop: asyncio.AbstractEventLoop,
        client: AsyncClient,
        close: Callable[[], Awaitable[None]],
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                held = self._held.get(loop)
                if held is not None and held.client is client:
                    del self._held[loop]
            await close()


class RedisBackend:
    """Keep state in Redis, shared by every process: standalone, Sentinel or Cluster.

    One object serves sync and asyncio code (:class:`resilient.typing.Backend` and
    :class:`resilient.typing.AsyncBackend`). Build it with :meth:`from_url`, :meth:`cluster` or
    :meth:`sentinel`, which make their own redis-py clients on first use (timeouts of 1 s,
    one re-send after a connection error), or from clients you made yourself. Nothing
    connects until the first call.

    Values are encoded by *codec* (data-only by default; see :class:`resilient.backends.Codec`)
    with the full key, so a value copied to another key does not decode. A stored value that
    fails to decode counts as absent and is reported as a
    :class:`resilient.events.StoredValueRejected` event. Errors from redis-py
    (``redis.exceptions.ConnectionError``, ``TimeoutError``, ...) propagate unchanged.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` for the sync methods, or
            ``None`` if only asyncio code uses the backend.
        async_client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` for
            the ``a``-methods, or ``None`` if only sync code uses it. An asyncio client is
            bound to the event loop that first uses it: pass one only if a single loop ever
            runs, or let :meth:`from_url` build one per loop.
        codec: Encodes and decodes values; default ``Codec()``.
        name: The backend's name in events.

    Raises:
        TypeError: If both clients are ``None``, a client is of the wrong kind, one talks to
            a Cluster and the other not, or a client decodes responses.

    Calling a sync method without *client* (or an ``a``-method without *async_client*)
    raises :class:`TypeError`. The backend never closes clients you pass in.

    Example:
        >>> import redis
        >>> from resilient.backends.redis import RedisBackend
        >>> backend = RedisBackend(redis.Redis(host="localhost", socket_timeout=1.0))
        >>> backend
        RedisBackend(name='redis', cluster=False)
    """

    def __init__(
        self,
        client: SyncClient | None = None,
        async_client: AsyncClient | None = None,
        *,
        codec: Codec | None = None,
        name: str = "redis",
    ) -> None:
        cluster = _check_clients(client, async_client)
        self._setup(client, async_client, codec=codec, name=name, cluster=cluster)

    def _setup(
        self,
        client: SyncClient | None,
        async_client: AsyncClient | None,
        *,
        codec: Codec | None,
        name: str,
        cluster: bool,
    ) -> None:
        self.name = name
        self._codec = Codec() if codec is None else codec
        self._cluster = cluster
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        self._client = client
        self._async_client = async_client
        self._open_sync: Callable[[], _SyncOpened] | None = None
        self._close_sync: Callable[[], None] | None = None
        self._loops: _LoopClients | None = None
        self._lock = threading.Lock()
        self._hub = Hub(lambda: self._sync().pubsub(), name)

    @classmethod
    def _built(
        cls,
        open_sync: Callable[[], _SyncOpened],
        open_async: Callable[[], _AsyncOpened],
        *,
        codec: Codec | None,
        name: str,
        cluster: bool,
    ) -> RedisBackend:
        backend = cls.__new__(cls)
        backend._setup(None, None, codec=codec, name=name, cluster=cluster)
        backend._open_sync = open_sync
        backend._loops = _LoopClients(open_async)
        return backend

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        codec: Codec | None = None,
        name: str = "redis",
        retries: int = 1,
        **redis_options: Any,
    ) -> RedisBackend:
        """Build a backend for one Redis server (``redis://``, ``rediss://`` or ``unix://``).

        The backend makes a ``redis.Redis`` for sync calls and a ``redis.asyncio.Redis`` per
        running event loop, each on first use, and closes them in :meth:`close` (sync) and
        when their loop shuts down or in :meth:`aclose` (asyncio).

        Args:
            url: Where the server is, as redis-py's ``from_url`` reads it, e.g.
                ``"redis://:password@localhost:6379/0"``.
            codec: Encodes and decodes values; default ``Codec()``.
            name: The backend's name in events.
            retries: How many times redis-py re-sends a command at once after a connection
                error (not after a timeout). Every primitive is safe to send twice.
            **redis_options: Any other redis-py client option. The backend's defaults are
                ``socket_timeout=1.0`` and ``socket_connect_timeout=1.0``. Connections come
                from a blocking pool of ``max_connections=100``: past that, a call waits up
                to ``timeout=5.0`` seconds for a free one rather than failing at once.

        Raises:
            TypeError: If *redis_options* sets ``retry``, ``retry_on_error``,
                ``retry_on_timeout`` (use *retries*) or ``decode_responses=True``.
            ValueError: If *retries* is negative.
        """
        options = _client_options(redis_options, retries=retries)

        pooled = {**_POOL_DEFAULTS, **options}

        def open_sync() -> _SyncOpened:
            pool = redis.BlockingConnectionPool.from_url(url, retry=_sync_retry(retries), **pooled)
            client = redis.Redis.from_pool(pool)
            return client, client.close

        def open_async() -> _AsyncOpened:
            retry = _async_retry(retries)
            pool = redis.asyncio.BlockingConnectionPool.from_url(url, retry=retry, **pooled)
            client = redis.asyncio.Redis.from_pool(pool)
            return client, client.aclose

        return cls._built(open_sync, open_async, codec=codec, name=name, cluster=False)

    @classmethod
    def cluster(
        cls,
        url_or_startup_nodes: str | Sequence[object],
        *,
        codec: Codec | None = None,
        name: str = "redis",
        retries: int = 1,
        **redis_options: Any,
    ) -> RedisBackend:
        """Build a backend for a Redis Cluster (Redis 7 or later: wake-ups use sharded pub/sub).

        Keys must carry a hash tag (every key `resilient` makes does), so that a key and its
        claim share a slot. The cluster client discovers every node from any one of them.

        Args:
            url_or_startup_nodes: The ``redis://`` URL of any node, or startup nodes as
                ``(host, port)`` tuples, ``"host:port"`` strings or redis-py ``ClusterNode``
                objects.
            codec: Encodes and decodes values; default ``Codec()``.
            name: The backend's name in events.
            retries: How many times the cluster client retries a command after a connection
                error. redis-py's cluster client also retries timeouts and cluster-down
                errors, refreshing its map of slots in between.
            **redis_options: Any other ``RedisCluster`` option; the defaults are those of
                :meth:`from_url`.

        Raises:
            TypeError: As :meth:`from_url`.
            ValueError: If *retries* is negative.
        """
        options = _client_options(redis_options, retries=retries)
        if isinstance(url_or_startup_nodes, str):
            url = url_or_startup_nodes

            def open_sync() -> _SyncOpened:
                retry = _sync_retry(retries)
                client = redis.cluster.RedisCluster.from_url(url, retry=retry, **options)
                return client, client.close

            def open_async() -> _AsyncOpened:
                retry = _async_retry(retries)
                client = redis.asyncio.cluster.RedisCluster.from_url(url, retry=retry, **options)
                return client, client.aclose

        else:
            nodes = [_host_port(node) for node in url_or_startup_nodes]
            if not nodes:
                raise ValueError("a Cluster needs at least one startup node")

            def open_sync() -> _SyncOpened:
                client = redis.cluster.RedisCluster(
                    startup_nodes=[_sync_node(host, port) for host, port in nodes],
                    retry=_sync_retry(retries),
                    **options,
                )
                return client, client.close

            def open_async() -> _AsyncOpened:
                startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
                client = redis.asyncio.cluster.RedisCluster(
                    startup_nodes=startup, retry=_async_retry(retries), **options
                )
                return client, client.aclose

        return cls._built(open_sync, open_async, codec=codec, name=name, cluster=True)

    @classmethod
    def sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        codec: Codec | None = None,
        name: str = "redis",
        retries: int = 1,
        sentinel_options: Mapping[str, Any] | None = None,
        **redis_options: Any,
    ) -> RedisBackend:
        """Build a backend for the master that Redis Sentinel names *service_name*.

        The clients ask the Sentinels where the master is when they connect, and again after
        a failover (a connection error, or the old master answering as a replica, makes
        redis-py reconnect; the one re-send then reaches the new master).

        Args:
            sentinels: ``(host, port)`` of each Sentinel.
            service_name: The name the Sentinels know the master by.
            codec: Encodes and decodes values; default ``Codec()``.
            name: The backend's name in events.
            retries: As :meth:`from_url`.
            sentinel_options: Options for the connections to the Sentinels themselves (e.g.
                their ``password``); by default they take the ``socket_*`` options below.
            **redis_options: Options for the connections to the master; the defaults are
                those of :meth:`from_url`.

        Raises:
            TypeError: As :meth:`from_url`.
            ValueError: If *retries* is negative.
        """
        options = _client_options(redis_options, retries=retries)
        addresses = [(str(host), int(port)) for host, port in sentinels]
        watchers = None if sentinel_options is None else dict(sentinel_options)

        def open_sync() -> _SyncOpened:
            sentinel = redis.sentinel.Sentinel(
                addresses, sentinel_kwargs=watchers, retry=_sync_retry(retries), **options
            )
            client: redis.Redis = sentinel.master_for(service_name)

            def close() -> None:
                client.close()
                for watcher in sentinel.sentinels:
                    watcher.close()

            return client, close

        def open_async() -> _AsyncOpened:
            sentinel = redis.asyncio.sentinel.Sentinel(
                addresses, sentinel_kwargs=watchers, retry=_async_retry(retries), **options
            )
            client = sentinel.master_for(service_name)

            async def close() -> None:
                await client.aclose()
                for watcher in sentinel.sentinels:
                    await watcher.aclose()

            return client, close

        return cls._built(open_sync, open_async, codec=codec, name=name, cluster=False)

    def __repr__(self) -> str:
        return f"RedisBackend(name={self.name!r}, cluster={self._cluster!r})"

    def close(self) -> None:
        """Close the sync client the backend built, if any; a later call builds a new one.

        Also ends every subscription (see :meth:`subscribe`) and stops its thread. Clients
        passed to the constructor are left open. asyncio clients are closed by
        :meth:`aclose` or when their event loop shuts down.
        """
        self._hub.close()
        with self._lock:
            close, self._close_sync = self._close_sync, None
            if close is not None:
                self._client = None
        if close is not None:
            close()

    async def aclose(self) -> None:
        """Close the running loop's asyncio client and the sync client, those the backend built."""
        if self._loops is not None:
            await self._loops.aclose()
        self.close()

    # primitives: each is written once, as steps (see _Steps), and run by a sync and an async
    # method on the matching client ---------------------------------------------------------

    def get(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key*; with *claim*, also take its claim if free and due (one command).

        See :meth:`resilient.typing.Backend.get`.
        """
        return run_sync(self._get(self._sync(), key, claim))

    async def aget(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key* (see :meth:`get`)."""
        return await run_async(self._get(await self._async(), key, claim))

    def _get(self, client: Any, key: str, claim: Claim | None) -> _Steps[Fetched]:
        if claim is None:
            return self._read(key, (yield from _GET.steps(client, (key,), ())))
        keys = (key, key + _CLAIM)
        reply = yield from _GET.steps(client, keys, _claim_args(claim, absent=False))
        fetched = self._read_claiming(key, reply)
        if fetched is None:  # the stored value was rejected: claim as if there were none
            reply = yield from _GET.steps(client, keys, _claim_args(claim, absent=True))
            return (
                _REJECTED_CLAIMED
                if reply[2]
                else Fetched(None, None, claimed=False, holder=_holder(reply), rejected=True)
            )
        return fetched

    def put(
        self,
        key: str,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str] = (),
        token: str | None = None,
        absent: bool = False,
    ) -> bool:
        """Store *value* for *ttl* seconds, index it, and release *token*'s claim (one command).

        See :meth:`resilient.typing.Backend.put`.
        """
        steps = self._put(
            self._sync(), key, value, ttl=ttl, indexes=indexes, token=token, absent=absent
        )
        return run_sync(steps)

    async def aput(
        self,
        key: str,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str] = (),
        token: str | None = None,
        absent: bool = False,
    ) -> bool:
        """Store *value* (see :meth:`put`)."""
        client = await self._async()
        steps = self._put(client, key, value, ttl=ttl, indexes=indexes, token=token, absent=absent)
        return await run_async(steps)

    def _put(
        self,
        client: Any,
        key: str,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str],
        token: str | None,
        absent: bool,
    ) -> _Steps[bool]:
        if value is None:
            raise ValueError("a backend stores no None values: None means absent")
        milliseconds = _milliseconds(ttl, "ttl")
        args = (
            self._codec.encode(key, value),
            milliseconds,
            token or "",
            self._publish,
            key + _RELEASED,
            "1" if absent else "0",
        )
        if not self._cluster:
            return bool((yield from _PUT.steps(client, (key, key + _CLAIM, *indexes), args)))
        # the index keys live in other slots: record the key in each before writing the value,
        # so that a crash in between leaves a harmless index entry, never an unindexed value
        for index in indexes:
            yield from _INDEX.steps(client, (index,), (key, milliseconds))
        return bool((yield from _PUT.steps(client, (key, key + _CLAIM), args)))

    def release(self, key: str, token: str) -> None:
        """Release *token*'s claim on *key* and wake its waiters, if it still holds it."""
        run_sync(self._release(self._sync(), key, token))

    async def arelease(self, key: str, token: str) -> None:
        """Release a claim (see :meth:`release`)."""
        await run_async(self._release(await self._async(), key, token))

    def _release(self, client: Any, key: str, token: str) -> _Steps[None]:
        args = (token, self._publish, key + _RELEASED)
        yield from _RELEASE.steps(client, (key + _CLAIM,), args)

    def wait_released(self, key: str, timeout: float) -> None:
        """Block until the claim on *key* is released or expires, or *timeout* seconds pass.

        Woken by the release's message on the key's channel, not by polling.
        """
        run_sync(self._wait_released(self._sync(), key, timeout))

    async def await_released(self, key: str, timeout: float) -> None:  # noqa: ASYNC109 - protocol
        """Wait until the claim on *key* is released or expires (see :meth:`wait_released`)."""
        await run_async(self._wait_released(await self._async(), key, timeout))

    def _wait_released(self, client: Any, key: str, timeout: float) -> _Steps[None]:
        claim = key + _CLAIM

        def held() -> _Steps[float | None]:
            return _wait_for(int((yield partial(client.pttl, claim))), timeout)

        yield from self._woken(client, key + _RELEASED, held)

    def _woken(
        self, client: Any, channel: str, held: Callable[[], _Steps[float | None]]
    ) -> _Steps[None]:
        """Wait for a release on *channel* while *held* says how long to (None: not at all)."""
        listening = self._listening(client, channel)
        try:
            live = listening.live_at_once()  # then every release from now on is heard
            wait = yield from held()
            if wait is None or wait <= 0:
                return
            deadline = time.monotonic() + wait
            if not live:
                # a release published before the subscription took effect would go unheard:
                # once it has, look again whether it is still held
                if not (yield from listening.armed(deadline)):
                    return
                wait = yield from held()
                if wait is None:
                    return
                deadline = min(deadline, time.monotonic() + wait)
            yield from listening.woken(deadline)
        finally:
            yield from listening.close()

    def _listening(self, client: Any, channel: str) -> _Listening:
        """Listen on *channel*: on the shared connection where it can, else on one of its own."""
        if self._cluster or (self._client is None and self._open_sync is None):
            # Cluster wakes waiters with SPUBLISH, which only sharded subscriptions hear; an
            # asyncio-only backend has no sync client for the shared connection's thread
            return _Private(client, cluster=self._cluster, channel=channel)
        return _Shared(self._hub, client, channel)

    def delete(self, keys: Sequence[str]) -> int:
        """Delete the values at *keys*; return how many there were.

        One command, or on Cluster one ``DEL`` per slot, pipelined.
        """
        return run_sync(self._delete(self._sync(), keys))

    async def adelete(self, keys: Sequence[str]) -> int:
        """Delete values (see :meth:`delete`)."""
        return await run_async(self._delete(await self._async(), keys))

    def _delete(self, client: Any, keys: Sequence[str]) -> _Steps[int]:
        if not keys:
            return 0
        if not self._cluster:
            return int((yield partial(client.delete, *keys)))
        pipeline = client.pipeline()
        for group in _slot_groups(keys):
            pipeline.execute_command("DEL", *group)
        return sum((yield pipeline.execute))

    def purge(self, indexes: Sequence[str]) -> int:
        """Delete every value recorded under *indexes*; return how many there were.

        Reads each index in batches of 500 (``ZRANGE``) and removes each batch from the index
        and deletes its values (``MULTI ZREM DEL EXEC``; on Cluster ``ZREM`` and then one
        ``DEL`` per slot, pipelined). Never ``KEYS`` or ``SCAN``.
        """
        return run_sync(self._purge(self._sync(), indexes))

    async def apurge(self, indexes: Sequence[str]) -> int:
        """Delete every value under *indexes* (see :meth:`purge`)."""
        return await run_async(self._purge(await self._async(), indexes))

    def _purge(self, client: Any, indexes: Sequence[str]) -> _Steps[int]:
        deleted = 0
        for index in indexes:
            while True:
                members = _members((yield partial(client.zrange, index, 0, _PURGE_BATCH - 1)))
                if not members:
                    break
                if self._cluster:
                    yield partial(client.zrem, index, *members)
                    pipeline = client.pipeline()
                    for group in _slot_groups(members):
                        pipeline.execute_command("DEL", *group)
                    deleted += sum((yield pipeline.execute))
                else:
                    pipeline = client.pipeline(transaction=True)
                    pipeline.zrem(index, *members)
                    pipeline.delete(*members)
                    deleted += (yield pipeline.execute)[1]
                if len(members) < _PURGE_BATCH:
                    break
        return deleted

    def get_versioned(self, key: str) -> Versioned:
        """Read the versioned value at *key* and the server's time (one command).

        See :meth:`resilient.typing.Backend.get_versioned`.
        """
        return run_sync(self._get_versioned(self._sync(), key))

    async def aget_versioned(self, key: str) -> Versioned:
        """Read a versioned value (see :meth:`get_versioned`)."""
        return await run_async(self._get_versioned(await self._async(), key))

    def _get_versioned(self, client: Any, key: str) -> _Steps[Versioned]:
        version, data, seconds, micros = yield from _GET_VERSIONED.steps(client, (key,), ())
        value = None if data is None else self._decode(key, data)
        return Versioned(value, int(version or 0), int(seconds) + int(micros) / 1e6)

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Store *value* as the next version if *version* is current (one command).

        See :meth:`resilient.typing.Backend.set_versioned`.
        """
        client = self._sync()
        return run_sync(
            self._set_versioned(client, key, value, version=version, ttl=ttl, writer=writer)
        )

    async def aset_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Compare and set a versioned value (see :meth:`set_versioned`)."""
        client = await self._async()
        return await run_async(
            self._set_versioned(client, key, value, version=version, ttl=ttl, writer=writer)
        )

    def _set_versioned(
        self, client: Any, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> _Steps[Versioned]:
        if value is None:
            raise ValueError("a backend stores no None values: None means absent")
        args = (version, self._codec.encode(key, value), _milliseconds(ttl, "ttl"), writer)
        stored, now, data, seconds, micros = yield from _SET_VERSIONED.steps(client, (key,), args)
        time_now = int(seconds) + int(micros) / 1e6
        if stored:
            return Versioned(value, int(now), time_now, stored=True)
        current = None if data is None else self._decode(key, data)
        return Versioned(current, int(now), time_now)

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Throttled:
        """Decide one call of the rate limit *key* on the server's clock (one command).

        See :meth:`resilient.typing.Backend.throttle`.
        """
        return run_sync(self._throttle(self._sync(), key, interval, burst, max_wait))

    async def athrottle(
        self, key: str, interval: float, burst: int, max_wait: float = 0.0
    ) -> Throttled:
        """Decide one call of a rate limit (see :meth:`throttle`)."""
        return await run_async(self._throttle(await self._async(), key, interval, burst, max_wait))

    def _throttle(
        self, client: Any, key: str, interval: float, burst: int, max_wait: float
    ) -> _Steps[Throttled]:
        args = (repr(interval * 1e6), repr(min(max_wait, _FOREVER) * 1e6), burst)
        admitted, wait = yield from _THROTTLE.steps(client, (key,), args)
        if admitted and not wait:
            return ADMITTED
        return Throttled(admitted=bool(admitted), wait=int(wait) / 1e6)

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take the lock *key* for *owner* with a fencing token (one command).

        See :meth:`resilient.typing.Backend.lock`.
        """
        return run_sync(self._lock_steps(self._sync(), key, owner, ttl))

    async def alock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take a lock (see :meth:`lock`)."""
        return await run_async(self._lock_steps(await self._async(), key, owner, ttl))

    def _lock_steps(self, client: Any, key: str, owner: str, ttl: float) -> _Steps[Locked]:
        keys = (key + _CLAIM, key + _FENCING, key + _FENCE)
        args = (owner, _milliseconds(ttl, "ttl"))
        token, pttl, *holder = yield from _LOCK.steps(client, keys, args)
        ttl = max(0, int(pttl)) / 1000
        if token is not None:
            return Locked(int(token), ttl)
        return Locked(None, ttl, int(holder[0]) or None)  # 0: a claim that is not a lock's

    def unlock(self, key: str, owner: str) -> bool:
        """Release *owner*'s lock on *key* and wake its waiters (one command).

        Also True when redis-py re-sent this release after a connection error and its first
        run released the lock: the script finds this release's receipt, kept 10 s.
        """
        return run_sync(self._unlock_steps(self._sync(), key, owner))

    async def aunlock(self, key: str, owner: str) -> bool:
        """Release a lock (see :meth:`unlock`)."""
        return await run_async(self._unlock_steps(await self._async(), key, owner))

    def _unlock_steps(self, client: Any, key: str, owner: str) -> _Steps[bool]:
        # a receipt of its own: this release, re-sent after its first run released, reports
        # released; any other release of the lock does not
        args = (owner, self._publish, key + _RELEASED, secrets.token_hex(8))
        keys = (key + _CLAIM, key + _FENCING, key + _UNLOCKED)
        return bool((yield from _UNLOCK.steps(client, keys, args)))

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s lock on *key* last *ttl* seconds from now (one command)."""
        return run_sync(self._extend_steps(self._sync(), key, owner, ttl))

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a lock (see :meth:`extend`)."""
        return await run_async(self._extend_steps(await self._async(), key, owner, ttl))

    def _extend_steps(self, client: Any, key: str, owner: str, ttl: float) -> _Steps[bool]:
        args = (owner, _milliseconds(ttl, "ttl"))
        keys = (key + _CLAIM, key + _FENCING)
        return bool((yield from _EXTEND.steps(client, keys, args)))

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        """Extend each ``(key, owner, ttl)`` lock of *leases*: one round trip.

        See :class:`resilient.typing.Extender`. The EXTEND commands of :meth:`extend`,
        pipelined (not a transaction): on Cluster, one pipeline per node, sent together. A
        command that fails alone is its lease's outcome (those that find the script unknown,
        after a SCRIPT FLUSH, are sent again once it is loaded); a connection error raises.
        """
        return run_sync(self._extend_many_steps(self._sync(), leases))

    async def aextend_many(
        self, leases: Sequence[tuple[str, str, float]]
    ) -> list[bool | Exception]:
        """Extend locks (see :meth:`extend_many`)."""
        return await run_async(self._extend_many_steps(await self._async(), leases))

    def _extend_many_steps(
        self, client: Any, leases: Sequence[tuple[str, str, float]]
    ) -> _Steps[list[bool | Exception]]:
        if not leases:
            return []
        calls = [
            ((key + _CLAIM, key + _FENCING), (owner, _milliseconds(ttl, "ttl")))
            for key, owner, ttl in leases
        ]
        replies = yield from _EXTEND.pipelined(client, calls)
        return [reply if isinstance(reply, Exception) else bool(reply) for reply in replies]

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take one of *limit* slots of *key* for *owner*, a lease of *ttl* s (one command).

        See :meth:`resilient.typing.Backend.acquire_slot`. The holders are a sorted set at
        ``key + ":slots"``, scored by when each lease runs out on the server's clock.
        """
        steps = self._slot_steps(self._sync(), "acquire", key, owner, limit=limit, ttl=ttl)
        return bool(run_sync(steps))

    async def aacquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take a slot (see :meth:`acquire_slot`)."""
        steps = self._slot_steps(await self._async(), "acquire", key, owner, limit=limit, ttl=ttl)
        return bool(await run_async(steps))

    def release_slot(self, key: str, owner: str) -> bool:
        """Give back *owner*'s slot of *key* and wake its waiters (one command).

        Also True when this release was re-sent and its first run gave the slot back (its
        receipt is kept 10 s, as for :meth:`unlock`).
        """
        return bool(run_sync(self._slot_steps(self._sync(), "release", key, owner)))

    async def arelease_slot(self, key: str, owner: str) -> bool:
        """Give back a slot (see :meth:`release_slot`)."""
        return bool(await run_async(self._slot_steps(await self._async(), "release", key, owner)))

    def extend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s slot of *key* last *ttl* seconds from now (one command)."""
        return bool(run_sync(self._slot_steps(self._sync(), "extend", key, owner, ttl=ttl)))

    async def aextend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a slot (see :meth:`extend_slot`)."""
        client = await self._async()
        return bool(await run_async(self._slot_steps(client, "extend", key, owner, ttl=ttl)))

    def wait_slot(self, key: str, limit: int, timeout: float) -> None:
        """Block until fewer than *limit* slots of *key* are held, or *timeout* seconds pass.

        Woken by a release's message on the key's channel, or when the first lease runs out;
        never by polling.
        """
        run_sync(self._wait_slot(self._sync(), key, limit, timeout))

    async def await_slot(self, key: str, limit: int, timeout: float) -> None:  # noqa: ASYNC109 - protocol
        """Wait until a slot of *key* may be free (see :meth:`wait_slot`)."""
        await run_async(self._wait_slot(await self._async(), key, limit, timeout))

    def _slot_steps(
        self, client: Any, operation: str, key: str, owner: str, *, limit: int = 0, ttl: float = 0.0
    ) -> _Steps[int]:
        """Run the SLOTS script's *operation* on the holders of *key*; its integer reply."""
        milliseconds = _milliseconds(ttl, "ttl") if operation in {"acquire", "extend"} else 0
        # a release's receipt of its own, as for unlock
        receipt = "~" + secrets.token_hex(8) if operation == "release" else ""
        args = (operation, owner, limit, milliseconds, self._publish, key + _RELEASED, receipt)
        return int((yield from _SLOTS.steps(client, (key + _HOLDERS,), args)))

    def _wait_slot(self, client: Any, key: str, limit: int, timeout: float) -> _Steps[None]:
        def full() -> _Steps[float | None]:
            first = yield from self._slot_steps(client, "full", key, "", limit=limit)
            return None if first < 0 else min(timeout, first / 1000)

        yield from self._woken(client, key + _RELEASED, full)

    def scan(self, prefix: str, limit: int) -> list[str]:
        """Return up to *limit* keys under *prefix* that hold something.

        See :class:`resilient.typing.Inspector`. ``SCAN`` with ``MATCH`` and ``COUNT 500``,
        one command per step, until the keyspace is walked or *limit* keys are found; on
        Cluster, on every primary in turn. A lock's claim, fencing token and counter are listed
        once, as the lock's key. Never ``KEYS``.
        """
        return run_sync(self._scan(self._sync(), prefix, limit))

    async def ascan(self, prefix: str, limit: int) -> list[str]:
        """Return keys under *prefix* (see :meth:`scan`)."""
        return await run_async(self._scan(await self._async(), prefix, limit))

    def _scan(self, client: Any, prefix: str, limit: int) -> _Steps[list[str]]:
        pattern = _GLOB.sub(r"\\\1", prefix) + "*"
        found: dict[str, None] = {}
        nodes = (yield partial(_primaries, client)) if self._cluster else [None]
        for node in nodes:
            options = {} if node is None else {"target_nodes": node}
            cursor: Any = 0
            while len(found) < limit:
                cursor, keys = yield partial(
                    client.scan, cursor, match=pattern, count=_SCAN_BATCH, **options
                )
                if isinstance(cursor, dict):  # a Cluster client's reply: each node's cursor
                    cursor = next(iter(cursor.values()))
                for raw in keys:
                    found[_own_key(raw)] = None
                if not int(cursor):
                    break
        return list(found)[: max(0, limit)]

    def peek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds, changing nothing.

        See :class:`resilient.typing.Inspector`. Five reads per key (``GET`` and ``PTTL`` of
        the key and of its claim, ``GET`` of a lock's fencing token), pipelined, 200 keys per
        round trip; not one atomic step, so a key that changes meanwhile may read half old.
        """
        return run_sync(self._peek(self._sync(), keys))

    async def apeek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds (see :meth:`peek`)."""
        return await run_async(self._peek(await self._async(), keys))

    def _peek(self, client: Any, keys: Sequence[str]) -> _Steps[list[Peeked]]:
        peeked: list[Peeked] = []
        for start in range(0, len(keys), _PEEK_BATCH):
            batch = keys[start : start + _PEEK_BATCH]
            pipeline = client.pipeline(transaction=False)
            for key in batch:
                pipeline.get(key)
                pipeline.pttl(key)
                pipeline.get(key + _CLAIM)
                pipeline.pttl(key + _CLAIM)
                pipeline.get(key + _FENCING)
            # a key of another type (a versioned hash) answers GET with an error: no value
            replies = yield partial(pipeline.execute, raise_on_error=False)
            for index, key in enumerate(batch):
                data, pttl, *claim = replies[index * _PEEKED : (index + 1) * _PEEKED]
                peeked.append(self._peeked(key, data, pttl, _held(*claim)))
        return peeked

    def _peeked(self, key: str, data: object, pttl: object, held: Held | None) -> Peeked:
        """Return what a peek read at *key*: its value's GET and PTTL, and its claim's holder."""
        if not isinstance(data, bytes):
            return NOTHING if held is None else Peeked(None, None, held)
        value = self._decode(key, data)
        if value is None:
            return Peeked(None, None, held, rejected=True)
        return Peeked(value, _seconds_left(pttl) if isinstance(pttl, int) else None, held)

    def publish(self, channel: str, message: str) -> None:
        """Send *message* to every subscriber of *channel*, in every process (one command).

        See :class:`resilient.typing.Broadcaster`. On Cluster the message reaches the
        subscribers of every node.
        """
        self._sync().publish(channel, message)

    async def apublish(self, channel: str, message: str) -> None:
        """Send *message* to every subscriber of *channel* (see :meth:`publish`)."""
        client = await self._async()
        await client.publish(channel, message)

    def subscribe(self, channel: str, listener: Callable[[str | None], object]) -> Subscription:
        """Call *listener* with every message published on *channel* from now on.

        One background thread per backend serves every subscription over one pub/sub
        connection of the sync client (so a backend built from an asyncio client alone
        cannot subscribe). It pings the server every second, and a connection that does not
        answer for 3 s counts as lost: the subscriptions stop being live and their listeners
        hear ``None``, then it connects again. See :class:`resilient.typing.Broadcaster`.
        """
        if self._client is None and self._open_sync is None:
            raise TypeError(
                f"{self!r} has no sync client, which its subscriptions' thread needs: pass "
                "client= too, or build the backend with RedisBackend.from_url(url)"
            )
        return self._hub.subscribe(channel, listener)

    # shared steps ----------------------------------------------------------------------------

    def _sync(self) -> SyncClient:
        client = self._client
        if client is not None:
            return client
        if self._open_sync is None:
            raise TypeError(
                f"{self!r} has no sync client: pass client= to RedisBackend, or use the "
                "asyncio methods (aget, aput, ...)"
            )
        with self._lock:
            if self._client is None:
                self._client, self._close_sync = self._open_sync()
            return self._client

    async def _async(self) -> AsyncClient:
        if self._async_client is not None:
            return self._async_client
        if self._loops is None:
            raise TypeError(
                f"{self!r} has no asyncio client: pass async_client= to RedisBackend, or use "
                "the sync methods (get, put, ...)"
            )
        return await self._loops.client()

    def _read(self, key: str, reply: list[Any]) -> Fetched:
        """Return what the reply of a GET script run without a claim means."""
        data, pttl, _ = reply
        if data is None:
            return MISS
        value = self._decode(key, data)
        return _REJECTED if value is None else Fetched(value, _seconds_left(pttl), claimed=False)

    def _read_claiming(self, key: str, reply: list[Any]) -> Fetched | None:
        """Return what the reply of a GET script run with a claim means.

        None means the stored value was rejected and the claim not taken: the claim must be
        asked for again as if no value were stored.
        """
        data, pttl, claimed = reply[:3]
        if data is not None:
            value = self._decode(key, data)
            if value is not None:
                return Fetched(value, _seconds_left(pttl), claimed == 1)
            if not claimed:
                return None
            return _REJECTED_CLAIMED
        if claimed:
            return _CLAIMED
        holder = _holder(reply)
        return MISS if holder is None else Fetched(None, None, claimed=False, holder=holder)

    def _decode(self, key: str, data: bytes) -> object | None:
        """Return the value stored as *data*, or None (reported) when the codec rejects it."""
        try:
            return self._codec.decode(key, data)
        except CodecError as error:
            if DEFAULTS.observers:
                event = StoredValueRejected(
                    policy=self.name, time=DEFAULTS.clock.monotonic(), reason=error.reason
                )
                emit(DEFAULTS, event)
            return None


class _Listening(Protocol):
    """A subscription to one channel, for one wait: steps to wait for it, and to drop it."""

    def live_at_once(self) -> bool:
        """Subscribe now if that costs no round trip; return whether every message is heard."""

    def armed(self, deadline: float) -> _Steps[bool]:
        """Wait until the subscription hears every message; False if *deadline* came first."""

    def woken(self, deadline: float) -> _Steps[None]:
        """Wait until a message arrives (or messages may have been missed), or *deadline*."""

    def close(self) -> _Steps[None]:
        """Drop the subscription."""


class _Shared:
    """A wait on the backend's one pub/sub connection (its Hub), which every wait shares.

    A wait subscribes only once it found the key held, unless the channel is subscribed
    there already; the channel lingers after the wait, so the next wait on the same lock or
    key is live at once, without a round trip. The Hub tells of a channel it newly
    subscribed (or may have missed messages on) with a message of None, which wakes the wait.
    """

    __slots__ = ("_channel", "_client", "_hub", "_signal", "_subscription")

    def __init__(self, hub: Hub, client: Any, channel: str) -> None:
        self._hub = hub
        self._client = client
        self._channel = channel
        self._signal = Signal()
        self._subscription: Subscription | None = None

    def _heard(self, message: str | None = None) -> None:
        self._signal.fire()  # a message, messages missed, or the subscription became live

    def _subscribed(self) -> Subscription:
        if self._subscription is None:
            self._subscription = self._hub.subscribe(
                self._channel, self._heard, linger=_LINGER, on_live=self._heard
            )
        return self._subscription

    def live_at_once(self) -> bool:
        return self._hub.is_confirmed(self._channel) and self._subscribed().live

    def armed(self, deadline: float) -> _Steps[bool]:
        subscription = self._subscribed()
        if not subscription.live:  # wake the thread to subscribe it now, not at its next look
            yield partial(self._client.publish, self._hub.bell, "")
        while True:
            # a fresh signal before looking: becoming live (or a message) after the look fires
            # it, and one before it shows in the look
            self._signal = Signal()
            if subscription.live:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            yield Join(self._signal, left)

    def woken(self, deadline: float) -> _Steps[None]:
        left = deadline - time.monotonic()
        if left > 0:
            yield Join(self._signal, left)

    def close(self) -> _Steps[None]:
        if self._subscription is not None:
            self._subscription.close()
        yield from ()


class _Private:
    """A wait on a pub/sub connection of its own (Cluster, or an asyncio-only backend)."""

    __slots__ = ("_channel", "_cluster", "_pubsub", "_read")

    def __init__(self, client: Any, *, cluster: bool, channel: str) -> None:
        self._pubsub = client.pubsub()
        self._cluster = cluster
        self._channel = channel
        self._read = self._pubsub.get_sharded_message if cluster else self._pubsub.get_message

    def live_at_once(self) -> bool:
        return False  # subscribing takes a round trip: only when armed, for a held key

    def armed(self, deadline: float) -> _Steps[bool]:
        subscribe = self._pubsub.ssubscribe if self._cluster else self._pubsub.subscribe
        yield partial(subscribe, self._channel)
        return (yield from self._listen(deadline, _SUBSCRIBED))

    def woken(self, deadline: float) -> _Steps[None]:
        yield from self._listen(deadline, _WOKEN)

    def close(self) -> _Steps[None]:
        yield getattr(self._pubsub, "aclose", self._pubsub.close)  # asyncio's close is aclose

    def _listen(self, deadline: float, kinds: frozenset[str]) -> _Steps[bool]:
        """Read messages until one of *kinds* arrives (True) or *deadline* passes (False)."""
        while (left := deadline - time.monotonic()) > 0:
            message = yield partial(self._read, timeout=left)
            if message is not None and message["type"] in kinds:
                return True
        return False
