# The structlog observer. structlog is an optional extra: it is imported when an observer is built
# without a logger of its own, never when `resilient.observers` is imported.
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import Event
from ._levels import check_levels

__all__ = ["StructlogObserver"]


class StructlogObserver:
    """Log every event to a structlog logger, with the kind as the event name.

    The event's fields (all but ``time``, the clock's monotonic reading) become the log entry's
    key/value pairs, and its ``severity`` picks the method (``info``, ``warning``...) unless
    *levels* says otherwise::

        logger.info("retry.scheduled", policy="fetch", attempt=1, delay=0.2,
                    error_type="ConnectionError")

    Args:
        logger: Any structlog bound logger; by default ``structlog.get_logger("resilient")``.
        levels: Severity names (``"debug"``, ``"info"``, ``"warning"``, ``"error"``,
            ``"critical"``) by event kind, overriding the events' own.

    Raises:
        ImportError: If *logger* is not given and structlog is not installed.
        ValueError: If *levels* names an unknown event kind or level.
    """

    __slots__ = ("_levels", "logger")

    # `Any`: structlog's bound loggers share no common static type with these methods.
    def __init__(self, logger: Any = None, *, levels: Mapping[str, str] | None = None) -> None:
        if logger is None:
            try:
                import structlog  # noqa: PLC0415 - an optional extra, imported only when needed
            except ImportError as exc:
                raise ImportError(
                    "StructlogObserver needs structlog, an optional extra: "
                    "pip install 'resilient[structlog]' (or pass logger= yourself)"
                ) from exc
            logger = structlog.get_logger("resilient")
        self.logger = logger
        self._levels = check_levels(levels)

    def __call__(self, event: Event) -> None:
        """Log *event*."""
        fields = event.fields()
        del fields["time"]
        method = self._levels.get(event.kind, event.severity)
        getattr(self.logger, method)(event.kind, **fields)

    def __repr__(self) -> str:
        return f"StructlogObserver(logger={self.logger!r})"
