"""The progress bar: samples (and shards, bytes) on stderr, by default only on a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import atdata
from atdata import _progress
from atdata._progress import Progress


@atdata.packable
class Reading:
    value: int
    site: str


@pytest.fixture
def readings(tmp_path: Path) -> atdata.Dataset[Reading]:
    with atdata.ShardWriter(str(tmp_path / "in" / "shard-%06d.tar"), maxcount=10) as sink:
        for i in range(40):
            sink.write(Reading(value=i, site=["north", "south"][i % 2]))
    return atdata.Dataset[Reading](str(tmp_path / "in" / "shard-{000000..000003}.tar"))


@atdata.packable
class Doubled:
    value: int


def double(reading: Reading) -> Doubled:
    return Doubled(value=reading.value * 2)


# -- the bar ------------------------------------------------------------------------------------


def test_a_shown_bar_counts_samples_shards_and_bytes_against_the_total() -> None:
    out = io.StringIO()
    with Progress("copy", enabled=True, total=3, shards_total=1, stream=out) as bar:
        for _ in range(3):
            bar.advance(bytes=1024)
        bar.advance(0, shards=1)
    drawn = out.getvalue()
    assert "copy" in drawn and "3/3 samples" in drawn and "1/1 shards" in drawn
    assert "3.1 kB" in drawn and "samples/s" in drawn


def test_by_default_nothing_is_drawn_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress("copy", stream=out) as bar:
        bar.advance(5)
    assert not bar.enabled and out.getvalue() == ""
    assert bar.samples == 5  # still counted


def test_rich_is_handed_the_counts_a_few_times_a_second_not_per_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
    bar = Progress("copy", enabled=True, stream=io.StringIO()).start()
    pushes: list[Any] = []
    update = bar._rich.update
    monkeypatch.setattr(bar._rich, "update", lambda *a, **k: (pushes.append(k), update(*a, **k)))

    for _ in range(10_000):
        bar.advance()
    assert len(pushes) == 1  # the first; the clock has not moved since
    now[0] += _progress._PUSH_INTERVAL_S
    bar.advance()
    assert len(pushes) == 2 and pushes[-1]["counts"].startswith("10,001 samples")
    bar.close()
    assert pushes[-1]["completed"] == 10_001


# -- where it is wired in --------------------------------------------------------------------------


def test_shard_writer_shows_a_bar_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(name: str, **options: Any) -> None:
        with atdata.ShardWriter(str(tmp_path / name / "s-%06d.tar"), maxcount=4, **options) as w:
            for i in range(10):
                w.write(Reading(value=i, site="north"))

    write("quiet")  # the default: off, a writer is usually one step of a bigger loop
    write("auto", progress=None)  # only on a terminal, and stderr is not one here
    assert capsys.readouterr().err == ""

    write("shown", progress=True, progress_total=10)
    err = capsys.readouterr().err
    assert "10/10 samples" in err and "3 shards" in err


def test_map_counts_samples_only_on_a_terminal_by_default(
    readings: atdata.Dataset[Reading], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readings.map(double, output_prefix=str(tmp_path / "a"), executor="inline")
    assert capsys.readouterr().err == ""

    readings.map(double, output_prefix=str(tmp_path / "b"), executor="inline", progress=True)
    err = capsys.readouterr().err
    assert "double" in err and "40 samples" in err and "4/4 shards" in err


def test_materialize_counts_the_samples_it_copies(
    readings: atdata.Dataset[Reading], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    north = readings.query(where=lambda m: m.site == "north")
    north.materialize(str(tmp_path / "north" / "s-%06d.tar"), progress=True)
    assert "20/20 samples" in capsys.readouterr().err

    north.materialize(str(tmp_path / "again" / "s-%06d.tar"))
    assert capsys.readouterr().err == ""


def test_manifest_build_counts_shards_and_samples(
    readings: atdata.Dataset[Reading], capsys: pytest.CaptureFixture[str]
) -> None:
    built = atdata.manifest.build(readings.shards, Reading, overwrite=True, progress=True)
    assert len(built) == 4
    err = capsys.readouterr().err
    assert "manifests" in err and "40 samples" in err and "4/4 shards" in err


def test_the_cli_draws_on_a_terminal_stderr_and_keeps_json_stdout_clean(
    readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "atdata", "manifest", "build", readings.shards[0]]
    command += ["--force", "--json"]
    env = {**os.environ, "ATDATA_HOME": str(tmp_path / "home"), "COLUMNS": "120"}

    drawn, stdout = _with_terminal_stderr(command, env)
    assert "manifests" in drawn and "10 samples" in drawn
    assert json.loads(stdout)["built"] == [readings.shards[0]]

    piped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
    assert json.loads(piped.stdout)["built"] == [readings.shards[0]]


def _with_terminal_stderr(command: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run ``command`` with stderr on a pseudo-terminal; (what it drew there, its stdout)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    drawn = b""
    while True:  # read the terminal until the child closes it
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            pytest.fail("the command hung")
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0, drawn
    return drawn.decode(errors="replace"), stdout
