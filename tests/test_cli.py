"""The command line, run as a user runs it: `python -m resilient ...` in a subprocess."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from resilient import cli
from resilient.cli import Exit

README = Path(__file__).parent.parent / "README.md"


def _readme_command(marker: str) -> str:
    lines = README.read_text().splitlines()
    start = lines.index(f"<!-- {marker}-command -->")
    assert lines[start + 1] == "```bash"
    assert lines[start + 3] == "```"
    return lines[start + 2]


def _resilient(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilient", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_demo_runs_and_shows_each_decision():
    """`python -m resilient demo` tours every capability, shows each decision, and exits 0."""
    done = _resilient("demo")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    # retry
    assert "retry in 150 ms" in out  # the Retry-After hint beat the 10 ms backoff
    assert "gave up after 3 attempts" in out  # the note on the re-raised exception
    assert "raised ValueError: malformed order id" in out  # not retried
    assert "give up after 3 attempts: deadline" in out
    # 40 calls: a reserve of 0.5/s over 10 s plus 0.1 per call allows exactly 9 retries
    assert "9 retries allowed; 38 calls gave up as the budget ran out" in out
    assert "call 3 ok after 4 attempts" in out  # per-call attempt counts under asyncio
    # breaker: opens, refuses without calling, a failed probe opens it again, a good one closes
    assert "breaker opened (consecutive_failures): refuses calls for 200 ms" in out
    assert "raised CircuitOpenError: circuit breaker 'payments-api' is open" in out
    assert "breaker opened (probe_failed)" in out
    assert "breaker closed (probes_passed)" in out
    assert "opened twice; 3 calls refused at once; probed twice; now closed" in out
    # cache: ten calls over three keys, then a stampede on a cold key
    assert "profile(1): HIT" in out
    assert "hit ratio 70% (7 hits, 3 misses); 8 concurrent calls on a cold key ran it once" in out
    # single flight: 100 concurrent calls over two keys ran twice
    assert "100 calls (80 USD, 20 EUR) answered; 98 joined a running flight" in out
    # idempotency: replay, conflict, in progress
    assert "raised IdempotencyConflictError" in out
    assert "raised IdempotencyInProgressError" in out
    assert "2 replays of a stored answer; 1 conflict; 1 told in progress" in out
    # lock: four leases in turn with rising fencing tokens; a try-once refused while held
    assert "4 leases, tokens 1, 2, 3, 4;" in out
    assert "raised LockNotAcquiredError: lock 'sheets-sync' is held by someone else" in out
    # rate limit: 5 of a burst of 8 go; with wait=True calls wait for their token
    assert "raised RateLimitedError: rate limit 'partner-api' reached" in out
    assert re.search(r"waited \d+ ms for a token", out)
    assert "3 refused before reaching the upstream" in out
    # time limit and fallback; a deadline cuts a lock wait
    assert "fallback answers the TimeoutError" in out
    assert "got {'price': None}" in out
    assert "1 call cancelled at its limit and answered by the fallback; 1 lock wait cut" in out
    # bulkhead: 2 run, 2 queue, 2 refused
    assert "raised BulkheadFullError: bulkhead 'pdf-renderer' is full" in out
    assert "at most 2 ran at once; 2 waited for a slot; 2 refused at once" in out
    # the summary table has a line per capability: calls, upstream runs, decisions
    summary = out[out.index("== Summary") :]
    for capability, calls, ran in [
        ("retry", 50, 72),
        ("breaker", 9, 6),
        ("cache", 18, 4),
        ("single flight", 101, 3),
        ("idempotency", 6, 2),
        ("lock", 4, 3),
        ("rate limit", 12, 9),
        ("timeout, deadline", 2, 1),
        ("bulkhead", 6, 4),
    ]:
        assert re.search(rf"^   {capability} +{calls} +{ran}  \S", summary, re.MULTILINE), (
            capability
        )


def test_demo_across_processes_shares_one_redis(redis_url, client):
    """`demo --redis URL --processes 4` shows one breaker, cache, flight, key, lock for all."""
    done = _resilient("demo", "--redis", redis_url, "--processes", "4", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "4 processes share one Redis" in out
    for worker in ("p1", "p2", "p3", "p4"):
        assert f"{worker} caller" in out  # every process reported live rows
    # one trip for the fleet, however many processes counted failures; one probe for all
    assert "8 failures from 4 processes opened it once for all" in out
    assert "the fleet probed once; closed once" in out
    assert "breaker state: open" in out
    # each key of the shared cache computed by one process, read by all
    assert "24 calls from 4 processes: the upstream ran 3 times for 3 keys" in out
    # one flight across processes: fewer executions than processes
    flight = re.search(r"20 calls from 4 processes: executed (\w+)", out)
    assert flight is not None
    assert flight.group(1) in ("once", "twice"), flight.group(0)
    # one execution of the idempotent request for the whole fleet
    assert "9 calls from 4 processes: executed once; 7 replays of the stored answer" in out
    assert "1 conflict refused" in out
    # one holder at a time, with fencing tokens that rise
    assert "4 leases from 4 processes, never two at once; fencing tokens rose" in out
    # the rate limit is the fleet's, not each process's
    assert "10 of 24 calls from 4 processes allowed" in out
    assert re.search(r"8 calls from 4 processes ran at most [12] at once", out)
    assert "== Summary across 4 processes" in out
    namespace = re.search(r"under the namespace '(resilient-demo-[0-9a-f]{6})'", out)
    assert namespace is not None
    assert "Deleted the " in out
    assert client.dbsize() == 0  # the run's keys were deleted, and it wrote no others


def test_global_options_go_before_or_after_the_command(redis_url):
    """--redis and --namespace belong to every command, on either side of its name."""
    done = _resilient(
        "--redis", redis_url, "--namespace", "ci", "demo", "--processes", "1", timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"under the namespace 'ci-[0-9a-f]{6}'", done.stdout)
    assert "opened it once for all" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--redis", "http://localhost:6379"], "is not a Redis URL: write redis://"),
        (["--redis", "localhost:6379", "demo"], "is not a Redis URL"),
        (["demo", "--redis", "redis://localhost:port/0"], "Port could not be cast to integer"),
        (["demo", "--processes", "4"], "--processes needs --redis URL"),
        (["demo", "--redis", "redis://localhost", "--processes", "0"], "from 1 to 16"),
        (["demo", "--namespace", "my app"], "must be 1 to 64 letters"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_input_is_a_usage_error(args, message):
    """Bad input exits 2 with one line saying what to write, and no traceback."""
    done = _resilient(*args)
    assert done.returncode == Exit.USAGE == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_password_in_a_bad_url_is_not_shown():
    """An error about a URL never prints the password in it."""
    done = _resilient("demo", "--redis", "http://admin:hunter2@localhost:6379")
    assert done.returncode == Exit.USAGE
    assert "admin:***@localhost" in done.stderr
    assert "hunter2" not in done.stderr


def test_unreachable_redis_exits_3():
    """A Redis that refuses the connection exits 3 at once, with the reason, no traceback."""
    url = f"redis://:secret@127.0.0.1:{_free_port()}/0"
    done = _resilient("demo", "--redis", url, "--processes", "2", timeout=30)
    assert done.returncode == Exit.UNREACHABLE == 3
    assert "cannot reach Redis at redis://:***@127.0.0.1:" in done.stderr
    assert "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stderr
    assert done.stdout == ""


def test_redis_without_redis_py_says_which_extra_to_install():
    """--redis on an install without redis-py exits 2 and names the extra to install."""
    script = (
        "import sys; sys.modules['redis'] = None\n"  # as if redis-py were not installed
        "from resilient.cli import main\n"
        "raise SystemExit(main(['demo', '--redis', 'redis://localhost:6379/0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == Exit.USAGE
    assert "pip install 'resilient[redis]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_documents_every_exit_code():
    """--help prints the exit code table, and the table lists exactly the codes main returns."""
    done = _resilient("--help")
    assert done.returncode == 0
    table = done.stdout[done.stdout.index("Exit codes:") :]
    documented = {int(code) for code in re.findall(r"^  (\d+) ", table, re.MULTILINE)}
    assert documented == {int(code) for code in Exit}
    assert cli.__doc__ is not None
    assert "Exit codes:" in cli.__doc__


def test_readme_gives_the_two_commands_ci_runs():
    """The README's demo and test commands exist where .ci/run extracts them from."""
    demo = _readme_command("demo")
    tests = _readme_command("test")
    assert demo.endswith("python -m resilient demo")
    assert "--group dev" in tests
    assert tests.endswith(".venv/bin/pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'eval "$demo"' in ci
    assert 'eval "$tests"' in ci
