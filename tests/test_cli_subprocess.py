"""The ``atdata`` command as users run it: real processes, real exit codes, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import atdata

HEAVY = ("numpy", "pyarrow", "duckdb", "fsspec", "pandas", "msgspec")


@atdata.packable
class Reading:
    value: float
    site: str


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("readings")
    with atdata.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=4) as sink:
        for i in range(12):
            sink.write(Reading(value=float(i), site=["north", "south"][i % 2]))
    return str(folder / "shard-{000000..000002}.tar")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ATDATA_HOME": str(tmp_path / "home"), "COLUMNS": "120"}


def atdata_cmd(
    *args: str, env: dict[str, str], script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m atdata ARGS`` (or the installed ``atdata`` script)."""
    if script:
        exe = Path(sys.executable).with_name("atdata")
        if not exe.exists():
            pytest.skip("the atdata console script is not installed beside this python")
        cmd = [str(exe), *args]
    else:
        cmd = [sys.executable, "-m", "atdata", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def ok_json(*args: str, env: dict[str, str]) -> Any:
    done = atdata_cmd(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_verb_in_a_real_process(dataset: str, env: dict[str, str]) -> None:
    assert ok_json("inspect", dataset, env=env)["num_samples"] == 12
    assert ok_json("schema", "show", dataset, env=env)["name"] == "Reading"
    assert ok_json("schema", "diff", dataset, dataset, env=env)["identical"] is True
    assert len(ok_json("preview", dataset, "-n", "2", env=env)["samples"]) == 2
    assert ok_json("query", dataset, "value >= 10", env=env)["count"] == 2
    assert ok_json("manifest", "build", dataset, env=env)["built"] == []
    assert ok_json("register", dataset, "readings", env=env)["uri"] == "@local/readings"
    assert [d["uri"] for d in ok_json("ls", env=env)["datasets"]] == ["@local/readings"]
    done = atdata_cmd("--help", env=env)
    assert done.returncode == 0 and "inspect" in done.stdout and done.stderr == ""


def test_console_script(dataset: str, env: dict[str, str]) -> None:
    done = atdata_cmd("--version", env=env, script=True)
    assert done.returncode == 0 and done.stdout.strip() == f"atdata {atdata.__version__}"
    done = atdata_cmd("inspect", dataset, env=env, script=True)
    assert done.returncode == 0 and "Reading 1.0.0" in done.stdout


def test_user_error_is_one_line_without_traceback(dataset: str, env: dict[str, str]) -> None:
    done = atdata_cmd("inspect", dataset.replace("readings", "readingz"), env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No such file or folder")
    done = atdata_cmd("--debug", "inspect", dataset.replace("readings", "readingz"), env=env)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "UnreadableURLError" in done.stderr


def test_misspelled_field_in_a_real_process(dataset: str, env: dict[str, str]) -> None:
    done = atdata_cmd("query", dataset, "valeu > 3", env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Did you mean 'value'" in lines[0]


def loaded_modules(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run the CLI in a fresh interpreter; report its exit code and heavy modules loaded."""
    code = (
        "import json, sys\n"
        "from atdata.cli import main\n"
        f"rc = main({args!r})\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "sys.stderr.write('\\n' + json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return json.loads(done.stderr.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["inspect", "--help"],
        ["inspect", "DATASET"],
        ["inspect", "DATASET", "--json"],
        ["ls"],
    ],
    ids=lambda a: " ".join(a) or "(no arguments)",
)
def test_fast_commands_import_nothing_heavy(
    args: list[str], dataset: str, env: dict[str, str]
) -> None:
    report = loaded_modules([dataset if a == "DATASET" else a for a in args], env)
    assert report == {"rc": 0, "heavy": []}
