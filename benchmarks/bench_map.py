"""Benchmark ``Dataset.map`` against the tools a user would otherwise pick.

One run, same shards, same per-sample work (a fixed numpy computation of about
1 ms per sample), same number of worker processes:

- atdata ``map`` on the ``local`` executor (a process pool);
- atdata ``map`` on ``dask`` (a ``LocalCluster`` of worker processes);
- a plain ``multiprocessing.Pool`` reading and writing the same shards (no
  ledger, no manifests): the floor of what shard-parallel processing costs;
- Hugging Face ``datasets`` ``.map(num_proc=N)`` on the same records.

Prints wall times, the ratio of each peer to atdata-local, and worker
utilisation (task busy time / (wall time x workers)).

Usage:
    python benchmarks/bench_map.py            # 16 shards x 2,000 samples, 2 workers
    python benchmarks/bench_map.py --quick    # 4 shards x 500 samples
"""

from __future__ import annotations

import os

# One thread per process for every contender, so N workers use N cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import atdata  # noqa: E402
from atdata.processing import LocalExecutor, job_status, processor  # noqa: E402
from atdata.shards import ShardWriter, iter_shard  # noqa: E402

DIM = 64
ITERATIONS = 600  # about 1 ms per sample here; the measured figure is printed at start
_MATRIX = (np.random.default_rng(0).standard_normal((DIM, DIM)) / np.sqrt(DIM)).astype(
    np.float32
)  # seed 0


Result = tuple[float, float | None, float | None]  # wall s, utilisation, task CPU s


@atdata.packable
class Vector:
    vec: atdata.NDArray
    label: str


@atdata.packable
class Scored:
    score: float
    label: str


def work(vec: np.ndarray) -> float:
    """The fixed per-sample computation (about 1 ms)."""
    x = vec
    for _ in range(ITERATIONS):
        x = np.tanh(_MATRIX @ x)
    return float(x.sum())


@processor
def score(sample: Vector) -> Scored:
    return Scored(score=work(sample.vec), label=sample.label)


# -- data -------------------------------------------------------------------------------


