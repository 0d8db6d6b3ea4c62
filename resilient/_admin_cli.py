# The operators' commands of the command line: status, breaker, lock, idempotency, cache.
#
# Rules:
# - Each command is a thin layer over `resilient.admin.Admin`: it decides nothing the admin
#   API decides (which records may be purged, which lease a token names), and only turns what
#   the API returns into tables or JSON, and what it raises into an exit code of cli.py's table.
# - They act on a Redis (`--redis URL`), never on the memory backend: this process is not the
#   application's, so memory would show and change nothing of it. Without --redis, exit 2.
# - A lock is released by the fencing token the operator saw (`--token N`), never by "whatever
#   lease is held now": the lease may have changed hands since the operator looked at it.
# - `--json` prints one JSON document whose shapes docs/cli.md documents; fields may be added,
#   never renamed or removed. Tables are for people and may change.
# - A listing cut at the admin's limit (`--limit N`, by default the admin's own) is never
#   shown as if complete: its JSON says `"truncated": true`, and a warning line goes to stderr
#   (with --json too), which tells how to look further, the exit status staying 0.
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from .admin import Admin, BreakerInfo, LockInfo, RecordInfo, RecordState
from .cli import CommandError, Exit, _prog, open_redis, shown
from .exceptions import BackendUnavailableError, NotFoundError

if TYPE_CHECKING:
    from .backends.redis import RedisBackend

__all__ = ["run"]

Command = Callable[[Admin, argparse.Namespace, TextIO], None]


def run(args: argparse.Namespace) -> int:
    """Run the operators' command *args* names on the Redis of ``--redis``; its exit status.

    Raises:
        CommandError: For no ``--redis`` (``Exit.USAGE``), an unknown name
            (``Exit.UNKNOWN_NAME``), a Redis that cannot be reached (``Exit.UNREACHABLE``),
            or one that refused a command (``Exit.FAILED``).
    """
    words = args.command if args.command == "status" else f"{args.command} {args.action}"
    if args.redis is None:
        raise CommandError(
            Exit.USAGE,
            f"{words} needs --redis URL: this command runs in a process of its own, and an "
            "application's memory backend lives in the application's process",
        )
    backend = open_redis(args.redis)
    try:
        _acting(backend, args, _COMMANDS[words])
    finally:
        backend.close()
    return Exit.OK


def _acting(backend: RedisBackend, args: argparse.Namespace, command: Command) -> None:
    """Run *command*, turning the errors an operator can meet into a CommandError."""
    import redis  # noqa: PLC0415 - an optional extra, there since open_redis succeeded

    limited = {} if args.limit is None else {"limit": args.limit}
    admin, where = Admin(backend, args.namespace, **limited), shown(args.redis)
    try:
        try:
            command(admin, args, sys.stdout)
        except BackendUnavailableError as error:
            if isinstance(error.__cause__, redis.RedisError):
                raise error.__cause__ from None  # told apart below, as Redis failed
            raise
    except NotFoundError as error:
        raise CommandError(Exit.UNKNOWN_NAME, _not_found(error, admin, where)) from None
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise CommandError(Exit.UNREACHABLE, f"lost Redis at {where}: {error}") from None
    except redis.RedisError as error:
        raise CommandError(Exit.FAILED, f"Redis at {where} refused: {error}") from None
    except BackendUnavailableError as error:
        raise CommandError(Exit.FAILED, str(error)) from None


def _not_found(error: NotFoundError, admin: Admin, where: str) -> str:
    if error.kind == "breaker":
        return (
            f"no breaker {error.name!r} on {where} in namespace {admin.namespace!r}: "
            "`status` lists the shared breakers there (a breaker that is not shared=True "
            "lives in its process only)"
        )
    return str(error)


def _print_json(out: TextIO, document: object) -> None:
    out.write(json.dumps(document, indent=2) + "\n")


def _warn(message: str) -> None:
    """Print the warning *message* on stderr, as one line."""
    sys.stderr.write(f"{_prog()}: warning: {message}\n")


def _over_limit(admin: Admin, whose: str) -> str:
    """Say that more keys than the admin's limit are under *whose* prefix."""
    return f"more than {admin.limit} keys are under {whose} prefix in namespace {admin.namespace!r}"


def _further(admin: Admin) -> str:
    """Tell how to look at more keys than the admin's limit."""
    return f"a --limit above {admin.limit} looks further"


# status -----------------------------------------------------------------------------------


