import ast
import asyncio
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

RUNNER = Path(__file__).parent.parent / "benchmarks" / "run.py"
BENCHMARKS_PAGE = Path(__file__).parent.parent / "docs" / "benchmarks.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
LOCK_CANDIDATES = {
    "sync": (
        "raw redis-py",
        "resilient.lock",
        "redis-py Lock",
        "python-redis-lock",
        "pottery Redlock, 1 master",
        "pottery Redlock, 3 masters",
    ),
    "async": (
        "raw redis-py",
        "resilient.lock",
        "redis-py Lock",
        "pottery AIORedlock, 1 master",
        "pottery AIORedlock, 3 masters",
    ),
}
CONTENDED_CANDIDATES = (
    "resilient.lock",
    "redis-py Lock(sleep=0.001)",
    "redis-py Lock (default sleep=0.1)",
    "python-redis-lock",
)
IDEMPOTENCY_CANDIDATES = {
    "sync": ("bare call", "raw redis-py", "resilient.idempotent", "Powertools idempotent_function"),
    # Powertools' idempotent_function has no asyncio support
    "async": ("bare call", "raw redis-py", "resilient.idempotent"),
}
DEDUPE_CANDIDATES = {
    "100 awaits": (
        "hand-written single flight",
        "no dedupe",
        "resilient.deduped",
        "cashews thunder_protection",
        "cashews @cache(lock=True), mem://",
        "cashews @cache(lock=True), redis://",
        "aiocache cached_stampede, memory",
        "aiocache cached_stampede, redis",
    ),
    "64 threads": ("hand-written single flight", "no dedupe", "resilient.deduped"),
    # --quick leaves out aiocache, which opens a connection per caller
    "4 processes x 25 awaits": (
        "resilient.deduped, each process alone",
        "resilient.deduped(shared=True), redis://",
        "no dedupe",
        "cashews @cache(lock=True), redis://",
    ),
}

RATE_LIMIT_CANDIDATES = (
    "bare call",
    "hand-written token bucket",
    "resilient.rate_limited",
    "limits fixed window",
    "limits moving window",
    "limits sliding window counter",
)
BULKHEAD_CANDIDATES = {
    "sync": ("bare call", "hand-written counter + Lock", "threading.BoundedSemaphore"),
    "async": ("bare call", "hand-written counter + Lock", "asyncio.Semaphore"),
}


