# The check a policy's `backend=` gets: that it has the primitives the capability calls.
from __future__ import annotations

from collections.abc import Callable

__all__ = ["needs_primitives"]


def needs_primitives(*names: str) -> Callable[[object, object, object], None]:
    """Return an attrs validator refusing a backend that lacks one of the primitives *names*."""

    def check(instance: object, attribute: object, value: object) -> None:
        if value is None:
            return
        missing = [name for name in names if not hasattr(value, name)]
        if missing:
            raise TypeError(
                f"backend={value!r} is not a backend: it lacks {', '.join(missing)}; use "
                "resilient.backends.RedisBackend.from_url(url), or a MemoryBackend"
            )

    return check
