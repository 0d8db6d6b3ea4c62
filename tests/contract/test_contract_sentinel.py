"""The backend contract suite, run against RedisBackend through Redis Sentinel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_infra import SentinelSetup

from resilient.backends.redis import RedisBackend
from resilient.testing.contract import (
    BackendContract,
    BroadcasterContract,
    ExtenderContract,
    InspectorContract,
)


class TestSentinelBackendContract(
    BackendContract, BroadcasterContract, ExtenderContract, InspectorContract
):
    """RedisBackend on the master a Sentinel names keeps every promise."""

    @pytest.fixture
    def backend(self, redis_sentinel: SentinelSetup) -> Iterator[RedisBackend]:
        """A RedisBackend that asks the shared Sentinel where the master is."""
        backend = RedisBackend.sentinel(redis_sentinel.sentinels, redis_sentinel.service_name)
        yield backend
        backend.close()
