"""The operators' commands, run as a user runs them, against what other processes keep on Redis.

Every command is `python -m resilient ...` in a subprocess; the breakers, locks, records and
cached values it shows and acts on are made by other Python processes on a real Redis server.
The JSON they print is checked against the shapes docs/cli.md documents, and the reference
against the parser, so that neither goes stale.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from admin_support import CALLER, HOLDER, SYNC_INTERVAL
from cache_support import PATIENCE, python_processes, running
from redis_fixtures import Backends

from resilient import cli
from resilient.admin import Admin
from resilient.cli import Exit

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
HOST = socket.gethostname()
SLACK = 1.0  # room for a loaded machine, on top of each bound
LIMIT = Admin().limit  # the keys a listing of the command line looks at


def resilient(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m resilient *args* and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "resilient", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def succeeded(*args: str) -> str:
    """Run the command, which must exit 0 and print nothing on stderr; return its stdout."""
    done = resilient(*args)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def json_of(*args: str, shape: str) -> Any:
    """Run the command with --json; return its document, which has the documented *shape*."""
    document = json.loads(succeeded(*args, "--json"))
    conforms(document, documented(shape))
    return document


def warned(*args: str) -> tuple[str, str]:
    """Run the command, which must exit 0 with one warning line on stderr; stdout and the line."""
    done = resilient(*args)
    assert done.returncode == 0, done.stderr
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("python -m resilient: warning: "), done.stderr
    return done.stdout, warning


def failed(code: Exit, *args: str) -> str:
    """Run the command, which must exit *code* with an error line and no traceback; the line."""
    done = resilient(*args)
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stdout == ""
    *usage, error = done.stderr.splitlines()
    assert all(line.startswith(("usage:", " ")) for line in usage), done.stderr  # argparse's
    assert re.match(r"python -m resilient[a-z ]*: error: ", error), done.stderr
    return error


def documented(shape: str) -> Any:
    """Return the JSON example docs/cli.md gives under the marker of *shape*."""
    marker = f"<!-- json-shape: {shape} -->\n```json\n"
    text = REFERENCE.read_text()
    assert marker in text, f"docs/cli.md documents no JSON shape {shape!r}"
    return json.loads(text.split(marker, 1)[1].split("\n```", 1)[0])


def conforms(document: Any, example: Any, where: str = "$") -> None:
    """Assert that *document* has the fields of *example*, in its order, at every level."""
    if isinstance(example, dict):
        assert isinstance(document, dict), where
        assert list(document) == list(example), where
        for key, value in example.items():
            conforms(document[key], value, f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(document, list), where
        for item in document if example else []:
            conforms(item, example[0], f"{where}[]")


# A process of the application: under the namespace "shop" on the Redis at argv[1], it trips a
# shared breaker, leaves two completed records and a failed one, and holds a lock; it prints
# the lease as JSON, and keeps it (renewed) until it is lost or 30 s have passed.
FLEET = textwrap.dedent(
    """
    import json, os, sys, threading
    import resilient
    from resilient.backends.redis import RedisBackend

    resilient.configure(backend=RedisBackend.from_url(sys.argv[1]), namespace="shop")
    payments = resilient.breaker(
        "payments-api", shared=True, window=4, minimum_calls=4, failure_rate=0.5, open_for=60
    )
    for fails in (False, False, True, True):
        try:
            with payments:
                if fails:
                    raise ConnectionError("upstream down")
        except ConnectionError:
            pass

    @resilient.idempotent(key="request_id", name="orders", store_errors=True)
    def create(request_id, fail=False):
        if fail:
            raise ValueError("declined")
        return request_id

    create("r1")
    create("r2")
    try:
        create("r3", fail=True)
    except ValueError:
        pass
    lost = threading.Event()
    sheets = resilient.lock("sheets-sync", ttl=5, renew=True, on_lost=lambda lease: lost.set())
    with sheets as lease:
        print(json.dumps({"token": lease.token, "pid": os.getpid()}), flush=True)
        lost.wait(30)
    """
)


def test_status_shows_what_other_processes_keep(redis_url: str) -> None:
    """status shows another process's breaker, lock and records, as tables and as JSON."""
    with running(FLEET, redis_url) as fleet:
        assert fleet.stdout is not None
        lease = json.loads(fleet.stdout.readline())
        holder = f"{HOST}:{lease['pid']}"
        shop = ["--redis", redis_url, "--namespace", "shop"]
        tables = succeeded("status", *shop)
        assert tables.startswith(f"namespace 'shop' on {redis_url}\n")
        assert re.search(r"^  payments-api +open +4 +50% +- +0 +1 +\d+\.\d s$", tables, re.M)
        assert re.search(rf"^  sheets-sync +{lease['token']} +{holder} +\d\.\d s$", tables, re.M)
        assert re.search(r"^  NAME +COMPLETED +FAILED +IN PROGRESS +UNREADABLE$", tables, re.M)
        assert re.search(r"^  orders +2 +1 +0 +0$", tables, re.M)
        status = json_of("status", *shop, shape="status")
        (breaker,) = status["breakers"]
        assert (breaker["name"], breaker["shared"], breaker["state"]) == (
            "payments-api",
            True,
            "open",
        )
        assert (breaker["calls"], breaker["failure_rate"], breaker["trips"]) == (4, 0.5, 1)
        assert 55 < breaker["until_half_open"] <= 60
        (lock,) = status["locks"]
        assert (lock["name"], lock["token"], lock["holder"]) == (
            "sheets-sync",
            lease["token"],
            holder,
        )
        assert 0 < lock["ttl"] <= 5
        assert status["idempotency"] == [
            {"name": "orders", "completed": 2, "failed": 1, "in_progress": 0, "unreadable": 0}
        ]
        assert status["caches"] == []  # counted per process: the command line has none
        elsewhere = json_of("status", "--redis", redis_url, shape="status")
        assert elsewhere == {
            "namespace": "resilient",
            "breakers": [],
            "locks": [],
            "idempotency": [],
            "caches": [],
            "truncated": {"breakers": False, "locks": False, "idempotency": False},
        }


