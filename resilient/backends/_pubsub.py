# The listener behind RedisBackend.subscribe: one background thread and one pub/sub connection
# per backend, serving every channel its subscriptions ask for.
#
# Rules:
# - Nothing runs before the first subscription. The thread starts with it and stops when the
#   last subscription closes (and the channels asked to linger have lingered) or the backend
#   closes. A channel whose last subscription asked to linger stays subscribed that long, so
#   that a new subscription to it (the next wait for the same lock) is live at once. A forked
#   child starts a thread of its own: the parent's does not survive the fork, and the child's
#   subscriptions begin anew.
# - Only the thread touches the pub/sub connection (redis-py's PubSub is not thread-safe):
#   subscribing records the channel, and the thread sends SUBSCRIBE between two reads, at most
#   `_TICK` seconds later, or at once when the subscriber rings the bell: a message on the
#   Hub's own channel (`Hub.bell`), which ends the thread's read.
# - A subscription is live from the confirmation of its channel's SUBSCRIBE until the
#   connection is lost or found dead. Dead means no answer to a PING sent every `_PING`
#   seconds within `_DEAD_AFTER` seconds: a blackholed connection raises no error by itself.
# - Whenever messages may have been missed, the subscription stops being live first, and only
#   then is its listener called with None. Before a subscription becomes live its listener
#   hears None too: redis-py may reconnect and subscribe again by itself inside a read, and
#   the confirmation that follows is the only sign that messages were missed in between.
# - Losing a live connection is reported as one BackendFailed event (operation "subscribe");
#   failing to connect again is not, until the connection has been live once more.
# - A listener that raises is logged once and never stops the thread.
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from .._config import DEFAULTS
from .._drive import emit, type_name
from ..events import BackendFailed

__all__ = ["Hub"]

_logger = logging.getLogger("resilient")

# Seconds between two looks at the channels wanted: the longest a new subscription waits for
# its SUBSCRIBE to be sent, unless its subscriber rings the bell (see Hub.bell).
_TICK: Final = 0.1
_PING: Final = 1.0  # seconds between two pings
_DEAD_AFTER: Final = 3.0  # seconds without a pong after which the connection is dead
_RETRY_FIRST: Final = 0.05  # seconds before connecting again, doubling up to _RETRY_MOST
_RETRY_MOST: Final = 1.0
_JOIN: Final = 5.0  # seconds close() waits for the thread, which ends within a socket timeout

Listener = Callable[[str | None], object]


class _DeadConnectionError(ConnectionError):
    """The server stopped answering pings."""


class _Subscription:
    """One listener's hold on one channel of a :class:`Hub`."""

    __slots__ = ("_hub", "channel", "linger", "listener", "on_live")

    def __init__(
        self,
        hub: Hub,
        channel: str,
        listener: Listener,
        linger: float,
        on_live: Callable[[], object] | None,
    ) -> None:
        self._hub = hub
        self.channel = channel
        self.listener = listener
        self.linger = linger
        self.on_live = on_live

    def __repr__(self) -> str:
        return f"<Subscription channel={self.channel!r} live={self.live}>"

    @property
    def live(self) -> bool:
        """Whether every message published on the channel from now on reaches the listener."""
        return self._hub.is_live(self)

    def close(self) -> None:
        """Stop delivering messages to the listener."""
        self._hub.remove(self)


