"""The backend contract suite, run against RedisBackend on a real standalone server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilient.backends.codec import Codec
from resilient.backends.redis import RedisBackend
from resilient.testing.contract import (
    BackendContract,
    BroadcasterContract,
    ExtenderContract,
    InspectorContract,
)

CODECS = {
    "data": Codec(),
    "pickle": Codec(serializer="pickle", secret=b"contract suite secret, 32 bytes!"),
}


class TestRedisBackendContract(
    BackendContract, BroadcasterContract, ExtenderContract, InspectorContract
):
    """RedisBackend on one server keeps every promise, with the data and the pickle codec."""

    @pytest.fixture(params=sorted(CODECS))
    def backend(self, request: pytest.FixtureRequest, redis_url: str) -> Iterator[RedisBackend]:
        """A RedisBackend built from the shared server's URL, with each codec."""
        backend = RedisBackend.from_url(redis_url, codec=CODECS[request.param])
        yield backend
        backend.close()