def test_breaker_open_makes_a_calling_process_fail_fast_within_sync_interval(
    redis_url: str,
) -> None:
    """`breaker open`: another process's calls are refused within sync_interval of it."""
    with running(CALLER, redis_url, "payments-api") as caller:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "ready"
        started = time.time()
        out = succeeded("breaker", "open", "payments-api", "--redis", redis_url)
        done = time.time()
        refused_at = json.loads(caller.stdout.readline())["refused_at"]
        assert caller.wait(PATIENCE) == 0
    assert out.startswith("breaker 'payments-api' forced open: every process refuses")
    assert re.search(r"^  payments-api +forced_open ", out, re.M)
    assert started < refused_at < done + SYNC_INTERVAL + SLACK
    on = ["payments-api", "--redis", redis_url]
    assert json_of("breaker", "disable", *on, shape="breaker")["state"] == "disabled"
    assert json_of("breaker", "close", *on, shape="breaker")["state"] == "closed"
    reset = json_of("breaker", "reset", *on, shape="breaker")
    assert (reset["state"], reset["calls"], reset["rejected"]) == ("closed", 0, 0)


def test_lock_release_by_token_frees_the_lock_and_its_holder_learns_it_lost_it(
    redis_url: str, backends: Backends
) -> None:
    """Without --token or with another token nothing is released; with it, the holder hears."""
    admin = Admin(backends(redis_url))
    with running(HOLDER, redis_url, "sheets-sync") as holder:
        assert holder.stdout is not None
        lease = json.loads(holder.stdout.readline())
        token = lease["token"]
        release = ["lock", "release", "sheets-sync", "--redis", redis_url]
        shown = failed(Exit.USAGE, *release)
        assert f"fencing token {token}, by {HOST}:{lease['pid']}" in shown
        assert f"Nothing was released: add --token {token} " in shown
        newer = failed(Exit.UNKNOWN_NAME, *release, "--token", str(token - 1))
        assert f"is held with fencing token {token}, not {token - 1}" in newer
        assert [info.token for info in admin.locks()] == [token]  # still held, by the holder
        released_at = time.monotonic()
        released = json_of(*release, "--token", str(token), shape="lock")
        assert holder.stdout.readline().strip() == "lost"
        heard = time.monotonic() - released_at
        assert holder.stdout.readline().strip() == "LockLostError"
        assert holder.wait(PATIENCE) == 0
    assert (released["name"], released["token"]) == ("sheets-sync", token)
    assert released["holder"] == f"{HOST}:{lease['pid']}"
    assert heard < 1.5 / 3 + SLACK  # at its next renewal (a third of its ttl), once the CLI ended
    assert admin.locks() == []


