"""``atdata publish``, ``atdata atmo ls`` and every verb on published ``@handle/name`` and
``at://`` datasets: against a real local PDS (the ``pds`` fixture in conftest.py) and
against ``mock_atmosphere()``, through typer's runner and once as a real process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atdata
from atdata import atmosphere
from atdata.cli import main
from atdata.cli._app import run
from atdata.cli._fast import dispatch
from cli_helpers import cli, ok, ok_json, user_error

# The atproto SDK uploads blobs with httpx's deprecated ``data=bytes``.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)

_ENV = ("ATDATA_HANDLE", "ATDATA_APP_PASSWORD", "ATDATA_SESSION", "ATDATA_PDS", "ATDATA_PLC")


# Its own name: the session's PDS is shared with test_atmosphere.py, whose ``Reading``
# (other fields, same version) would be a RecordConflictError in alice's repository.
@atdata.packable
class CliReading:
    value: int
    site: str


def write(folder: Path, n: int = 12) -> str:
    """``n`` Readings in shards of 5, with manifests; the brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    with atdata.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=5) as sink:
        for i in range(n):
            sink.write(CliReading(value=i, site=["north", "south", "east"][i % 3]))
    return str(folder / f"shard-{{000000..{len(sink.shards) - 1:06d}}}.tar")


def _name() -> str:
    return f"ds-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private local index, and no AT Protocol credentials unless a test sets them."""
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


class Net:
    """Runs CLI commands as an account of the real PDS (credentials in the environment,
    as users set them) or of ``mock_atmosphere()`` (through ``atmosphere.use``)."""

    def __init__(self, kind: str, monkeypatch: pytest.MonkeyPatch, info: dict[str, Any]) -> None:
        self.kind = kind
        self.monkeypatch = monkeypatch
        self.info = info
        self.mock = atmosphere.mock_atmosphere() if kind == "mock" else None
        if self.mock is not None:
            for name in ("alice", "bob"):
                self.mock.create_account(f"{name}.test", f"{name}-password")

    @contextlib.contextmanager
    def account(self, handle: str) -> Iterator[None]:
        if self.mock is not None:
            client = self.mock.login(handle, f"{handle.split('.')[0]}-password")
            with atmosphere.use(client):
                yield
            return
        with self.monkeypatch.context() as patch:
            for key, value in pds_env(self.info, handle).items():
                patch.setenv(key, value)
            yield

    def close(self) -> None:
        if self.mock is not None:
            self.mock.close()


def pds_env(info: dict[str, Any], handle: str) -> dict[str, str]:
    """The environment that makes the CLI act as ``handle`` on the real PDS."""
    password = {a["handle"]: a["password"] for a in info["accounts"]}[handle]
    return {
        "ATDATA_HANDLE": handle,
        "ATDATA_APP_PASSWORD": password,
        "ATDATA_PDS": info["url"],
        "ATDATA_PLC": info["plc"],
    }


