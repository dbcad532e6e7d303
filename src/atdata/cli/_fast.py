"""Fast paths for the commands people run most: ``atdata --help``, ``inspect`` and ``query``.

The typer app costs ~150 ms before a command starts (typer, its vendored click,
and pydantic, which typer 0.2x uses to coerce every argument), a large part of
what these must answer in. So when the command line has exactly one of these
simple shapes it is handled here, by the same code the typer command calls and
with the same error handling; anything else (other flags, ``--``, ``-h`` after a
command, ``--limit=5``...) goes to the typer app. ``tests/test_cli_fast.py``
checks both paths print the same thing. A published ``@handle/name`` or
``at://`` target takes this path too: it is resolved exactly as the typer
command resolves it, importing the atmosphere layer only then.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

__all__ = ["dispatch"]

_INSPECT_FLAGS = frozenset({"--json", "--shards", "-s"})
_QUERY_FLAGS = frozenset({"--json", "--count", "-c"})
_QUERY_LIMIT = frozenset({"--limit", "-n"})
_COUNT = re.compile(r"[0-9]+")


def dispatch(args: Sequence[str]) -> int | None:
    """Run ``args`` here when they have a fast shape; None means "use the typer app"."""
    if "--" in args:
        return None
    debug = "--debug" in args
    rest = [a for a in args if a != "--debug"]
    if not rest or rest in (["--help"], ["-h"]):
        from atdata.cli._commands import top_help

        sys.stdout.write(top_help())
        return 0
    if rest == ["--version"]:
        from atdata import __version__

        sys.stdout.write(f"atdata {__version__}\n")
        return 0
    if rest[0] == "inspect":
        flags = [a for a in rest[1:] if a.startswith("-")]
        targets = [a for a in rest[1:] if not a.startswith("-")]
        if len(targets) == 1 and all(f in _INSPECT_FLAGS for f in flags):
            return _guarded(
                lambda: _inspect(
                    targets[0],
                    as_json="--json" in flags,
                    all_shards=bool({"--shards", "-s"} & set(flags)),
                ),
                debug=debug,
            )
    if rest[0] == "query":
        shape = _query_shape(rest[1:])
        if shape is not None:
            (target, where), options, limit = shape
            return _guarded(
                lambda: _query(
                    target,
                    where,
                    count=bool({"--count", "-c"} & options),
                    limit=limit,
                    as_json="--json" in options,
                ),
                debug=debug,
            )
    return None


def _query_shape(args: Sequence[str]) -> tuple[list[str], set[str], int | None] | None:
    """``URL WHERE`` with ``--count``/``-c``, ``--json`` and one ``--limit N``/``-n N``
    in any order: (the two arguments, the flags, the limit); None for any other shape."""
    positional: list[str] = []
    flags: set[str] = set()
    limit: int | None = None
    words = iter(args)
    for word in words:
        if word in _QUERY_LIMIT:
            value = next(words, "")
            if limit is not None or not _COUNT.fullmatch(value):
                return None
            limit = int(value)
        elif word in _QUERY_FLAGS:
            flags.add(word)
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    return (positional, flags, limit) if len(positional) == 2 else None


def _inspect(target: str, *, as_json: bool, all_shards: bool) -> None:
    from atdata.cli import _inspect
    from atdata.cli._output import emit_json

    result = _inspect.gather(target)
    if as_json:
        emit_json(result)
    else:
        _inspect.render(result, all_shards=all_shards)


def _query(target: str, where: str, *, count: bool, limit: int | None, as_json: bool) -> None:
    from atdata.cli import _query

    _query.show(target, where, count_only=count, limit=limit, as_json=as_json)


def _guarded(command: Callable[[], None], *, debug: bool) -> int:
    """Run a command with the typer app's error handling: an atdata error is one
    red line and exit code 1 (raised with ``--debug``), Ctrl-C one line (what was
    done, else ``Interrupted.``) and exit code 130."""
    from atdata.cli._output import report_error
    from atdata.errors import AtdataError

    try:
        command()
    except AtdataError as exc:
        if debug:
            raise
        report_error(exc)
        return 1
    except KeyboardInterrupt as exc:
        from atdata._interrupt import report_interrupt

        report_interrupt(exc)
        return 130
    return 0
