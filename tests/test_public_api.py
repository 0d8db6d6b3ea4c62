"""The reviewed public surface of `resilient`, and what importing it does (nothing surprising).

Changing a list in this file is the review step: a new public name or module means editing it
here, on purpose.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

import resilient
import resilient.exceptions

# The names `import resilient` offers, reviewed.
PUBLIC_NAMES = [
    # configuration
    "configure",
    "reset_defaults",
    # retrying
    "retry",
    "retrying",
    "RetryPolicy",
    "RetryBudget",
    "Retrying",
    "Attempt",
    "wait",
    # deadlines and time limits
    "deadline",
    "Deadline",
    "remaining",
    "timeout",
    # circuit breaking
    "breaker",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    # rate limiting
    "rate_limited",
    "RateLimiter",
    "RateLimitPolicy",
    # bulkheads
    "bulkhead",
    "BulkheadPolicy",
    # single flight
    "deduped",
    "DedupePolicy",
    # fallbacks
    "fallback",
    "FallbackPolicy",
    # idempotency
    "idempotent",
    "IdempotencyPolicy",
    # locks
    "lock",
    "Lock",
    "LockPolicy",
    "Lease",
    # caching
    "cached",
    "CachePolicy",
    "Cached",
    "CacheStatus",
    "cache_status",
    "invalidate_tags",
    "ainvalidate_tags",
    # composing
    "pipeline",
    "Pipeline",
]

# The modules users import from, reviewed. Everything else is `_private`.
PUBLIC_MODULES = [
    "resilient.admin",
    "resilient.typing",
    "resilient.events",
    "resilient.exceptions",
    "resilient.testing",
    "resilient.wait",
    "resilient.observers",
    "resilient.backends",
    "resilient.backends.memory",
    "resilient.backends.redis",
    "resilient.backends.redlock",
    "resilient.backends.codec",
    "resilient.testing.contract",
    "resilient.testing.pytest_plugin",
    "resilient.integrations",
    "resilient.integrations.asgi",
]

# Public modules that exist to use an optional or test dependency, which they import.
DEPENDENT_MODULES = {
    "resilient.backends.redis": "redis",
    "resilient.testing.contract": "pytest",
    "resilient.testing.pytest_plugin": "pytest",
}

# Modules without an underscore that are not for importing: command line entry points.
ENTRY_POINT_MODULES = ["resilient.cli"]

# Optional extras and test tools that importing the library must never pull in.
NOT_IMPORTED = [
    "structlog",
    "opentelemetry",
    "redis",
    "zstandard",
    "pytest",
    "_pytest",
    "hypothesis",
]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter and return the finished process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def public_module(name: str) -> ModuleType:
    """Import and return the public module *name*."""
    return importlib.import_module(name)


def test_all_is_the_reviewed_list() -> None:
    """resilient.__all__ holds exactly the reviewed public names, each once."""
    assert sorted(resilient.__all__) == sorted(PUBLIC_NAMES)
    assert len(set(resilient.__all__)) == len(resilient.__all__)


def test_every_public_name_exists() -> None:
    """Every name in resilient.__all__ is an attribute of the package."""
    missing = [name for name in resilient.__all__ if not hasattr(resilient, name)]
    assert missing == []


def test_star_import_gives_exactly_the_public_names() -> None:
    """``from resilient import *`` binds the reviewed names and nothing else."""
    namespace: dict[str, object] = {}
    exec("from resilient import *", namespace)  # the statement under test
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(PUBLIC_NAMES)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_names_exist(name: str) -> None:
    """Each public module has an __all__, and every name in it exists and is public."""
    module = public_module(name)
    assert module.__all__, name
    assert len(set(module.__all__)) == len(module.__all__)
    for attribute in module.__all__:
        assert hasattr(module, attribute), f"{name}.{attribute}"
        assert not attribute.startswith("_"), f"{name}.{attribute}"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_documented(name: str) -> None:
    """Every public module, and every class and function it exports, has a docstring."""
    module = public_module(name)
    assert inspect.getdoc(module), name
    undocumented = [
        attribute
        for attribute in module.__all__
        if (inspect.isclass(value := getattr(module, attribute)) or inspect.isfunction(value))
        and not inspect.getdoc(value)
    ]
    assert undocumented == [], name


def test_top_level_names_are_documented() -> None:
    """Every class and function in resilient.__all__ has a docstring."""
    for name in resilient.__all__:
        assert inspect.getdoc(getattr(resilient, name)), name


def test_no_unreviewed_public_module() -> None:
    """The package's modules without a leading underscore are exactly the reviewed ones."""
    found = {
        module.name
        for module in pkgutil.walk_packages(resilient.__path__, "resilient.")
        if not any(part.startswith("_") for part in module.name.split("."))
    }
    assert found == set(PUBLIC_MODULES) | set(ENTRY_POINT_MODULES)


def test_version_matches_the_installed_metadata() -> None:
    """resilient.__version__ is the version the installed distribution declares."""
    assert resilient.__version__ == importlib.metadata.version("resilient")
    assert isinstance(resilient.__version__, str)


def test_version_is_computed_on_access_not_at_import() -> None:
    """__version__ is served lazily by the module: importing never reads package metadata."""
    assert "__version__" not in vars(resilient)
    result = run_python(
        """
        import importlib.metadata

        def refuse(name):
            raise LookupError(f"metadata read for {name}")

        importlib.metadata.version = refuse
        import resilient
        try:
            resilient.__version__
        except LookupError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "metadata read for resilient"


def test_unknown_attributes_raise_attribute_error() -> None:
    """A missing attribute of the package raises AttributeError naming it."""
    with pytest.raises(AttributeError, match="no_such_name"):
        resilient.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(resilient, "__missing_dunder__")


def test_import_starts_no_thread() -> None:
    """Importing resilient and every public module starts no thread."""
    result = run_python(
        f"""
        import importlib, threading
        before = threading.active_count()
        for name in ["resilient", *{sorted(set(PUBLIC_MODULES) - set(DEPENDENT_MODULES))!r}]:
            importlib.import_module(name)
        print(threading.active_count() - before)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_import_pulls_in_no_optional_or_test_dependency() -> None:
    """Importing resilient and its public modules imports no extra (redis, structlog, ...)."""
    result = run_python(
        f"""
        import importlib, sys
        for name in ["resilient", *{sorted(set(PUBLIC_MODULES) - set(DEPENDENT_MODULES))!r}]:
            importlib.import_module(name)
        loaded = {{module.split(".")[0] for module in sys.modules}}
        print(sorted(loaded & set({NOT_IMPORTED!r})))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_library_exception_derives_from_resilient_error() -> None:
    """Every exception class in resilient.exceptions is a ResilientError (or a warning), public."""
    base = resilient.exceptions.ResilientError
    assert issubclass(base, Exception)
    classes = {
        name: value
        for name, value in vars(resilient.exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "resilient.exceptions"
    }
    assert classes, "resilient.exceptions defines no exception"
    for name, cls in classes.items():
        assert name in resilient.exceptions.__all__, name
        if issubclass(cls, Warning):  # a warning category: issued, not raised
            assert name.endswith("Warning"), name
            continue
        assert issubclass(cls, base), name
        assert name.endswith("Error"), name
