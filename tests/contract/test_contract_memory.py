"""The backend contract suite, run against MemoryBackend."""

from __future__ import annotations

import pytest

from resilient.backends.memory import MemoryBackend
from resilient.testing.contract import BackendContract, ExtenderContract, InspectorContract


class TestMemoryBackendContract(BackendContract, ExtenderContract, InspectorContract):
    """MemoryBackend keeps every promise of the backend protocols."""

    @pytest.fixture
    def backend(self) -> MemoryBackend:
        """A fresh MemoryBackend."""
        return MemoryBackend()