@pytest.fixture(scope="module")
def quick_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the quick run writes its ratios (ratios.json) and draws them (figure.png)."""
    return tmp_path_factory.mktemp("quick")


@pytest.fixture(scope="module")
def quick_run(quick_files: Path) -> str:
    """The output of `python benchmarks/run.py --quick`, which must succeed."""
    ratios, figure = quick_files / "ratios.json", quick_files / "figure.png"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--quick", "--json", str(ratios), "--plot", str(figure)],
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


def test_benchmark_runner_counts_two_redis_commands_per_lock_and_release(quick_run: str) -> None:
    """Every lock candidate is checked to exclude, and `resilient.lock` sends 2 commands."""
    for mode, candidates in LOCK_CANDIDATES.items():
        for candidate in candidates:
            assert f"redis lock {mode}: {candidate}" in quick_run
        line = f"PASS  redis lock {mode}: resilient.lock sends 2 commands per call (EVALSHA x2"
        assert line in quick_run
    assert "Redis lock, contended: 4 processes, one name" in quick_run
    for candidate in CONTENDED_CANDIDATES:
        # the last column counts the times two processes were in the critical section at once
        assert re.search(rf"^{re.escape(candidate)} .* 0$", quick_run, re.MULTILINE), candidate
        # and what each acquisition made Redis run, by command
        assert f"info  contended {candidate}, commands per acquisition" in quick_run


def test_benchmark_runner_counts_idempotent_commands_per_first_call_and_replay(
    quick_run: str,
) -> None:
    """Every idempotency candidate is checked to run once per key; `@idempotent` sends 2 and 1."""
    for mode, candidates in IDEMPOTENCY_CANDIDATES.items():
        for scenario in ("first call", "replay"):
            for candidate in candidates:
                assert f"redis idempotent {scenario} {mode}: {candidate}" in quick_run
        for scenario, commands in (("first call", "2 commands"), ("replay", "1 command")):
            line = (
                f"PASS  redis idempotent {scenario} {mode}: resilient.idempotent sends "
                f"{commands} per call (EVALSHA"
            )
            assert line in quick_run
        # the time budget is reported either way, never left out
        for scenario in ("first call", "replay"):
            line = rf"(PASS|FAIL)  redis idempotent {scenario} {mode}: resilient\.idempotent = "
            assert re.search(line + r"[\d.]+x raw redis-py \(target <= 1\.1x\)", quick_run)


def test_benchmark_runner_serves_every_dedupe_caller(quick_run: str) -> None:
    """Every dedupe candidate is reported, and `@deduped` runs the function once per flight."""
    for scenario, candidates in DEDUPE_CANDIDATES.items():
        for candidate in candidates:
            assert f"{scenario}: {candidate}" in quick_run
    for scenario in ("100 awaits", "64 threads"):
        served = scenario.split()[0]
        line = rf"dedupe {scenario}: resilient\.deduped = .* 1 execution \(all {served} served"
        assert re.search(line, quick_run), scenario


def test_benchmark_runner_shares_one_execution_across_processes(quick_run: str) -> None:
    """Four processes' callers of `@deduped(shared=True)` share its executions through Redis.

    One execution serves them all unless a process was released after the flight had landed
    (on a loaded machine), and then it leads the next one: never two at once.
    """
    shared = re.escape("4 processes x 25 awaits: resilient.deduped(shared=True), redis://")
    row = re.search(rf"^{shared} .* (\d+) +(\d+) +all 100 served$", quick_run, re.MULTILINE)
    assert row, "the shared flight did not serve every caller"
    executions, at_once = int(row[1]), int(row[2])
    assert at_once == 1
    assert 1 <= executions <= 4
    assert re.search(rf"(PASS|FAIL)  dedupe {shared} = .* ms, {executions} execution", quick_run)
    # in-process only, each of the four processes runs the function once
    alone = re.escape("4 processes x 25 awaits: resilient.deduped, each process alone")
    assert re.search(rf"^{alone} .* 4 +\d +all 100 served$", quick_run, re.MULTILINE)


def test_benchmark_runner_compares_rate_limit_decisions(quick_run: str) -> None:
    """Every rate limiter is checked to limit; `@rate_limited` decides with 1 Redis command."""
    assert "rate limit decision, in memory" in quick_run
    for scenario in ("admitted sync", "admitted async", "refused sync", "refused async"):
        assert f"rate limit {scenario} (x bare)" in quick_run
    for candidate in RATE_LIMIT_CANDIDATES:
        assert re.search(rf"^{re.escape(candidate)} ", quick_run, re.MULTILINE), candidate
    for mode in ("sync", "async"):
        for candidate in ("raw redis-py", *RATE_LIMIT_CANDIDATES):
            if candidate == "hand-written token bucket":  # in memory only
                continue
            assert f"redis rate limit admitted {mode}: {candidate}" in quick_run
        line = (
            f"PASS  redis rate limit admitted {mode}: resilient.rate_limited sends 1 command "
            "per call (EVALSHA; target 1)"
        )
        assert line in quick_run
        # the time budgets are reported either way, never left out
        for budget in (
            r"resilient\.rate_limited = [\d.]+x bare call \(target <= 20x\)",
            r"limits fixed window = [\d.]+x resilient\.rate_limited \(target >= 5x\)",
        ):
            assert re.search(rf"(PASS|FAIL)  rate limit admitted {mode}: {budget}", quick_run)
        budget = r"resilient\.rate_limited = [\d.]+x raw redis-py \(target <= 1\.1x\)"
        assert re.search(rf"(PASS|FAIL)  redis rate limit admitted {mode}: {budget}", quick_run)


def test_benchmark_runner_measures_bulkhead_admission(quick_run: str) -> None:
    """Every bulkhead is checked to bound; a shared one sends 2 Redis commands per call."""
    assert "bulkhead, uncontended admission" in quick_run
    for mode, candidates in BULKHEAD_CANDIDATES.items():
        assert f"bulkhead admitted {mode} (x bare)" in quick_run
        for candidate in (*candidates, "resilient.bulkhead"):
            assert re.search(rf"^{re.escape(candidate)} ", quick_run, re.MULTILINE), candidate
        shared = f"redis bulkhead shared admitted {mode}: resilient.bulkhead(shared=True)"
        assert re.search(rf"^{re.escape(shared)} .* 2 \(EVALSHA x2\) ", quick_run, re.MULTILINE)
        assert f"redis bulkhead shared admitted {mode}: raw redis-py" in quick_run


def _png_size(path: Path) -> tuple[int, int]:
    """Check that *path* is a PNG file of a sane size; return its width and height in pixels."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is no PNG"
    assert 5_000 < len(data) < 300_000, f"{path} has {len(data):,} bytes"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 600 <= width <= 4_000, width
    assert 200 <= height <= 8_000, height
    return width, height


