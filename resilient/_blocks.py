# What `with` blocks of a shared object (a breaker, a lock) hold, per thread and per task.
#
# One breaker or lock serves blocks in many threads and tasks at once, so what a block took on
# entry (a permit, a lease) cannot live on the object: it lives in a context variable, which
# each thread and each asyncio task sees on its own. Blocks nest; leaving one takes the
# innermost entry of its own object.
from __future__ import annotations

import contextvars
from typing import Generic, TypeVar

__all__ = ["Blocks"]

_T = TypeVar("_T")


class Blocks(Generic[_T]):
    """The entries of the blocks open in this context, for one kind of object."""

    __slots__ = ("_kind", "_open")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._open: contextvars.ContextVar[tuple[tuple[object, _T], ...]] = contextvars.ContextVar(
            f"resilient_{kind}_blocks", default=()
        )

    def enter(self, owner: object, entry: _T) -> None:
        """Record that a block of *owner* opened here, holding *entry*."""
        self._open.set((*self._open.get(), (owner, entry)))

    def leave(self, owner: object) -> _T:
        """Return the entry of *owner*'s innermost block here, and forget it."""
        held = self._open.get()
        for position in range(len(held) - 1, -1, -1):
            if held[position][0] is owner:
                self._open.set(held[:position] + held[position + 1 :])
                return held[position][1]
        raise RuntimeError(
            f"{owner!r} was left in a context it was not entered in: enter and leave a "
            f"{self._kind}'s block in the same thread or task"
        )
