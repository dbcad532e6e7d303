"""The typer app: option parsing and wiring only.

Each command gathers a JSON-able result in its own module (``_inspect``,
``_schema``...) and either prints it as JSON (``--json``) or renders it with
rich. Library modules are imported inside the commands, so ``atdata --help``
never loads numpy, pyarrow, duckdb or fsspec.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from atdata.cli._commands import (
    COMMANDS,
    DESCRIPTION,
    EXAMPLE,
    MAX_WIDTH,
    OPTIONS,
    SUBCOMMANDS,
    SUMMARY,
)
from atdata.cli._pipeline_commands import SERVE_EPILOG, pipeline_app, serve
from atdata.errors import AtdataError

__all__ = ["app", "run"]

_DEBUG = "atdata.debug"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="A shard, folder, brace pattern, glob, s3:// or r2:// URL, @local/NAME, "
        "or a published @HANDLE/NAME or at:// URI.",
        show_default=False,
    ),
]


class _AtdataGroup(TyperGroup):
    """Turns atdata's errors and usage mistakes into one red line and exit code 1,
    and Ctrl-C into one line (what was done, if anything) and exit code 130."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        debug = _pop_debug(args)
        obj = extra.pop("obj", None)
        obj = dict(obj) if isinstance(obj, dict) else {}
        obj[_DEBUG] = debug
        try:
            code = super().main(
                args,
                prog_name or "atdata",
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                obj=obj,
                **extra,
            )
            code = code if isinstance(code, int) else 0
        except typer.TyperException as exc:  # usage mistakes: unknown option, missing argument...
            if debug:
                raise
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())  # a group run bare shows its help, as ours do
                return self._exit(0, standalone_mode)
            from atdata.cli._output import print_error

            print_error(_usage_message(exc))
            code = 1
        except typer.Abort:  # click's form of a Ctrl-C outside a command (it printed a newline)
            from atdata._interrupt import report_interrupt

            report_interrupt(KeyboardInterrupt())
            code = 130
        return self._exit(code, standalone_mode)

    @staticmethod
    def _exit(code: int, standalone_mode: bool) -> int:
        if standalone_mode:
            sys.exit(code)
        return code

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        """Commands in the order of ``COMMANDS`` (the fast ``--help`` uses it too)."""
        names = super().list_commands(ctx)
        order = {name: i for i, name in enumerate(COMMANDS)}
        return sorted(names, key=lambda n: order.get(n, len(order)))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except AtdataError as exc:
            if (ctx.obj or {}).get(_DEBUG):
                raise
            from atdata.cli._output import report_error

            report_error(exc)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            # One line: what a long operation had done (it may have printed it
            # already), else "Interrupted."; its progress bar is closed by now.
            from atdata._interrupt import report_interrupt

            report_interrupt(exc)
            raise typer.Exit(130) from None


def _pop_debug(args: list[str]) -> bool:
    """Remove every ``--debug`` before a ``--``; True when there was one.

    Accepting it anywhere lets a user add it to the end of the command that failed.
    """
    stop = args.index("--") if "--" in args else len(args)
    found = "--debug" in args[:stop]
    if found:
        args[:stop] = [a for a in args[:stop] if a != "--debug"]
    return found


def _usage_message(exc: typer.TyperException) -> str:
    message = " ".join(exc.format_message().split())
    if not message.endswith((".", "?", "!")):
        message += "."
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" See `{ctx.command_path} --help`."
    return message


_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": MAX_WIDTH}


def _example(*lines: str) -> str:
    """An epilog that the help formatter prints as written (``\\b`` stops rewrapping)."""
    return (
        "\b\nExample"
        + ("s" if len(lines) > 1 else "")
        + ":\n"
        + "\n".join(f"  {line}" for line in lines)
    )


