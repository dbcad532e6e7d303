"""Shard write and read throughput: atdata vs the webdataset package vs raw bytes.

For two sample shapes, in one run:

- small: 32x32x3 uint8 image, str label, float confidence, list[str] tags (100,000 samples);
- large: 256x256x3 uint8 image and the same fields (5,000 samples);

it measures

- writing with ``atdata.ShardWriter`` (without and, when the manifest module is
  installed, with manifests) vs ``webdataset.ShardWriter`` writing the same
  fields the way a webdataset user would (a msgpack dict with the image as
  ``.npy`` bytes);
- reading typed samples with ``Dataset.ordered()`` (unbatched and
  ``batch_size=64``) vs a ``webdataset.WebDataset(...).decode()`` pipeline that
  produces the same fields (msgpack decoded, the ``.npy`` parsed);
- reading the same tar bytes from disk (page cache) as the physical limit.

Run:
    python benchmarks/bench_io.py            # full sizes
    python benchmarks/bench_io.py --quick    # a tenth of the samples, one repeat
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import sys
import tempfile
import warnings
from typing import Any

import msgpack
import numpy as np
import numpy.lib.format as npf
from numpy.typing import NDArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atdata
from _common import Result, best_interleaved, make_rows, npy_bytes, ratio, report, tree_size


@atdata.packable
class ImageSample:
    """The benchmark's sample type (both shapes)."""

    image: NDArray[np.uint8]
    label: str
    confidence: float
    tags: list[str]


# -- writers ---------------------------------------------------------------------------


def write_atdata(rows: list[tuple[Any, ...]], pattern: str, manifest: bool) -> tuple[int, int]:
    with atdata.ShardWriter(pattern, maxcount=10_000, manifest=manifest) as sink:
        for image, label, confidence, tags in rows:
            sink.write(ImageSample(image=image, label=label, confidence=confidence, tags=tags))
    return len(rows), tree_size(sink.shards)


def write_wds(rows: list[tuple[Any, ...]], pattern: str) -> tuple[int, int]:
    import webdataset as wds

    with wds.ShardWriter(pattern, maxcount=10_000, verbose=0) as sink:
        for i, (image, label, confidence, tags) in enumerate(rows):
            sink.write(
                {
                    "__key__": f"sample_{i:08d}",
                    "msgpack": {
                        "image": npy_bytes(image),
                        "label": label,
                        "confidence": confidence,
                        "tags": tags,
                    },
                }
            )
    shards = sorted(glob.glob(pattern.replace("%06d", "*")))
    return len(rows), tree_size(shards)


# -- readers ---------------------------------------------------------------------------


def read_atdata(shards: list[str], batch_size: int | None) -> tuple[int, int]:
    ds = atdata.Dataset[ImageSample](shards)
    n = 0
    if batch_size is None:
        for sample in ds.ordered():
            n += 1
            assert sample.image is not None
    else:
        for batch in ds.ordered(batch_size=batch_size):
            n += len(batch.image)  # stacks the arrays
    return n, tree_size(shards)


def _wds_fields(sample: dict[str, Any]) -> dict[str, Any]:
    fields = msgpack.unpackb(sample["msgpack"])
    fields["image"] = npf.read_array(io.BytesIO(fields["image"]))
    fields["__key__"] = sample["__key__"]
    return fields


def read_wds(shards: list[str], batch_size: int | None) -> tuple[int, int]:
    import webdataset as wds

    pipeline = wds.WebDataset(shards, shardshuffle=False).decode().map(_wds_fields)
    n = 0
    if batch_size is None:
        for sample in pipeline:
            n += 1
            assert sample["image"] is not None
    else:
        pipeline = pipeline.to_tuple("image", "label", "confidence", "tags").batched(batch_size)
        for images, *_ in pipeline:
            n += len(images)
    return n, tree_size(shards)


def read_raw(shards: list[str], samples: int) -> tuple[int, int]:
    buf = bytearray(16 << 20)
    total = 0
    for path in shards:
        with open(path, "rb", buffering=0) as f:
            while got := f.readinto(buf):
                total += got
    return samples, total


# -- the run ---------------------------------------------------------------------------


def run_case(name: str, n: int, shape: tuple[int, ...], root: str, repeat: int) -> list[Result]:
    print(f"\n== {name}: {n:,} samples, image {shape} ==")
    rows = list(make_rows(n, shape))
    at_dir, wd_dir, mf_dir = (os.path.join(root, name, d) for d in ("atdata", "wds", "manifest"))
    for d in (at_dir, wd_dir, mf_dir):
        os.makedirs(d, exist_ok=True)
    at_pattern = os.path.join(at_dir, "shard-%06d.tar")
    wd_pattern = os.path.join(wd_dir, "shard-%06d.tar")

    writers = {"write atdata": lambda: write_atdata(rows, at_pattern, False)}
    try:
        import atdata.manifest.builder  # noqa: F401

        mf_pattern = os.path.join(mf_dir, "shard-%06d.tar")
        writers["write atdata (manifest)"] = lambda: write_atdata(rows, mf_pattern, True)
    except ImportError:
        pass
    writers["write webdataset"] = lambda: write_wds(rows, wd_pattern)
    written = best_interleaved(repeat, writers)
    w_at, w_wd = written["write atdata"], written["write webdataset"]
    w_mf = written.get("write atdata (manifest)")
    results = list(written.values())

    at_shards = sorted(glob.glob(os.path.join(at_dir, "*.tar")))
    wd_shards = sorted(glob.glob(os.path.join(wd_dir, "*.tar")))
    read_raw(at_shards, n)  # warm the page cache
    read_raw(wd_shards, n)
    read = best_interleaved(
        repeat,
        {
            "read raw bytes": lambda: read_raw(at_shards, n),
            "read atdata ordered()": lambda: read_atdata(at_shards, None),
            "read atdata batch_size=64": lambda: read_atdata(at_shards, 64),
            "read webdataset": lambda: read_wds(wd_shards, None),
            "read webdataset batched(64)": lambda: read_wds(wd_shards, 64),
        },
    )
    raw, r_at, r_at_b, r_wd, r_wd_b = read.values()
    results += [raw, r_at, r_at_b, r_wd, r_wd_b]
    report(results)
    print("  ratios:")
    print(f"    write atdata / webdataset             {ratio(w_at, w_wd)}")
    if w_mf is not None:
        print(f"    write atdata (manifest) / webdataset  {ratio(w_mf, w_wd)}")
    print(f"    read atdata / webdataset              {ratio(r_at, r_wd)}")
    print(f"    read batched atdata / webdataset      {ratio(r_at_b, r_wd_b)}")
    print(f"    read atdata / raw bytes               {ratio(r_at, raw)}")
    print(f"    read batched atdata / raw bytes       {ratio(r_at_b, raw)}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the samples, 1 repeat")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (best)")
    parser.add_argument("--dir", default=None, help="where to write shards (default: a temp dir)")
    parser.add_argument("--only", choices=["small", "large"], default=None)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    repeat = args.repeat or (1 if args.quick else 3)
    root = args.dir or tempfile.mkdtemp(prefix="atdata-bench-")
    warnings.simplefilter("ignore")  # webdataset's own deprecation chatter
    import webdataset

    print(
        f"atdata {atdata.__version__}, webdataset {webdataset.__version__}, "
        f"numpy {np.__version__}, python {sys.version.split()[0]}; shards in {root}"
    )
    try:
        if args.only in (None, "small"):
            run_case("small", 100_000 // scale, (32, 32, 3), root, repeat)
        if args.only in (None, "large"):
            run_case("large", 5_000 // scale, (256, 256, 3), root, repeat)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
