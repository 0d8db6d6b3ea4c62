# The demo across processes: `python -m resilient demo --redis URL --processes N`.
#
# Rules:
# - N workers, each `python -m resilient demo --worker` (a fresh interpreter, as a user's
#   processes are), share one Redis under one namespace: the parent's (its prefix and a
#   random suffix, so runs never share keys), whose keys the parent deletes at the end.
# - The parent sends each worker its settings (the URL too, kept off the command line, where
#   `ps` would show a password) as a JSON line on its stdin, then releases every worker into
#   each phase of a scene at once (a "go" line), so that their calls meet.
# - Workers report rows and counts as JSON lines on stdout; the parent prints the rows as
#   they arrive, adds the counts up, and says what the fleet did as a whole.
# - Every figure printed comes from what the upstream counted, what callers got, or the
#   events the library reported (a StatsObserver): never from what the demo expects.
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import IO, Any, ClassVar, TextIO, TypeVar

from ._breaker import breaker
from ._bulkhead import bulkhead
from ._cache import cached
from ._config import configure, reset_defaults
from ._dedupe import deduped
from ._demo import (
    PATIENCE,
    Line,
    Table,
    UpstreamError,
    cache_answer,
    describe,
    ms,
    pause,
    times,
    together,
)
from ._idempotent import idempotent
from ._lock import lock
from ._ratelimit import rate_limited
from .cli import CommandError, Exit, shown
from .events import Event
from .exceptions import BackendUnavailableError, CircuitOpenError
from .observers import StatsObserver
from .typing import Backend

__all__ = ["fleet", "run_namespace", "work"]

T = TypeVar("T")


def run_namespace(prefix: str) -> str:
    """Return the namespace of one fleet run: *prefix* and a random suffix."""
    return f"{prefix}-{secrets.token_hex(3)}"


class _Worker:
    """A worker process's side of the fleet tour: its settings, counts and reports."""

    def __init__(self, settings: dict[str, Any], out: TextIO) -> None:
        self.index: int = settings["index"]
        self.processes: int = settings["processes"]
        self.out = out
        self.quiet = False
        self.counts: Counter[str] = Counter()
        self.lists: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def send(self, **message: object) -> None:
        """Report *message* to the parent, as one JSON line."""
        line = json.dumps(message)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def row(self, who: str, what: str) -> None:
        """Have the parent print a row of this worker's."""
        if not self.quiet:
            self.send(row=[who, what])

    def observe(self, event: Event) -> None:
        """Report what the library decided (installed as an observer)."""
        said = describe(event)
        if said is not None:
            self.row("resilient", said)

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of this scene's counts."""
        with self._lock:
            self.counts[name] += amount

    def note(self, name: str, value: object) -> None:
        """Add a value to one of this scene's lists."""
        with self._lock:
            self.lists.setdefault(name, []).append(value)

    def outcome(self, call: Callable[[], T]) -> T | Exception:
        """Make one call, report what the caller got, and return it (or the exception)."""
        self.count("calls")
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - the demo shows whatever happened
            self.row("caller", f"raised {type(exc).__name__}: {exc}")
            return exc
        self.row("caller", f"got {result!r}")
        return result


class _Sums:
    """What every worker counted in one scene, added up by the parent."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.lists: dict[str, list[Any]] = {}

    def add(self, report: dict[str, Any]) -> None:
        """Add one worker's report."""
        self.counts.update(report["counts"])
        self.events.update(report["events"])
        for name, values in report["lists"].items():
            self.lists.setdefault(name, []).extend(values)


class _Scene:
    """One scene of the fleet tour: what every worker plays, and what the parent concludes."""

    title: ClassVar[str]
    code: ClassVar[str]
    phases: ClassVar[Sequence[Callable[[Any], None]]]  # each started in every worker at once

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        """Return the fleet's row and the summary's line for what every worker counted."""
        raise NotImplementedError


