"""The command line: python -m resilient (installed as the resilient script too).

Commands:
  demo        A tour of every capability against a simulated flaky upstream, printed as a
              live table with a summary. In this process on the embedded defaults (no
              network, no Redis); with --redis URL, the same kinds of decisions made
              together by --processes N worker processes sharing one Redis.
  status [--limit N]
              The breakers, locks, idempotency records and caches kept on a Redis, as
              tables (--json: one JSON document for scripts).
  breaker open|close|reset|disable NAME
              Force a shared breaker open, close it, reset its counts, or disable it.
  lock release NAME --token N
              Release the lease of a lock whose fencing token is N (as status shows it),
              for a holder that hangs; a lease taken since is never released. Without
              --token, show the lease held now ([--limit N]) and release nothing.
  idempotency list [--state STATE] [--name NAME] [--limit N]
  idempotency purge --state STATE [--name NAME] [--limit N]
              List, or delete, the records of idempotency keys (completed, failed,
              unreadable; a call in progress is never purged).
  cache purge --tag TAG [--tag TAG ...]
              Drop every cached value stored under any of the tags.
  The operators' commands (all but demo) need --redis: they run in a process of their own,
  which cannot see an application's memory backend. Each takes --json. Those that list
  keys look at up to --limit N keys of a capability (default 10,000): a listing cut there
  warns on stderr and says "truncated" in its JSON; a larger --limit looks further, at
  more work for Redis.

Options of every command (before or after its name):
  --redis URL       The Redis to work on: redis://HOST:PORT/DB, rediss://... (TLS) or
                    unix:///path/to/redis.sock. It must answer a ping within 2 s.
  --namespace NS    The prefix of every key (default: resilient, as in configure()). The
                    demo makes a namespace of its own run from it (NS-<random>, default
                    resilient-demo-<random>) and deletes that namespace's keys at the end.

Exit codes:
  0    success
  1    the command failed: a demo worker failed, Redis refused a command (an ACL without
       +scan), or an unexpected error (with a traceback)
  2    usage: an unknown command or option, a bad value (a URL that is not a Redis URL, a
       namespace with other characters than letters, digits, '_', '.' and '-', a --limit
       that is not a whole number of at least 1), an operators' command without --redis,
       lock release without --token, purging calls in progress, or an option this install
       cannot serve (--redis without redis-py)
  3    backend unreachable: Redis refused the connection, did not answer in time, or
       refused the credentials, at the first ping or later
  4    unknown name: no breaker of that name, no lock of that name held (or held with
       another fencing token than --token)
  130  interrupted (Ctrl-C)

The reference, with the --json shapes: docs/cli.md.
"""

# Rules of this module:
# - It builds the parser and turns every expected failure into a short message on stderr and
#   an exit code of the table above: a command raises CommandError, never prints a traceback
#   for bad input or an unreachable backend.
# - Nothing heavy is imported until a command runs: redis-py only with --redis (it is an
#   optional extra), the demo only by `demo`, the operators' commands (_admin_cli.py) only
#   by them.
# - `open_redis` is the one way a command gets its backend from --redis.
from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from ._config import check_namespace
from ._core.idempotency import RecordState

if TYPE_CHECKING:
    from .backends.redis import RedisBackend

__all__ = ["CommandError", "Exit", "main", "open_redis"]

PING_TIMEOUT = 2.0  # seconds a Redis has to answer the first ping
MAX_PROCESSES = 16


