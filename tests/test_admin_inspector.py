"""MemoryBackend and RedisBackend implement the optional Inspector protocol.

The Inspector contract itself runs with each backend's contract suite, in tests/contract/.
"""

from __future__ import annotations

from resilient.backends.memory import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.typing import Inspector


def test_both_backends_are_inspectors() -> None:
    """MemoryBackend and RedisBackend implement the optional Inspector protocol."""
    assert isinstance(MemoryBackend(), Inspector)
    assert isinstance(RedisBackend.from_url("redis://127.0.0.1:1"), Inspector)
