import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).parent.parent / "benchmarks" / "run.py"

RETRY_CANDIDATES = ("hand-written loop", "resilient.retry", "tenacity", "stamina", "backoff")
MEMORY_CANDIDATES = (
    "resilient Wrapper, no layer",
    "dict-lookup closure",
    "functools.lru_cache",
    "cachetools LRUCache",
    "cachetools TTLCache",
    "dogpile.cache (memory)",
    "aiocache (memory)",
    "cashews (mem://)",
    "resilient.cached",
)
BREAKER_CANDIDATES = {
    "sync": ("resilient.breaker", "circuitbreaker", "purgatory", "pybreaker"),
    "async": ("resilient.breaker", "circuitbreaker", "purgatory", "aiobreaker"),
}
REDIS_CANDIDATES = {
    "sync": ("raw redis-py", "resilient.cached", "dogpile.cache"),
    "async": ("raw redis-py", "resilient.cached", "aiocache", "cashews"),
}


@pytest.fixture(scope="module")
def quick_run() -> str:
    """The output of `python benchmarks/run.py --quick`, which must succeed."""
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_benchmark_runner_runs_every_candidate_in_one_command(quick_run: str) -> None:
    """`python benchmarks/run.py --quick` checks every candidate does the same work and reports."""
    for candidate in RETRY_CANDIDATES + MEMORY_CANDIDATES:
        assert candidate in quick_run
    for scenario in ("success sync", "success async", "failure sync", "failure async"):
        assert scenario in quick_run
    for scenario in ("hit sync", "hit async", "closed sync", "closed async"):
        assert f"{scenario} (x bare)" in quick_run
    for candidates in BREAKER_CANDIDATES.values():
        for candidate in candidates:
            assert candidate in quick_run
    for scenario, candidate in (
        ("redis breaker closed sync", "resilient.breaker, shared"),
        ("redis breaker closed sync", "pybreaker"),
        ("redis breaker closed async", "resilient.breaker, shared"),
        ("redis breaker closed async", "purgatory"),
    ):
        assert f"{scenario}: {candidate}" in quick_run
    for mode, candidates in REDIS_CANDIDATES.items():
        for scenario in ("hit", "miss+set"):
            for candidate in candidates:
                assert f"redis {scenario} {mode}: {candidate}" in quick_run


def test_benchmark_runner_counts_one_redis_command_per_hit_and_two_per_miss(
    quick_run: str,
) -> None:
    """The runner counts `@cached` on Redis sending one command per hit and two per miss."""
    for scenario, commands in (("hit", "1 command"), ("miss+set", "2 commands")):
        for mode in ("sync", "async"):
            line = f"PASS  redis {scenario} {mode}: resilient.cached sends {commands} per call"
            assert line in quick_run