@pytest.fixture(params=["pds", "mock"])
def net(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    info = request.getfixturevalue("pds") if request.param == "pds" else {}
    handle = Net(request.param, monkeypatch, info)
    try:
        yield handle
    finally:
        handle.close()


# -- publish and list ---------------------------------------------------------------------


def test_publish_local_twice_writes_once_and_is_listed(net: Net, tmp_path: Path) -> None:
    name = _name()
    data = write(tmp_path / "data")
    assert ok_json("register", data, name)["uri"] == f"@local/{name}"
    with net.account("alice.test"):
        first = ok_json(
            "publish", f"@local/{name}", "--version", "1.0.0", "--tag", "test", "--license", "MIT"
        )
        again = ok_json(
            "publish", f"@local/{name}", "--version", "1.0.0", "--tag", "test", "--license", "MIT"
        )
        shown = ok(
            "publish", f"@local/{name}", "--version", "1.0.0", "--tag", "test", "--license", "MIT"
        )
        mine = ok_json("atmo", "ls")
    assert first["ref"] == f"@alice.test/{name}"
    assert {first["entry"], first["label"]} <= set(first["created"])
    assert first["blobs_uploaded"] == 3  # local shards: stored as blobs (auto)
    assert {k: again[k] for k in ("ref", "entry", "label", "schema")} == {
        k: first[k] for k in ("ref", "entry", "label", "schema")
    }
    assert again["created"] == [] and again["blobs_uploaded"] == 0
    assert "Already published" in shown and first["entry"] in shown and first["label"] in shown

    assert mine["handle"] == "alice.test" and mine["repo"].startswith("did:")
    assert [d["uri"] for d in mine["datasets"] if d["name"] == name] == [first["entry"]]
    assert [(lb["uri"], lb["version"]) for lb in mine["labels"] if lb["name"] == name] == [
        (first["label"], "1.0.0")
    ]
    entry = next(d for d in mine["datasets"] if d["name"] == name)
    assert entry["storage"] == "blobs" and entry["num_samples"] == 12
    assert entry["tags"] == ["test"] and entry["license"] == "MIT"
    assert first["schema"] in [s["uri"] for s in mine["schemas"]]
    assert isinstance(mine["lenses"], list)

    with net.account("bob.test"):
        theirs = ok_json("atmo", "ls", "alice.test")
        table = ok("atmo", "ls", "@alice.test")
        assert ok_json("atmo", "ls", theirs["repo"])["repo"] == theirs["repo"]  # by DID
    assert theirs["repo"] == mine["repo"] and theirs["handle"] == "alice.test"
    assert first["entry"] in [d["uri"] for d in theirs["datasets"]]
    assert f"@alice.test/{name}" in table and "datasets" in table and "schemas" in table


def test_every_verb_on_a_dataset_published_by_another_account(
    net: Net, http_folder: tuple[Path, str]
) -> None:
    folder, base = http_folder
    pattern = write(folder)
    url = f"{base}/{Path(pattern).name}"
    name = _name()
    with net.account("alice.test"):
        pub = ok_json("publish", url, "--name", name, "--storage", "http")
    ref = f"@alice.test/{name}"
    with net.account("bob.test"):
        info = ok_json("inspect", ref)
        schema = ok_json("schema", "show", ref)
        shown = ok("schema", "show", ref)
        samples = ok_json("preview", ref, "-n", "2")["samples"]
        found = ok_json("query", ref, "value >= 10")
        counted = ok("query", ref, "site = 'north'", "--count")
        by_uri = ok_json("inspect", pub["entry"])
        text = ok("inspect", ref)
        missing = user_error("inspect", f"@alice.test/{name}-nope")
        diff = ok_json("schema", "diff", ref, pub["entry"])
    assert info["num_samples"] == 12 and info["num_shards"] == 3
    assert info["manifests"] == {"present": 3, "missing": 0}
    assert info["schema"]["name"] == "CliReading" and info["dataset"] == pub["entry"]
    assert info["published"]["schema_uri"] == pub["schema"]
    assert info["shards"][0]["url"] == f"{base}/shard-000000.tar"
    assert ref in text and "CliReading 1.0.0" in text and "manifest build" not in text
    assert by_uri["num_samples"] == 12 and by_uri["dataset"] == pub["entry"]
    assert schema["name"] == "CliReading" and schema["origin"] == "atmosphere"
    assert [f["name"] for f in schema["fields"]] == ["value", "site"]
    assert schema["published"] == {"uri": pub["entry"], "schema_uri": pub["schema"]}
    assert pub["schema"] in shown
    assert [s["fields"]["value"]["value"] for s in samples] == [0, 1]
    assert found["count"] == 2 and [m["key"] for m in found["matches"]]
    assert counted.strip() == "4"
    assert f"{name}-nope" in missing
    assert diff["identical"] is True


def test_blob_dataset_shows_its_published_schema_without_reading_shards(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write(tmp_path / "data")
    name = _name()
    with net.account("alice.test"):
        ok_json("publish", data, "--name", name, "--storage", "blobs")
    ref = f"@alice.test/{name}"
    with net.account("bob.test"):
        info = ok_json("inspect", ref)
        preview = ok_json("preview", ref, "-n", "3", "--fields", "site")
        line = user_error("query", ref, "value > 3")
        from atdata.cli import _headers, _schema

        def no_reads(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("schema show read the shards")

        monkeypatch.setattr(_schema, "_dataset_schema", no_reads)
        monkeypatch.setattr(_headers, "read_headers", no_reads)
        schema = ok_json("schema", "show", ref)
    assert info["manifests"] == {"present": 0, "missing": 3}  # PDS blobs have none
    assert info["num_samples"] == 12  # from the entry record
    assert info["schema"]["name"] == "CliReading"
    assert [s["fields"]["site"]["value"] for s in preview["samples"]] == ["north", "south", "east"]
    assert "PDS blobs" in line and "atdata preview" in line
    assert schema["name"] == "CliReading" and schema["origin"] == "atmosphere"


def test_fast_path_handles_published_refs_identically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path / "data")
    with atmosphere.mock_atmosphere() as fake:
        fake.create_account("alice.test").publish_dataset(
            atdata.storage.expand_urls(data), name="tiny", sample_type=CliReading
        )
        for args in (
            ["inspect", "@alice.test/tiny"],
            ["inspect", "@alice.test/tiny", "--json"],
            ["inspect", "@alice.test/none"],
        ):
            assert dispatch(list(args)) is not None  # handled on the fast path
            capsys.readouterr()
            fast = (main(args), *capsys.readouterr())
            slow = (run(args), *capsys.readouterr())
            assert fast == slow
            assert fast[0] == (1 if "none" in args[1] else 0)


# -- errors ---------------------------------------------------------------------------------


def test_missing_credentials_is_one_line(tmp_path: Path) -> None:
    name = _name()
    ok_json("register", write(tmp_path / "data"), name)
    for args in (
        ["publish", f"@local/{name}"],
        ["publish", "x.tar", "--name", "x"],
        ["atmo", "ls"],
    ):
        line = user_error(*args)
        for variable in ("ATDATA_HANDLE", "ATDATA_APP_PASSWORD", "ATDATA_SESSION", "ATDATA_PDS"):
            assert variable in line, line
    with atmosphere.mock_atmosphere():  # an anonymous client in use: still no account
        assert "ATDATA_HANDLE" in user_error("publish", f"@local/{name}")


def test_publish_usage_mistakes(tmp_path: Path) -> None:
    data = write(tmp_path / "data")
    ok_json("register", data, "mine")
    with atmosphere.mock_atmosphere() as fake, atmosphere.use(fake.create_account("alice.test")):
        assert "--name NAME" in user_error("publish", data)
        assert "'mine'" in user_error("publish", "@local/mine", "--name", "other")
        assert "already published" in user_error("publish", "@alice.test/mine")
        assert "No dataset named 'nope'" in user_error("publish", "@local/nope")
        assert "auto" in cli("publish", data, "--name", "x", "--storage", "ftp").stderr


def test_help_lists_the_new_commands() -> None:
    top = ok("--help")
    assert "publish" in top and "atmo" in top and "@HANDLE/NAME" in top
    assert ok() == top and ok("atmo") == ok("atmo", "--help")
    for command in (["publish"], ["atmo"], ["atmo", "ls"]):
        out = ok(*command, "--help")
        assert "Example" in out and "Usage: atdata " + " ".join(command) in out


# -- the error tree and the testing kit ----------------------------------------------------------


def test_one_error_tree_and_the_testing_kit_re_exports() -> None:
    import atdata.testing

    assert atdata.errors.AtmosphereError is atmosphere.AtmosphereError
    assert "AtmosphereError" in atdata.errors.__all__
    for cls in (
        atmosphere.AtmosphereAuthError,
        atmosphere.RecordNotFoundError,
        atmosphere.RecordConflictError,
        atmosphere.InvalidRecordError,
        atmosphere.AtmosphereConnectionError,
    ):
        assert issubclass(cls, atdata.errors.AtmosphereError)
        assert cls.__name__ in (atdata.errors.__doc__ or "")
    assert atdata.testing.mock_atmosphere is atmosphere.mock_atmosphere
    assert atdata.testing.MockNetwork is atmosphere.MockNetwork
    assert {"mock_atmosphere", "MockNetwork"} <= set(atdata.testing.__all__)


# -- as users run it ----------------------------------------------------------------------------


def atdata_cmd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atdata", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_in_a_real_process(pds: dict[str, Any], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    env.update(ATDATA_HOME=str(tmp_path / "home"), COLUMNS="200")
    done = atdata_cmd("publish", "x.tar", "--name", "x", env=env)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ATDATA_APP_PASSWORD" in lines[0] and "ATDATA_PDS" in lines[0]

    name = _name()
    done = atdata_cmd(
        "publish",
        write(tmp_path / "data"),
        "--name",
        name,
        "--json",
        env={**env, **pds_env(pds, "alice.test")},
    )
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["entry"]
    done = atdata_cmd(
        "inspect", f"@alice.test/{name}", "--json", env={**env, **pds_env(pds, "bob.test")}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dataset"] == entry