class _FleetBreaker(_Scene):
    title = "One breaker for the fleet: failures from every process open it once, for all"
    code = (
        'breaker("demo-upstream", shared=True, failure_rate=0.5, minimum_calls=2 * processes, '
        "open_for=1.0, sync_interval=0.05)"
    )

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)
        self.down = True
        self.remaining = 1.0
        self.breaker = breaker(
            "demo-upstream",
            shared=True,
            failure_rate=0.5,
            minimum_calls=2 * worker.processes,
            open_for=1.0,
            sync_interval=0.05,
        )
        self.call = self.breaker(self.upstream)

    def upstream(self) -> str:
        self.worker.count("upstream")
        if self.down:
            self.worker.count("failed")
            self.worker.row("upstream", "ConnectionError: connection refused")
            raise UpstreamError("connection refused")
        self.worker.row("upstream", "200 OK (after 200 ms)")
        pause(0.2)
        return "200 OK"

    def fail(self) -> None:
        self.worker.outcome(self.call)
        self.worker.outcome(self.call)
        # reading the state sends the outcomes this process counted, and reads the fleet's
        self.worker.row("caller", f"breaker state: {self.breaker.state.value}")

    def refused(self) -> None:
        pause(0.07)  # every view is older than sync_interval: each reads the stored state
        for _ in range(2):
            refusal = self.worker.outcome(self.call)
            if isinstance(refusal, CircuitOpenError) and refusal.remaining is not None:
                self.remaining = refusal.remaining

    def probe(self) -> None:
        self.down = False
        pause(self.remaining + 0.05)
        self.worker.outcome(self.call)

    def closed(self) -> None:
        pause(0.07)
        self.worker.outcome(self.call)

    phases = (fail, refused, probe, closed)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        opened, probes = sums.events["breaker.opened"], sums.events["breaker.half_opened"]
        rejected, closed = sums.events["breaker.rejected"], sums.events["breaker.closed"]
        said = (
            f"{sums.counts['failed']} failures from {processes} processes opened it "
            f"{times(opened)} for all; {rejected} calls refused without calling the upstream; "
            f"the fleet probed {times(probes)}; closed {times(closed)}"
        )
        line = Line(
            "breaker",
            sums.counts["calls"],
            sums.counts["upstream"],
            f"opened {times(opened)} for the fleet; {rejected} refused at once; "
            f"probed {times(probes)}",
        )
        return said, line


class _FleetCache(_Scene):
    title = "One cache for the fleet: each key is computed once, by one process, for all"
    code = "@cached(ttl=60) def profile(user_id) (the upstream takes 100 ms)"

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)

        @cached(ttl=60, name="demo-profile")
        def profile(user_id: int) -> dict[str, object]:
            worker.count("upstream")
            worker.row("upstream", f"profile({user_id}) computed")
            pause(0.1)
            return {"id": user_id, "computed by": f"p{worker.index}"}

        self.profile = profile

    def read(self) -> None:
        for user_id in (1, 2, 3):
            self.worker.count("calls")
            value = self.profile(user_id)
            self.worker.row("caller", f"profile({user_id}): {cache_answer()} {value}")

    phases = (read, read)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        hits, misses = sums.events["cache.hit"], sums.events["cache.missed"]
        ran = sums.counts["upstream"]
        ratio = f"hit ratio {hits / max(1, hits + misses):.0%} ({hits} hits, {misses} misses)"
        said = (
            f"{sums.counts['calls']} calls from {processes} processes: the upstream ran "
            f"{times(ran)} for 3 keys; {ratio}"
        )
        return said, Line("cache", sums.counts["calls"], ran, f"{ratio}; {ran} runs for 3 keys")


class _FleetDedupe(_Scene):
    title = "One flight for the fleet: 5 concurrent calls in each process, one execution"
    code = "@deduped(shared=True) async def build_report(day) (the upstream takes 400 ms)"

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)

        @deduped(shared=True, name="demo-report", lease_ttl=10)
        async def build_report(day: str) -> dict[str, str]:
            worker.count("upstream")
            worker.row("upstream", f"report of {day} built (400 ms)")
            await asyncio.sleep(0.4)
            return {"day": day, "built by": f"p{worker.index}"}

        self.build_report = build_report

    def five(self) -> None:
        async def at_once() -> list[dict[str, str]]:
            return await asyncio.gather(*(self.build_report("2026-05-01") for _ in range(5)))

        self.worker.count("calls", 5)
        reports = asyncio.run(at_once())
        self.worker.row("caller", f"5 calls got {reports[0]}")

    phases = (five,)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        calls, ran = sums.counts["calls"], sums.counts["upstream"]
        saved = calls - ran
        said = (
            f"{calls} calls from {processes} processes: executed {times(ran)}, {saved} "
            f"executions saved ({saved / calls:.0%})"
        )
        return said, Line("single flight", calls, ran, f"{saved} of {calls} executions saved")


