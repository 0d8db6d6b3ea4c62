"""MemoryBackend and RedisBackend implement the optional Inspector protocol.

The Inspector contract itself runs with each backend's contract suite, in tests/contract/.
"""

from __future__ import annotations

import pytest
import redis
from cache_support import run

from resilient.admin import Admin
from resilient.backends.memory import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.exceptions import BackendUnavailableError
from resilient.typing import Inspector


def test_both_backends_are_inspectors() -> None:
    """MemoryBackend and RedisBackend implement the optional Inspector protocol."""
    assert isinstance(MemoryBackend(), Inspector)
    assert isinstance(RedisBackend.from_url("redis://127.0.0.1:1"), Inspector)


def test_a_backend_that_fails_is_a_backend_unavailable_error() -> None:
    """Listing or acting on a Redis nobody answers at: the typed error, caused by redis-py's."""
    backend = RedisBackend.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    admin = Admin(backend, namespace="shop")
    try:
        with pytest.raises(BackendUnavailableError) as listing:
            admin.locks()
        assert listing.value.operation == "scan"
        assert isinstance(listing.value.__cause__, redis.ConnectionError)
        with pytest.raises(BackendUnavailableError):
            run(admin.aidempotency_records())
        with pytest.raises(BackendUnavailableError):
            admin.release_lock("report", 7)
    finally:
        backend.close()
