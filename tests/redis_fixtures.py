"""Pytest fixtures that give tests real Redis processes and a fault proxy (DESIGN.md section 8).

Registered as a plugin by `tests/conftest.py`. Session-scoped processes start when the first test
asks for them, so a run that needs no Redis starts none. Every process and proxy is stopped in a
finalizer, whatever the test's outcome. When a server cannot be found or started, the test fails
(never skips) with a message that says why and how to fix it.

- `redis_server`: one server shared by the session; do not kill it (use `fresh_redis`).
- `redis_url`: the shared server's URL, emptied (FLUSHALL) before the test.
- `fresh_redis`: a server of the test's own, free to `kill()` and `restart()`.
- `fault_proxy`: `fault_proxy(port)` starts a `FaultProxy` in front of 127.0.0.1:port.
- `proxy`: a started `FaultProxy` in front of the shared server, emptied as `redis_url`.
- `redis_cluster` / `redis_cluster_url`: a three-master Cluster shared by the session / emptied.
- `redis_sentinel`: a master watched by one Sentinel, shared by the session.
- `backends`: `backends(url, **options)` is a `RedisBackend.from_url`, closed after the test.
- `client`: a plain redis-py client of `redis_url`'s server, to look at and tamper with keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import redis
from redis_infra import (
    FaultProxy,
    FaultProxyFactory,
    RedisClusterProcesses,
    RedisInfraError,
    RedisServer,
    SentinelSetup,
)

from resilient.backends.redis import RedisBackend

__all__ = [
    "Backends",
    "backends",
    "client",
    "fault_proxy",
    "fresh_redis",
    "redis_cluster",
    "redis_cluster_url",
    "redis_sentinel",
    "redis_server",
    "redis_url",
    "proxy",
]

Backends = Callable[..., RedisBackend]
"""The `backends` fixture: `backends(url, **options)` is a new `RedisBackend.from_url`."""

_S = TypeVar("_S", RedisServer, RedisClusterProcesses, SentinelSetup)


@contextmanager
def _running(resource: _S) -> Iterator[_S]:
    """Start *resource* for the block, failing the test cleanly if it cannot start."""
    try:
        resource.start()
    except RedisInfraError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None
    try:
        yield resource
    finally:
        resource.stop()


def _emptied(resource: RedisServer | RedisClusterProcesses) -> None:
    """FLUSHALL a shared resource, failing the test cleanly if it is unusable."""
    try:
        resource.flush()
    except RedisInfraError as error:
        message = (
            f"could not empty the shared {resource!r} (a test that kills or restarts a server "
            f"must use its own, from `fresh_redis`): {error}"
        )
        raise pytest.fail.Exception(message, pytrace=False) from None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One `redis-server` shared by the whole session; tests must not kill or restart it."""
    with _running(RedisServer()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, with every key deleted before the test."""
    _emptied(redis_server)
    return redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A `redis-server` of the test's own, which it may `kill()` and `restart()`."""
    with _running(RedisServer()) as server:
        yield server


@pytest.fixture
def fault_proxy() -> Iterator[FaultProxyFactory]:
    """A factory: `fault_proxy(port)` is a started `FaultProxy` in front of 127.0.0.1:port."""
    proxies: list[FaultProxy] = []

    def start(port: int) -> FaultProxy:
        proxy = FaultProxy(port)
        proxies.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.close()


@pytest.fixture
def proxy(redis_server: RedisServer, redis_url: str, fault_proxy: FaultProxyFactory) -> FaultProxy:
    """A fault proxy in front of the shared server, emptied (as for `redis_url`) before the test."""
    return fault_proxy(redis_server.port)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A Redis Cluster of three masters shared by the session; tests must not kill its nodes."""
    with _running(RedisClusterProcesses()) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    """The shared cluster's URL, with every key on every master deleted before the test."""
    _emptied(redis_cluster)
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """A master and one Sentinel watching it, shared by the session; do not kill the master."""
    with _running(SentinelSetup()) as setup:
        yield setup


@pytest.fixture
def backends() -> Iterator[Backends]:
    """A factory of RedisBackend.from_url(url, **options); each is closed after the test."""
    made: list[RedisBackend] = []

    def make(url: str, **options: Any) -> RedisBackend:
        backend = RedisBackend.from_url(url, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client of the shared server, to look at and tamper with its keys."""
    with redis.Redis.from_url(redis_url) as plain:
        yield plain
