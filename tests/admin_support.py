"""Processes the admin tests act on: a breaker's caller and a lock's holder, on a real Redis."""

from __future__ import annotations

import textwrap

SYNC_INTERVAL = 0.25  # the callers' breakers' sync_interval: the documented staleness bound

# A process with a shared breaker named argv[2] on the Redis at argv[1], calling it every 10 ms.
# It prints "ready" after its first call, then, as JSON, the wall-clock time of the first call
# refused ({"refused_at": ...}), and exits.
CALLER = textwrap.dedent(
    f"""
    import json, sys, time
    import resilient
    from resilient.backends.redis import RedisBackend
    from resilient.exceptions import CircuitOpenError

    backend = RedisBackend.from_url(sys.argv[1])
    guard = resilient.breaker(
        sys.argv[2], shared=True, backend=backend, sync_interval={SYNC_INTERVAL}
    )

    @guard
    def call():
        return "ok"

    call()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            call()
        except CircuitOpenError:
            print(json.dumps({{"refused_at": time.time()}}), flush=True)
            break
        time.sleep(0.01)
    """
)

# Holds the lock named argv[2] on the Redis at argv[1], renewed; prints its lease as JSON
# ({"token": ..., "pid": ...}), then, once its renewer found the lease lost, "lost" and the
# exception leaving the block raised.
HOLDER = textwrap.dedent(
    """
    import json, os, sys, threading
    import resilient
    from resilient.backends.redis import RedisBackend
    from resilient.exceptions import LockLostError

    lost = threading.Event()
    backend = RedisBackend.from_url(sys.argv[1])
    guard = resilient.lock(
        sys.argv[2], ttl=1.5, renew=True, backend=backend, on_lost=lambda lease: lost.set()
    )
    try:
        with guard as lease:
            print(json.dumps({"token": lease.token, "pid": os.getpid()}), flush=True)
            if lost.wait(30):
                print("lost", flush=True)
    except LockLostError:
        print("LockLostError", flush=True)
    """
)