def make_shards(folder: Path, shards: int, per_shard: int) -> list[str]:
    rng = np.random.default_rng(1)  # seed 1
    with ShardWriter(str(folder / "in-%04d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            vec = rng.standard_normal(DIM).astype(np.float32)
            sink.write(Vector(vec=vec, label=f"c{i % 10}").with_key(f"s{i:07d}"))
    return sink.shards


# -- contenders ---------------------------------------------------------------------------


def run_local(urls: list[str], out: Path, workers: int) -> Result:
    # a fresh pool each time: worker start-up is part of the job's wall time
    with LocalExecutor(workers=workers) as pool:
        return run_atdata(urls, out, pool)


def run_dask(urls: list[str], out: Path, workers: int) -> Result:
    from distributed import Client, LocalCluster

    from atdata.processing import DaskExecutor

    # Started for its own run only (an idle cluster costs ~10% of a core), and
    # outside the timing: a user's cluster is up before the job.
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(workers)
        return run_atdata(urls, out, DaskExecutor(client))
    finally:
        client.close()
        cluster.close()


def run_atdata(urls: list[str], out: Path, executor: Any) -> Result:
    ds = atdata.Dataset[Vector](urls)
    start = time.perf_counter()
    ds.map(score, output_prefix=str(out), executor=executor, progress=False)
    wall = time.perf_counter() - start
    run = job_status(str(out)).last_run
    assert run is not None
    return wall, run.utilisation, run.cpu_s


def _pool_task(args: tuple[str, str]) -> tuple[float, float]:
    url, out = args
    start = time.perf_counter()
    cpu = time.process_time()
    n = 0
    with ShardWriter(out, maxcount=2**62, manifest=False) as sink:
        for sample, _offset, _span in iter_shard(url, Vector.from_bytes):
            sink.write(Scored(score=work(sample.vec), label=sample.label).with_key(sample.__key__))
            n += 1
    return time.perf_counter() - start, time.process_time() - cpu


def run_pool(urls: list[str], out: Path, workers: int) -> Result:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(u, str(out / Path(u).name)) for u in urls]
    start = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        done = list(pool.imap_unordered(_pool_task, jobs))
    wall = time.perf_counter() - start
    return wall, sum(b for b, _ in done) / (wall * workers), sum(c for _, c in done)


def _hf_fn(record: dict[str, Any]) -> dict[str, Any]:
    return {"score": work(np.asarray(record["vec"], dtype=np.float32))}


def run_datasets(urls: list[str], out: Path, workers: int) -> float:
    import datasets

    datasets.disable_progress_bars()
    records: dict[str, list[Any]] = {"key": [], "vec": [], "label": []}
    for sample in atdata.Dataset[Vector](urls):
        records["key"].append(sample.__key__)
        records["vec"].append(sample.vec)
        records["label"].append(sample.label)
    path = out / "hf-input"
    datasets.Dataset.from_dict(records).save_to_disk(str(path))
    ds = datasets.load_from_disk(str(path)).with_format("numpy")
    start = time.perf_counter()
    result = ds.map(_hf_fn, num_proc=workers, remove_columns=["vec"])
    wall = time.perf_counter() - start
    assert len(result) == len(records["key"])
    return wall


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 shards x 500 samples")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2000, help="samples per shard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every contender this many times, interleaved; report medians",
    )
    args = parser.parse_args()
    if args.quick:
        args.shards, args.samples = 4, 500

    vec = np.ones(DIM, np.float32)
    work(vec)
    t = time.perf_counter()
    for _ in range(200):
        work(vec)
    per_sample_ms = (time.perf_counter() - t) / 200 * 1e3
    total = args.shards * args.samples
    print(
        f"{args.shards} shards x {args.samples} samples = {total:,} samples; "
        f"{per_sample_ms:.2f} ms of numpy work per sample; {args.workers} workers; "
        f"ideal wall {total * per_sample_ms / 1e3 / args.workers:.1f} s"
    )

    root = Path(tempfile.mkdtemp(prefix="atdata-bench-map-"))
    contenders: dict[str, Callable[[list[str], Path], Result]] = {
        "atdata map, local": lambda urls, out: run_local(urls, out, args.workers),
    }
    if not args.skip_dask:
        contenders["atdata map, dask"] = lambda urls, out: run_dask(urls, out, args.workers)
    contenders["multiprocessing.Pool"] = lambda urls, out: run_pool(urls, out, args.workers)
    if not args.skip_datasets:
        contenders[f"datasets .map(num_proc={args.workers})"] = lambda urls, out: (
            run_datasets(urls, out, args.workers),
            None,
            None,
        )
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    try:
        urls = make_shards(root / "in", args.shards, args.samples)
        names = list(contenders)
        for attempt in range(args.repeat):
            # rotate the order, so no contender always runs first (or after a busy one)
            for name in names[attempt % len(names) :] + names[: attempt % len(names)]:
                out = root / f"run{attempt}-{len(runs[name])}"
                wall, util, cpu = contenders[name](urls, out)
                runs[name].append((wall, util, cpu))
                util_text = "" if util is None else f", utilisation {util:.0%}"
                cpu_text = "" if cpu is None else f", task CPU {cpu:.1f} s"
                print(
                    f"  {name}: {wall:.2f} s{util_text}{cpu_text} (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(values: list[float]) -> float:
        return float(np.median(values))

    rows = [
        (
            name,
            median([w for w, _, _ in r]),
            min(w for w, _, _ in r),
            None if r[0][1] is None else median([u or 0.0 for _, u, _ in r]),
        )
        for name, r in runs.items()
    ]
    base = rows[0][1]
    print()
    print(f"median of {args.repeat} run(s) each; 'best' is the fastest run")
    print(
        f"{'contender':<28} {'wall s':>8} {'best s':>8} {'samples/s':>10} {'vs local':>9} "
        f"{'util':>6}"
    )
    for name, wall, fastest, util in rows:
        util_text = "-" if util is None else f"{util:.0%}"
        print(
            f"{name:<28} {wall:>8.2f} {fastest:>8.2f} {total / wall:>10,.0f} "
            f"{wall / base:>8.2f}x {util_text:>6}"
        )
    print("('vs local' = contender wall / atdata-local wall: above 1.00x, atdata-local is faster)")
    local_util = rows[0][3] or 0.0
    print(
        f"target: utilisation on local >= 90%: {'met' if local_util >= 0.9 else 'NOT met'} "
        f"({local_util:.0%})"
    )
    hf = next((wall for name, wall, _, _ in rows if name.startswith("datasets")), None)
    if hf is not None:
        print(
            f"target: at least the speed of datasets: {'met' if base <= hf else 'NOT met'} "
            f"(atdata {base:.2f} s, datasets {hf:.2f} s)"
        )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