# Calls two idempotent functions on the Redis at argv[1]: orders r1 and r2 complete and r3
# fails (stored), invoices r1 completes; prints the calls that executed (not replayed).
MAKER = textwrap.dedent(
    """
    import json, sys
    import resilient
    from resilient.backends.redis import RedisBackend

    backend = RedisBackend.from_url(sys.argv[1])
    executed = []

    @resilient.idempotent(key="request_id", name="orders", store_errors=True, backend=backend)
    def create(request_id, fail=False):
        executed.append(f"orders {request_id}")
        if fail:
            raise ValueError("declined")
        return request_id

    @resilient.idempotent(key="request_id", name="invoices", backend=backend)
    def invoice(request_id):
        executed.append(f"invoices {request_id}")
        return request_id

    create("r1")
    create("r2")
    try:
        create("r3", fail=True)
    except Exception:  # ValueError when it runs, IdempotentFailureError when replayed
        pass
    invoice("r1")
    backend.close()
    print(json.dumps(executed))
    """
)


def test_idempotency_purge_lets_the_keys_another_process_stored_execute_again(
    redis_url: str,
) -> None:
    """Records another process stored are listed; purged by state and name, they run again."""
    with python_processes(MAKER, redis_url, count=1) as first:
        pass
    assert first == [["orders r1", "orders r2", "orders r3", "invoices r1"]]
    on = ["--redis", redis_url]
    listed = json_of("idempotency", "list", "--state", "completed", *on, shape="idempotency-list")
    assert sorted(record["name"] for record in listed["records"]) == [
        "invoices",
        "orders",
        "orders",
    ]
    assert {record["state"] for record in listed["records"]} == {"completed"}
    out = succeeded("idempotency", "purge", "--state", "completed", "--name", "orders", *on)
    assert out.startswith("purged 2 completed records of 'orders' in namespace 'resilient'")
    with python_processes(MAKER, redis_url, count=1) as second:
        pass
    assert second == [["orders r1", "orders r2"]]  # the failure and the invoice were replayed
    purged = json_of("idempotency", "purge", "--state", "failed", *on, shape="idempotency-purge")
    assert purged == {
        "namespace": "resilient",
        "state": "failed",
        "name": None,
        "purged": 1,
        "truncated": False,
    }


