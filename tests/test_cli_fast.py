"""The fast paths (``--help``, plain ``inspect`` and ``query``) print what the typer app prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

import atdata
from atdata.cli import main
from atdata.cli._app import app, run
from atdata.cli._commands import COMMANDS, OPTIONS, SUBCOMMANDS, top_help
from atdata.cli._fast import dispatch
from atdata.errors import QueryError, UnreadableURLError


@atdata.packable
class Point:
    x: float
    name: str


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("points")
    with atdata.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=5) as sink:
        for i in range(12):
            sink.write(Point(x=i / 2, name=f"p{i % 4}"))
    os.remove(folder / "shard-000002.manifest.json")  # one shard without a manifest
    return str(folder / "shard-{000000..000002}.tar")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "home"))


def both(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[tuple[int, str, str], ...]:
    """(exit code, stdout, stderr) of the fast path and of the typer app, for ``args``."""
    assert dispatch(list(args)) is not None, "not a fast shape"
    capsys.readouterr()
    fast = (main(args), *capsys.readouterr())
    slow = (run(args), *capsys.readouterr())
    return fast, slow


@pytest.mark.parametrize("columns", [40, 60, 80, 100, 200])
@pytest.mark.parametrize("args", [[], ["--help"], ["-h"], ["--debug", "--help"]])
def test_help_is_identical(
    args: list[str],
    columns: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    fast, slow = both(args, capsys)
    assert fast == slow
    assert fast[1] == top_help(columns)


def test_command_table_matches_the_app() -> None:
    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    assert group.list_commands(ctx) == list(COMMANDS)  # type: ignore[attr-defined]
    for name, summary in COMMANDS.items():
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        assert command.get_short_help_str(limit=200) == summary
        for sub, sub_summary in SUBCOMMANDS.get(name, {}).items():
            assert command.get_command(ctx, sub).get_short_help_str(limit=200) == sub_summary
    options = {tuple(o.opts): o.help for o in group.params}
    assert options[("--debug",)] == dict(OPTIONS)["--debug"]
    assert options[("--version",)] == dict(OPTIONS)["--version"]


def test_version_is_identical(capsys: pytest.CaptureFixture[str]) -> None:
    fast, slow = both(["--version"], capsys)
    assert fast == slow == (0, f"atdata {atdata.__version__}\n", "")


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "DATA"],
        ["inspect", "DATA", "--json"],
        ["inspect", "-s", "DATA"],
        ["inspect", "DATA", "--shards", "--json"],
        ["inspect", "MISSING"],
        ["inspect", "MISSING", "--json"],
        ["inspect", "@local/nope"],
    ],
    ids=" ".join,
)
def test_inspect_is_identical(
    args: list[str],
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    missing = dataset.replace("points", "pionts")
    args = [{"DATA": dataset, "MISSING": missing}.get(a, a) for a in args]
    fast, slow = both(args, capsys)
    assert fast == slow
    assert fast[0] == (1 if missing in args or "@local/nope" in args else 0)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["query", "DATA", "x > 2"], 0),
        (["query", "DATA", "x > 2", "--count"], 0),
        (["query", "-c", "DATA", "name = 'p1'"], 0),
        (["query", "DATA", "x > 2", "--json"], 0),
        (["query", "DATA", "x > 2", "--json", "--limit", "2"], 0),
        (["query", "DATA", "x > 2", "-n", "2"], 0),
        (["query", "DATA", "x > 2", "--limit", "0"], 0),
        (["query", "DATA", "name LIKE 'p%'", "-n", "1"], 0),  # run by DuckDB
        (["query", "DATA", "x > 100"], 0),  # no match
        (["query", "DATA", "nmae = 'p1'"], 1),  # unknown field
        (["query", "DATA", "x > 'a' AND"], 1),  # a syntax error, in DuckDB's words
        (["query", "DATA", "name > 3", "--json"], 1),  # a constant of the wrong type
        (["query", "DATA", "  "], 1),
        (["query", "MISSING", "x > 2"], 1),
        (["query", "@local/nope", "x > 2", "--count"], 1),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_query_is_identical(
    args: list[str],
    code: int,
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    missing = dataset.replace("points", "pionts")
    args = [{"DATA": dataset, "MISSING": missing}.get(a, a) for a in args]
    fast, slow = both(args, capsys)
    assert fast == slow
    assert fast[0] == code
    assert (fast[2].startswith("error: ") and not fast[1]) if code else not fast[2]


def test_query_without_limit_shows_twenty_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with atdata.ShardWriter(str(tmp_path / "shard-%06d.tar")) as sink:
        for i in range(30):
            sink.write(Point(x=i, name="p"))
    assert main(["query", str(tmp_path / "shard-000000.tar"), "x >= 0"]) == 0
    out = capsys.readouterr().out
    assert out.count("sample_000000") == 20
    assert "30 matches (20 shown; --limit 0 for all)" in out


@pytest.mark.parametrize("command", ["inspect", "query"])
def test_ctrl_c_is_reported_alike(
    command: str,
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from atdata.cli import _inspect, _query

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_inspect, "gather", interrupted)
    monkeypatch.setattr(_query, "run", interrupted)
    args = ["inspect", dataset] if command == "inspect" else ["query", dataset, "x > 2"]
    fast, slow = both(args, capsys)
    assert fast == slow == (130, "", "Interrupted.\n")


def test_debug_raises_on_the_fast_path_too(dataset: str) -> None:
    with pytest.raises(UnreadableURLError):
        main(["--debug", "inspect", dataset + "x"])
    with pytest.raises(UnreadableURLError):
        main(["inspect", dataset + "x", "--debug"])
    with pytest.raises(QueryError):
        main(["query", dataset, "nmae = 'p1'", "--debug"])


@pytest.mark.parametrize(
    "args",
    [
        ["inspect"],
        ["inspect", "--help"],
        ["inspect", "a", "b"],
        ["inspect", "a", "--limit", "3"],
        ["inspect", "--", "-a"],
        ["ls"],
        ["schema", "show", "x"],
        ["--help", "inspect"],
        ["--version", "inspect", "x"],
        ["query", "a"],
        ["query", "a", "b", "c"],
        ["query", "a", "b", "--limit"],
        ["query", "a", "b", "--limit", "-1"],
        ["query", "a", "b", "--limit", "x"],
        ["query", "a", "b", "--limit=3"],
        ["query", "a", "b", "-n", "2", "-n", "3"],
        ["query", "a", "b", "-cn", "2"],
        ["query", "a", "b", "--help"],
    ],
    ids=" ".join,
)
def test_other_shapes_go_to_the_typer_app(args: list[str]) -> None:
    assert dispatch(args) is None
