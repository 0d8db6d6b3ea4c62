# The standard-library logging observer. One record per event; the message is built only when
# the logger would emit it, so a disabled level costs one dict lookup and one isEnabledFor().
from __future__ import annotations

import logging
from collections.abc import Mapping

from ..events import Event
from ._levels import SEVERITIES, check_levels

__all__ = ["LoggingObserver", "format_fields"]

# `time` is the clock's monotonic reading: meaningless in a log line, which has its own timestamp.
_SKIPPED_FIELDS = frozenset({"time"})


def _format_value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if not text or any(char.isspace() or char in '="' for char in text):
        return repr(text)
    return text


def format_fields(event: Event) -> str:
    """Return *event*'s fields (all but ``time``) as ``key=value`` pairs, separated by spaces."""
    return " ".join(
        f"{name}={_format_value(value)}"
        for name, value in event.fields().items()
        if name not in _SKIPPED_FIELDS
    )


class LoggingObserver:
    """Log every event to a standard-library logger, one record per event.

    The record's level follows the event's ``severity`` (``retry.exhausted`` is a warning, a
    scheduled retry is info) unless *levels* says otherwise. Its message is the event's kind
    followed by its fields as ``key=value`` pairs::

        retry.scheduled policy=fetch attempt=1 delay=0.2 error_type=ConnectionError

    Handlers and filters find the event itself as ``record.resilient_event``.

    Args:
        logger: Where to log; by default the ``"resilient"`` logger.
        levels: Severity names (``"debug"``, ``"info"``, ``"warning"``, ``"error"``,
            ``"critical"``) by event kind, overriding the events' own, e.g.
            ``{"retry.scheduled": "debug"}``.

    Raises:
        ValueError: If *levels* names an unknown event kind or level.
    """

    __slots__ = ("_levels", "logger")

    def __init__(
        self, logger: logging.Logger | None = None, *, levels: Mapping[str, str] | None = None
    ) -> None:
        self.logger = logging.getLogger("resilient") if logger is None else logger
        self._levels = {kind: SEVERITIES[name] for kind, name in check_levels(levels).items()}

    def __call__(self, event: Event) -> None:
        """Log *event*."""
        level = self._levels.get(event.kind)
        if level is None:
            level = SEVERITIES[event.severity]
        logger = self.logger
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "%s %s",
                event.kind,
                format_fields(event),
                extra={"resilient_event": event},
            )

    def __repr__(self) -> str:
        return f"LoggingObserver(logger={self.logger!r})"
