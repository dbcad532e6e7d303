"""Benchmark ``Dataset.map`` against the tools a user would otherwise pick.

Three parts, in one run:

1. Peers. Same shards, same per-sample work (a fixed numpy computation of
   about 1 ms per sample), same number of worker processes:

   - atdata ``map`` on the ``local`` executor (a fresh process pool, whose
     start-up is part of the wall time);
   - atdata ``map`` on ``dask`` (a ``LocalCluster`` of worker processes);
   - a plain ``multiprocessing.Pool`` reading and writing the same shards (no
     ledger, no manifests): the floor of what shard-parallel processing costs;
   - Hugging Face ``datasets`` ``.map(num_proc=N)`` on the same records.

   Prints wall times, the ratio of each peer to atdata-local, and worker
   utilisation (task busy time / (wall time x workers)).
2. Batched. A vectorised numpy "model" (a 3072 -> 2048 projection, tanh,
   2048 -> 128) over 32x32 RGB images, called once per sample and once per
   batch of 128 (``@atdata.processor(batch_size=128)``), both on the default
   executor; prints the speed-up of the batched processor (target: 5x).
3. Tiny samples. 20,000 one-integer samples doubled, on the default ``local``
   executor (warm workers: the pool is up from earlier maps; and cold, the
   first map of a process; also as a batched processor), on ``inline``, and
   with ``datasets`` ``.map(num_proc=N, batched=True)``; target: warm local no
   slower than inline.

Usage:
    python benchmarks/bench_map.py            # 16 shards x 2,000 samples, 2 workers
    python benchmarks/bench_map.py --quick    # 4 shards x 500 samples, fewer images
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
from atdata.processing import (  # noqa: E402
    LocalExecutor,
    job_status,
    processor,
    shutdown_workers,
)
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


# -- part 2: a batched "model" ----------------------------------------------------------------

BATCH = 128


@atdata.packable
class Picture:
    image: atdata.NDArray  # (32, 32, 3) uint8
    label: int


@atdata.packable
class Embedded:
    embedding: atdata.NDArray  # (128,) float32
    label: int


class Model:
    """A stand-in vision model: 3072 -> 2048 projection, tanh, 2048 -> 128 (26 MB of weights).

    Its weights are built (seeded) on first call, in the worker: what travels
    with the task is the empty model.
    """

    def __init__(self) -> None:
        self.weights: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.weights is None:
            rng = np.random.default_rng(2)  # seed 2
            w1 = rng.standard_normal((3072, 2048), dtype=np.float32) / np.float32(np.sqrt(3072))
            w2 = rng.standard_normal((2048, 128), dtype=np.float32) / np.float32(np.sqrt(2048))
            self.weights = (w1, w2)
        w1, w2 = self.weights
        x = images.reshape(len(images), -1).astype(np.float32) / 255
        return np.tanh(x @ w1) @ w2  # type: ignore[no-any-return]


MODEL = Model()


@processor
def embed_one(sample: Picture) -> Embedded:
    return Embedded(embedding=MODEL(sample.image[None])[0], label=sample.label)


@processor(batch_size=BATCH)
def embed_batch(batch: atdata.SampleBatch[Picture]) -> list[Embedded]:
    vectors = MODEL(batch.image)  # one (128, 32, 32, 3) array in, one matrix product
    return [
        Embedded(embedding=v, label=int(label))
        for v, label in zip(vectors, batch.label, strict=True)
    ]


# -- part 3: tiny samples -----------------------------------------------------------------------


@atdata.packable
class Tiny:
    x: int


@atdata.packable
class Doubled:
    y: int


def double(sample: Tiny) -> Doubled:  # a plain function: no decorator needed
    return Doubled(y=2 * sample.x)


@processor(batch_size=1000)  # the batches datasets' batched=True gives its function
def double_batch(batch: atdata.SampleBatch[Tiny]) -> list[Doubled]:
    return [Doubled(y=y) for y in (2 * batch.x).tolist()]


# -- data -------------------------------------------------------------------------------


def make_shards(folder: Path, shards: int, per_shard: int) -> list[str]:
    rng = np.random.default_rng(1)  # seed 1
    with ShardWriter(str(folder / "in-%04d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            vec = rng.standard_normal(DIM).astype(np.float32)
            sink.write(Vector(vec=vec, label=f"c{i % 10}").with_key(f"s{i:07d}"))
    return sink.shards


def make_pictures(folder: Path, shards: int, per_shard: int) -> list[str]:
    rng = np.random.default_rng(3)  # seed 3
    with ShardWriter(str(folder / "pic-%04d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            sink.write(Picture(image=image, label=i % 10).with_key(f"p{i:07d}"))
    return sink.shards


def make_tiny(folder: Path, shards: int, total: int) -> list[str]:
    with ShardWriter(str(folder / "tiny-%04d.tar"), maxcount=total // shards) as sink:
        for i in range(total):
            sink.write(Tiny(x=i).with_key(f"t{i:07d}"))
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


def timed_map(ds: atdata.Dataset[Any], fn: Any, out: Path, **options: Any) -> float:
    """Wall seconds of ``ds.map(fn)`` (default executor unless given), output removed after."""
    start = time.perf_counter()
    ds.map(fn, output_prefix=str(out), progress=False, **options)
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return wall


def run_batched(urls: list[str], root: Path, repeat: int) -> tuple[float, float]:
    """Median wall seconds of the per-sample and the batched processor (warm local workers)."""
    ds = atdata.Dataset[Picture](urls)
    check_one = ds.map(embed_one, output_prefix=str(root / "check-one"), progress=False)
    check_batch = ds.map(embed_batch, output_prefix=str(root / "check-batch"), progress=False)
    for a, b in zip(check_one, check_batch, strict=True):  # same model, same answers
        assert a.__key__ == b.__key__ and np.allclose(a.embedding, b.embedding, atol=1e-4)
    one, batched = [], []
    for attempt in range(repeat):
        one.append(timed_map(ds, embed_one, root / f"one-{attempt}"))
        batched.append(timed_map(ds, embed_batch, root / f"batch-{attempt}"))
        print(
            f"  per sample {one[-1]:.2f} s, per batch of {BATCH} {batched[-1]:.2f} s "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return float(np.median(one)), float(np.median(batched))


def _hf_double(batch: dict[str, Any]) -> dict[str, Any]:
    return {"y": [2 * x for x in batch["x"]]}


def run_tiny(urls: list[str], root: Path, workers: int, repeat: int) -> dict[str, float]:
    """Median wall seconds of the tiny job per contender."""
    import datasets

    datasets.disable_progress_bars()
    ds = atdata.Dataset[Tiny](urls)
    path = root / "hf-tiny"
    datasets.Dataset.from_dict({"x": [s.x for s in ds]}).save_to_disk(str(path))
    hf = datasets.load_from_disk(str(path))
    hf_name = f"datasets .map(num_proc={workers}, batched=True)"
    runs: dict[str, list[float]] = {
        "atdata local, cold": [],
        "atdata local, warm": [],
        "atdata local, warm, batch_size=1000": [],
        "atdata inline": [],
        hf_name: [],
    }
    for attempt in range(repeat):
        shutdown_workers()  # cold: the first map of a process starts the workers
        runs["atdata local, cold"].append(timed_map(ds, double, root / f"cold-{attempt}"))
        runs["atdata local, warm"].append(timed_map(ds, double, root / f"warm-{attempt}"))
        runs["atdata local, warm, batch_size=1000"].append(
            timed_map(ds, double_batch, root / f"batched-{attempt}")
        )
        runs["atdata inline"].append(
            timed_map(ds, double, root / f"inline-{attempt}", executor="inline")
        )
        start = time.perf_counter()
        result = hf.map(_hf_double, batched=True, num_proc=workers, load_from_cache_file=False)
        runs[hf_name].append(time.perf_counter() - start)
        assert len(result) == len(hf)
        print(
            "  "
            + ", ".join(f"{name} {r[-1]:.2f} s" for name, r in runs.items())
            + f" (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return {name: float(np.median(r)) for name, r in runs.items()}


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 shards x 500 samples")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2000, help="samples per shard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--skip-peers", action="store_true", help="only parts 2 and 3")
    parser.add_argument("--pictures", type=int, default=4000, help="images in part 2")
    parser.add_argument("--tiny", type=int, default=20_000, help="samples in part 3")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every contender this many times, interleaved; report medians",
    )
    args = parser.parse_args()
    if args.quick:
        args.shards, args.samples, args.pictures = 4, 500, 1000

    root = Path(tempfile.mkdtemp(prefix="atdata-bench-map-"))
    try:
        if not args.skip_peers:
            print("1. peers")
            run_peers(args, root)
        print(f"\n2. batched processor: {args.pictures:,} 32x32 RGB images, 4 shards, warm local")
        pictures = make_pictures(root / "pictures", 4, args.pictures // 4)
        one, batched = run_batched(pictures, root, args.repeat)
        speedup = one / batched
        print(
            f"   per sample {one:.2f} s, per batch of {BATCH} {batched:.2f} s: {speedup:.1f}x "
            f"({'met' if speedup >= 5 else 'NOT met'}: target 5x)"
        )
        print(f"\n3. {args.tiny:,} tiny samples, 4 shards, {args.workers} workers")
        tiny = run_tiny(make_tiny(root / "tiny", 4, args.tiny), root, args.workers, args.repeat)
        for name, wall in tiny.items():
            print(f"   {name:<42} {wall:6.2f} s  {args.tiny / wall:>9,.0f} samples/s")
        warm, inline = tiny["atdata local, warm"], tiny["atdata inline"]
        verdict = "met" if warm <= inline else "NOT met"
        print(
            f"   target: warm local no slower than inline: {verdict} "
            f"({warm:.2f} s vs {inline:.2f} s)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")


def run_peers(args: argparse.Namespace, root: Path) -> None:
    """Part 1: atdata-local, dask, multiprocessing.Pool and datasets on the same work."""
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


if __name__ == "__main__":
    main()
