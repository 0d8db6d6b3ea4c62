"""The ``Idempotency-Key`` HTTP header for any ASGI application (FastAPI, Starlette, ...).

:class:`IdempotencyMiddleware` runs the first request with a key and answers every retry of it
with the stored response, as the IETF draft "The Idempotency-Key HTTP Header Field" describes.
It needs no web framework: it speaks plain ASGI.
"""

# `IdempotencyMiddleware`: the Idempotency-Key header on top of `@idempotent`.
#
# Rules:
# - Only HTTP requests whose method and path are configured are guarded. Every other request
#   and scope (lifespan, websocket) reaches the application with its own receive and send,
#   untouched; so does a guarded request without the header when the header is not required.
# - A guarded request's body is read whole first, at most `max_body_size` bytes (413 past
#   it). What must match for a request to be a duplicate, rather than a reuse of its key
#   (422), is its method, path, query string and body.
# - Every decision about keys, records, claims and leases is `@idempotent`'s, applied once per
#   middleware to `_respond`: its key is the header's value, its principal what
#   `principal(scope)` returned, its payload the request. The middleware only translates.
# - The application runs in a task of its own, the buffered body replayed to it and its
#   response captured. The response is stored, then sent, as soon as it is complete; the
#   application may go on after it (background tasks), and the middleware returns when the
#   application has.
# - A response saying the request may be tried again (any 5xx, 408, 425, 429) is sent but not
#   stored: `_Unstored` carries it out of `_respond`, which frees the key for the retry.
# - A stored response is plain data any codec stores: {"status": int, "headers": [[str, str],
#   ...], "body": bytes}, header names and values decoded as latin-1. A replay carries
#   `Idempotent-Replayed: true` on top of the stored headers.
# - The middleware's own answers are problem details (RFC 9457): 400 for a missing or invalid
#   key, 409 while the first request runs, 413, 422, and 503 when the backend cannot be
#   reached (nothing ran). An unreadable record is for an operator: it propagates (a 500).
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from datetime import timedelta
from http import HTTPStatus
from typing import Any, Literal, Protocol

from .._idempotent import idempotent
from ..exceptions import (
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyRecordError,
)

