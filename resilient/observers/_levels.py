# Log levels for events, shared by the logging and structlog observers. An event class names its
# severity; a user may override it per kind. Overrides are checked once, at construction, against
# the known kinds and level names, so a typo fails loudly instead of silently logging at "info".
from __future__ import annotations

import logging
from collections.abc import Mapping

from ..events import all_event_types

__all__ = ["SEVERITIES", "check_levels"]

SEVERITIES: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def check_levels(levels: Mapping[str, str] | None) -> dict[str, str]:
    """Return *levels* (event kind to severity name) as a dict, after checking every entry.

    Raises:
        ValueError: For a kind that no event has, or a severity name that is not a log level.
    """
    if not levels:
        return {}
    kinds = {cls.kind for cls in all_event_types()}
    checked: dict[str, str] = {}
    for kind, severity in levels.items():
        if kind not in kinds:
            raise ValueError(
                f"levels= names the event kind {kind!r}, which does not exist; the kinds are "
                f"{', '.join(sorted(kinds))}"
            )
        if severity not in SEVERITIES:
            raise ValueError(
                f"levels={{{kind!r}: {severity!r}}} is not a level name: use one of "
                f"{', '.join(map(repr, SEVERITIES))}"
            )
        checked[kind] = severity
    return checked
