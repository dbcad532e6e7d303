"""A tour of atdata on the embedded defaults (local disk, local process pool).

Writes a typed dataset with manifests, asks it questions without reading its
data, transforms it in parallel, and inspects the result from the CLI.

Run it with ``bash scripts/tour.sh`` (or ``python examples/tour.py [OUTDIR]``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import atdata
from atdata import NDArray

LABELS = ["cat", "dog", "bird", "fish", "horse"]


@atdata.packable
class ImageSample:
    image: NDArray
    label: str
    confidence: float
    tags: list[str]


@atdata.packable
class Embedding:
    vector: NDArray
    label: str
    brightness: float


@atdata.processor(cpu=1)
def embed(sample: ImageSample) -> Embedding:
    """A stand-in for a model: a 16-d embedding from per-channel statistics."""
    pixels = sample.image.astype(np.float32) / 255.0
    vector = np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1)),
                             np.percentile(pixels, [10, 50, 90, 99, 1, 25, 75, 95, 5, 60])])
    return Embedding(vector=vector.astype(np.float32), label=sample.label,
                     brightness=float(pixels.mean()))


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m")


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(0)

    step("1. Write 20,000 typed samples into 10 shards (manifests beside each)")
    t = time.perf_counter()
    with atdata.ShardWriter(str(out / "images/shard-%06d.tar"), maxcount=2_000) as sink:
        for i in range(20_000):
            # labels cluster by shard, as they do when data arrives in batches
            label = LABELS[(i // 2_000 + rng.integers(0, 2)) % len(LABELS)]
            sink.write(ImageSample(
                image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                label=label,
                confidence=float(rng.beta(5, 2)),
                tags=["outdoor"] if rng.random() < 0.3 else ["indoor"],
            ))
    print(f"wrote {len(sink.shards)} shards in {time.perf_counter() - t:.2f}s")
    ds = atdata.Dataset[ImageSample](str(out / "images/shard-{000000..000009}.tar"))
    print(f"len(ds) = {len(ds)} (from manifests)")

    step("2. Ask questions without reading the data")
    hits = ds.query(where=lambda m: m.confidence > 0.9 and m.label in ["dog", "cat"])
    print(f"confident dogs and cats: {len(hits)} samples; "
          f"{hits.shards_pruned} shards pruned by aggregates, {hits.shards_scanned} scanned")
    sample = ds.get_sample(hits[0])
    print(f"first hit: key={hits[0].key} label={sample.label} confidence={sample.confidence:.3f}")
    outdoor = ds.query(sql="'outdoor' = ANY(tags) AND label = 'bird'")
    print(f"outdoor birds (SQL through DuckDB): {len(outdoor)}")
    print(f"ds.get('sample_00000042').label = {ds.get('sample_00000042').label!r}")

    step("3. Iterate: shuffled batches with stacked arrays")
    batch = next(ds.shuffled(seed=0, batch_size=64))
    print(f"batch.image.shape = {batch.image.shape}, labels {batch.label[:4]}...")

    step("4. Transform every shard in parallel (local process pool)")
    t = time.perf_counter()
    embedded = ds.map(embed, output_prefix=str(out / "embedded"))
    print(f"map wrote {len(embedded.shards)} shards in {time.perf_counter() - t:.2f}s; "
          f"first vector shape {embedded.head(1)[0].vector.shape}")
    status = atdata.job_status(str(out / "embedded"))
    print(f"job ledger: {status.counts}")

    step("5. Register it locally and inspect from the terminal")
    atdata.Catalog().register_dataset(
        "tour-embedded", embedded.shards, Embedding.__schema__.to_json(),
        description="atdata tour output",
    )
    for args in (["inspect", "@local/tour-embedded"],
                 ["schema", "show", "@local/tour-embedded"],
                 ["preview", str(out / "embedded/*.tar"), "--limit", "2"],
                 ["query", "@local/tour-embedded", "brightness > 0.5 AND label = 'dog'", "--count"]):
        print(f"$ atdata {' '.join(args)}")
        subprocess.run([sys.executable, "-m", "atdata", *args], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tour-output"))
