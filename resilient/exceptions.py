"""Every exception `resilient` raises, rooted at :class:`ResilientError`.

Retrying never wraps your exception: after the last attempt the original exception is raised
again, with a note (PEP 678) that says how many attempts were made over how long. The classes
here are for decisions the library itself makes.
"""

from __future__ import annotations

__all__ = ["BackendUnavailableError", "CodecError", "ResilientError", "UncacheableArgumentError"]


class ResilientError(Exception):
    """Base class of every exception raised by `resilient` itself."""


class BackendUnavailableError(ResilientError):
    """A backend could not be reached where the capability fails closed.

    Capabilities that fail open (a cache) never raise this: they call the function instead and
    report a :class:`resilient.events.BackendFailed` event.

    Attributes:
        backend: The backend's name, e.g. ``"redis"``.
        operation: The primitive that failed, e.g. ``"get"``.
    """

    def __init__(self, message: str, *, backend: str, operation: str) -> None:
        super().__init__(message)
        self.backend = backend
        self.operation = operation


class CodecError(ResilientError):
    """A stored value could not be decoded, so it is treated as absent.

    Backends catch this and report a :class:`resilient.events.StoredValueRejected` event; it
    reaches user code only when the codec is used directly.

    Attributes:
        reason: Why, one of ``"truncated"``, ``"corrupt"``, ``"version"``, ``"serializer"``,
            ``"mac"`` and ``"oversized"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UncacheableArgumentError(ResilientError, TypeError):
    """A cached function was called with an argument that cannot be part of a cache key.

    Its only representation is the default ``<object at 0x...>`` repr (a request, a session,
    a connection), which would give every call a key of its own. Pass ``key=`` to
    :func:`resilient.cached` to say what identifies a call.
    """
