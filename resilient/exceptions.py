"""Every exception `resilient` raises, rooted at :class:`ResilientError`.

Retrying never wraps your exception: after the last attempt the original exception is raised
again, with a note (PEP 678) that says how many attempts were made over how long. The classes
here are for decisions the library itself makes.
"""

from __future__ import annotations

__all__ = ["ResilientError"]


class ResilientError(Exception):
    """Base class of every exception raised by `resilient` itself."""