def test_benchmark_runner_draws_every_part_beside_its_anchors(
    quick_run: str, quick_files: Path
) -> None:
    """`--json` saves a ratio per candidate of every part, `--plot` draws a panel per part."""
    plot = _benchmark_module("plot")
    _png_size(quick_files / "figure.png")
    ratios, caption = plot.load(quick_files / "ratios.json")
    assert "--quick" in caption
    panels = plot.panels(ratios)
    assert {panel.part for panel in panels} == set(_parts())
    for panel in panels:
        ours = [name for name in panel.candidates if name.startswith("resilient")]
        assert ours, f"{panel.part}: x {panel.baseline} shows no resilient candidate"
        assert panel.baseline not in panel.candidates  # the dashed line, not a row
    # every timed ratio the tables print is saved, the baseline's own 1.0 included
    saved = {(m.scenario, m.candidate): m.ratio for m in ratios}
    assert saved["success sync", "bare call"] == 1.0
    assert saved["redis lock sync", "raw redis-py"] == 1.0
    assert saved["redis lock sync", "resilient.lock"] > 1.0
    assert ("contended, 4 processes", "resilient.lock") in saved
    assert ("100 awaits", "resilient.deduped") in saved


def _parts() -> tuple[str, ...]:
    """The parts the runner registers (its PARTS), read from its source without importing it."""
    tree = ast.parse(RUNNER.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "PARTS":
            parts: tuple[str, ...] = ast.literal_eval(node.value)
            return parts
    raise AssertionError("benchmarks/run.py has no PARTS")


def test_benchmark_figure_is_drawn_again_from_saved_ratios(
    quick_run: str, quick_files: Path, tmp_path: Path
) -> None:
    """`--from ratios.json --plot` measures nothing and draws the run's figure byte for byte."""
    again = tmp_path / "again.png"
    done = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--from",
            str(quick_files / "ratios.json"),
            "--plot",
            str(again),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # no run, no tables
    assert again.read_bytes() == (quick_files / "figure.png").read_bytes()


def test_benchmark_figure_marks_failures_and_ratios_below_the_baseline(tmp_path: Path) -> None:
    """A failed candidate, a ratio under 1 and a part of any name are drawn; the rest left out."""
    plot = _benchmark_module("plot")
    bare, floor = "bare call", "raw redis-py"
    ratios = [
        plot.Measurement("anything", "hit", bare, bare, 1.0),
        plot.Measurement("anything", "hit", bare, "resilient.thing", 7.5),
        plot.Measurement("anything", "hit", bare, "an anchor", 240.0),
        plot.Measurement("anything", "redis hit", floor, bare, 0.0003),
        plot.Measurement("anything", "redis hit", floor, floor, 1.0),
        plot.Measurement("anything", "redis hit", floor, "resilient.thing", 0.004),
        plot.Measurement("anything", "redis hit", floor, "an anchor", None),
    ]
    panels = plot.panels(ratios)
    assert [(panel.baseline, panel.candidates) for panel in panels] == [
        (bare, ["resilient.thing", "an anchor"]),
        (floor, ["resilient.thing", "an anchor"]),  # the bare call is no row against redis-py
    ]
    assert panels[1].ratios["an anchor", "redis hit"] is None
    plot.save(tmp_path / "ratios.json", ratios, caption="a small fixture")
    assert plot.load(tmp_path / "ratios.json") == (ratios, "a small fixture")
    plot.draw(tmp_path / "figure.png", ratios, caption="a small fixture")
    width, height = _png_size(tmp_path / "figure.png")
    assert width > height  # two panels side by side


def test_benchmark_runner_refuses_from_without_plot(tmp_path: Path) -> None:
    """`--from` only draws: without `--plot` the runner exits 2 with a usage error."""
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--from", str(tmp_path / "ratios.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--from draws a figure: give --plot too" in done.stderr


def test_benchmarks_page_shows_the_figure() -> None:
    """docs/benchmarks.md embeds a PNG figure that exists, and says how to draw it again."""
    page = BENCHMARKS_PAGE.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]+\]\(([^)\s]+\.png)\)", page)
    assert images, "the page embeds no PNG image"
    for image in images:
        _png_size(BENCHMARKS_PAGE.parent / image)
    assert "--plot docs/_static/benchmarks.png" in page
    assert "--from docs/_static/benchmarks.json" in page
    assert (BENCHMARKS_PAGE.parent / "_static" / "benchmarks.json").is_file()


