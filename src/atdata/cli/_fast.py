"""Fast paths for the two commands people run most: ``atdata --help`` and ``atdata inspect``.

The typer app costs ~150 ms before a command starts (typer, its vendored click,
and pydantic, which typer 0.2x uses to coerce every argument), about half the
0.3 s these two must answer in. So when the command line has exactly one of
these simple shapes it is handled here, by the same code the typer command
calls and with the same error handling; anything else (other flags, ``--``,
``-h`` after a command...) goes to the typer app. ``tests/test_cli_fast.py``
checks both paths print the same thing. A published ``@handle/name`` or ``at://``
target takes this path too: ``_inspect.gather`` resolves it exactly as the typer
command does, importing the atmosphere layer only then.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["dispatch"]

_INSPECT_FLAGS = frozenset({"--json", "--shards", "-s"})


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
            return _inspect(
                targets[0],
                as_json="--json" in flags,
                all_shards=bool({"--shards", "-s"} & set(flags)),
                debug=debug,
            )
    return None


def _inspect(target: str, *, as_json: bool, all_shards: bool, debug: bool) -> int:
    from atdata.cli import _inspect
    from atdata.cli._output import emit_json, report_error
    from atdata.errors import AtdataError

    try:
        result = _inspect.gather(target)
        if as_json:
            emit_json(result)
        else:
            _inspect.render(result, all_shards=all_shards)
    except AtdataError as exc:
        if debug:
            raise
        report_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