class _FleetIdempotency(_Scene):
    title = "One key for the fleet: the request sent by every process executes once"
    code = (
        '@idempotent(key="request_id", on_in_progress="wait") def create_order(request_id, cents)'
    )

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)

        @idempotent(key="request_id", on_in_progress="wait", name="demo-create-order")
        def create_order(request_id: str, cents: int) -> dict[str, object]:
            worker.count("upstream")
            worker.row("upstream", f"order created for {cents} cents (200 ms)")
            pause(0.2)
            return {"order": f"A-p{worker.index}", "cents": cents}

        self.create_order = create_order

    def send(self) -> None:
        self.worker.outcome(lambda: self.create_order("7f3c", 1250))

    def again(self) -> None:
        self.worker.outcome(lambda: self.create_order("7f3c", 1250))
        if self.worker.index == 1:
            self.worker.outcome(lambda: self.create_order("7f3c", 9999))

    phases = (send, again)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        replays, waited = (
            sums.events["idempotency.replayed"],
            sums.events["idempotency.in_progress"],
        )
        conflicts = sums.events["idempotency.conflicted"]
        said = (
            f"{sums.counts['calls']} calls from {processes} processes: executed "
            f"{times(sums.counts['upstream'])}; {replays} replays of the stored answer ({waited} "
            f"waited for the running call); {conflicts} conflict refused"
        )
        line = Line(
            "idempotency",
            sums.counts["calls"],
            sums.counts["upstream"],
            f"{replays} replays ({waited} waited for it); {conflicts} conflict",
        )
        return said, line


class _FleetLock(_Scene):
    title = "One lock for the fleet: every process wants it at once; they take turns"
    code = 'with lock("demo-nightly-report", ttl=5, timeout=10) as lease: ... (holds it 100 ms)'

    def take(self) -> None:
        self.worker.count("calls")
        asked = time.monotonic()
        with lock("demo-nightly-report", ttl=5, timeout=10) as lease:
            held_from = time.time()
            self.worker.count("upstream")
            self.worker.row(
                "caller",
                f"holds it after waiting {ms(time.monotonic() - asked)}: "
                f"fencing token {lease.token}",
            )
            pause(0.1)
            self.worker.note("leases", [held_from, time.time(), lease.token])

    phases = (take,)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        leases = sorted(sums.lists.get("leases", []))
        tokens = [token for _, _, token in leases]
        apart = all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(leases))
        rising = tokens == sorted(set(tokens))
        contended = sums.events["lock.contended"]
        said = (
            f"{len(leases)} leases from {processes} processes, "
            + ("never two at once" if apart else "TWO AT ONCE")
            + "; fencing tokens "
            + ("rose with each lease" if rising else f"OUT OF ORDER {tokens}")
            + f"; {contended} found it held and waited"
        )
        return said, Line(
            "lock",
            sums.counts["calls"],
            sums.counts["upstream"],
            f"{contended} lock waits; " + ("one holder at a time" if apart else "TWO AT ONCE"),
        )


class _FleetRateLimit(_Scene):
    title = "One rate limit for the fleet: 10 calls per 10 minutes; each process asks 6 at once"
    code = "@rate_limited(rate=10, per=600.0) def call_partner()"

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)

        @rate_limited(rate=10, per=600.0, name="demo-partner")
        def call_partner() -> str:
            worker.count("upstream")
            return "ok"

        self.call_partner = call_partner

    def six(self) -> None:
        self.worker.quiet = True
        outcomes = [self.worker.outcome(self.call_partner) for _ in range(6)]
        self.worker.quiet = False
        allowed = sum(outcome == "ok" for outcome in outcomes)
        self.worker.row("caller", f"6 calls: {allowed} allowed, {6 - allowed} refused")

    phases = (six,)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        allowed, refused = sums.counts["upstream"], sums.events["rate_limit.rejected"]
        said = (
            f"{allowed} of {sums.counts['calls']} calls from {processes} processes allowed "
            f"(the fleet's limit); {refused} refused before reaching the upstream"
        )
        return said, Line(
            "rate limit", sums.counts["calls"], allowed, f"{refused} refused for the fleet"
        )


