"""Adapters that put `resilient` to work inside web frameworks and servers.

- :mod:`resilient.integrations.asgi`: :class:`~resilient.integrations.asgi.IdempotencyMiddleware`,
  the ``Idempotency-Key`` HTTP header for any ASGI application (FastAPI, Starlette, ...).
"""

from __future__ import annotations

from . import asgi

__all__ = ["asgi"]
