"""`IdempotencyMiddleware`: Idempotency-Key on real FastAPI apps, in process and served."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cache_support import PATIENCE, EventLog, eventually, run
from fastapi import BackgroundTasks, FastAPI, HTTPException, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from redis_fixtures import Backends
from redis_infra import RedisServer

from resilient.events import IdempotencyInProgress
from resilient.integrations.asgi import IdempotencyMiddleware

KEY = "Idempotency-Key"


class Order(BaseModel):
    cents: int


class Shop:
    """A FastAPI app whose handlers count their runs, one of which a test can hold mid-request."""

    def __init__(self, **options: Any) -> None:
        self.runs: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.statuses: list[int] = []  # what /orders/flaky answers, in turn
        self.sent: list[int] = []  # orders whose confirmation the background task sent
        self.gate = threading.Event()  # holds the background task
        self.opened = False  # the lifespan's startup ran
        app = self.app = FastAPI(lifespan=self._lifespan)

        @app.post("/orders", status_code=201)
        async def create(order: Order, response: Response, coupon: str | None = None) -> Any:
            number = self._ran("create")
            response.headers["Location"] = f"/orders/{number}"
            response.set_cookie("last_order", str(number))
            return {"order": number, "cents": order.cents, "coupon": coupon}

        @app.patch("/orders/{number}")
        async def amend(number: int, order: Order) -> Any:
            return {"order": number, "cents": order.cents, "run": self._ran("amend")}

        @app.get("/orders")
        async def listing() -> Any:
            return {"run": self._ran("list")}

        @app.post("/search")
        async def search(order: Order) -> Any:
            return {"run": self._ran("search")}

        @app.post("/orders/slow", status_code=201)
        async def slow(order: Order) -> Any:
            number = self._ran("slow")
            self.started.set()
            await self.release.wait()
            return {"order": number, "cents": order.cents}

        @app.post("/orders/flaky")
        async def flaky(order: Order) -> Any:
            number = self._ran("flaky")
            status = self.statuses.pop(0)
            return JSONResponse({"order": number}, status_code=status)

        @app.post("/orders/declined")
        async def declined(order: Order) -> Any:
            number = self._ran("declined")
            raise HTTPException(402, f"card declined (run {number})")

        @app.post("/orders/crash", status_code=201)
        async def crash(order: Order) -> Any:
            number = self._ran("crash")
            if number == 1:
                raise RuntimeError("the database went away")
            return {"order": number}

        @app.post("/orders/confirmed", status_code=201)
        async def confirmed(order: Order, tasks: BackgroundTasks) -> Any:
            number = self._ran("confirmed")
            tasks.add_task(self._confirm, number)
            return {"order": number}

        app.add_middleware(IdempotencyMiddleware, **options)

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.opened = True
        yield

    def _ran(self, handler: str) -> int:
        """Count a run of *handler*; return how many it has had."""
        self.runs.append(handler)
        return self.runs.count(handler)

    def _confirm(self, number: int) -> None:
        self.gate.wait(PATIENCE)
        self.sent.append(number)


def client(app: Callable[[Any, Any, Any], Awaitable[None]], **options: Any) -> httpx.AsyncClient:
    """An HTTP client of *app*, called in process through ASGI."""
    transport = httpx.ASGITransport(app=app, **options)
    return httpx.AsyncClient(transport=transport, base_url="http://shop.test")


async def order(
    http: httpx.AsyncClient, path: str, *, cents: int = 500, key: str = "order-1"
) -> httpx.Response:
    """POST an order of *cents* to *path* with the idempotency key *key*."""
    return await http.post(path, json={"cents": cents}, headers={KEY: key})


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem detail a refusal carries."""
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def replay_of(first: httpx.Response, again: httpx.Response) -> bool:
    """Whether *again* is *first*, replayed: same status, headers and body, marked as such."""
    replayed = [*first.headers.multi_items(), ("idempotent-replayed", "true")]
    return (
        again.status_code == first.status_code
        and again.headers.multi_items() == replayed
        and again.content == first.content
    )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve *app* with uvicorn on a free 127.0.0.1 port during the block; yield its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, ws="none", log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        assert eventually(lambda: server.started), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def test_the_first_request_runs_and_its_retries_get_its_response() -> None:
    """Retries with the key replay the status, headers and body; the handler runs once."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [
                await http.post("/orders", json={"cents": 500}, headers={KEY: "order-1"})
                for _ in range(3)
            ]

    first, *retries = run(main())
    assert first.status_code == 201
    assert first.json() == {"order": 1, "cents": 500, "coupon": None}
    assert first.headers["location"] == "/orders/1"
    assert first.headers["set-cookie"].startswith("last_order=1;")
    assert "idempotent-replayed" not in first.headers
    assert all(replay_of(first, retry) for retry in retries)
    assert shop.runs == ["create"]


def test_a_quoted_key_is_the_bare_key() -> None:
    """The draft's structured-field string "k" and the bare k (Stripe's form) are one key."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            keys = ["order-1", '"order-1"', '"order\\\\1"', "order\\1"]
            return [
                await http.post("/orders", json={"cents": 500}, headers={KEY: key}) for key in keys
            ]

    bare, quoted, escaped, other = run(main())
    assert replay_of(bare, quoted)
    assert replay_of(escaped, other)
    assert shop.runs == ["create", "create"]


