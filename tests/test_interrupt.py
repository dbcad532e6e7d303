"""Ctrl-C in long-running work: one line on stderr, exit status 130, nothing half-written.

Real processes and real signals: each child runs in its own session and gets
SIGINT as a terminal's Ctrl-C delivers it, to its whole process group (the
local executor's workers too), once its first output is on disk.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import atdata
from atdata._interrupt import Interrupted, Interruptible, report_interrupt
from atdata.cli._app import run

# -- running a child and interrupting it ------------------------------------------------------

_HANG_GUARD_S = 180  # only to fail instead of hanging when a child never gets going


def _interrupted(
    args: list[str], ready: Callable[[], bool] | list[Callable[[], bool]], cwd: Path
) -> tuple[int, str, list[str]]:
    """Run ``python ARGS``; Ctrl-C it each time ``ready()`` (or the next of a list of them)
    is true: (status, stdout, stderr lines)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        give_up = time.monotonic() + _HANG_GUARD_S
        for condition in ready if isinstance(ready, list) else [ready]:
            while not condition():
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    pytest.fail(f"the child ended before it was interrupted:\n{out}\n{err}")
                if time.monotonic() > give_up:
                    pytest.fail("the child never became ready")
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=_HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, [line for line in err.splitlines() if line.strip()]


