"""Ctrl-C in long-running work: one line saying what was done, then exit status 130.

``Dataset.map``, ``atdata.manifest.build`` and a ``with ShardWriter(...)``
block run inside :class:`Interruptible`, which turns the ``KeyboardInterrupt``
of a Ctrl-C into :class:`Interrupted`, whose message says what was done and
whether running the same thing again resumes. How that ends depends on where
it runs:

- **a script** (``python script.py``): the line is printed to stderr, e.g.
  ``Interrupted: 3 of 8 shards done; run the same map again to resume.``, and
  the exception is also a ``SystemExit(130)``: uncaught, the process exits
  with status 130 and no traceback. ``except KeyboardInterrupt`` still
  catches it, and ``finally`` blocks run as usual;
- **an interactive session** (the REPL, ``python -i``, IPython, Jupyter): it
  is a plain ``KeyboardInterrupt`` subclass, which the session shows (its
  last line is the message) and survives;
- **the CLI** prints the same line (``Interrupted.`` when there is nothing to
  report) and exits 130.

Blocks nest: the outermost one reports, with its own summary (or an inner
one's when it has none), so one Ctrl-C gives one line. Once that line is
printed, a second Ctrl-C during the clean-up at exit ends the process at once
(status 130, no traceback from the atexit callback it cut short).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

__all__ = ["Interrupted", "Interruptible", "interactive", "report_interrupt"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped long-running work; the message says what was done.

    Attributes:
        summary: what was done and whether a rerun resumes ("" when unknown).
        reported: the line has been printed to stderr.

    Example:
        >>> exc = Interrupted("3 of 8 shards done; run the same map again to resume")
        >>> exc.line
        'Interrupted: 3 of 8 shards done; run the same map again to resume.'
        >>> isinstance(exc, KeyboardInterrupt)
        True
    """

    def __init__(self, summary: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.reported = False

    @property
    def line(self) -> str:
        """The one line printed for it.

        Example:
            >>> Interrupted().line
            'Interrupted.'
        """
        return f"Interrupted: {self.summary}." if self.summary else "Interrupted."

    def report(self, stream: TextIO | None = None) -> None:
        """Print :attr:`line` to ``stream`` (default stderr), once.

        Example:
            >>> import io
            >>> out, exc = io.StringIO(), Interrupted("2 shards committed")
            >>> exc.report(out); exc.report(out)
            >>> out.getvalue()
            'Interrupted: 2 shards committed.\\n'
        """
        if not self.reported:
            print(self.line, file=sys.stderr if stream is None else stream, flush=True)
            self.reported = True
            _end_at_once_on_ctrl_c_at_exit()


_at_exit_registered = False


def _end_at_once_on_ctrl_c_at_exit() -> None:
    """Once the process exits, a further Ctrl-C ends it at once with status 130.

    Clean-up at exit (stopping worker processes, closing clients) can take a
    few seconds after the line is printed; a user who presses Ctrl-C again
    then means "stop now", which Python would answer with a traceback from
    the atexit callback it interrupts. Registered when the line is printed,
    so it runs before the clean-up registered earlier (atexit runs last-in,
    first-out); a script that catches the interrupt and goes on is unaffected
    until it exits.
    """
    global _at_exit_registered
    if not _at_exit_registered:
        _at_exit_registered = True
        atexit.register(_exit_on_sigint)


def _exit_on_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream cannot stop the exit
            stream.flush()
    os._exit(128 + signum)


class _InterruptedExit(Interrupted, SystemExit):
    """:class:`Interrupted` in a script: uncaught, Python exits with status 130, silently."""

    def __init__(self, summary: str = "") -> None:
        super().__init__(summary)
        self.code = 130


def interactive() -> bool:
    """True in an interactive session: the REPL, ``python -i``, IPython or Jupyter.

    Example:
        >>> interactive()    # under pytest
        False
    """
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


_state = threading.local()  # .depth: Interruptible blocks open in this thread


class Interruptible:
    """A block in which Ctrl-C becomes :class:`Interrupted` with ``summary()``.

    ``summary`` is called once the block has unwound (a progress bar inside it
    is closed, so the line is not drawn over) and says what was done, e.g.
    ``"12 of 200 manifests built; run the same build again to resume"``. The
    outermost block in a thread reports: in a script it prints the line and
    raises the exception that exits with status 130 (see the module docstring);
    an inner block's exception is replaced by the outer one's.

    Example:
        >>> with Interruptible(lambda: "2 of 5 shards done"):   # doctest: +SKIP
        ...     raise KeyboardInterrupt                        # what Ctrl-C does
        Interrupted: 2 of 5 shards done.
    """

    def __init__(self, summary: Callable[[], str]) -> None:
        self.summary = summary
        self._outer_depth = 0

    def __enter__(self) -> Interruptible:
        self._outer_depth = getattr(_state, "depth", 0)
        _state.depth = self._outer_depth + 1
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        _state.depth = self._outer_depth
        if isinstance(exc, KeyboardInterrupt):
            text = self.summary() or (exc.summary if isinstance(exc, Interrupted) else "")
            raise _interrupted(text, outermost=self._outer_depth == 0) from None


def _interrupted(summary: str, *, outermost: bool) -> Interrupted:
    if not outermost or interactive():
        return Interrupted(summary)
    exc = _InterruptedExit(summary)
    exc.report()
    return exc


def report_interrupt(exc: BaseException, stream: TextIO | None = None) -> None:
    """Print the one line for a Ctrl-C (an :class:`Interrupted`'s, else ``Interrupted.``), once.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> report_interrupt(KeyboardInterrupt(), out)
        >>> out.getvalue()
        'Interrupted.\\n'
    """
    (exc if isinstance(exc, Interrupted) else Interrupted()).report(stream)
