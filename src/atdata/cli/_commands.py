"""The CLI's names and one-line summaries: one source for the typer app and the fast path.

Kept free of typer (and of everything else heavy) so ``atdata --help`` can print
the command list without importing the parser at all.
"""

from __future__ import annotations

import shutil
import textwrap

__all__ = ["COMMANDS", "DESCRIPTION", "EXAMPLE", "OPTIONS", "SUBCOMMANDS", "SUMMARY", "top_help"]

SUMMARY = "Inspect, query and manage typed WebDataset shard datasets."
DESCRIPTION = (
    "Every command takes a local shard, folder, brace pattern or glob, an s3:// or r2:// URL, "
    "@local/NAME, or a published @HANDLE/NAME or at:// URI, and prints JSON with --json."
)
MAX_WIDTH = 100  # widest help text, as the typer app's ``max_content_width``
EXAMPLE = "atdata inspect 'data/shard-{000000..000199}.tar'"

# name -> summary, in the order `atdata --help` lists them
COMMANDS: dict[str, str] = {
    "inspect": "Sample count, schema, shards and field statistics.",
    "schema": "Show a schema, or compare two (show, diff).",
    "preview": "The first samples, rendered readably.",
    "query": "Keys and locations of the samples that match a condition.",
    "manifest": "Build manifests for shards that lack them (build).",
    "register": "Register a dataset in the local index as @local/NAME.",
    "ls": "Registered datasets and schemas.",
    "publish": "Publish a dataset on the AT Protocol network as @HANDLE/NAME.",
    "atmo": "What an account has published on the AT Protocol network (ls).",
    "serve": "Serve the pipeline dispatcher (R2 events, map jobs) over HTTP.",
    "pipeline": "Pipelines: poll a bucket, list pipelines, show events.",
}

SUBCOMMANDS: dict[str, dict[str, str]] = {
    "schema": {
        "show": "Fields of a dataset's schema or a registered one.",
        "diff": "Fields added, removed and retyped between two schemas.",
    },
    "manifest": {
        "build": "Write manifests for the shards that lack them.",
    },
    "atmo": {
        "ls": "Labels, datasets, schemas and lenses a repository has published.",
    },
}

# (flags, help) of the options every invocation accepts
OPTIONS: list[tuple[str, str]] = [
    ("--debug", "Show the full traceback when a command fails."),
    ("--version", "Print the version and exit."),
    ("-h, --help", "Show this message and exit."),
]


def top_help(columns: int | None = None) -> str:
    """``atdata --help``, laid out exactly as the parser lays out its help pages.

    Args:
        columns: terminal width; default: the real terminal's (``$COLUMNS``).
    """
    if columns is None:
        columns = shutil.get_terminal_size().columns
    width = max(min(columns, MAX_WIDTH) - 2, 50)  # the help formatter's rule

    def para(text: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ")

    def rows(items: list[tuple[str, str]]) -> list[str]:
        left = max(len(k) for k, _ in items) + 2
        out = []
        for key, text in items:
            wrapped = textwrap.wrap(text, max(width - left - 2, 10)) or [""]
            out.append(f"  {key:<{left}}{wrapped[0]}".rstrip())
            out.extend(" " * (left + 2) + more for more in wrapped[1:])
        return out

    lines = ["Usage: atdata [OPTIONS] COMMAND [ARGS]...", ""]
    lines += [*para(SUMMARY), "", *para(DESCRIPTION), ""]
    lines += ["Options:", *rows(OPTIONS), ""]
    lines += ["Commands:", *rows(list(COMMANDS.items())), ""]
    lines += ["  Example:", f"    {EXAMPLE}"]
    return "\n".join(lines) + "\n"
