import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).parent.parent / "benchmarks" / "run.py"


def test_benchmark_runner_runs_every_candidate_in_one_command():
    """`python benchmarks/run.py --quick` checks every candidate does the same work and reports."""
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for candidate in ("hand-written loop", "resilient.retry", "tenacity", "stamina", "backoff"):
        assert candidate in done.stdout
    for scenario in ("success sync", "success async", "failure sync", "failure async"):
        assert scenario in done.stdout
