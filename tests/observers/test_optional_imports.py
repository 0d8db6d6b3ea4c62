"""structlog and OpenTelemetry are optional: a clear ImportError when building, none on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from resilient.observers import OpenTelemetryObserver, StructlogObserver


def test_structlog_observer_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without structlog, StructlogObserver() says to install resilient[structlog]."""
    monkeypatch.setitem(sys.modules, "structlog", None)
    with pytest.raises(ImportError, match=r"pip install 'resilient\[structlog\]'"):
        StructlogObserver()


def test_structlog_observer_with_a_logger_needs_no_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A logger passed in is used as is: structlog is not imported for it."""
    monkeypatch.setitem(sys.modules, "structlog", None)
    logger = object()
    assert StructlogObserver(logger=logger).logger is logger


def test_otel_observer_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry-api, OpenTelemetryObserver() says to install resilient[otel]."""
    for name in ("opentelemetry", "opentelemetry.metrics", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'resilient\[otel\]'"):
        OpenTelemetryObserver()


def test_importing_observers_imports_no_extra() -> None:
    """In a fresh interpreter, importing resilient.observers needs neither structlog nor OTel."""
    code = (
        "import sys\n"
        "sys.modules['structlog'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "import resilient, resilient.observers\n"
        "from resilient.observers import LoggingObserver, StatsObserver\n"
        "resilient.configure(observers=[LoggingObserver(), StatsObserver()])\n"
        "print(sorted(resilient.observers.__all__))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        sorted(
            [
                "DurationStats",
                "LoggingObserver",
                "OpenTelemetryObserver",
                "PolicyStats",
                "StatsObserver",
                "StructlogObserver",
            ]
        )
    )
