"""Where `resilient` keeps shared state: the in-memory default, and your own backends.

:class:`MemoryBackend` is the default and needs nothing installed. Write your own against
:class:`resilient.typing.Backend`.
"""

from __future__ import annotations

from ._types import Claim, Fetched
from .memory import MemoryBackend

__all__ = ["Claim", "Fetched", "MemoryBackend"]
