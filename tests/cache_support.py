"""Test helpers shared by the cache tests: an observer that threads and tasks can wait on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from resilient.events import Event

T = TypeVar("T")

# Real seconds a test waits, at most, for another thread, a background refresh or a server:
# a bound that only a hang reaches.
PATIENCE = 5.0


def pause(seconds: float) -> None:
    """Let real time pass: Redis, sockets and listener threads keep real time, not the clock's."""
    time.sleep(seconds)  # noqa: TID251 - real servers and threads are waited on in real time


def eventually(check: Callable[[], bool], within: float = PATIENCE) -> bool:
    """Poll *check* until it holds (True) or *within* seconds pass (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        pause(0.01)
    return check()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* on a fresh event loop (which closes its Redis clients at the end)."""
    return asyncio.run(coroutine)


class EventLog:
    """An observer recording events from any thread, which a test can wait on."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, kind: type[Event]) -> list[Any]:
        """The events of one class, in order."""
        with self._changed:
            return [event for event in self.events if type(event) is kind]

    def wait_for(self, kind: type[Event], count: int = 1) -> None:
        """Block until *count* events of *kind* were reported (fail after PATIENCE seconds)."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: sum(type(event) is kind for event in self.events) >= count, PATIENCE
            )
        assert arrived, f"waited {PATIENCE} s for {count} {kind.__name__}: {self.events}"

    async def settle(self, kind: type[Event], count: int = 1) -> None:
        """Let the event loop run until *count* events of *kind* were reported."""
        for _ in range(1000):
            if len(self.of(kind)) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"no {count} {kind.__name__} after 1000 loop turns: {self.events}")


@contextmanager
def python_processes(
    script: str, *args: str, count: int, timeout: float = 30
) -> Iterator[list[Any]]:
    """Run *count* Python processes of *script* during the block; then collect what they print.

    After the block the yielded list holds each process's output, read as JSON, once every
    process has exited 0 (fail after *timeout* seconds). A process still running when the
    block raises is killed.
    """
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    results: list[Any] = []
    try:
        yield results
        outputs = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()  # reaps it and closes its pipes, whichever way the block ended
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    results.extend(json.loads(stdout) for stdout, _ in outputs)


@contextmanager
def running(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run one Python process of *script* during the block; kill it after, whatever happens."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def together(count: int, call: Any) -> list[Any]:
    """Run *call* in *count* threads started at once; return what each got (value or error)."""
    start = threading.Barrier(count)

    def one(_: int) -> Any:
        start.wait(PATIENCE)
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))