app = typer.Typer(
    cls=_AtdataGroup,
    name="atdata",
    help=f"{SUMMARY}\n\n{DESCRIPTION}",
    epilog=_example(EXAMPLE),
    add_completion=False,
    rich_markup_mode=None,  # plain help, laid out like the fast path's `atdata --help`
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    context_settings=_CONTEXT,
)
schema_app = typer.Typer(
    name="schema",
    help="Show a dataset's or a registered schema, or compare two.",
    short_help=COMMANDS["schema"],
    epilog=_example(
        "atdata schema show @local/my-dataset",
        "atdata schema diff ImageSample v1.0.0 v1.1.0",
    ),
    invoke_without_command=True,
    context_settings=_CONTEXT,
)
manifest_app = typer.Typer(
    name="manifest",
    help="Build manifests (per-sample metadata and aggregates) for shards.",
    short_help=COMMANDS["manifest"],
    epilog=_example("atdata manifest build 'data/shard-*.tar'"),
    invoke_without_command=True,
    context_settings=_CONTEXT,
)
atmo_app = typer.Typer(
    name="atmo",
    help="What an account has published on the AT Protocol network.\n\n"
    "Reads public records: no login is needed to list another account. Credentials come "
    "from ATDATA_HANDLE and ATDATA_APP_PASSWORD (or ATDATA_SESSION); ATDATA_PDS picks the PDS.",
    short_help=COMMANDS["atmo"],
    epilog=_example("atdata atmo ls", "atdata atmo ls alice.bsky.social --json"),
    invoke_without_command=True,
    context_settings=_CONTEXT,
)
app.add_typer(schema_app)
app.add_typer(manifest_app)
app.add_typer(atmo_app)
# `atdata serve` and `atdata pipeline ...` live with the pipeline code's CLI module.
app.command("serve", short_help=COMMANDS["serve"], epilog=SERVE_EPILOG)(serve)
app.add_typer(pipeline_app, short_help=COMMANDS["pipeline"])


def _version(value: bool) -> None:
    if value:
        from atdata import __version__

        typer.echo(f"atdata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help=dict(OPTIONS)["--debug"])] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help=dict(OPTIONS)["--version"]
        ),
    ] = False,
) -> None:
    ctx.ensure_object(dict)[_DEBUG] = debug or ctx.obj.get(_DEBUG, False)
    _help_if_bare(ctx)


@schema_app.callback()
def _schema_root(ctx: typer.Context) -> None:
    _help_if_bare(ctx)


@manifest_app.callback()
def _manifest_root(ctx: typer.Context) -> None:
    _help_if_bare(ctx)


@atmo_app.callback()
def _atmo_root(ctx: typer.Context) -> None:
    _help_if_bare(ctx)


def _help_if_bare(ctx: typer.Context) -> None:
    """A group run without a command prints its help (exit code 0)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


# -- commands -------------------------------------------------------------------


@app.command(
    short_help=COMMANDS["inspect"],
    epilog=_example(
        "atdata inspect 'data/shard-{000000..000199}.tar'",
        "atdata inspect @local/my-dataset --shards --json",
    ),
)
def inspect(
    target: TargetArg,
    shards: Annotated[
        bool, typer.Option("--shards", "-s", help="List every shard (else the first few).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Sample count, schema, shards and per-field statistics of a dataset.

    Reads only the manifests' JSON headers (concurrently), never the data.
    """
    from atdata.cli import _inspect

    result = _inspect.gather(target)
    if as_json:
        _emit(result)
    else:
        _inspect.render(result, all_shards=shards)


