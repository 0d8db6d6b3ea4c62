"""The backend contract suite, run against RedisBackend on a three-master Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_infra import RedisClusterProcesses

from resilient.backends.redis import RedisBackend
from resilient.testing.contract import (
    BackendContract,
    BroadcasterContract,
    ExtenderContract,
    InspectorContract,
)


class TestClusterBackendContract(
    BackendContract, BroadcasterContract, ExtenderContract, InspectorContract
):
    """RedisBackend on a Cluster keeps every promise, with keys and indexes across slots."""

    @pytest.fixture
    def backend(
        self, redis_cluster: RedisClusterProcesses, redis_cluster_url: str
    ) -> Iterator[RedisBackend]:
        """A RedisBackend on the shared cluster (emptied first), found from its startup nodes."""
        backend = RedisBackend.cluster(redis_cluster.startup_nodes)
        yield backend
        backend.close()
