"""The typing checks in tests/typing pass mypy --strict, bite on misuse, and run for real.

The files in ``tests/typing`` are named ``check_*.py`` so that pytest does not collect them as
tests: they are type-checking fixtures whose ``_misuse_*`` functions must never run. This module
runs mypy over them, shows with a deliberately wrong file that mypy does report misuse through
our decorators, and imports them to run their ``check_*`` functions, so their positive cases
are true at runtime too.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from resilient.typing import ExceptionPredicate, ExceptionTypes, Observer, ResultPredicate

ROOT = Path(__file__).resolve().parent.parent
TYPING_DIR = ROOT / "tests" / "typing"
CHECK_FILES = sorted(TYPING_DIR.glob("check_*.py"))
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a mypy cache directory shared by this module's runs (the first one is cold)."""
    return tmp_path_factory.mktemp("mypy_cache")


def run_mypy(cache: Path, *targets: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mypy --strict`` with the project's configuration on *targets*."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            "--show-error-codes",
            *map(str, targets),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def errors_in(result: subprocess.CompletedProcess[str], path: Path) -> set[tuple[int, str]]:
    """Return the (line, error code) pairs mypy reported for *path*."""
    found = set()
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        if match and Path(match["file"]).name == path.name:
            found.add((int(match["line"]), match["code"]))
    return found


def write_module(path: Path, source: str) -> list[int]:
    """Write *source* to *path* and return the numbers of the lines marked ``# error``."""
    text = textwrap.dedent(source).lstrip()
    path.write_text(text)
    return [number for number, line in enumerate(text.splitlines(), 1) if "# error" in line]


def load(path: Path) -> ModuleType:
    """Import the file at *path* as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"_typing_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_typing_files_exist() -> None:
    """The typing checks cover retry, retrying blocks and configuration."""
    assert {path.name for path in CHECK_FILES} >= {
        "check_retry.py",
        "check_retrying.py",
        "check_config.py",
    }


def test_typing_checks_pass_mypy_strict(mypy_cache: Path) -> None:
    """mypy --strict accepts tests/typing: every assert_type holds and every ignore is used."""
    result = run_mypy(mypy_cache, TYPING_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_reports_misuse_of_decorated_functions(mypy_cache: Path, tmp_path: Path) -> None:
    """mypy reports wrong arguments to decorated functions and methods at the offending lines."""
    path = tmp_path / "misuse_decorated.py"
    marked = write_module(
        path,
        """
        from resilient import retry

        @retry(on=ConnectionError, attempts=3)
        def charge(order_id: str, cents: int) -> bool:
            return True

        @retry(on=ConnectionError)
        async def refund(order_id: str) -> int:
            return 0

        class Shop:
            @retry(on=ConnectionError)
            def buy(self, item: str) -> int:
                return 1

        charge("order-1", "100")  # error: arg-type
        charge("order-1")  # error: call-arg
        paid: str = charge("order-1", 100)  # error: assignment

        async def main() -> None:
            cents: str = await refund("order-1")  # error: assignment

        Shop().buy(3)  # error: arg-type
        retry(on=ConnectionError, attemps=3)  # error: call-overload
        retry(attempts=3)  # error: call-overload
        """,
    )
    lines = path.read_text().splitlines()
    expected = {(number, lines[number - 1].split("# error: ")[1]) for number in marked}
    result = run_mypy(mypy_cache, path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert errors_in(result, path) == expected, result.stdout


def test_retry_policy_constructor_is_typed(mypy_cache: Path, tmp_path: Path) -> None:
    """RetryPolicy(...) refuses wrongly typed on=, deadline= and max_wait= under mypy.

    The attrs converters of these fields decide the types of ``RetryPolicy.__init__``; they
    must accept what ``retry()`` accepts (exception types or a predicate; float or timedelta
    seconds), not ``object``.
    """
    path = tmp_path / "misuse_policy.py"
    marked = write_module(
        path,
        """
        from datetime import timedelta
        from resilient import RetryPolicy

        RetryPolicy(on=ConnectionError, deadline=timedelta(seconds=5), max_wait=1)
        RetryPolicy(on=(ConnectionError, TimeoutError), deadline=2.5)
        RetryPolicy(on=lambda exc: isinstance(exc, OSError), max_wait=timedelta(seconds=1))
        RetryPolicy(on="ConnectionError")  # error
        RetryPolicy(on=ConnectionError, deadline="5s")  # error
        RetryPolicy(on=ConnectionError, max_wait="1s")  # error
        """,
    )
    result = run_mypy(mypy_cache, path)
    assert errors_in(result, path) == {(number, "arg-type") for number in marked}, result.stdout


def test_wait_strategies_take_timedelta_durations(mypy_cache: Path, tmp_path: Path) -> None:
    """The wait strategies type-check with timedelta durations, as their docs promise."""
    path = tmp_path / "timedelta_waits.py"
    write_module(
        path,
        """
        from datetime import timedelta
        from resilient import RetryBudget, retry, wait
        from resilient.typing import Wait

        strategies: list[Wait] = [
            wait.constant(timedelta(seconds=1)),
            wait.linear(start=timedelta(milliseconds=100), step=timedelta(seconds=1)),
            wait.exponential(initial=timedelta(milliseconds=100), max=timedelta(seconds=5)),
            wait.decorrelated_jitter(initial=timedelta(milliseconds=1), max=timedelta(seconds=1)),
            wait.capped(wait.exponential(), max=timedelta(seconds=2)),
        ]

        @retry(
            on=ConnectionError,
            wait=wait.constant(timedelta(seconds=1)),
            deadline=timedelta(seconds=30),
            max_wait=timedelta(seconds=5),
            budget=RetryBudget(window=timedelta(seconds=5)),
        )
        def call() -> None: ...
        """,
    )
    result = run_mypy(mypy_cache, path)
    assert errors_in(result, path) == set(), result.stdout


def test_custom_wait_with_its_own_parameter_names_type_checks(
    mypy_cache: Path, tmp_path: Path
) -> None:
    """A user's wait function type-checks whatever it names its two parameters.

    ``resilient.typing.Wait`` documents that "any object with this call signature works", and
    the library calls a strategy positionally, so the protocol's parameters must be
    positional-only for ``def backoff(n: int, prev: float) -> float`` to be a Wait.
    """
    path = tmp_path / "custom_wait.py"
    write_module(
        path,
        """
        from resilient import retry
        from resilient.typing import Wait

        def backoff(n: int, prev: float) -> float:
            return min(prev * 2 + 0.1, 5.0)

        strategy: Wait = backoff

        @retry(on=ConnectionError, wait=backoff)
        def call() -> None: ...
        """,
    )
    result = run_mypy(mypy_cache, path)
    assert errors_in(result, path) == set(), result.stdout


def _checks() -> list[tuple[str, Callable[[], None]]]:
    found = []
    for path in CHECK_FILES:
        module = load(path)
        found += [
            (f"{path.stem}.{name}", function)
            for name, function in vars(module).items()
            if name.startswith("check_") and callable(function)
        ]
    return found


CHECKS = _checks()


@pytest.mark.parametrize(("name", "check"), CHECKS, ids=[name for name, _ in CHECKS])
def test_typing_checks_run(name: str, check: Callable[[], None]) -> None:
    """Each check_* function in tests/typing also runs without error."""
    check()


def test_public_aliases_work_in_runtime_annotations() -> None:
    """The aliases in resilient.typing combine with | at runtime, where annotations are evaluated.

    Without ``from __future__ import annotations`` (and whenever a tool such as attrs, pydantic
    or typing.get_type_hints evaluates annotations) ``ExceptionTypes | None`` runs; a string
    alias makes it a TypeError in user code.
    """
    for alias in (ExceptionTypes, ExceptionPredicate, Observer, ResultPredicate):
        assert not isinstance(alias, str), alias
        optional = alias | None
        assert optional is not None