class Hub:
    """The subscriptions of one backend, served by one thread that owns the connection.

    Args:
        connect: Return a new, unsubscribed redis-py ``PubSub``.
        name: The backend's name, for the thread and the logs.

    Attributes:
        bell: The Hub's own channel: a message published on it (by any client) wakes the
            thread, which then subscribes the channels asked for since its last look.
    """

    def __init__(self, connect: Callable[[], Any], name: str) -> None:
        self._connect = connect
        self._name = name
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        # also the state of a forked child, which inherits a copy of the parent's
        self._pid = os.getpid()
        self.bell = f"resilient:hub:{secrets.token_hex(8)}"
        self._subscriptions: dict[str, list[_Subscription]] = {}
        self._lingering: dict[str, float] = {}  # channel -> monotonic time it may be dropped
        self._run: _Run | None = None
        self._failed_listeners: set[int] = set()

    def subscribe(
        self,
        channel: str,
        listener: Listener,
        linger: float = 0.0,
        on_live: Callable[[], object] | None = None,
    ) -> _Subscription:
        """Start delivering *channel*'s messages to *listener*; see ``Broadcaster.subscribe``.

        The channel stays subscribed *linger* seconds after the subscription closes;
        *on_live* is called (in the thread) each time the subscription has become live.
        """
        subscription = _Subscription(self, channel, listener, linger, on_live)
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._subscriptions.setdefault(channel, []).append(subscription)
            if self._run is None:
                self._run = _Run()
                self._run.thread = threading.Thread(
                    target=self._serve,
                    args=(self._run,),
                    name=f"resilient-{self._name}-pubsub",
                    daemon=True,
                )
                self._run.thread.start()
        return subscription

    def is_live(self, subscription: _Subscription) -> bool:
        """Whether *subscription* is held and its channel confirmed on a working connection."""
        channel = subscription.channel
        return self.is_confirmed(channel) and subscription in self._subscriptions.get(channel, ())

    def is_confirmed(self, channel: str) -> bool:
        """Whether *channel* is subscribed on a working connection (for others, or lingering)."""
        run = self._run
        return run is not None and channel in run.confirmed and self._pid == os.getpid()

    def remove(self, subscription: _Subscription) -> None:
        """Drop *subscription*; the thread stops with the last one."""
        with self._lock:
            held = self._subscriptions.get(subscription.channel, [])
            if subscription in held:
                held.remove(subscription)
            if not held:
                self._subscriptions.pop(subscription.channel, None)
                if subscription.linger > 0:
                    until = time.monotonic() + subscription.linger
                    self._lingering[subscription.channel] = until
            if not self._subscriptions and not self._lingering:
                self._halt()

    def close(self) -> None:
        """Drop every subscription and stop the thread; a later subscription starts anew.

        Waits for the thread to end (at most about a socket timeout), so that nothing of the
        backend touches the network once it is closed.
        """
        with self._lock:
            run = self._run
            self._subscriptions.clear()
            self._lingering.clear()
            self._halt()
        if run is not None and run.thread is not threading.current_thread():
            run.thread.join(_JOIN)

    def _halt(self) -> None:
        if self._run is not None:
            self._run.stop.set()
            self._run.confirmed.clear()
            self._run = None

    # the thread: each start serves one _Run, so a thread still stopping never touches the
    # state of the one started after it -----------------------------------------------------

    def _serve(self, run: _Run) -> None:
        delay = _RETRY_FIRST
        while not run.stop.is_set():
            pubsub = None
            try:
                pubsub = self._connect()
                self._listen(run, pubsub)
            except Exception as error:  # noqa: BLE001 - any failure: report, reconnect
                if run.confirmed and DEFAULTS.observers:
                    event = BackendFailed(
                        policy=self._name,
                        time=DEFAULTS.clock.monotonic(),
                        backend=self._name,
                        operation="subscribe",
                        error_type=type_name(error),
                    )
                    emit(DEFAULTS, event)
            finally:
                if self._missed(run, self._channels(run)):
                    delay = _RETRY_FIRST  # it had been live: reconnect at once
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # it is being dropped anyway
                        pubsub.close()
            run.stop.wait(delay)
            delay = min(2 * delay, _RETRY_MOST)

    def _listen(self, run: _Run, pubsub: Any) -> None:
        subscribed: set[str] = set()
        last_ping = last_pong = time.monotonic()
        while not run.stop.is_set():
            wanted = self._channels(run)
            if wanted - subscribed:
                pubsub.subscribe(*(wanted - subscribed))
            if subscribed - wanted:
                pubsub.unsubscribe(*(subscribed - wanted))
            subscribed = wanted
            now = time.monotonic()
            if now - last_pong > _DEAD_AFTER:
                raise _DeadConnectionError(f"no answer to PING in {_DEAD_AFTER} s")
            if now - last_ping >= _PING:
                pubsub.ping()
                last_ping = now
            message = pubsub.get_message(timeout=_TICK)
            if message is None:
                continue
            kind = message["type"]
            if kind == "pong":
                last_pong = time.monotonic()
            elif kind == "subscribe":
                channel = _text(message["channel"])
                self._missed(run, {channel})
                with self._lock:
                    confirmed = list(self._subscriptions.get(channel, ()))
                    if confirmed and not run.stop.is_set():
                        run.confirmed.add(channel)
                for subscription in confirmed:
                    if subscription.on_live is not None:
                        subscription.on_live()
            elif kind == "message":
                self._deliver(_text(message["channel"]), _text(message["data"]))

    def _channels(self, run: _Run) -> set[str]:
        """The channels *run* is to subscribe now; stop it when there are none left."""
        with self._lock:
            now = time.monotonic()
            for channel, until in list(self._lingering.items()):
                if until <= now:
                    del self._lingering[channel]
            if not self._subscriptions and not self._lingering and self._run is run:
                self._halt()
            wanted = self._subscriptions.keys() | self._lingering.keys()
            return wanted | {self.bell} if wanted else wanted

    def _missed(self, run: _Run, channels: set[str]) -> bool:
        """Make *channels* not live, then tell their listeners; return whether any was live."""
        with self._lock:
            was_live = bool(run.confirmed & channels)
            run.confirmed -= channels
        for channel in channels:
            self._deliver(channel, None)
        return was_live

    def _deliver(self, channel: str, message: str | None) -> None:
        for subscription in list(self._subscriptions.get(channel, ())):
            try:
                subscription.listener(message)
            except Exception:
                if id(subscription) not in self._failed_listeners:
                    self._failed_listeners.add(id(subscription))
                    _logger.exception(
                        "resilient: a listener of %s on %r raised; further errors from it are "
                        "not logged",
                        self._name,
                        channel,
                    )


class _Run:
    """One start of the thread: its stop switch and the channels confirmed on its connection."""

    __slots__ = ("confirmed", "stop", "thread")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.confirmed: set[str] = set()
        self.thread = threading.current_thread()  # replaced by the thread it starts


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)
