"""The ``atdata`` command line (console script ``atdata = atdata.cli:main``).

Commands: ``inspect``, ``schema show``, ``schema diff``, ``preview``, ``query``,
``manifest build``, ``register``, ``ls``, ``publish`` and ``atmo ls`` (plus the
pipeline's ``serve`` and ``pipeline``); each prints JSON with ``--json``,
exits 0 on success and 1 with a one-line ``error: ...`` on a user error
(``--debug`` shows the traceback instead).

Example:
    $ atdata inspect 'data/shard-{000000..000199}.tar'
    $ atdata query @local/images "confidence > 0.9 AND label = 'dog'" --count
    $ atdata publish @local/images --version 1.0.0
    $ atdata inspect @alice.bsky.social/images
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    ``atdata --help`` and plain ``atdata inspect URL`` take a fast path that
    never imports the parser (see ``atdata.cli._fast``); everything else goes
    through the typer app.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    from atdata.cli._fast import dispatch

    code = dispatch(args)
    if code is None:
        from atdata.cli._app import run

        code = run(args)
    return code