@schema_app.command(
    "show",
    short_help=SUBCOMMANDS["schema"]["show"],
    epilog=_example(
        "atdata schema show 'data/shard-*.tar'",
        "atdata schema show @local/my-dataset",
        "atdata schema show ImageSample@1.1.0",
    ),
)
def schema_show(
    source: Annotated[
        str,
        typer.Argument(
            metavar="URL|NAME[@VERSION]",
            help="A dataset (path, pattern, URL, @local/NAME) or a registered schema "
            "such as ImageSample or ImageSample@1.1.0 (latest version by default).",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Field names, types and manifest kinds of a dataset's or a registered schema."""
    from atdata.cli import _schema

    result = _schema.show(source)
    if as_json:
        _emit(result)
    else:
        _schema.render_show(result)


@schema_app.command(
    "diff",
    short_help=SUBCOMMANDS["schema"]["diff"],
    epilog=_example(
        "atdata schema diff ImageSample v1.0.0 v1.1.0",
        "atdata schema diff v1.0.0 v1.1.0",
        "atdata schema diff data/v1/ @local/my-dataset",
    ),
)
def schema_diff(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="A B | NAME V1 V2",
            help="Two schemas (datasets, NAME@VERSION, or versions of the one registered "
            "type that has both), or a registered NAME and two of its versions.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Fields added, removed and retyped going from schema A to schema B."""
    from atdata.cli import _schema

    result = _schema.diff(sources)
    if as_json:
        _emit(result)
    else:
        _schema.render_diff(result)


@app.command(
    short_help=COMMANDS["preview"],
    epilog=_example(
        "atdata preview s3://bucket/train-000000.tar --limit 3",
        "atdata preview @local/my-dataset --fields label,image --json",
    ),
)
def preview(
    target: TargetArg,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="How many samples to show.")
    ] = 5,
    fields: Annotated[
        str | None,
        typer.Option("--fields", "-f", help="Comma-separated fields to show (default: all)."),
    ] = None,
    width: Annotated[
        int,
        typer.Option("--width", min=8, help="Truncate strings and lists to this many characters."),
    ] = 80,
    skip_corrupt: Annotated[
        bool,
        typer.Option(
            "--skip-corrupt",
            help="Skip samples that do not decode (and the rest of a damaged shard) "
            "instead of failing; they are counted.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The first samples, readably: arrays by shape, dtype and a few values; long strings cut."""
    from atdata.cli import _preview

    selected = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    result = _preview.gather(
        target, limit=limit, fields=selected, width=width, skip_corrupt=skip_corrupt
    )
    if as_json:
        _emit(result)
    else:
        _preview.render(result)


@app.command(
    short_help=COMMANDS["query"],
    epilog=_example(
        "atdata query 'data/shard-*.tar' \"confidence > 0.9 AND label = 'dog'\"",
        "atdata query @local/my-dataset \"'outdoor' IN tags\" --count",
    ),
)
def query(
    target: TargetArg,
    where: Annotated[
        str,
        typer.Argument(
            metavar="WHERE",
            help="A SQL condition over manifest fields, run by DuckDB, e.g. "
            "\"confidence > 0.9 AND label IN ('dog', 'cat')\".",
            show_default=False,
        ),
    ],
    count: Annotated[
        bool, typer.Option("--count", "-c", help="Print only the number of matches.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=0,
            help="Show at most this many matches (0: all). "
            "Default: 20 in the table, all with --json.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Keys and locations (shard, byte offset, size) of the samples that match.

    Only the manifests are read, never the shards; fetch a sample with
    Dataset.get_sample(location) or Dataset.get(key).
    """
    from atdata.cli import _query

    result = _query.run(
        target,
        where,
        count_only=count,
        limit=limit if as_json else (20 if limit is None else limit),
    )
    if as_json:
        _emit(result)
    else:
        _query.render(result)


@manifest_app.command(
    "build",
    short_help=SUBCOMMANDS["manifest"]["build"],
    epilog=_example(
        "atdata manifest build 'data/shard-{000000..000199}.tar'",
        "atdata manifest build s3://bucket/train/ --type mypkg.samples:ImageSample",
    ),
)
def manifest_build(
    target: TargetArg,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild manifests that already exist.")
    ] = False,
    sample_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            metavar="MODULE:CLASS",
            help="The @packable sample type to read the shards with, e.g. "
            "mypkg.samples:ImageSample (default: the registered schema for @local/NAME, "
            "else inferred from the data).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write manifests for the shards that lack them."""
    from atdata.cli import _manifest

    result = _manifest.build(target, force=force, sample_type=sample_type)
    if as_json:
        _emit(result)
    else:
        _manifest.render(result)


@app.command(
    short_help=COMMANDS["register"],
    epilog=_example("atdata register 'data/shard-{000000..000199}.tar' my-dataset"),
)
def register(
    target: TargetArg,
    name: Annotated[
        str,
        typer.Argument(help="The name to register, then used as @local/NAME.", show_default=False),
    ],
    description: Annotated[
        str, typer.Option("--description", "-d", help="Free text shown by `atdata ls`.")
    ] = "",
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite/--no-overwrite", help="Replace a dataset of the same name."),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Register a dataset in the local index; its schema is read from its manifests."""
    from atdata.cli import _local

    result = _local.register(target, name, description=description, overwrite=overwrite)
    if as_json:
        _emit(result)
    else:
        _local.render_register(result)


@app.command("ls", short_help=COMMANDS["ls"], epilog=_example("atdata ls", "atdata ls --json"))
def ls(as_json: JsonOption = False) -> None:
    """Registered datasets and schemas (the local index, $ATDATA_HOME/index.db)."""
    from atdata.cli import _local

    result = _local.listing()
    if as_json:
        _emit(result)
    else:
        _local.render_listing(result)


class Storage(enum.StrEnum):
    """Where ``atdata publish`` records the shards (see ``Atmosphere.publish_dataset``)."""

    auto = "auto"
    http = "http"
    s3 = "s3"
    blobs = "blobs"


@app.command(
    short_help=COMMANDS["publish"],
    epilog=_example(
        "atdata publish @local/my-dataset --version 1.0.0",
        "atdata publish 'data/shard-*.tar' --name mnist --storage blobs --tag vision --json",
    ),
)
def publish(
    source: Annotated[
        str,
        typer.Argument(
            metavar="NAME_OR_PATH",
            help="@local/NAME (published as NAME, with its registered schema), or a shard, "
            "folder, pattern or URL (give --name; the schema is read from its manifests).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="The name others load it by, as @HANDLE/NAME."),
    ] = None,
    storage: Annotated[
        Storage,
        typer.Option(
            "--storage",
            help="http: the http(s) URLs as they are; s3: bucket and keys; blobs: upload the "
            "shards to your PDS; auto: by the URLs (local files become blobs).",
        ),
    ] = Storage.auto,
    version: Annotated[
        str | None, typer.Option("--version", help="The label's version, e.g. 1.0.0.")
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="A tag people can find it by (repeatable)."),
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="An SPDX license, e.g. CC-BY-4.0.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a dataset's schema, entry and label records in your AT Protocol repository.

    Idempotent: records that exist with the same content are reused, so running it
    again writes (and uploads) nothing. Needs ATDATA_HANDLE and ATDATA_APP_PASSWORD (or
    ATDATA_SESSION); ATDATA_PDS picks the PDS (default https://bsky.social).
    """
    from atdata._interrupt import Interruptible
    from atdata.cli import _publish

    with Interruptible(lambda: _PUBLISH_INTERRUPTED):
        result = _publish.publish(
            source,
            name=name,
            storage=storage.value,
            version=version,
            tags=tags or [],
            license=license,
        )
    if as_json:
        _emit(result)
    else:
        _publish.render(result)


_PUBLISH_INTERRUPTED = (
    "publishing stopped part-way; run the same command again to finish "
    "(the records already published are reused)"
)


@atmo_app.command(
    "ls",
    short_help=SUBCOMMANDS["atmo"]["ls"],
    epilog=_example("atdata atmo ls", "atdata atmo ls alice.bsky.social --json"),
)
def atmo_ls(
    repo: Annotated[
        str | None,
        typer.Argument(
            metavar="HANDLE_OR_DID",
            help="The repository to list (default: the logged-in account).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Labels, dataset entries, schemas and lenses a repository has published."""
    from atdata.cli import _atmo

    result = _atmo.listing(repo)
    if as_json:
        _emit(result)
    else:
        _atmo.render_listing(result)


def _emit(result: Any) -> None:
    from atdata.cli._output import emit_json

    emit_json(result)


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``); returns the exit code."""
    command = typer.main.get_command(app)
    return int(command.main(args, prog_name="atdata", standalone_mode=False) or 0)
