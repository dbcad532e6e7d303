"""``atdata serve`` and ``atdata pipeline poll|list|events`` through typer's test runner
(the e2e tests run them as subprocesses)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import atdata
from atdata.cli._pipeline_commands import _standalone

TOKEN = "cli-token-0123456789abcdef"

PIPELINES = """
import atdata
from atdata.processing import processor


@atdata.packable
class Item:
    value: int


@processor
def bump(sample: Item) -> Item:
    return Item(value=sample.value + 1)


@atdata.pipeline(trigger="s3://{bucket}/incoming", output="s3://{bucket}/processed", name="{name}")
def ingest_items(shard_url: str) -> list[str]:
    if "bad" in shard_url:
        raise ValueError("refusing " + shard_url)
    return [shard_url]
"""


@pytest.fixture
def cli() -> typer.Typer:
    return _standalone()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a pipelines module registers into the default registry: undo it afterwards."""
    from atdata.pipeline import default_registry

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(default_registry, "_pipelines", dict(default_registry._pipelines))
    monkeypatch.setattr(default_registry, "_processors", dict(default_registry._processors))
    monkeypatch.delenv("ATDATA_PIPELINES", raising=False)


def _module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str = "bkt"
) -> tuple[Path, str]:
    name = f"cli_pipe_{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(sys.modules, name, None)  # absent now, and again afterwards
    del sys.modules[name]
    path = tmp_path / f"{name}.py"
    path.write_text(PIPELINES.format(bucket=bucket.removeprefix("s3://"), name=name))
    return path, name


def test_list(
    cli: typer.Typer, tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, name = _module(tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["pipeline", "list", "--pipelines", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    (pipe,) = [p for p in info["pipelines"] if p["name"] == name]
    assert pipe["trigger"] == "s3://bkt/incoming/" and pipe["output"] == "s3://bkt/processed"
    assert "bump" in info["processors"]
    table = CliRunner().invoke(cli, ["pipeline", "list", "-p", str(path)])
    assert name in table.output and "processors: bump" in table.output


def test_pipelines_from_the_environment_and_missing(
    cli: typer.Typer, tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(cli, ["pipeline", "list"])
    assert result.exit_code != 0 and "no pipelines to load" in str(result.exception)
    path, name = _module(tmp_path, monkeypatch)
    monkeypatch.setenv("ATDATA_PIPELINES", str(path))
    result = CliRunner().invoke(cli, ["pipeline", "list", "--json"])
    assert result.exit_code == 0 and name in result.output


def test_poll_then_events(
    cli: typer.Typer,
    tmp_path: Path,
    isolated: None,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, name = _module(tmp_path, monkeypatch, s3_bucket)
    for key in ("a", "bad"):
        with atdata.ShardWriter(f"{s3_bucket}/incoming/{key}.tar", manifest=False) as sink:
            sink.write({"value": 1})
    runner = CliRunner()
    args = ["pipeline", "poll", f"{s3_bucket}/incoming", "-p", str(path)]
    first = runner.invoke(cli, [*args, "--json"])
    assert first.exit_code == 1  # a run failed
    report = json.loads(first.output)
    assert (report["listed"], report["accepted"], report["failed"]) == (2, 2, 1)
    assert {r["key"]: r["state"] for r in report["runs"]} == {
        "incoming/a.tar": "done",
        "incoming/bad.tar": "failed",
    }
    # a failed event is retried by the next polls, up to 3 attempts
    second = runner.invoke(cli, args)
    assert "1 run, 1 already processed, 1 failed" in " ".join(second.output.split())
    assert json.loads(runner.invoke(cli, [*args, "--json"]).output)["accepted"] == 1
    exhausted = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert (exhausted["accepted"], exhausted["duplicate"]) == (0, 2)
    assert {r["reason"] for r in exhausted["runs"]} == {"done", "exhausted"}
    retried = runner.invoke(cli, [*args, "--retry-failed", "--json"])
    assert json.loads(retried.output)["accepted"] == 1
    events = runner.invoke(cli, ["pipeline", "events", name, "-p", str(path), "--json"])
    rows: list[dict[str, Any]] = json.loads(events.output)
    assert sorted((r["key"], r["state"], r["attempts"]) for r in rows) == [
        ("incoming/a.tar", "done", 1),
        ("incoming/bad.tar", "failed", 4),
    ]
    failed = runner.invoke(cli, ["pipeline", "events", name, "-p", str(path), "--state", "failed"])
    assert "refusing" in failed.output and "incoming/a.tar" not in failed.output


def test_events_say_which_version_superseded_an_event(
    cli: typer.Typer,
    tmp_path: Path,
    isolated: None,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from atdata.pipeline import ObjectEvent, Service, default_registry, list_objects, load_pipelines

    path, name = _module(tmp_path, monkeypatch, s3_bucket)
    load_pipelines([str(path)])
    with atdata.ShardWriter(f"{s3_bucket}/incoming/a.tar", manifest=False) as sink:
        sink.write({"value": 1})
    (current,) = list_objects(f"{s3_bucket}/incoming")
    service = Service(default_registry)
    stale = ObjectEvent(current.bucket, current.key, "0" * 32)  # a version overwritten since
    assert service.ingest(stale).status == "accepted"
    service.close()
    shown = CliRunner().invoke(
        cli, ["pipeline", "events", name, "-p", str(path), "--state", "superseded"]
    )
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "incoming/a.tar" in text and "superseded" in text and current.etag[:12] in text


def test_serve_builds_the_app_and_needs_a_token(
    cli: typer.Typer, tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    path, name = _module(tmp_path, monkeypatch)
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    monkeypatch.delenv("ATDATA_TOKEN", raising=False)
    refused = CliRunner().invoke(cli, ["serve", "-p", str(path)])
    assert refused.exit_code != 0 and "ATDATA_TOKEN" in str(refused.exception)
    assert served == []
    monkeypatch.setenv("ATDATA_TOKEN", TOKEN)
    result = CliRunner().invoke(
        cli, ["serve", "-p", str(path), "--port", "9999", "--threads", "2", "--no-access-log"]
    )
    assert result.exit_code == 0, result.output
    ((app, options),) = served
    assert options["port"] == 9999 and options["access_log"] is False
    service = app.state.service
    assert name in service.registry and service.runner.max_workers == 2
    service.close()