def _benchmark_module(name: str) -> ModuleType:
    """Import benchmarks/<name>.py, which is not a package, under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", RUNNER.parent / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dedupe_benchmark_reports_failed_callers_instead_of_crashing() -> None:
    """A candidate that fails some callers (aiocache's "Too many connections") is a result."""
    dedupe = _benchmark_module("dedupe")
    calls = 0

    def overloaded(function: Any) -> Any:
        async def call(key: int) -> Any:
            nonlocal calls
            calls += 1
            if calls % 2 == 0:
                raise ConnectionError("Too many connections")
            return await function(key)

        return call

    candidates = {dedupe.SINGLE_FLIGHT: dedupe.single_flight, "overloaded": overloaded}
    scenario = dedupe.Scenario("4 awaits", "async", 4, candidates)
    with asyncio.Runner() as runner:
        results = dedupe.run([scenario], 2, runner, timeout=10.0)
    failing = results.benches["4 awaits", "overloaded"]
    assert len(failing.trials) == 1  # a failing candidate is tried once
    assert failing.best.failed == 2
    assert failing.best.describe(4) == "2 of 4 failed: ConnectionError: Too many connections"
    assert results.ratio("4 awaits", "overloaded") is None
    flight = results.benches["4 awaits", dedupe.SINGLE_FLIGHT].best
    assert (flight.failed, flight.executions) == (0, 1)


def test_rate_limit_benchmark_rejects_a_candidate_that_does_not_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A candidate that lets every call go fails the check made before timing."""
    monkeypatch.syspath_prepend(str(RUNNER.parent))  # it imports benchmarks/cache.py
    ratelimit = _benchmark_module("ratelimit")

    def succeed(value: int) -> int:
        return value

    def unlimited(function: Any) -> Any:
        return function

    refusing = ratelimit.Candidates(ratelimit.REFUSING).memory()
    with asyncio.Runner() as runner:
        for name in (ratelimit.RATE_LIMITED, ratelimit.TOKEN_BUCKET, ratelimit.LIMITS_FIXED):
            decorate = refusing[name]
            ratelimit.check_limiting(name, decorate, decorate, succeed, runner, admitting=False)
        with pytest.raises(AssertionError, match="did not refuse"):
            ratelimit.check_limiting(
                "unlimited", unlimited, unlimited, succeed, runner, admitting=False
            )
