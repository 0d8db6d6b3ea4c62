"""Where `resilient` keeps shared state: the in-memory default, Redis, and the value codec.

:class:`MemoryBackend` is the default and needs nothing installed. :class:`RedisBackend` shares
state between processes and hosts (install ``resilient[redis]``); it stores values through a
:class:`Codec`. :class:`RedlockBackend` takes locks over several independent Redis masters
(opt-in; see the Redlock page). Write your own against :class:`resilient.typing.Backend` and
check it with :mod:`resilient.testing.contract`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._types import Claim, Fetched, Held, Locked, Peeked, Throttled, Versioned
from .codec import Codec
from .memory import MemoryBackend

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .redlock import RedlockBackend

__all__ = [
    "Claim",
    "Codec",
    "Fetched",
    "Held",
    "Locked",
    "MemoryBackend",
    "Peeked",
    "RedisBackend",
    "RedlockBackend",
    "Throttled",
    "Versioned",
]


def __getattr__(name: str) -> object:
    # redis-py is an optional dependency: import it only when RedisBackend is asked for
    if name == "RedisBackend":
        from .redis import RedisBackend  # noqa: PLC0415 - optional dependency, see above

        return RedisBackend
    if name == "RedlockBackend":
        # it imports the drivers, which import the configuration, which imports this package
        from .redlock import RedlockBackend  # noqa: PLC0415 - see above

        return RedlockBackend
    raise AttributeError(f"module 'resilient.backends' has no attribute {name!r}")