def test_a_duplicate_while_the_first_request_runs_gets_409() -> None:
    """While the first request runs, a duplicate is refused with 409; retried later, it replays."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            first = asyncio.ensure_future(order(http, "/orders/slow"))
            await shop.started.wait()
            duplicate = await order(http, "/orders/slow")
            shop.release.set()
            return [await first, duplicate, await order(http, "/orders/slow")]

    first, duplicate, later = run(main())
    assert first.status_code == 201
    assert duplicate.status_code == 409
    assert "still running" in problem(duplicate)["detail"]
    assert replay_of(first, later)
    assert shop.runs == ["slow"]


def test_a_reuse_while_the_first_request_runs_gets_422() -> None:
    """A key reused with another body while its first request runs is a conflict, not a wait."""
    shop = Shop(on_in_progress="wait")

    async def main() -> httpx.Response:
        async with client(shop.app) as http:
            first = asyncio.ensure_future(order(http, "/orders/slow", cents=500))
            await shop.started.wait()
            reuse = await order(http, "/orders/slow", cents=900)
            shop.release.set()
            await first
            return reuse

    assert run(main()).status_code == 422
    assert shop.runs == ["slow"]


def test_with_wait_a_duplicate_gets_the_first_requests_response(log: EventLog) -> None:
    """With on_in_progress="wait", a duplicate waits for the first response and replays it."""
    shop = Shop(on_in_progress="wait", wait_timeout=PATIENCE)

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            first = asyncio.ensure_future(order(http, "/orders/slow"))
            await shop.started.wait()
            duplicate = asyncio.ensure_future(order(http, "/orders/slow"))
            await log.settle(IdempotencyInProgress)
            shop.release.set()
            return [await first, await duplicate]

    first, duplicate = run(main())
    assert first.status_code == 201
    assert replay_of(first, duplicate)
    assert shop.runs == ["slow"]
    assert [event.waiting for event in log.of(IdempotencyInProgress)] == [True]


@pytest.mark.parametrize(
    ("first", "reuse"),
    [
        pytest.param(
            ("POST", "/orders", {"cents": 500}), ("POST", "/orders", {"cents": 900}), id="body"
        ),
        pytest.param(
            ("POST", "/orders?coupon=a", {"cents": 500}),
            ("POST", "/orders?coupon=b", {"cents": 500}),
            id="query",
        ),
        pytest.param(
            ("PATCH", "/orders/1", {"cents": 500}),
            ("PATCH", "/orders/2", {"cents": 500}),
            id="path",
        ),
    ],
)
def test_a_key_reused_for_another_request_gets_422(
    first: tuple[str, str, dict[str, int]], reuse: tuple[str, str, dict[str, int]]
) -> None:
    """A key used again with another body, query string or path is refused with 422."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [
                await http.request(method, url, json=body, headers={KEY: "order-1"})
                for method, url, body in (first, reuse)
            ]

    ran, refused = run(main())
    assert ran.is_success
    assert refused.status_code == 422
    assert "used for another request" in problem(refused)["detail"]
    assert len(shop.runs) == 1


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param([], "the Idempotency-Key header is missing", id="missing"),
        pytest.param([(KEY, "")], "the idempotency key is empty", id="empty"),
        pytest.param([(KEY, "k" * 256)], "256 characters long; at most 255", id="too-long"),
        pytest.param(
            [(KEY, "a"), (KEY, "b")],
            "the Idempotency-Key header is given more than once",
            id="twice",
        ),
        pytest.param([(KEY, '"unterminated')], "not a valid structured-field string", id="quote"),
        pytest.param([(KEY, '"a\\b"')], "not a valid structured-field string", id="escape"),
    ],
)
def test_a_missing_or_invalid_key_gets_400(headers: list[tuple[str, str]], detail: str) -> None:
    """Without exactly one valid key, the request is refused with 400 and does not run."""
    shop = Shop()

    async def main() -> httpx.Response:
        async with client(shop.app) as http:
            return await http.post("/orders", json={"cents": 500}, headers=headers)

    response = run(main())
    assert response.status_code == 400
    assert detail in problem(response)["detail"]
    assert shop.runs == []


