"""Output helpers shared by the commands: rich consoles, JSON, sizes, errors."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["console", "emit_json", "human_bytes", "make_table", "print_error", "report_error"]


def console(*, stderr: bool = False) -> Console:
    """A rich console on the *current* ``sys.stdout``/``sys.stderr``.

    Made per call (not at import) so a test runner that swaps the streams
    captures what is printed.
    """
    from rich.console import Console

    return Console(
        file=sys.stderr if stderr else sys.stdout,
        highlight=False,
        markup=False,  # data (``list[str]``, keys, paths) must never be read as rich markup
        soft_wrap=False,
    )


def make_table(title: str | None = None, **options: Any) -> Table:
    """The commands' table: a rule under the header, no outer padding, a bold title
    on the left; ``options`` go to :class:`rich.table.Table` as they are."""
    from rich import box
    from rich.table import Table

    return Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=title,
        title_justify="left",
        title_style="bold",
        **options,
    )


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, for scripts (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        return iso()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    return str(value)


def print_error(message: str) -> None:
    """Print ``error: <message>`` in red on stderr.

    atdata's messages are one line; the few that carry more on purpose (a
    missing lens lists the lenses that exist and the code to write) keep their
    further lines, printed plain below the red one.
    """
    from rich.text import Text

    first, _, rest = message.strip().partition("\n")
    err = console(stderr=True)
    err.print(Text(f"error: {first}", style="bold red"), soft_wrap=True)
    if rest.strip():
        err.print(Text(rest.rstrip()), soft_wrap=True)


def report_error(exc: BaseException) -> None:
    """Print an atdata error the way every command does (``error: <message>``).

    An error whose advice is a Python argument (``handler='skip'``) is shown
    with its advice for the command instead (:meth:`AtdataError.cli_message`).
    """
    from atdata.errors import AtdataError

    message = exc.cli_message() if isinstance(exc, AtdataError) else str(exc)
    print_error(message or type(exc).__name__)


def human_bytes(size: float | None) -> str:
    """``1536`` -> ``'1.5 KiB'``; None -> ``'?'``."""
    if size is None:
        return "?"
    if size < 1024:
        return f"{int(size)} B"
    exponent = min(int(math.log(size, 1024)), 5)
    return f"{size / 1024**exponent:.1f} {'BKMGTP'[exponent]}iB"
