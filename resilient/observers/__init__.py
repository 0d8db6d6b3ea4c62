"""Built-in observers: standard logging, structlog, OpenTelemetry, and in-memory stats.

An observer is any callable taking one :class:`resilient.events.Event`; install observers with
:func:`resilient.configure`. structlog and OpenTelemetry are optional extras
(``pip install 'resilient[structlog]'``, ``'resilient[otel]'``): importing this module never
imports them; building their observer does, and says which extra is missing.

Example:
    >>> import logging, resilient
    >>> from resilient.observers import LoggingObserver, StatsObserver
    >>> stats = StatsObserver()
    >>> resilient.configure(observers=[LoggingObserver(logging.getLogger("app")), stats])
    >>> resilient.reset_defaults()
"""

from __future__ import annotations

from ._otel import OpenTelemetryObserver
from ._stats import DurationStats, PolicyStats, StatsObserver
from ._stdlib import LoggingObserver
from ._structlog import StructlogObserver

__all__ = [
    "LoggingObserver",
    "StructlogObserver",
    "OpenTelemetryObserver",
    "StatsObserver",
    "PolicyStats",
    "DurationStats",
]