def test_a_key_of_255_printable_characters_is_accepted() -> None:
    """The longest key the draft's servers commonly take, 255 characters, runs and replays."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            headers = {KEY: "k" * 255}
            return [await http.post("/orders", json={"cents": 1}, headers=headers) for _ in "ab"]

    first, again = run(main())
    assert first.status_code == 201
    assert replay_of(first, again)


def test_a_body_larger_than_max_body_size_gets_413() -> None:
    """A body past max_body_size is refused with 413, declared or streamed; up to it, it runs."""
    shop = Shop(max_body_size=16)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in [b'{"cents"', b":      ", b"      1}"]:
            yield chunk

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            headers = {KEY: "order-1", "content-type": "application/json"}
            return [
                await http.post("/orders", content=b'{"cents":      1}', headers=headers),
                await http.post("/orders", content=chunks(), headers=headers),
                await http.post("/orders", content=b'{"cents":     1}', headers=headers),
            ]

    declared, streamed, fits = run(main())
    assert declared.status_code == streamed.status_code == 413
    assert problem(declared)["detail"] == "the request body is larger than 16 bytes"
    assert "content-length" not in streamed.request.headers
    assert fits.status_code == 201
    assert shop.runs == ["create"]


def test_a_file_response_is_captured_where_the_server_offers_pathsend(tmp_path: Path) -> None:
    """Under a server offering pathsend (Granian, Hypercorn), a FileResponse is still stored."""
    receipt = tmp_path / "receipt.txt"
    receipt.write_bytes(b"order 1: 500 cents\n")
    shop = Shop()

    @shop.app.post("/orders/receipt")
    async def download(order: Order) -> FileResponse:
        shop.runs.append("receipt")
        return FileResponse(receipt)

    async def server_with_pathsend(scope: Any, receive: Any, send: Any) -> None:
        await shop.app({**scope, "extensions": {"http.response.pathsend": {}}}, receive, send)

    async def main() -> list[httpx.Response]:
        async with client(server_with_pathsend) as http:
            return [await order(http, "/orders/receipt") for _ in "ab"]

    first, again = run(main())
    assert first.content == b"order 1: 500 cents\n"
    assert replay_of(first, again)
    assert shop.runs == ["receipt"]


def test_other_methods_and_paths_run_every_time() -> None:
    """Methods and paths that are not guarded run each time, key or not, and are never replayed."""
    shop = Shop(paths=["/orders"])

    async def main() -> list[httpx.Response]:
        headers = {KEY: "order-1"}
        async with client(shop.app) as http:
            return [
                *[await http.get("/orders", headers=headers) for _ in "ab"],
                *[await http.post("/search", json={"cents": 1}, headers=headers) for _ in "ab"],
            ]

    responses = run(main())
    assert [response.json()["run"] for response in responses] == [1, 2, 1, 2]
    assert not any("idempotent-replayed" in response.headers for response in responses)


def test_paths_take_prefixes_and_whole_path_patterns() -> None:
    """A prefix guards itself and the paths below it; a pattern must match the whole path."""
    shop = Shop(paths=["/search/", re.compile(r"/orders/\d+")], methods=["post", "PATCH"])

    async def main() -> list[int]:
        async with client(shop.app) as http:
            return [
                (await http.request(method, url, json={"cents": 1})).status_code
                for method, url in [
                    ("POST", "/search"),
                    ("PATCH", "/orders/7"),
                    ("POST", "/orders"),
                    ("POST", "/orders/flaky"),
                ]
            ]

    shop.statuses = [200]
    assert run(main()) == [400, 400, 201, 200]  # the last two are not guarded


def test_without_required_a_request_without_key_runs_every_time() -> None:
    """With required=False, a request without the header is passed through, unguarded."""
    shop = Shop(required=False)

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [await http.post("/orders", json={"cents": 500}) for _ in "ab"]

    first, second = run(main())
    assert (first.json()["order"], second.json()["order"]) == (1, 2)
    assert "idempotent-replayed" not in second.headers


def test_other_scopes_reach_the_app_with_their_own_receive_and_send() -> None:
    """Lifespan, websocket and unguarded HTTP scopes reach the app as they came, objects and all."""
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise AssertionError(f"the middleware sent {message}")

    middleware = IdempotencyMiddleware(app, paths=["/orders"], methods=["POST"])
    headers = [(b"idempotency-key", b"order-1")]
    scopes: list[dict[str, Any]] = [
        {"type": "lifespan"},
        {"type": "websocket", "path": "/orders", "headers": headers},
        {"type": "http", "method": "GET", "path": "/orders", "headers": headers},
        {"type": "http", "method": "POST", "path": "/search", "headers": headers},
    ]
    for scope in scopes:
        run(middleware(scope, receive, send))
    assert len(seen) == len(scopes)
    for scope, (got_scope, got_receive, got_send) in zip(scopes, seen, strict=True):
        assert got_scope is scope
        assert got_receive is receive
        assert got_send is send


def user_of(scope: Any) -> str | None:
    """The user a request is from: its X-User header, as an authentication layer would tell."""
    for name, value in scope["headers"]:
        if name == b"x-user":
            return str(value.decode())
    return None


def test_principals_have_keys_of_their_own() -> None:
    """The same key from two users makes two orders; each user's retry replays their own."""
    shop = Shop(principal=user_of)

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [
                await http.post("/orders", json={"cents": 5}, headers={KEY: "k", "X-User": user})
                for user in ["ada", "bob", "ada", "bob"]
            ]

    ada, bob, ada_again, bob_again = run(main())
    assert (ada.json()["order"], bob.json()["order"]) == (1, 2)
    assert replay_of(ada, ada_again)
    assert replay_of(bob, bob_again)
    assert shop.runs == ["create", "create"]