def _complete(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _one_line(lines: list[str], pattern: str) -> re.Match[str]:
    """stderr is exactly one line, matching ``pattern``, and no traceback."""
    assert len(lines) == 1, "\n".join(lines)
    assert "Traceback" not in lines[0]
    match = re.fullmatch(pattern, lines[0])
    assert match is not None, lines[0]
    return match


def _committed_only(folder: Path) -> list[str]:
    """The shards in ``folder``; fails if anything there is half-written."""
    names = sorted(p.name for p in folder.iterdir())
    leftovers = [n for n in names if n.startswith(".") or ".tmp" in n or ".partial" in n]
    assert leftovers == [], leftovers
    tars = [n for n in names if n.endswith(".tar")]
    for tar in tars:  # a shard is committed once its manifest JSON is there
        assert tar.removesuffix(".tar") + ".manifest.json" in names, tar
    return tars


def _manifests(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.manifest.json"))


# -- Dataset.map on the local executor --------------------------------------------------------

MAP_SCRIPT = """
import sys, time
import atdata

@atdata.packable
class Item:
    x: int

@atdata.packable
class Doubled:
    y: int

def slow_double(item: Item) -> Doubled:
    time.sleep(0.1)
    return Doubled(y=item.x * 2)

if __name__ == "__main__":
    ds = atdata.Dataset[Item]("in/shard-{000000..000007}.tar")
    pool = atdata.LocalExecutor(workers=2)
    if sys.argv[1:] == ["again"]:  # Ctrl-C caught, then the same map in the same process
        try:
            ds.map(slow_double, output_prefix="out", executor=pool)
        except KeyboardInterrupt:
            print("caught")
    out = ds.map(slow_double, output_prefix="out", executor=pool)
    print(len(out.shards), sorted(s.y for s in out)[-1])
"""


MAP_LINE = r"Interrupted: (\d) of 8 shards done; run the same map again to resume\."


@atdata.packable
class Item:
    x: int


@pytest.fixture
def map_job(tmp_path: Path) -> Path:
    with atdata.ShardWriter(str(tmp_path / "in" / "shard-%06d.tar"), maxcount=10) as sink:
        for i in range(80):
            sink.write(Item(x=i))
    (tmp_path / "job.py").write_text(MAP_SCRIPT)
    return tmp_path


def test_ctrl_c_in_a_map_script_prints_one_line_and_exits_130(map_job: Path) -> None:
    out = map_job / "out"
    code, stdout, lines = _interrupted(["job.py"], lambda: bool(_manifests(out)), map_job)

    assert code == 130 and stdout == ""
    done = int(_one_line(lines, MAP_LINE)[1])
    assert 0 <= done < 8
    assert len(_committed_only(out)) >= done  # the line counts what the ledger holds

    rerun = _complete(["job.py"], map_job)
    assert rerun.stdout.split() == ["8", "158"] and rerun.stderr == ""
    # (a task whose output landed as Ctrl-C came, before the ledger heard of it, is redone)
    assert atdata.job_status(str(out)).last_run.tasks_skipped >= done
    assert len(_committed_only(out)) == 8


def test_a_caught_ctrl_c_leaves_the_pool_ready_for_the_next_map(map_job: Path) -> None:
    out = map_job / "out"
    code, stdout, lines = _interrupted(["job.py", "again"], lambda: bool(_manifests(out)), map_job)

    assert code == 0, lines
    assert stdout.split() == ["caught", "8", "158"]
    _one_line(lines, MAP_LINE)
    assert len(_committed_only(out)) == 8


DASK_CLUSTER = """
    from distributed import Client, LocalCluster
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    )
    client = Client(cluster)
    pool = "dask"
"""
DASK_SCRIPT = MAP_SCRIPT.replace("    pool = atdata.LocalExecutor(workers=2)\n", DASK_CLUSTER[1:])


@pytest.mark.slow
def test_ctrl_c_in_a_map_on_a_local_dask_cluster(map_job: Path) -> None:
    assert "LocalExecutor" not in DASK_SCRIPT
    (map_job / "job.py").write_text(DASK_SCRIPT)
    out = map_job / "out"
    code, stdout, lines = _interrupted(["job.py"], lambda: bool(_manifests(out)), map_job)

    # Dask's own worker processes share the terminal's process group: they get the
    # SIGINT too and print what Dask prints; atdata's line comes first.
    assert code == 130 and stdout == ""
    assert re.fullmatch(MAP_LINE, lines[0]), lines
    _committed_only(out)

    rerun = _complete(["job.py"], map_job)
    assert rerun.stdout.split() == ["8", "158"]
    assert len(_committed_only(out)) == 8


# -- atdata manifest build ----------------------------------------------------------------------

SLOW_TYPE = """
import time
import atdata

@atdata.packable
class Slow:
    x: int

    @classmethod
    def from_bytes(cls, data, key=None):
        time.sleep(0.03)  # decoding is what a manifest build spends its time on
        return super().from_bytes(data, key)
"""


def test_ctrl_c_in_manifest_build_says_how_many_and_a_rerun_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with atdata.ShardWriter(str(data / "shard-%06d.tar"), maxcount=10, manifest=False) as sink:
        for i in range(400):
            sink.write({"x": i})
    (tmp_path / "slowtype.py").write_text(SLOW_TYPE)
    build = ["-m", "atdata", "manifest", "build", "data/shard-*.tar", "--type", "slowtype:Slow"]

    code, stdout, lines = _interrupted(build, lambda: bool(_manifests(data)), tmp_path)

    assert code == 130 and stdout == ""
    built = int(
        _one_line(
            lines,
            r"Interrupted: (\d+) of 40 manifests built; run the same build again to resume\.",
        )[1]
    )
    assert 0 < built < 40
    assert len(_manifests(data)) == built  # the shards being read finished first
    assert not [p for p in data.iterdir() if p.name.startswith(".")]

    rerun = json.loads(_complete([*build, "--json"], tmp_path).stdout)
    assert len(rerun["built"]) == 40 - built and len(rerun["skipped"]) == built


def test_ctrl_c_in_a_command_with_nothing_to_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from atdata.cli import _preview

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_preview, "gather", interrupted)
    assert run(["preview", "s3://bucket/shard-000000.tar"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "Interrupted.\n" and captured.out == ""


# -- ShardWriter ----------------------------------------------------------------------------------

WRITER_SCRIPT = """
import time
import atdata

@atdata.packable
class Item:
    x: int

with atdata.ShardWriter("out/shard-%06d.tar", maxcount=10) as sink:
    for i in range(500):
        time.sleep(0.01)
        sink.write(Item(x=i))
print(len(sink.shards))
"""


def test_ctrl_c_in_a_shard_writer_loop_keeps_the_committed_shards(tmp_path: Path) -> None:
    (tmp_path / "write.py").write_text(WRITER_SCRIPT)
    out = tmp_path / "out"

    code, stdout, lines = _interrupted(
        ["write.py"], lambda: len(_manifests(out) if out.exists() else []) >= 2, tmp_path
    )

    assert code == 130 and stdout == ""
    shards, samples = map(
        int,
        _one_line(
            lines,
            r"Interrupted: (\d+) shards \((\d+) samples\) committed to out/shard-%06d\.tar"
            r"(; the shard being written \(\d+ samples?\) was discarded)?\.",
        ).group(1, 2),
    )
    assert shards >= 2 and samples == 10 * shards
    assert len(_committed_only(out)) == shards

    # the writer does not resume (and does not say it does): writing again starts over
    assert _complete(["write.py"], tmp_path).stdout.split() == ["50"]
    assert len(_committed_only(out)) == 50


SLOW_CLEAN_UP = """
import atexit, pathlib, time

def slow_clean_up():  # as stopping a pool of busy workers can be
    pathlib.Path("clean-up-started").touch()
    time.sleep(_HANG_GUARD_S)

atexit.register(slow_clean_up)
"""


def test_a_second_ctrl_c_during_clean_up_at_exit_ends_at_once(tmp_path: Path) -> None:
    script = SLOW_CLEAN_UP.replace("_HANG_GUARD_S", str(_HANG_GUARD_S)) + WRITER_SCRIPT
    (tmp_path / "write.py").write_text(script)
    out = tmp_path / "out"

    code, stdout, lines = _interrupted(
        ["write.py"],
        [lambda: out.exists() and bool(_manifests(out)), (tmp_path / "clean-up-started").exists],
        tmp_path,
    )

    assert code == 130 and stdout == ""  # not the clean-up's hang guard: a hard exit
    _one_line(lines, r"Interrupted: \d+ shards? \(\d+ samples\) committed to .*")
    _committed_only(out)


# -- interactive sessions and nesting --------------------------------------------------------------


def test_an_interactive_session_gets_a_keyboard_interrupt_and_survives(tmp_path: Path) -> None:
    script = tmp_path / "session.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal
            import atdata

            @atdata.packable
            class Item:
                x: int

            with atdata.ShardWriter("out/shard-%06d.tar", maxcount=2) as sink:
                for i in range(5):
                    sink.write(Item(x=i))
                os.kill(os.getpid(), signal.SIGINT)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-i", str(script)],
        cwd=tmp_path,
        input="print('still here', type(sink).__name__)\n",
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD_S,
        check=False,
    )
    assert "still here ShardWriter" in done.stdout  # the session went on
    line = (
        "atdata._interrupt.Interrupted: 2 shards (4 samples) committed to out/shard-%06d.tar; "
        "the shard being written (1 sample) was discarded"
    )
    assert line in done.stderr.splitlines()  # the traceback's last line, printed once
    assert "Interrupted: 2 shards" not in done.stderr.replace(line, "")


def test_the_outermost_block_reports_with_its_own_summary() -> None:
    with (
        pytest.raises(KeyboardInterrupt) as caught,
        Interruptible(lambda: "3 of 8 shards done"),
        Interruptible(lambda: "the inner writer's count"),
    ):
        raise KeyboardInterrupt
    exc = caught.value
    assert isinstance(exc, Interrupted) and isinstance(exc, SystemExit)  # exits 130 uncaught
    assert exc.summary == "3 of 8 shards done" and exc.code == 130 and exc.reported


def test_an_outer_block_without_a_summary_keeps_the_inner_one() -> None:
    with (
        pytest.raises(Interrupted) as caught,
        Interruptible(lambda: ""),
        Interruptible(lambda: "2 shards committed"),
    ):
        raise KeyboardInterrupt
    assert caught.value.summary == "2 shards committed"


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(ValueError, match="bad"), Interruptible(lambda: "unused"):
        raise ValueError("bad")


def test_the_line_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    exc = Interrupted("2 shards committed")
    report_interrupt(exc)
    report_interrupt(exc)
    assert capsys.readouterr().err == "Interrupted: 2 shards committed.\n"
