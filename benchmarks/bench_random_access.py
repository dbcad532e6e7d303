"""Random access by position, ``ds[i]``, against the peers a user would pick instead.

The dataset (100,000 samples by default: a 32x32x3 image, a label, a
confidence and tags, in 100 local shards with manifests) is generated once
and cached under ``benchmarks/.cache/``. Every contender reads the same
``--reads`` positions, drawn at random with a fixed seed:

- atdata ``ds[i]``, one position at a time: *cold* (a new ``Dataset`` object,
  so the manifests' counts and each shard's offsets are read as positions
  reach them) and *warm* (the same object again: offsets already loaded);
- atdata ``ds[a:a+64]`` (warm): contiguous slices, whose neighbours share one
  range read and one pass of the tar parser;
- Hugging Face ``datasets``, ``hf[i]`` on the same records saved with
  ``save_to_disk`` (the image as an ``Array3D`` feature, its fast fixed-shape
  column) and memory-mapped by ``load_from_disk`` (``numpy`` format), by
  position and by the same slices;
- a full scan: what a WebDataset user has, one pass over every sample keeping
  the wanted positions (atdata's own sequential reader, the faster of the two
  on these shards; see ``bench_io.py``).

Run:
    python benchmarks/bench_random_access.py            # 100,000 samples, 2,000 reads
    python benchmarks/bench_random_access.py --quick    # 10,000 samples, 500 reads
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atdata
from _common import best_interleaved, make_rows, ratio

CACHE = Path(__file__).resolve().parent / ".cache"
SHAPE = (32, 32, 3)
SLICE = 64


@atdata.packable
class Picture:
    image: atdata.NDArray
    label: str
    confidence: float
    tags: list[str]


def generate(folder: Path, num_samples: int, num_shards: int) -> list[str]:
    """Write the dataset once; reuse it when a complete copy is cached."""
    pattern = str(folder / "shard-%06d.tar")
    shards = [pattern % i for i in range(num_shards)]
    if (folder / "COMPLETE").exists():
        return shards
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with atdata.ShardWriter(pattern, maxcount=num_samples // num_shards) as sink:
        for image, label, confidence, tags in make_rows(num_samples, SHAPE):
            sink.write(Picture(image=image, label=label, confidence=confidence, tags=tags))
    (folder / "COMPLETE").touch()
    return shards


def hf_copy(shards: list[str], folder: Path) -> Any:
    """The same records as a Hugging Face dataset on disk, loaded memory-mapped."""
    import datasets

    datasets.disable_progress_bars()
    path = folder / "hf"
    if not (path / "COMPLETE").exists():
        columns: dict[str, list[Any]] = {"image": [], "label": [], "confidence": [], "tags": []}
        for sample in atdata.Dataset[Picture](shards):
            for name, values in columns.items():
                values.append(getattr(sample, name))
        features = datasets.Features(
            image=datasets.Array3D(SHAPE, "uint8"),  # its fast fixed-shape array column
            label=datasets.Value("string"),
            confidence=datasets.Value("float64"),
            tags=datasets.Sequence(datasets.Value("string")),
        )
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(path))
        (path / "COMPLETE").touch()
    return datasets.load_from_disk(str(path)).with_format("numpy")


def contenders(
    shards: list[str], hf: Any, positions: list[int], starts: list[int]
) -> dict[str, Callable[[], tuple[int, int]]]:
    """Each contender reads the same samples and returns (samples read, 0)."""
    warm = atdata.Dataset[Picture](shards)

    def cold_each() -> tuple[int, int]:
        ds = atdata.Dataset[Picture](shards)
        return len([ds[i].label for i in positions]), 0

    def warm_each() -> tuple[int, int]:
        return len([warm[i].label for i in positions]), 0

    warm_each()  # loads the counts and the offsets of every shard the positions reach

    def warm_slices() -> tuple[int, int]:
        return sum(len(warm[a : a + SLICE]) for a in starts), 0

    def hf_each() -> tuple[int, int]:
        return len([hf[i]["label"] for i in positions]), 0

    def hf_slices() -> tuple[int, int]:
        return sum(len(hf[a : a + SLICE]["label"]) for a in starts), 0

    def scan() -> tuple[int, int]:
        wanted = set(positions)
        found = [s.label for i, s in enumerate(atdata.Dataset[Picture](shards)) if i in wanted]
        assert len(found) == len(wanted)
        return len(positions), 0

    return {
        COLD: cold_each,
        WARM: warm_each,
        SLICES: warm_slices,
        HF: hf_each,
        HF_SLICES: hf_slices,
        SCAN: scan,
    }


COLD = "atdata ds[i], cold (new Dataset)"
WARM = "atdata ds[i], warm (offsets loaded)"
SLICES = f"atdata ds[a:a+{SLICE}], warm"
HF = "datasets hf[i] (memory-mapped arrow)"
HF_SLICES = f"datasets hf[a:a+{SLICE}]"
SCAN = "full scan (one pass, keep the wanted)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--slices", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many, interleaved")
    parser.add_argument("--quick", action="store_true", help="10,000 samples, 500 reads, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.shards, args.reads, args.slices, args.repeat = 10_000, 20, 500, 50, 1

    folder = CACHE / f"random-access-{args.samples}-{args.shards}"
    shards = generate(folder, args.samples, args.shards)
    rng = np.random.default_rng(0)
    positions = rng.integers(0, args.samples, size=args.reads).tolist()
    starts = rng.integers(0, args.samples - SLICE, size=args.slices).tolist()
    hf = hf_copy(shards, folder)

    best = best_interleaved(args.repeat, contenders(shards, hf, positions, starts))
    print(
        f"{args.reads:,} random positions and {args.slices} slices of {SLICE} of "
        f"{args.samples:,} samples in {args.shards} shards; best of {args.repeat}"
    )
    for r in best.values():
        per = r.seconds / r.samples * 1e6
        print(f"  {r.name:<40} {r.rate:>10,.0f} samples/s  {per:>9,.1f} us/sample")
    print(f"atdata warm / datasets:    {ratio(best[WARM], best[HF])}  (samples per second)")
    print(f"atdata cold / datasets:    {ratio(best[COLD], best[HF])}")
    print(f"slices, atdata / datasets: {ratio(best[SLICES], best[HF_SLICES])}")
    print(f"atdata warm / full scan:   {ratio(best[WARM], best[SCAN])}  (for {args.reads:,})")


if __name__ == "__main__":
    main()