def test_a_request_without_a_principal_gets_400() -> None:
    """When principal() finds nobody, the key cannot be scoped: 400, and nothing runs."""
    shop = Shop(principal=user_of)

    async def main() -> httpx.Response:
        async with client(shop.app) as http:
            return await http.post("/orders", json={"cents": 5}, headers={KEY: "k"})

    response = run(main())
    assert response.status_code == 400
    assert "principal" in problem(response)["detail"]
    assert shop.runs == []


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_a_response_that_says_try_again_is_sent_not_stored(status: int) -> None:
    """5xx, 408 and 429 reach the client as they are, and a retry with the key runs again."""
    shop = Shop()
    shop.statuses = [status, 201]

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [await order(http, "/orders/flaky") for _ in "abc"]

    failed, retried, replayed = run(main())
    assert (failed.status_code, failed.json()) == (status, {"order": 1})
    assert "idempotent-replayed" not in failed.headers
    assert (retried.status_code, retried.json()) == (201, {"order": 2})
    assert replay_of(retried, replayed)
    assert shop.runs == ["flaky", "flaky"]


def test_a_4xx_response_is_stored_and_replayed() -> None:
    """A client error the handler answered (402) is the request's outcome: replayed, not rerun."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            return [await order(http, "/orders/declined") for _ in "ab"]

    declined, again = run(main())
    assert declined.status_code == 402
    assert declined.json() == {"detail": "card declined (run 1)"}
    assert replay_of(declined, again)
    assert shop.runs == ["declined"]


def test_an_exception_in_the_handler_frees_the_key() -> None:
    """A handler that raises gets the server's 500; a retry with the key runs again."""
    shop = Shop()

    async def main() -> list[httpx.Response]:
        async with client(shop.app, raise_app_exceptions=False) as http:
            return [await order(http, "/orders/crash") for _ in "abc"]

    crashed, retried, replayed = run(main())
    assert crashed.status_code == 500
    assert (retried.status_code, retried.json()) == (201, {"order": 2})
    assert replay_of(retried, replayed)
    assert shop.runs == ["crash", "crash"]