class _FleetBulkhead(_Scene):
    title = "One bulkhead for the fleet: 2 slots shared by every process, 2 calls from each"
    code = (
        "@bulkhead(max_concurrent=2, max_waiting=2, timeout=10, shared=True) "
        "def render(invoice) (150 ms each)"
    )

    def __init__(self, worker: _Worker) -> None:
        super().__init__(worker)

        @bulkhead(max_concurrent=2, max_waiting=2, timeout=10, shared=True, name="demo-renderer")
        def render(invoice: int) -> str:
            began = time.time()
            worker.count("upstream")
            worker.row("upstream", f"render({invoice}) runs (150 ms)")
            pause(0.15)
            worker.note("runs", [began, time.time()])
            return f"invoice-{invoice}.pdf"

        self.render = render

    def two(self) -> None:
        first = 10 * self.worker.index
        together(2, lambda n: self.worker.outcome(lambda: self.render(first + n)))

    phases = (two,)

    @staticmethod
    def conclude(sums: _Sums, processes: int) -> tuple[str, Line]:
        peak = _peak(sums.lists.get("runs", []))
        admitted, rejected = sums.events["bulkhead.admitted"], sums.events["bulkhead.rejected"]
        said = (
            f"{sums.counts['upstream']} calls from {processes} processes ran at most {peak} at "
            f"once; {admitted} waited for a slot; {rejected} refused"
        )
        line = Line(
            "bulkhead",
            sums.counts["calls"],
            sums.counts["upstream"],
            f"at most {peak} at once for the fleet; {admitted} waited for a slot",
        )
        return said, line


def _peak(runs: Sequence[Sequence[float]]) -> int:
    """Return the most intervals (start, end) open at one moment; an end comes before a start."""
    changes = sorted([(end, -1) for _, end in runs] + [(start, 1) for start, _ in runs])
    peak = running = 0
    for _, change in changes:
        running += change
        peak = max(peak, running)
    return peak


_FLEET_SCENES: tuple[type[_Scene], ...] = (
    _FleetBreaker,
    _FleetCache,
    _FleetDedupe,
    _FleetIdempotency,
    _FleetLock,
    _FleetRateLimit,
    _FleetBulkhead,
)


def work(read: TextIO, write: TextIO, open_backend: Callable[[str], Backend]) -> int:
    """Play the fleet tour as one worker: settings and "go" on *read*, reports on *write*."""
    try:
        settings = json.loads(read.readline())
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise CommandError(Exit.USAGE, "--worker is for the demo's own worker processes")
    backend = open_backend(settings["redis"])

    worker = _Worker(settings, write)
    stats = StatsObserver()
    configure(backend=backend, namespace=settings["namespace"], observers=[stats, worker.observe])
    try:
        for number, kind in enumerate(_FLEET_SCENES):
            scene = kind(worker)
            stats.reset()
            worker.counts.clear()
            worker.lists.clear()
            for phase in scene.phases:
                worker.send(ready=number)
                if read.readline().strip() != "go":
                    return Exit.FAILED  # the parent is gone
                phase(scene)
            events = {
                kind: sum(p["count"] for p in by.values()) for kind, by in stats.snapshot().items()
            }
            worker.send(done=number, counts=worker.counts, lists=worker.lists, events=events)
    except BackendUnavailableError as error:
        raise CommandError(Exit.UNREACHABLE, str(error)) from None
    finally:
        reset_defaults()
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return Exit.OK


