import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _readme_command(marker: str) -> str:
    lines = README.read_text().splitlines()
    start = lines.index(f"<!-- {marker}-command -->")
    assert lines[start + 1] == "```bash"
    assert lines[start + 3] == "```"
    return lines[start + 2]


def test_demo_runs_and_shows_each_decision():
    """`python -m resilient demo` tours every retry capability and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "resilient", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "retry in 150 ms" in out  # the Retry-After hint beat the 10 ms backoff
    assert "gave up after 3 attempts" in out  # the note on the re-raised exception
    assert "raised ValueError: malformed order id" in out  # not retried
    assert "give up after 3 attempts: deadline" in out
    # 40 calls: a reserve of 0.5/s over 10 s plus 0.1 per call allows exactly 9 retries
    assert "9 retries allowed; 38 calls gave up as the budget ran out" in out
    assert "call 3 ok after 4 attempts" in out  # per-call attempt counts under asyncio
    assert done.stderr == ""


def test_cli_refuses_unknown_commands():
    """An unknown subcommand exits with argparse's usage error, status 2."""
    done = subprocess.run(
        [sys.executable, "-m", "resilient", "nonsense"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


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