class Exit(enum.IntEnum):
    """The exit codes of the command line (the table in this module's docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    UNKNOWN_NAME = 4
    INTERRUPTED = 130


class CommandError(Exception):
    """A command cannot go on: *message* goes to stderr and *code* is the exit status."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def shown(url: str) -> str:
    """Return *url* fit for a message: its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def open_redis(url: str) -> RedisBackend:
    """Return a backend for the Redis at *url*, once it answered a ping.

    Raises:
        CommandError: ``Exit.USAGE`` if *url* is not a Redis URL or redis-py is not
            installed; ``Exit.UNREACHABLE`` if the server refused, did not answer within
            ``PING_TIMEOUT`` seconds, or refused the credentials.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise CommandError(
            Exit.USAGE,
            f"--redis {shown(url)!r} is not a Redis URL: write redis://HOST:PORT/DB, "
            "rediss://HOST:PORT/DB (TLS) or unix:///path/to/redis.sock",
        )
    try:
        import redis  # noqa: PLC0415 - an optional extra, needed only with --redis
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        from .backends.redis import RedisBackend  # noqa: PLC0415
    except ImportError:
        raise CommandError(
            Exit.USAGE, "--redis needs redis-py: pip install 'resilient[redis]'"
        ) from None
    try:
        probe = redis.Redis.from_url(
            url,
            socket_timeout=PING_TIMEOUT,
            socket_connect_timeout=PING_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:  # a port that is not a number, an unknown option
        raise CommandError(Exit.USAGE, f"--redis {shown(url)!r}: {error}") from None
    try:
        probe.ping()
    except redis.RedisError as error:
        raise CommandError(
            Exit.UNREACHABLE, f"cannot reach Redis at {shown(url)}: {error}"
        ) from None
    finally:
        probe.close()
    return RedisBackend.from_url(url)


def _namespace(value: str) -> str:
    try:
        return check_namespace(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _processes(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"--processes {value!r} must be a whole number from 1 to {MAX_PROCESSES}"
        )
    return count


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise argparse.ArgumentTypeError(
            f"--limit {value!r} must be a whole number of keys, at least 1"
        )
    return limit


def _limit_first(value: str) -> int:
    raise argparse.ArgumentTypeError(
        f"--limit goes after the command's name (status --limit {value}): it is an option of "
        "the commands that list keys, status, idempotency list|purge and lock release"
    )


def _global_options(parser: argparse.ArgumentParser, *, given_only: bool) -> None:
    """Add the options of every command; *given_only* leaves them unset when not given.

    The main parser gets them with their defaults and each command's parser without any, so
    that an option given after the command's name is not overwritten by its default.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if given_only else value

    parser.add_argument(
        "--redis",
        metavar="URL",
        default=default(None),
        help="the Redis to work on: redis://HOST:PORT/DB, rediss://... or unix://PATH",
    )
    parser.add_argument(
        "--namespace",
        metavar="NS",
        type=_namespace,
        default=default(None),
        help="the prefix of every key (default: resilient; the demo: resilient-demo)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from . import _demo, _demo_fleet  # noqa: PLC0415 - only the demo needs them

    if args.worker:
        return _demo_fleet.work(sys.stdin, sys.stdout, open_redis)
    if args.redis is None:
        if args.processes is not None:
            raise CommandError(
                Exit.USAGE, "--processes needs --redis URL: processes share state through Redis"
            )
        _demo.tour(sys.stdout)
        return Exit.OK
    prefix = args.namespace or "resilient-demo"
    namespace = _demo_fleet.run_namespace(prefix)
    try:
        check_namespace(namespace)
    except ValueError:
        raise CommandError(
            Exit.USAGE, f"--namespace {prefix!r} is too long for the demo: 57 characters at most"
        ) from None
    backend = open_redis(args.redis)
    backend.close()  # the workers make their own; this one only proved the server answers
    return _demo_fleet.fleet(sys.stdout, args.redis, namespace, args.processes or 4)


def _run_admin(args: argparse.Namespace) -> int:
    from . import _admin_cli  # noqa: PLC0415 - only the operators' commands need it

    return _admin_cli.run(args)


def _token(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--token {value!r} must be the fencing token (a whole number) that status shows"
        ) from None


def _prog() -> str:
    """Return the name the user typed: ``python -m resilient`` or the console script's."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m resilient" if invoked in ("", "__main__.py", "-c") else invoked


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _global_options(parser, given_only=False)
    # an option of the commands that list, not of every command: written first, it is refused
    # with where it goes, rather than taken for a command's name
    parser.add_argument(
        "--limit", type=_limit_first, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a tour of every capability, live; with --redis, across processes",
        description="A tour of every capability against a simulated flaky upstream, as a "
        "live table and a summary. Without --redis it runs in this process, with no network; "
        "with --redis URL, --processes N workers share that Redis.",
    )
    _global_options(demo, given_only=True)
    demo.add_argument(
        "--processes",
        metavar="N",
        type=_processes,
        help=f"with --redis: worker processes sharing it (default 4, at most {MAX_PROCESSES})",
    )
    demo.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(run=_run_demo)
    _admin_parsers(commands)
    return parser


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _admin_parsers(commands: _Commands) -> None:
    """Add the operators' commands: status, breaker, lock, idempotency, cache."""
    status = _command(
        commands,
        "status",
        "the breakers, locks, idempotency records and caches on a Redis",
        "Show the shared breakers (state, failure and slow-call rates, time until half-open), "
        "the locks held (fencing token, holder, time left), the idempotency records counted "
        "by state, and the caches, of one namespace on the Redis of --redis.",
    )
    breaker = _group(commands, "breaker", "force a shared breaker open, close, reset or disable")
    for action, summary, description in [
        (
            "open",
            "force it open: every process refuses its calls until it is closed",
            "Force the shared breaker NAME open: every process refuses its calls, from its "
            "next sync (within the breaker's sync_interval), until `breaker close` or "
            "`breaker reset`.",
        ),
        (
            "close",
            "close it, with an empty window",
            "Close the shared breaker NAME, whatever its state, with an empty window.",
        ),
        (
            "reset",
            "close it and forget every count, its rejections included",
            "Close the shared breaker NAME and forget every count, its rejections included.",
        ),
        (
            "disable",
            "disable it: every call passes, none is counted, until it is closed",
            "Disable the shared breaker NAME: every call passes and none is counted, until "
            "`breaker close` or `breaker reset`.",
        ),
    ]:
        _command(breaker, action, summary, description).add_argument(
            "name", metavar="NAME", help="the breaker's name"
        )
    lock = _group(commands, "lock", "release a lock held by a holder that hangs")
    release = _command(
        lock,
        "release",
        "release the lease of a lock by its fencing token",
        "Release the lease of the lock NAME whose fencing token is --token (as status shows "
        "it). A lease taken since, by a newer holder, has another token and is left alone. "
        "Without --token, show the lease held now and release nothing.",
    )
    release.add_argument("name", metavar="NAME", help="the lock's name")
    release.add_argument(
        "--token", metavar="N", type=_token, help="the fencing token of the lease to release"
    )
    records = _group(commands, "idempotency", "list or purge the records of idempotency keys")
    states = [state.value for state in RecordState]
    listing = _command(
        records,
        "list",
        "list the records, by function name",
        "List the records of idempotency keys: function name, state, time left, and the "
        "digest that stands for the key.",
    )
    listing.add_argument("--state", choices=states, help="only the records in this state")
    purge = _command(
        records,
        "purge",
        "delete the records in one state",
        "Delete the records in one state: their keys execute again at their next call. "
        "A call in progress is never purged: its claim ends with the call.",
    )
    purge.add_argument("--state", choices=states, required=True, help="the state to purge")
    for parser in (listing, purge):
        parser.add_argument("--name", metavar="NAME", help="only the idempotent function NAME")
    for parser in (status, release, listing, purge):  # the commands that list keys
        parser.add_argument(
            "--limit",
            metavar="N",
            type=_limit,
            help="the most keys a listing looks at, per capability (default 10,000, as "
            "resilient.admin.Admin's): a larger N looks further, at more work for Redis",
        )
    cache = _group(commands, "cache", "drop cached values")
    _command(
        cache,
        "purge",
        "drop every value stored under any of the tags",
        "Drop every cached value stored under any of the tags, by any cached function, and "
        "every process's local copies of them.",
    ).add_argument(
        "--tag",
        metavar="TAG",
        action="append",
        required=True,
        help="a tag, as given to tags= (repeat for more)",
    )


def _group(commands: _Commands, name: str, summary: str) -> _Commands:
    """Add the command *name*, whose actions are subcommands of their own."""
    parser = commands.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}."
    )
    _global_options(parser, given_only=True)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _command(
    commands: _Commands, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """Add an operators' command, with the options of every command and --json."""
    parser = commands.add_parser(name, help=summary, description=description)
    _global_options(parser, given_only=True)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (shapes: docs/cli.md)"
    )
    parser.set_defaults(run=_run_admin, limit=None)  # None: the admin's limit
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status (see the table of exit codes)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as error:
        sys.stderr.write(f"{parser.prog}: error: {error.message}\n")
        return error.code
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted\n")
        return Exit.INTERRUPTED
