# A one-shot wake-up that threads and asyncio tasks (in any event loop) can wait for together.
#
# Rules:
# - `fire()` is safe from any thread and wakes every waiter exactly once; waiting after it fired
#   returns at once.
# - Async waiters wait on a future of their own loop; a fire from another thread reaches it
#   through `call_soon_threadsafe`, never a thread hop for the waiter itself.
# - No waiter polls: sync waiters block on a `threading.Event`, async ones on their future.
from __future__ import annotations

import asyncio
import threading

__all__ = ["Signal"]


class Signal:
    """Wake every thread and task waiting for one event, once."""

    __slots__ = ("_event", "_futures", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._futures: list[asyncio.Future[None]] = []

    @property
    def fired(self) -> bool:
        """Whether the signal has fired."""
        return self._event.is_set()

    def fire(self) -> None:
        """Wake every current and future waiter."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            futures, self._futures = self._futures, []
        for future in futures:
            loop = future.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the signal fires or *timeout* seconds pass; return whether it fired."""
        return self._event.wait(timeout)

    async def await_fired(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - mirrors wait()
        """Wait in the running task until the signal fires or *timeout* seconds pass."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._event.is_set():
                return True
            self._futures.append(future)
        try:
            await asyncio.wait_for(future, timeout)  # cancels the private future on timeout
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if future in self._futures:
                    self._futures.remove(future)
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