def test_an_unreachable_backend_gets_503_and_nothing_runs(
    fresh_redis: RedisServer, backends: Backends
) -> None:
    """With Redis down, no key can be claimed: 503, and the handler does not run (fail closed)."""
    shop = Shop(backend=backends(fresh_redis.url))

    async def main() -> list[httpx.Response]:
        async with client(shop.app) as http:
            ran = await http.post("/orders", json={"cents": 5}, headers={KEY: "k1"})
            fresh_redis.kill()
            refused = await http.post("/orders", json={"cents": 5}, headers={KEY: "k2"})
            return [ran, refused]

    ran, refused = run(main())
    assert ran.status_code == 201
    assert refused.status_code == 503
    assert "nothing was done" in problem(refused)["detail"]
    assert shop.runs == ["create"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"methods": "POST"}, TypeError, "collection of HTTP methods"),
        ({"methods": []}, ValueError, "methods= is empty"),
        ({"methods": ["PO ST"]}, ValueError, "not an HTTP method"),
        ({"paths": "/orders"}, TypeError, "path prefixes"),
        ({"paths": []}, ValueError, "None guards every path"),
        ({"paths": ["orders"]}, ValueError, "starting with '/'"),
        ({"paths": [re.compile(rb"/orders")]}, ValueError, "regular expressions of str"),
        ({"header": "Idempotency Key"}, ValueError, "not an HTTP header name"),
        ({"header": None}, TypeError, "must be a str"),
        ({"required": "yes"}, TypeError, "True or False"),
        ({"max_body_size": 0}, ValueError, "at least 1 byte"),
        ({"max_body_size": 1.5}, TypeError, "must be an int"),
        ({"principal": "user"}, TypeError, "callable taking the ASGI scope"),
        ({"name": ""}, ValueError, "name= is empty"),
        ({"ttl": 0}, ValueError, "ttl=0 must be more than zero"),
        ({"wait_timeout": -1}, ValueError, "wait_timeout=-1"),
        ({"on_in_progress": "queue"}, ValueError, "on_in_progress"),
        ({"backend": object()}, TypeError, "is not a backend"),
    ],
)
def test_settings_are_checked_when_the_middleware_is_made(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """A wrong setting fails at construction, naming what to write instead."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    with pytest.raises(error, match=re.escape(message)):
        IdempotencyMiddleware(app, **options)


def test_an_app_that_is_not_callable_is_refused() -> None:
    """The wrapped application must be an ASGI callable."""
    with pytest.raises(TypeError, match="must be an ASGI application"):
        IdempotencyMiddleware("app")  # type: ignore[arg-type]  # the mistake under test


def test_over_http_the_response_is_sent_before_background_tasks_end() -> None:
    """Under uvicorn, the client gets the response (and a retry its replay) while the
    background task still runs; the lifespan reached the app."""
    shop = Shop()
    with serving(shop.app) as url, httpx.Client(base_url=url, timeout=PATIENCE) as http:
        first, again = (
            http.post("/orders/confirmed", json={"cents": 5}, headers={KEY: "k"}) for _ in "ab"
        )
        assert shop.sent == []  # both answered with the confirmation still held
        shop.gate.set()
        assert eventually(lambda: shop.sent == [1])
    assert shop.opened
    assert first.status_code == 201
    assert first.json() == {"order": 1}
    assert replay_of_over_http(first, again)
    assert shop.runs == ["confirmed"]


def replay_of_over_http(first: httpx.Response, again: httpx.Response) -> bool:
    """Whether *again* replays *first*, leaving out the Date header the server adds to each."""

    def headers(response: httpx.Response) -> list[tuple[str, str]]:
        return [item for item in response.headers.multi_items() if item[0] != "date"]

    return (
        again.status_code == first.status_code
        and headers(again) == [*headers(first), ("idempotent-replayed", "true")]
        and again.content == first.content
    )


def test_two_servers_on_one_redis_share_their_records(redis_url: str, backends: Backends) -> None:
    """Two uvicorn servers over one Redis: a retry sent to the other server gets the replay."""
    east, west = (Shop(backend=backends(redis_url), name="shop") for _ in "ab")
    with serving(east.app) as east_url, serving(west.app) as west_url:
        first, again, reuse = (
            httpx.post(url, json={"cents": cents}, headers={KEY: "k"}, timeout=PATIENCE)
            for url, cents in [
                (f"{east_url}/orders", 5),
                (f"{west_url}/orders", 5),
                (f"{west_url}/orders", 6),
            ]
        )
    assert first.status_code == 201
    assert replay_of_over_http(first, again)
    assert reuse.status_code == 422
    assert (east.runs, west.runs) == (["create"], [])


def test_problem_details_are_json() -> None:
    """Every refusal is an RFC 9457 problem: a JSON object with title, status and detail."""
    shop = Shop()

    async def main() -> httpx.Response:
        async with client(shop.app) as http:
            return await http.post("/orders", json={"cents": 5})

    body = json.loads(run(main()).content)
    assert body == {
        "title": "Bad Request",
        "status": 400,
        "detail": "the Idempotency-Key header is missing",
    }
