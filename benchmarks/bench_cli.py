"""CLI start-up and response time: ``atdata`` commands as subprocesses on a 200-shard dataset.

Times, as separate processes (what a user waits for at the shell):

- ``python -c pass``: the floor, an interpreter that does nothing;
- ``atdata --help``;
- ``atdata inspect PATTERN`` (reads the 200 manifest JSON headers, nothing else);
- ``atdata inspect PATTERN --json``;
- ``atdata schema show PATTERN``;
- ``atdata ls``;
- ``atdata query PATTERN "..."``: ``--count``, the table of matches, and a clause
  DuckDB runs (``LIKE``), so both query engines are timed;
- ``atdata preview PATTERN -n 5``, for scale;
- ``atdata manifest build PATTERN`` when every shard already has its manifest
  (nothing to do), ``atdata schema diff PATTERN @local/bench`` and
  ``atdata register PATTERN bench`` (replacing the registration);
- the peer: counting the same samples with the ``webdataset`` package, which has
  no manifests and so reads every shard (what ``inspect``'s sample count replaces).

Each is run ``--runs`` times after one warm-up; the table shows the median wall
time, the fastest, the median over the floor, and the median CPU time (user +
system, which shared machines disturb far less than wall time).

Run:
    python benchmarks/bench_cli.py                       # 200 shards x 50 samples
    python benchmarks/bench_cli.py --shards 50 --runs 5  # quicker
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import atdata
from atdata import NDArray


@atdata.packable
class ImageSample:
    """The benchmark's sample type."""

    image: NDArray
    label: str
    confidence: float
    tags: list[str]


def make_dataset(folder: Path, shards: int, per_shard: int) -> str:
    """Write ``shards`` shards with manifests (skipped when already there); the brace pattern."""
    pattern = str(folder / f"shard-{{000000..{shards - 1:06d}}}.tar")
    if (folder / f"shard-{shards - 1:06d}.manifest.json").exists():
        return pattern
    rng = np.random.default_rng(0)
    labels = ["cat", "dog", "bird", "fish"]
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with atdata.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            sink.write(
                ImageSample(
                    image=image,
                    label=labels[i % 4],
                    confidence=float(rng.random()),
                    tags=["day", "night", "outdoor"][: i % 4],
                )
            )
    return pattern


def time_command(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` runs of ``cmd``, after one warm-up.

    CPU time is printed beside wall time because it barely moves when other
    work shares the machine, while wall time does.
    """

    def once() -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr.decode()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu

    once()
    measured = [once() for _ in range(runs)]
    return [w for w, _ in measured], [c for _, c in measured]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=200, help="shards in the dataset")
    parser.add_argument("--samples", type=int, default=50, help="samples per shard")
    parser.add_argument("--runs", type=int, default=11, help="timed runs per command")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to keep the dataset (reused between runs); default: a temp dir",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the webdataset count")
    args = parser.parse_args()

    folder = args.dir or Path(tempfile.mkdtemp(prefix="atdata-bench-cli-"))
    folder.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="atdata-bench-home-"))
    try:
        pattern = make_dataset(folder, args.shards, args.samples)
        env = {**os.environ, "ATDATA_HOME": str(home)}
        script = Path(sys.executable).with_name("atdata")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "atdata"]
        subprocess.run(
            [*cli, "register", pattern, "bench"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        commands: list[tuple[str, list[str]]] = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ("atdata --help", [*cli, "--help"]),
            ("atdata inspect", [*cli, "inspect", pattern]),
            ("atdata inspect --json", [*cli, "inspect", pattern, "--json"]),
            ("atdata inspect @local/bench", [*cli, "inspect", "@local/bench"]),
            ("atdata schema show", [*cli, "schema", "show", pattern]),
            ("atdata ls", [*cli, "ls"]),
            ("atdata query --count", [*cli, "query", pattern, "label = 'dog'", "--count"]),
            ("atdata query (table)", [*cli, "query", pattern, "label = 'dog'"]),
            ("atdata query LIKE (duckdb)", [*cli, "query", pattern, "label LIKE 'd%'", "-c"]),
            ("atdata preview -n 5", [*cli, "preview", pattern, "-n", "5"]),
            ("atdata manifest build (none)", [*cli, "manifest", "build", pattern]),
            ("atdata schema diff", [*cli, "schema", "diff", pattern, "@local/bench"]),
            ("atdata register", [*cli, "register", pattern, "bench"]),
        ]
        if not args.no_peer:
            try:
                import webdataset  # noqa: F401
            except ImportError:
                print("(webdataset is not installed: no peer row)")
            else:
                count = (
                    "import sys, webdataset as wds; "
                    "print(sum(1 for _ in wds.WebDataset(sys.argv[1], shardshuffle=False)))"
                )
                commands.append(
                    ("peer: count with webdataset", [sys.executable, "-c", count, pattern])
                )
        print(
            f"{args.shards} shards x {args.samples} samples with manifests in {folder}; "
            f"{args.runs} runs each (median, fastest)\n"
        )
        rows = []
        for name, cmd in commands:
            walls, cpus = time_command(cmd, args.runs, env)
            rows.append((name, statistics.median(walls), min(walls), statistics.median(cpus)))
        floor = rows[0][1]
        width = max(len(r[0]) for r in rows)
        print(
            f"  {'command':<{width}}  {'median':>9}  {'fastest':>9}  {'over floor':>10}  {'cpu':>9}"
        )
        for name, median, fastest, cpu in rows:
            print(
                f"  {name:<{width}}  {median * 1e3:6.0f} ms  {fastest * 1e3:6.0f} ms"
                f"  {(median - floor) * 1e3:+7.0f} ms  {cpu * 1e3:6.0f} ms"
            )
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        print(
            f"\n  load average per CPU during the run: {load:.1f} "
            "(wall times are only comparable near 1 or below)"
        )
        peer = next((r for r in rows if r[0].startswith("peer")), None)
        inspect = next(r for r in rows if r[0] == "atdata inspect")
        if peer is not None:
            print(
                f"\n  atdata inspect vs counting with webdataset: "
                f"{peer[1] / inspect[1]:.1f}x faster"
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