def test_listings_cut_at_the_limit_warn_and_say_so_in_their_json(
    redis_url: str, client: redis.Redis
) -> None:
    """Past 10,000 record keys: a warning on stderr, "truncated" in JSON, both telling how to
    look further; --limit N looks at N keys, --name narrows."""
    with python_processes(MAKER, redis_url, count=1) as made:
        pass
    assert made == [["orders r1", "orders r2", "orders r3", "invoices r1"]]
    filler = client.pipeline(transaction=False)
    for _ in range(LIMIT):  # unreadable records of another function, as a store may hold
        filler.set(f"resilient:idempotent:filler:{{{uuid.uuid4().hex}}}", b"?", ex=600)
    filler.execute()
    on = ["--redis", redis_url]
    cut = (
        f"more than {LIMIT} keys are under their prefix in namespace 'resilient', "
        f"of which {LIMIT} were looked at"
    )
    further = f"a --limit above {LIMIT} looks further"
    tables, warning = warned("status", *on)
    assert warning.endswith(f": the idempotency records shown are incomplete: {cut} ({further})")
    assert "\nIdempotency records\n" in tables
    out, warning = warned("status", "--json", *on)
    status = json.loads(out)
    conforms(status, documented("status"))
    assert status["truncated"] == {"breakers": False, "locks": False, "idempotency": True}
    wider = ["--limit", str(2 * LIMIT), *on]  # room for every key
    status = json_of("status", *wider, shape="status")  # and no warning
    assert status["truncated"] == {"breakers": False, "locks": False, "idempotency": False}
    assert {row["name"]: row["unreadable"] for row in status["idempotency"]}["filler"] == LIMIT
    out, warning = warned("idempotency", "list", "--json", *on)
    listed = json.loads(out)
    conforms(listed, documented("idempotency-list"))
    assert (len(listed["records"]), listed["truncated"]) == (LIMIT, True)
    assert warning.endswith(f"{cut} ({further}; --name NAME looks at one function's records only)")
    everything = json_of("idempotency", "list", *wider, shape="idempotency-list")
    assert (len(everything["records"]), everything["truncated"]) == (LIMIT + 4, False)
    orders = json_of("idempotency", "list", "--name", "orders", *on, shape="idempotency-list")
    assert len(orders["records"]) == 3
    assert orders["truncated"] is False
    out, warning = warned("idempotency", "list", "--name", "orders", "--limit", "2", *on)
    assert "\n  orders " in out
    assert warning.endswith(
        "more than 2 keys are under their prefix in namespace 'resilient', of which 2 were "
        "looked at (a --limit above 2 looks further)"  # --name is given: no advice to give it
    )
    out, warning = warned("idempotency", "purge", "--state", "failed", "--json", *on)
    blind = json.loads(out)
    assert blind["truncated"] is True  # it purged the failed record only if it came across it
    assert "failed idempotency records may be left: more than" in warning
    assert warning.endswith(f"({further}; --name NAME looks at one function's records only)")
    purge = ["idempotency", "purge", "--state", "failed"]
    past = json_of(*purge, *wider, shape="idempotency-purge")  # past the unreadable ones
    assert past["truncated"] is False
    rest = json_of(*purge, "--name", "orders", *on, shape="idempotency-purge")
    assert rest == {**rest, "purged": 0, "truncated": False}
    assert blind["purged"] + past["purged"] == 1
    for _ in range(LIMIT + 1):  # lock keys that hold no lease: listed, never shown
        filler.set(f"resilient:lock:{{{uuid.uuid4().hex}}}:fence", 1, ex=600)
    filler.execute()
    refused = failed(Exit.USAGE, "lock", "release", "sheets-sync", *on)
    assert "lock 'sheets-sync' is not among the locks looked at: more than" in refused
    assert "Nothing was released: add --token N" in refused
    assert refused.endswith(f"or a --limit above {LIMIT} to look further for its lease")
    looked = failed(Exit.UNKNOWN_NAME, "lock", "release", "sheets-sync", "--limit", "30000", *on)
    assert "lock 'sheets-sync' is not held in namespace 'resilient'" in looked


# Calls a cached function for users 1, 2 and 3 on the Redis at argv[1], tagged per user;
# prints the users whose profile was computed (not read from the cache).
CACHER = textwrap.dedent(
    """
    import json, sys
    import resilient
    from resilient.backends.redis import RedisBackend

    backend = RedisBackend.from_url(sys.argv[1])
    computed = []

    @resilient.cached(ttl=300, tags=["users", "user:{user_id}"], name="profile", backend=backend)
    def profile(user_id):
        computed.append(user_id)
        return {"id": user_id}

    for user_id in (1, 2, 3):
        profile(user_id)
    backend.close()
    print(json.dumps(computed))
    """
)