class _WorkerGoneError(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class _Fleet(Table):
    """The parent's side: starts the workers, relays their rows, releases them phase by phase."""

    who_width = 13

    def __init__(self, out: TextIO, processes: int) -> None:
        super().__init__(out)
        self.processes = processes
        self.workers: list[subprocess.Popen[str]] = []
        self.errors: list[list[str]] = []  # each worker's stderr lines
        self.readers: list[threading.Thread] = []  # the threads reading them
        self.inbox: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.held: list[tuple[int, dict[str, Any] | None]] = []

    def start(self, settings: dict[str, object]) -> None:
        """Start the workers and send each its settings."""
        for index in range(1, self.processes + 1):
            process = subprocess.Popen(
                [sys.executable, "-m", "resilient", "demo", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.workers.append(process)
            self.errors.append([])
            assert process.stdout is not None
            assert process.stderr is not None
            threading.Thread(target=self._listen, args=(index, process.stdout), daemon=True).start()
            reader = threading.Thread(
                target=self.errors[-1].extend, args=(process.stderr,), daemon=True
            )
            reader.start()
            self.readers.append(reader)
            self.tell(index, json.dumps({**settings, "index": index}))

    def _listen(self, index: int, stream: IO[str]) -> None:
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:  # something else printed: show it as it is
                message = {"row": ["", line.rstrip()]}
            self.inbox.put((index, message))
        self.inbox.put((index, None))

    def tell(self, index: int, line: str) -> None:
        """Send one line to a worker."""
        stdin = self.workers[index - 1].stdin
        assert stdin is not None
        with contextlib.suppress(OSError):  # a worker that is gone is found by its silence
            stdin.write(line + "\n")
            stdin.flush()

    def gather(self, key: str, sums: _Sums | None = None) -> None:
        """Print rows as they come until every worker sent a message with *key*.

        A worker's message for a later step (a fast worker's "ready" for the next scene,
        while another still plays this one) is kept for the step it belongs to.
        """
        waiting = set(range(1, self.processes + 1))
        held, self.held = self.held, []
        while waiting:
            if held:
                index, message = held.pop(0)
            else:
                try:
                    index, message = self.inbox.get(timeout=PATIENCE)
                except queue.Empty:
                    raise CommandError(
                        Exit.FAILED,
                        f"the demo's workers {sorted(waiting)} said nothing for {PATIENCE:.0f} s",
                    ) from None
            if message is None and index in waiting:
                raise _WorkerGoneError(index)
            if message is None:  # a worker that has sent what this step needs may end
                self.held.append((index, message))
            elif "row" in message:
                who, what = message["row"]
                self.row(f"p{index} {who}", what)
            elif key in message and index in waiting:
                waiting.discard(index)
                if sums is not None:
                    sums.add(message)
            else:
                self.held.append((index, message))
        self.held.extend(held)

    def play(self, number: int, kind: type[_Scene]) -> Line:
        """Run one scene in every worker; print the fleet's row; return the summary's line."""
        for phase in range(len(kind.phases)):
            self.gather("ready")
            if phase == 0:  # the section's clock starts when the workers do
                self.section(f"{number}. {kind.title}", kind.code)
            for index in range(1, self.processes + 1):
                self.tell(index, "go")
        sums = _Sums()
        self.gather("done", sums)
        said, line = kind.conclude(sums, self.processes)
        self.row("fleet", said)
        return line

    def failure(self, index: int) -> CommandError:
        """Return the error for worker *index*, which stopped early."""
        process = self.workers[index - 1]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(PATIENCE)
        self.readers[index - 1].join(PATIENCE)
        lines = [line.rstrip() for line in self.errors[index - 1] if line.strip()]
        if process.returncode == Exit.UNREACHABLE and lines:  # one line, from its CommandError
            detail = lines[-1].partition(": error: ")[2] or lines[-1]
            return CommandError(Exit.UNREACHABLE, f"worker p{index} stopped: {detail}")
        detail = "\n".join(lines[-12:]) or "no message"
        return CommandError(
            Exit.FAILED, f"worker p{index} stopped (exit {process.returncode}):\n{detail}"
        )

    def stop(self) -> None:
        """End every worker: close its stdin, give it a moment, then kill it."""
        for process in self.workers:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        for process in self.workers:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fleet(out: TextIO, url: str, namespace: str, processes: int) -> int:
    """Run the fleet tour: *processes* workers sharing the Redis at *url* under *namespace*."""
    table = _Fleet(out, processes)
    out.write(
        f"resilient demo: {processes} processes share one Redis ({shown(url)}) under the "
        f"namespace {namespace!r}\nRows are what each process (p1, p2, ...) reports as it "
        "happens; 'fleet' rows add them up.\n"
    )
    try:
        table.start({"redis": url, "namespace": namespace, "processes": processes})
        lines = [table.play(number, kind) for number, kind in enumerate(_FLEET_SCENES, start=1)]
        table.summary(
            f"Summary across {processes} processes: calls made, times the upstream ran, and "
            "what resilient decided",
            lines,
        )
        out.write(
            "\nRetries, time limits and fallbacks decide within each process: "
            "python -m resilient demo shows them.\n"
        )
    except _WorkerGoneError as gone:
        raise table.failure(gone.index) from None
    finally:
        table.stop()
        _forget(url, namespace, out)
    return Exit.OK


def _forget(url: str, namespace: str, out: TextIO) -> None:
    """Delete every key of *namespace* (the run's own: the prefix and a random suffix)."""
    import redis  # noqa: PLC0415 - the fleet runs only with redis-py installed

    try:
        with redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0) as client:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start : start + 500])
    except redis.RedisError as error:
        sys.stderr.write(f"could not delete the demo's keys under {namespace}: {error}\n")
        return
    out.write(f"\nDeleted the {len(keys)} keys of namespace {namespace!r}.\n")
