"""The Inspector contract (scan and peek, what `resilient.admin` reads), run on every backend.

Memory, and RedisBackend on a standalone server, through Sentinel, and on a three-master Cluster
(where a scan must walk every primary).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_infra import RedisClusterProcesses, SentinelSetup

from resilient.backends.codec import Codec
from resilient.backends.memory import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.testing.contract import InspectorContract
from resilient.typing import Inspector


class TestMemoryInspector(InspectorContract):
    """MemoryBackend reads what it holds without changing it."""

    @pytest.fixture
    def backend(self) -> MemoryBackend:
        """A fresh MemoryBackend."""
        return MemoryBackend()


class TestRedisInspector(InspectorContract):
    """RedisBackend on one server, with the data and the pickle codec."""

    @pytest.fixture(params=["data", "pickle"])
    def backend(self, request: pytest.FixtureRequest, redis_url: str) -> Iterator[RedisBackend]:
        """A RedisBackend built from the shared server's URL, with each codec."""
        codec = (
            Codec()
            if request.param == "data"
            else Codec(serializer="pickle", secret=b"contract suite secret, 32 bytes!")
        )
        backend = RedisBackend.from_url(redis_url, codec=codec)
        yield backend
        backend.close()


class TestSentinelInspector(InspectorContract):
    """RedisBackend on the master a Sentinel names."""

    @pytest.fixture
    def backend(self, redis_sentinel: SentinelSetup) -> Iterator[RedisBackend]:
        """A RedisBackend that asks the shared Sentinel where the master is."""
        backend = RedisBackend.sentinel(redis_sentinel.sentinels, redis_sentinel.service_name)
        yield backend
        backend.close()


class TestClusterInspector(InspectorContract):
    """RedisBackend on a Cluster: keys spread over every primary, each found."""

    @pytest.fixture
    def backend(
        self, redis_cluster: RedisClusterProcesses, redis_cluster_url: str
    ) -> Iterator[RedisBackend]:
        """A RedisBackend on the shared cluster (emptied first)."""
        backend = RedisBackend.cluster(redis_cluster.startup_nodes)
        yield backend
        backend.close()


def test_both_backends_are_inspectors() -> None:
    """MemoryBackend and RedisBackend implement the optional Inspector protocol."""
    assert isinstance(MemoryBackend(), Inspector)
    assert isinstance(RedisBackend.from_url("redis://127.0.0.1:1"), Inspector)