def test_cache_purge_drops_by_tag_what_another_process_cached(redis_url: str) -> None:
    """Values another process cached under the tags given are dropped, and only they."""
    with python_processes(CACHER, redis_url, count=1) as first:
        pass
    assert first == [[1, 2, 3]]
    on = ["--redis", redis_url]
    out = succeeded("cache", "purge", "--tag", "user:1", "--tag", "user:3", *on)
    assert out.startswith("dropped 2 cached values tagged 'user:1', 'user:3'")
    with python_processes(CACHER, redis_url, count=1) as second:
        pass
    assert second == [[1, 3]]
    purged = json_of("cache", "purge", "--tag", "users", *on, shape="cache")
    assert purged == {"namespace": "resilient", "tags": ["users"], "purged": 3}


def test_an_unknown_name_exits_4_and_says_what_was_looked_for(redis_url: str) -> None:
    """A breaker or lock that is not there: exit 4, one line naming it, nothing changed."""
    on = ["--redis", redis_url]
    for action in ("open", "reset"):
        message = failed(Exit.UNKNOWN_NAME, "breaker", action, "nowhere", *on)
        assert f"no breaker 'nowhere' on {redis_url} in namespace 'resilient'" in message
    for token in (["--token", "7"], []):
        message = failed(Exit.UNKNOWN_NAME, "lock", "release", "nowhere", *token, *on)
        assert "lock 'nowhere' is not held in namespace 'resilient'" in message


@pytest.mark.parametrize(
    ("code", "args", "message"),
    [
        (Exit.USAGE, ["status"], "status needs --redis URL"),
        (Exit.USAGE, ["breaker", "open", "x"], "breaker open needs --redis URL"),
        (Exit.USAGE, ["status", "--redis", "http://localhost:6379"], "is not a Redis URL"),
        (Exit.USAGE, ["idempotency", "purge", "--state", "in_progress", "{url}"], "a duplicate"),
        (Exit.USAGE, ["lock", "release", "x", "--token", "seven", "{url}"], "fencing token"),
        (Exit.USAGE, ["cache", "purge", "{url}"], "--tag"),
        (Exit.USAGE, ["status", "--limit", "0", "{url}"], "--limit '0' must be a whole number"),
        (Exit.USAGE, ["idempotency", "list", "--limit", "all", "{url}"], "--limit 'all' must"),
        (Exit.USAGE, ["idempotency", "purge", "--state", "failed", "--limit", "-5"], "at least 1"),
        (Exit.USAGE, ["breaker", "open", "x", "--limit", "5", "{url}"], "arguments: --limit 5"),
        (Exit.USAGE, ["--limit", "5", "status", "{url}"], "--limit goes after the command's name"),
        (Exit.UNREACHABLE, ["breaker", "close", "x", "{down}"], "cannot reach Redis at"),
    ],
)
def test_bad_input_and_an_unreachable_redis_exit_2_and_3(
    code: Exit, args: list[str], message: str, redis_url: str
) -> None:
    """Bad input exits 2, a Redis that refuses the connection 3: one line each, no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"  # bound, not listening
        given = [
            part
            for each in args
            for part in {"{url}": ["--redis", redis_url], "{down}": ["--redis", down]}.get(
                each, [each]
            )
        ]
        assert message in failed(code, *given)


def commands(
    parser: argparse.ArgumentParser, words: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Return every command of *parser*, as the words that name it, with its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{words} {name}".strip()] = sub
                found.update(commands(sub, f"{words} {name}"))
    return found


def test_the_reference_documents_every_command_option_and_exit_code() -> None:
    """docs/cli.md gives each command, each option and choice, and each exit code."""
    reference = REFERENCE.read_text()
    synopsis = [f"{line} " for line in reference.splitlines() if line.startswith("resilient ")]
    found = commands(cli._parser())
    assert {"status", "breaker open", "lock release", "cache purge"} <= set(found)
    for words, parser in found.items():
        assert any(f" {words} " in line for line in synopsis), words
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in reference, (words, option)
            for choice in action.choices or ():
                assert f"`{choice}`" in reference, (words, choice)
    table = reference[reference.index("## Exit codes") :]
    documented_codes = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented_codes == {int(code) for code in Exit}