__all__ = ["IdempotencyMiddleware"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class _PathMatcher(Protocol):
    """What `paths=` takes besides prefixes: a compiled regular expression, or the like."""

    def fullmatch(self, string: str, /) -> object:
        """Return a truthy value when *string*, a whole path, matches."""


# The request a key stands for: method, path, query string and body.
_Request = tuple[str, str, bytes, bytes]

# Statuses that tell the client to try again: storing them would refuse every retry.
_TRY_AGAIN = frozenset({408, 425, 429})

# A header name (RFC 9110 token); a structured-field string (RFC 8941), its escapes.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_SF_ESCAPE = re.compile(r'\\(["\\])')


class _Response:
    """A complete HTTP response: status, headers as ASGI sends them, and the whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def stored(self) -> dict[str, object]:
        """Return the response as a record stores it."""
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")] for name, value in self.headers
        ]
        return {"status": self.status, "headers": headers, "body": self.body}

    @classmethod
    def read(cls, stored: object, name: str) -> _Response:
        """Return the response *stored* holds; raise IdempotencyRecordError if it holds none."""
        if isinstance(stored, dict):
            status, headers, body = stored.get("status"), stored.get("headers"), stored.get("body")
            if (
                type(status) is int
                and type(body) is bytes
                and isinstance(headers, list | tuple)
                and all(_is_header(header) for header in headers)
            ):
                pairs = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers]
                return cls(status, pairs, body)
        raise IdempotencyRecordError(name)

    async def send(self, send: _Send, *, replayed: bool) -> None:
        """Send the response, marked as a replay when *replayed*."""
        headers = [*self.headers, (b"idempotent-replayed", b"true")] if replayed else self.headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _is_header(header: object) -> bool:
    return (
        isinstance(header, list | tuple)
        and len(header) == 2
        and all(type(part) is str for part in header)
    )


def _problem(status: int, detail: str) -> _Response:
    """Return the middleware's own answer: an RFC 9457 problem detail."""
    body = json.dumps(
        {"title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(body)),
    ]
    return _Response(status, headers, body)


class _Unstored(Exception):  # noqa: N818 - a signal carrying a response, not an error
    """A response sent but not stored: the request may be tried again with its key."""

    def __init__(self, response: _Response) -> None:
        super().__init__(f"HTTP {response.status} is not stored")
        self.response = response


class _Exchange:
    """One guarded request going through the application: its body replayed, its response kept.

    The application runs in a task of its own, so that its response can be stored and sent as
    soon as it is complete while the application goes on (FastAPI's background tasks).
    """

    __slots__ = ("_app", "_body", "_chunks", "_complete", "_receive", "_scope", "_start", "_task")

    def __init__(self, app: _App, scope: _Scope, body: bytes, receive: _Receive) -> None:
        self._app = app
        self._body: bytes | None = body  # None once replayed to the application
        self._receive = receive
        # Extensions that send a response otherwise than in body messages cannot be captured.
        extensions = scope.get("extensions") or {}
        if any(name.startswith("http.response.") for name in extensions):
            kept = {
                name: value
                for name, value in extensions.items()
                if not name.startswith("http.response.")
            }
            scope = {**scope, "extensions": kept}
        self._scope = scope
        self._start: _Message | None = None
        self._chunks: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self._complete: asyncio.Future[_Response] | None = None

    @property
    def ran(self) -> bool:
        """Whether the application was run for this request (rather than replayed or refused)."""
        return self._task is not None

    async def respond(self) -> _Response:
        """Run the application; return its response as soon as it is complete."""
        loop = asyncio.get_running_loop()
        complete: asyncio.Future[_Response] = loop.create_future()
        self._complete = complete
        task = self._task = loop.create_task(self._run())
        task.add_done_callback(self._ended)
        try:
            return await complete
        except BaseException:
            task.cancel()  # ended already when it raised; cancelled when this call was
            raise

    async def finish(self) -> None:
        """Wait for the application to end, if it ran; raise what it raised after responding."""
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        await self._app(self._scope, self._replay, self._capture)

    async def _replay(self) -> _Message:
        body, self._body = self._body, None
        if body is None:  # the body was read: what comes next is the client's disconnection
            return await self._receive()
        return {"type": "http.request", "body": body, "more_body": False}

    async def _capture(self, message: _Message) -> None:
        assert self._complete is not None
        kind = message["type"]
        if self._complete.done():
            raise RuntimeError(f"ASGI message {kind!r} sent after the response was complete")
        if kind == "http.response.start" and self._start is None:
            self._start = message
        elif kind == "http.response.body" and self._start is not None:
            self._chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                headers = [
                    (bytes(name), bytes(value)) for name, value in self._start.get("headers", ())
                ]
                response = _Response(self._start["status"], headers, b"".join(self._chunks))
                self._complete.set_result(response)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} for an idempotent request")

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Settle the response of an application that ended before completing it."""
        assert self._complete is not None
        if self._complete.done():
            return
        if task.cancelled():
            self._complete.cancel()
        elif (error := task.exception()) is not None:
            self._complete.set_exception(error)
        else:
            self._complete.set_exception(
                RuntimeError("the application returned without sending a complete response")
            )


async def _respond(key: str, owner: object, request: _Request, exchange: _Exchange) -> object:
    """Run the request through the application; return its response as a record stores it."""
    response = await exchange.respond()
    if response.status >= 500 or response.status in _TRY_AGAIN:
        raise _Unstored(response)
    return response.stored()


def _owner(key: str, owner: object, request: _Request, exchange: _Exchange) -> object:
    """Return the principal of a call of `_respond`: the one the middleware found."""
    return owner


class IdempotencyMiddleware:
    """Run each request with an ``Idempotency-Key`` once; answer its retries with the response.

    An ASGI middleware implementing the IETF ``Idempotency-Key`` header draft with
    :func:`resilient.idempotent`. A request with a configured method and path must carry the
    header. The first request with a key runs; its response (status, headers, body) is
    stored for ``ttl`` and sent. A later request with the same key and the same request
    gets the stored response, with ``Idempotent-Replayed: true`` added, and the application
    does not run. The middleware's own answers are ``application/problem+json``:

    - 400: the header is missing (when ``required``), repeated, or not a valid key (1 to 255
      printable characters, plain or as a quoted structured-field string), or ``principal``
      gave no principal.
    - 409: the first request with the key is still running (or, with
      ``on_in_progress="wait"``, still ran after ``wait_timeout``).
    - 413: the body is larger than ``max_body_size``.
    - 422: the key was used before for another request: another method, path, query string
      or body.
    - 503: the backend could not be reached; the application did not run.

    A response with a 5xx status, or 408, 425 or 429, is sent but not stored, so the client
    may retry with the same key and the request runs again. Every other request and scope
    (other methods and paths, lifespan, websocket) goes to the application untouched.

    Args:
        app: The ASGI application to guard.
        methods: The HTTP methods guarded.
        paths: The paths guarded: ``None`` for every path, or a collection of path prefixes
            (``"/orders"`` guards ``/orders`` and every path under ``/orders/``) and compiled
            regular expressions, which must match the whole path (``fullmatch``).
        header: The name of the request header carrying the key.
        required: Whether a guarded request without the header gets a 400. When False, it
            goes to the application untouched, unguarded.
        max_body_size: The most bytes of request body read and kept for a guarded request.
        principal: A callable taking the ASGI scope and returning who the key belongs to (a
            user, a tenant), e.g. ``lambda scope: scope["user"].id``: the same key from two
            principals makes two independent records. ``None`` makes one key space for all.
        ttl: Seconds (or a ``timedelta``) a response is stored and replayed.
        lease_ttl: Seconds the first request's claim on its key lasts unless renewed; it is
            renewed while the request runs, and frees the key this long after its process died.
        on_in_progress: What a duplicate does while the first request runs: ``"raise"``
            answers 409; ``"wait"`` waits for the first request's response and replays it.
        wait_timeout: With ``"wait"``, the most seconds to wait before answering 409.
        name: The name events report and records are stored under; give each application
            sharing a backend its own.
        backend: Where records live; by default the configured backend (in memory). Use a
            :class:`~resilient.backends.RedisBackend` to share them between processes.

    Raises:
        TypeError: For a setting of the wrong type, e.g. an *app* that is not callable.
        ValueError: For a setting out of range: no method, an invalid header name or method,
            a path that does not start with ``/``, a ``max_body_size`` or ``ttl`` that is not
            positive.

    Example::

        app = FastAPI()
        app.add_middleware(IdempotencyMiddleware, paths=["/orders"], backend=backend)
    """

    __slots__ = (
        "_app",
        "_header",
        "_header_name",
        "_limit",
        "_methods",
        "_name",
        "_paths",
        "_principal",
        "_required",
        "_respond",
    )

    def __init__(
        self,
        app: _App,
        *,
        methods: Collection[str] = ("POST", "PATCH"),
        paths: Collection[str | _PathMatcher] | None = None,
        header: str = "Idempotency-Key",
        required: bool = True,
        max_body_size: int = 1_048_576,
        principal: Callable[[_Scope], object] | None = None,
        ttl: float | timedelta = 86_400.0,
        lease_ttl: float | timedelta = 30.0,
        on_in_progress: Literal["raise", "wait"] = "raise",
        wait_timeout: float | timedelta = 30.0,
        name: str = "http",
        backend: object = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app={app!r} must be an ASGI application (a callable)")
        self._app = app
        self._methods = _methods(methods)
        self._paths = None if paths is None else _paths(paths)
        if not isinstance(header, str):
            raise TypeError(f"header={header!r} must be a str, e.g. 'Idempotency-Key'")
        if not _TOKEN.fullmatch(header):
            raise ValueError(f"header={header!r} is not an HTTP header name")
        self._header_name = header
        self._header = header.lower().encode("ascii")
        if not isinstance(required, bool):
            raise TypeError(f"required={required!r} must be True or False")
        self._required = required
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise TypeError(f"max_body_size={max_body_size!r} must be an int (bytes)")
        if max_body_size < 1:
            raise ValueError(f"max_body_size={max_body_size!r} must be at least 1 byte")
        self._limit = max_body_size
        if principal is not None and not callable(principal):
            raise TypeError(
                f"principal={principal!r} must be a callable taking the ASGI scope and "
                "returning who the key belongs to, e.g. principal=lambda scope: scope['user'].id"
            )
        self._principal = principal
        if not isinstance(name, str):
            raise TypeError(f"name={name!r} must be a str")
        if not name:
            raise ValueError("name= is empty: give the name records are stored under")
        self._name = name
        self._respond = idempotent(
            key="key",
            payload=["request"],
            principal=None if principal is None else _owner,
            ttl=ttl,
            lease_ttl=lease_ttl,
            on_in_progress=on_in_progress,
            wait_timeout=wait_timeout,
            name=name,
            backend=backend,
        )(_respond)

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI connection: guard it, or hand it to the application untouched."""
        if not self._guards(scope):
            await self._app(scope, receive, send)
            return
        values = [value for name, value in scope["headers"] if name == self._header]
        if not values and not self._required:
            await self._app(scope, receive, send)
            return
        key = _key(values, self._header_name)
        if isinstance(key, _Response):
            await key.send(send, replayed=False)
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        request = (scope["method"], scope["path"], bytes(scope.get("query_string", b"")), body)
        owner = None if self._principal is None else self._principal(scope)
        exchange = _Exchange(self._app, scope, body, receive)
        try:
            stored = await self._respond(key, owner, request, exchange)
        except _Unstored as unstored:
            response, replayed = unstored.response, False
        except (
            IdempotencyKeyError,
            IdempotencyInProgressError,
            IdempotencyConflictError,
            BackendUnavailableError,
        ) as error:
            response, replayed = _refusal(error), False
        else:
            response, replayed = _Response.read(stored, self._name), not exchange.ran
        try:
            await response.send(send, replayed=replayed)
        finally:
            await exchange.finish()

    def _guards(self, scope: _Scope) -> bool:
        """Whether *scope* is an HTTP request with a guarded method and path."""
        if scope["type"] != "http" or scope["method"] not in self._methods:
            return False
        return self._paths is None or any(path.fullmatch(scope["path"]) for path in self._paths)

    async def _body(self, scope: _Scope, receive: _Receive, send: _Send) -> bytes | None:
        """Return the whole request body; None when it was too large (413) or the client left."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self._limit:
                await self._too_large(send)
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client disconnected: nobody to answer
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                await self._too_large(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: _Send) -> None:
        detail = f"the request body is larger than {self._limit} bytes"
        await _problem(413, detail).send(send, replayed=False)


def _methods(methods: object) -> frozenset[str]:
    if isinstance(methods, str) or not isinstance(methods, Collection):
        raise TypeError(f"methods={methods!r} must be a collection of HTTP methods, e.g. ['POST']")
    if not methods:
        raise ValueError("methods= is empty: give the HTTP methods to guard, e.g. ['POST']")
    for method in methods:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(f"methods= holds {method!r}, which is not an HTTP method")
    return frozenset(method.upper() for method in methods)


def _paths(paths: object) -> tuple[_PathMatcher, ...]:
    """Return *paths* as patterns matching whole paths; a prefix matches itself and below."""
    if isinstance(paths, str) or not isinstance(paths, Collection):
        raise TypeError(
            f"paths={paths!r} must be None or a collection of path prefixes and compiled "
            "regular expressions, e.g. ['/orders', re.compile(r'/carts/[^/]+/checkout')]"
        )
    if not paths:
        raise ValueError("paths= is empty, which guards no path; None guards every path")
    matchers: list[_PathMatcher] = []
    for path in paths:
        if isinstance(path, str) and path.startswith("/"):
            prefix = re.escape(path.rstrip("/"))
            matchers.append(re.compile(f"{prefix}(?:/.*)?", re.DOTALL))
        elif callable(getattr(path, "fullmatch", None)) and not (
            isinstance(path, re.Pattern) and isinstance(path.pattern, bytes)
        ):
            matchers.append(path)
        else:
            raise ValueError(
                f"paths= holds {path!r}: give path prefixes starting with '/' or compiled "
                "regular expressions of str"
            )
    return tuple(matchers)


def _key(values: list[bytes], header: str) -> str | _Response:
    """Return the key the header's *values* give, or the problem answering their absence."""
    if len(values) != 1:
        how = "missing" if not values else "given more than once"
        return _problem(400, f"the {header} header is {how}")
    text = values[0].decode("latin-1")
    if not text.startswith('"'):
        return text  # a bare key, as many clients send it; the decorator checks what it holds
    quoted = _SF_STRING.fullmatch(text)
    if quoted is None:
        return _problem(400, f"the {header} header is not a valid structured-field string")
    return _SF_ESCAPE.sub(r"\1", quoted[1])


def _refusal(error: Exception) -> _Response:
    """Return the answer to a request the decorator refused to run."""
    if isinstance(error, IdempotencyKeyError):
        return _problem(400, error.problem)
    if isinstance(error, IdempotencyInProgressError):
        detail = (
            "a request with this idempotency key is still running; retry later for its response"
        )
        return _problem(409, detail)
    if isinstance(error, IdempotencyConflictError):
        detail = (
            "this idempotency key was used for another request (method, path, query string or "
            "body); use a new key for a new request"
        )
        return _problem(422, detail)
    detail = "the idempotency records cannot be reached; nothing was done, try again later"
    return _problem(503, detail)