def _status(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    breakers = admin.breakers()
    locks = admin.locks()
    listed = admin.idempotency_records()
    records = _by_state(listed)
    caches = admin.cache_stats()
    truncated = {
        "breakers": breakers.truncated,
        "locks": locks.truncated,
        "idempotency": listed.truncated,
    }
    cut = [_LISTINGS[listing] for listing, was in truncated.items() if was]
    if cut:
        whose = "their" if len(cut) == 1 else "each one's"
        _warn(
            f"the {' and the '.join(cut)} shown are incomplete: {_over_limit(admin, whose)}, "
            f"of which {admin.limit} were looked at ({_further(admin)})"
        )
    if args.json:
        _print_json(
            out,
            {
                "namespace": admin.namespace,
                "breakers": [info.to_dict() for info in breakers],
                "locks": [info.to_dict() for info in locks],
                "idempotency": records,
                "caches": [info.to_dict() for info in caches],
                "truncated": truncated,
            },
        )
        return
    out.write(f"namespace {admin.namespace!r} on {shown(args.redis)}\n")
    _section(out, "Breakers (shared)", _breaker_rows(breakers))
    _section(
        out,
        "Locks held",
        [["NAME", "TOKEN", "HOLDER", "TTL"]]
        + [
            [info.name or "-", str(info.token), info.holder or "-", _seconds(info.ttl)]
            for info in locks
        ],
    )
    _section(
        out,
        "Idempotency records",
        [["NAME", *(_heading(state) for state in RecordState)]]
        + [
            [str(row["name"]), *(str(row[state.value]) for state in RecordState)] for row in records
        ],
    )
    out.write(
        "\nCaches\n  hits and misses are counted by each process for its own calls, and this "
        "one made none:\n  call resilient.admin.Admin().cache_stats() in the application.\n"
    )


def _by_state(records: Sequence[RecordInfo]) -> list[dict[str, object]]:
    """Count *records* by function name and state: one row per name, a count per state."""
    counts: dict[str, Counter[str]] = {}
    for record in records:
        counts.setdefault(record.name, Counter())[record.state.value] += 1
    return [
        {"name": name, **{state: counts[name][state] for state in _STATES}}
        for name in sorted(counts)
    ]


_STATES = [state.value for state in RecordState]
_LISTINGS = {"breakers": "shared breakers", "locks": "locks", "idempotency": "idempotency records"}


def _breaker_rows(breakers: Sequence[BreakerInfo]) -> list[list[str]]:
    header = [
        "NAME",
        "STATE",
        "CALLS",
        "FAILURE RATE",
        "SLOW-CALL RATE",
        "REJECTED",
        "TRIPS",
        "HALF-OPEN IN",
    ]
    return [header] + [
        [
            info.name,
            info.state.value,
            str(info.calls),
            _rate(info.failure_rate),
            _rate(info.slow_call_rate),
            str(info.rejected),
            str(info.trips),
            _seconds(info.until_half_open),
        ]
        for info in breakers
    ]


def _section(out: TextIO, title: str, rows: list[list[str]]) -> None:
    """Print *title* and the table *rows* (a header first), numbers aligned right."""
    out.write(f"\n{title}\n")
    if len(rows) == 1:
        out.write("  none\n")
        return
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    left = [heading in _WORDS for heading in rows[0]]
    for row in rows:
        cells = [
            cell.ljust(width) if words else cell.rjust(width)
            for cell, width, words in zip(row, widths, left, strict=True)
        ]
        out.write("  " + "  ".join(cells).rstrip() + "\n")


_WORDS = {"NAME", "STATE", "HOLDER", "ID"}  # the columns aligned left; numbers go right


def _heading(state: RecordState) -> str:
    return state.value.replace("_", " ").upper()


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


# breaker ----------------------------------------------------------------------------------

_BREAKER_DONE = {
    "open": (
        Admin.open_breaker,
        "forced open: every process refuses its calls from its next sync, within the "
        "breaker's sync_interval (0.25 s by default) and a round trip, until `breaker close` "
        "or `breaker reset`",
    ),
    "close": (
        Admin.close_breaker,
        "closed with an empty window: every process lets calls through again from its next sync",
    ),
    "reset": (
        Admin.reset_breaker,
        "reset: closed, every count forgotten, rejections included",
    ),
    "disable": (
        Admin.disable_breaker,
        "disabled: every call passes and none is counted, until `breaker close` or `breaker reset`",
    ),
}


def _breaker(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    act, done = _BREAKER_DONE[args.action]
    info = act(admin, args.name)
    if args.json:
        _print_json(out, info.to_dict())
        return
    out.write(f"breaker {info.name!r} {done}.\n")
    _section(out, "Now", _breaker_rows([info]))


# lock -------------------------------------------------------------------------------------


def _lock_release(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    if args.token is None:
        _refuse_without_token(admin, args)
    info = admin.release_lock(args.name, args.token)
    if args.json:
        _print_json(out, info.to_dict())
        return
    holder = f"held by {info.holder}" if info.holder else "its holder unknown"
    out.write(
        f"released lock {args.name!r}, fencing token {info.token} ({holder}, "
        f"{_seconds(info.ttl)} left). Its holder learns that it lost the lock at its next "
        "renewal, or when it leaves its block (LockLostError).\n"
    )


def _refuse_without_token(admin: Admin, args: argparse.Namespace) -> None:
    """Show the lease held now and the command that releases it; raise for the missing token."""
    locks = admin.locks()
    held = [info for info in locks if info.name == args.name]
    if not held and locks.truncated:
        raise CommandError(
            Exit.USAGE,
            f"lock {args.name!r} is not among the locks looked at: {_over_limit(admin, 'their')}, "
            f"of which {admin.limit} were looked at, so it may be held. Nothing was released: "
            f"add --token N, its lease's fencing token, to release it, or a --limit above "
            f"{admin.limit} to look further for its lease",
        )
    if not held:
        raise NotFoundError("lock", args.name, f"is not held in namespace {admin.namespace!r}")
    leases = "; ".join(_lease(info) for info in held)
    raise CommandError(
        Exit.USAGE,
        f"lock {args.name!r} is held now: {leases}. Nothing was released: add --token "
        f"{held[0].token} to release that lease (--token names the lease, so that one taken "
        "since, by a newer holder, is never released by mistake)",
    )


def _lease(info: LockInfo) -> str:
    return f"fencing token {info.token}, by {info.holder or 'an unknown holder'}, " + (
        f"{_seconds(info.ttl)} left"
    )


# idempotency ------------------------------------------------------------------------------


def _idempotency_list(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    records = admin.idempotency_records(args.state, name=args.name)
    if records.truncated:
        _warn(
            f"the {_records_of(args.name)} shown are incomplete: {_over_limit(admin, 'their')}, "
            f"of which {admin.limit} were looked at ({_further(admin)}{_narrower(args.name)})"
        )
    if args.json:
        _print_json(
            out,
            {
                "namespace": admin.namespace,
                "records": [info.to_dict() for info in records],
                "truncated": records.truncated,
            },
        )
        return
    _section(
        out,
        f"Idempotency records in namespace {admin.namespace!r}",
        [["NAME", "STATE", "TTL", "ID"]]
        + [[info.name, info.state.value, _seconds(info.ttl), info.id] for info in records],
    )


def _idempotency_purge(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    try:
        purged = admin.purge_idempotency(args.state, name=args.name)
    except ValueError as error:  # in_progress: the admin API says why it is never purged
        raise CommandError(Exit.USAGE, f"--state {args.state}: {error}") from None
    if purged.truncated:
        _warn(
            f"{args.state} {_records_of(args.name)} may be left: {_over_limit(admin, 'their')}, "
            f"and the purge stopped when the {admin.limit} it looked at held none "
            f"{args.state} ({_further(admin)}{_narrower(args.name)})"
        )
    if args.json:
        _print_json(
            out,
            {
                "namespace": admin.namespace,
                "state": args.state,
                "name": args.name,
                "purged": purged,
                "truncated": purged.truncated,
            },
        )
        return
    of = "" if args.name is None else f" of {args.name!r}"
    out.write(
        f"purged {purged} {args.state} record{'' if purged == 1 else 's'}{of} in namespace "
        f"{admin.namespace!r}: a purged key executes again at its next call.\n"
    )


def _records_of(name: str | None) -> str:
    """Name the records of the function *name* (of every function for None), for a warning."""
    return "idempotency records" + ("" if name is None else f" of {name!r}")


def _narrower(name: str | None) -> str:
    """Tell how to look at fewer keys, unless --name already does."""
    return "; --name NAME looks at one function's records only" if name is None else ""


# cache ------------------------------------------------------------------------------------


def _cache_purge(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    purged = admin.purge_cache(*args.tag)
    if args.json:
        _print_json(out, {"namespace": admin.namespace, "tags": args.tag, "purged": purged})
        return
    tags = ", ".join(repr(tag) for tag in args.tag)
    out.write(
        f"dropped {purged} cached value{'' if purged == 1 else 's'} tagged {tags} in "
        f"namespace {admin.namespace!r}; every process's local copies go too.\n"
    )


_COMMANDS: dict[str, Command] = {
    "status": _status,
    **{f"breaker {action}": _breaker for action in _BREAKER_DONE},
    "lock release": _lock_release,
    "idempotency list": _idempotency_list,
    "idempotency purge": _idempotency_purge,
    "cache purge": _cache_purge,
}
