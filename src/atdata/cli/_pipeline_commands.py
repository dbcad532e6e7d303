"""``atdata serve`` and ``atdata pipeline ...``: the dispatcher and the poller from the shell.

Registered by the main app as::

    app.command("serve", epilog=SERVE_EPILOG)(serve)
    app.add_typer(pipeline_app)              # atdata pipeline poll | list | events

Library modules (uvicorn, starlette, fsspec) are imported inside the commands.
``python -m atdata.cli._pipeline_commands`` runs these commands on their own.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer

__all__ = ["SERVE_EPILOG", "pipeline_app", "serve"]

SERVE_EPILOG = "Example: ATDATA_TOKEN=... atdata serve --pipelines pipelines.py --port 8000"

PipelinesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--pipelines",
        "-p",
        metavar="FILE.py|MODULE",
        help="A file or module defining @atdata.pipeline functions and processors "
        "(repeatable; default: $ATDATA_PIPELINES, comma-separated).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _load(specs: list[str] | None) -> list[str]:
    from atdata.errors import PipelineError
    from atdata.pipeline import load_pipelines

    names = list(specs or [])
    if not names:
        names = [s for s in os.environ.get("ATDATA_PIPELINES", "").split(",") if s.strip()]
    if not names:
        raise PipelineError(
            "no pipelines to load: pass --pipelines pipelines.py (a file or module defining "
            "@atdata.pipeline functions), or set ATDATA_PIPELINES"
        )
    load_pipelines(names)
    return names


def serve(
    pipelines: PipelinesOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    threads: Annotated[
        int,
        typer.Option(min=1, help="Pipeline runs and jobs executing at once (background threads)."),
    ] = 4,
    max_body_bytes: Annotated[
        int, typer.Option(min=256, help="Refuse request bodies larger than this (413).")
    ] = 64 * 1024,
    lease_seconds: Annotated[
        float, typer.Option(min=1, help="Retry a run claimed this long ago that never finished.")
    ] = 3600.0,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Leave an event failed after this many failed runs.")
    ] = 3,
    executor: Annotated[
        str, typer.Option(help="Executor for map jobs started with POST /jobs.")
    ] = "local",
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
) -> None:
    """Serve the dispatcher: POST /ingest (R2 events), POST /jobs, GET /jobs/ID.

    Requests must carry `Authorization: Bearer $ATDATA_TOKEN`. Events are claimed
    in each pipeline's ledger before the answer, then processed in the background.
    The local executor's worker processes start with the server and stay warm
    across events and jobs.
    """
    from atdata.errors import MissingDependencyError
    from atdata.pipeline import create_app
    from atdata.processing import LocalExecutor

    _load(pipelines)
    app = create_app(
        workers=threads,
        max_body_bytes=max_body_bytes,
        lease_seconds=lease_seconds,
        max_attempts=max_attempts,
        job_executor=executor,
    )
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "serve", "atdata serve") from None
    LocalExecutor.shared().start()  # the pipelines' maps run there unless they say otherwise
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)


pipeline_app = typer.Typer(
    name="pipeline",
    help="Event-driven pipelines: poll a bucket, list pipelines, show their events.",
    epilog="Example: atdata pipeline poll r2://bucket/incoming --pipelines pipelines.py",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@pipeline_app.command(
    "poll", epilog="Example: atdata pipeline poll r2://bucket/incoming -p pipelines.py --watch"
)
def poll(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL", help="The r2:// or s3:// prefix to list.", show_default=False
        ),
    ],
    pipelines: PipelinesOption = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Poll again every --interval seconds.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between polls with --watch.")
    ] = 30.0,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Also rerun events that failed too often.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Start at most this many runs per poll.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the bucket and run the pipelines for shards not yet processed (once each).

    Uses the same ledger as POST /ingest, so shards whose events did arrive are
    duplicates and run nothing: the fallback for lagging or lost notifications.
    """
    from atdata.pipeline import poll as run_poll

    _load(pipelines)
    while True:
        report = run_poll(url, retry_failed=retry_failed, limit=limit)
        if as_json:
            from atdata.cli._output import emit_json

            emit_json(report.to_json())
        else:
            _render_poll(report)
        if not watch:
            if report.failed:
                raise typer.Exit(1)
            return
        time.sleep(interval)


def _render_poll(report: Any) -> None:
    from rich.table import Table

    from atdata.cli._output import console

    out = console()
    out.print(
        f"{report.url}: {report.listed} shard(s) listed, {report.accepted} run, "
        f"{report.duplicate} already processed, {report.failed} failed"
    )
    shown = [r for r in report.runs if r["status"] == "accepted"]
    if shown:
        table = Table("key", "pipeline", "state", "output / error")
        for row in shown:
            table.add_row(
                row["key"], row["pipeline"], row["state"], row.get("error") or row["output_prefix"]
            )
        out.print(table)


@pipeline_app.command("list", epilog="Example: atdata pipeline list -p pipelines.py")
def list_pipelines(pipelines: PipelinesOption = None, as_json: JsonOption = False) -> None:
    """The registered pipelines (trigger, output) and processors."""
    from atdata.pipeline import default_registry

    _load(pipelines)
    info = default_registry.describe()
    if as_json:
        from atdata.cli._output import emit_json

        emit_json(info)
        return
    from rich.table import Table

    from atdata.cli._output import console

    table = Table("pipeline", "trigger", "output", "function")
    for p in info["pipelines"]:
        table.add_row(
            p["name"],
            p["trigger"] + (f" (*{p['suffix']})" if p["suffix"] else ""),
            p["output"],
            p["function"],
        )
    out = console()
    out.print(table)
    out.print(f"processors: {', '.join(info['processors']) or '(none)'}")


@pipeline_app.command(
    "events", epilog="Example: atdata pipeline events process_uploads --state failed"
)
def events(
    name: Annotated[str, typer.Argument(help="The pipeline's name.", show_default=False)],
    pipelines: PipelinesOption = None,
    state: Annotated[
        str | None,
        typer.Option(help="Only events in this state: running, done, failed or superseded."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The events a pipeline's ledger holds: key, ETag, state, attempts, outputs, error."""
    from atdata.pipeline import Service, default_registry

    _load(pipelines)
    service = Service(default_registry)
    try:
        records = service.ledger(default_registry.get(name)).records()
    finally:
        service.close()
    rows = [r.to_json() for r in records if state is None or r.state == state]
    if as_json:
        from atdata.cli._output import emit_json

        emit_json(rows)
        return
    from rich.table import Table

    from atdata.cli._output import console

    table = Table("key", "etag", "state", "attempts", "outputs / error")
    for r in rows:
        if r["state"] == "failed":
            detail = r["error"]
        elif r["state"] == "superseded":
            detail = f"not run: the object was overwritten (now ETag {r['superseded_by']})"
        else:
            detail = f"{len(r['outputs'])} shard(s) in {r['output_prefix']}"
        table.add_row(r["key"], r["etag"][:16], r["state"], str(r["attempts"]), detail or "")
    console().print(table)


def _standalone() -> typer.Typer:
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    app.command("serve", epilog=SERVE_EPILOG)(serve)
    app.add_typer(pipeline_app)
    return app


if __name__ == "__main__":  # pragma: no cover - exercised by the e2e tests as a subprocess
    _standalone()()
