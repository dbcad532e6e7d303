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

A third case, ``encoded``, stores natural-looking 256x256x3 images (smooth
gradients, low-frequency noise and a few shapes: compressible, unlike noise;
1,000 samples) with each array encoding (``atdata.Encoding``: npy, png, jpeg
quality 90, zstd level 3) and measures bytes on disk, write and typed read
rates, against the ``webdataset`` package reading the same JPEG bytes as
``.jpg`` members with its own decoder (``.decode("rgb8")``: Pillow, to numpy);
and the two JPEG decoders alone on those bytes (Pillow, and simplejpeg, which
atdata uses).

Run:
    python benchmarks/bench_io.py            # full sizes
    python benchmarks/bench_io.py --quick    # a tenth of the samples, one repeat
    python benchmarks/bench_io.py --only encoded
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
from typing import Annotated, Any

import msgpack
import msgspec
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


# -- encoded fields -----------------------------------------------------------------------

ENCODINGS = {
    "npy": atdata.Encoding("npy"),
    "png": atdata.Encoding("png"),
    "jpeg": atdata.Encoding("jpeg", quality=90),
    "zstd": atdata.Encoding("zstd", level=3),
}


def _encoded_type(encoding: atdata.Encoding) -> type:
    @atdata.packable
    class Photo:
        image: Annotated[NDArray[np.uint8], encoding]
        label: str

    return Photo


PHOTO_TYPES = {name: _encoded_type(encoding) for name, encoding in ENCODINGS.items()}
_LABELS = ["cat", "dog", "bird", "fish"]


def natural_image(seed: int, size: int = 256) -> NDArray[np.uint8]:
    """A photo-like RGB image: gradients, low-frequency noise and a few flat shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi, 3)
    image = 60 + 120 * (np.cos(angle) * x[..., None] + np.sin(angle) * y[..., None]) ** 2
    coarse = rng.normal(0, 25, (9, 9, 3))  # noise on a 9x9 grid, bilinearly upsampled
    pos = np.linspace(0, 8, size)
    i0 = np.minimum(pos.astype(int), 7)
    f = (pos - i0)[:, None, None]
    rows = coarse[i0] * (1 - f) + coarse[i0 + 1] * f
    f = (pos - i0)[None, :, None]
    image += rows[:, i0] * (1 - f) + rows[:, i0 + 1] * f
    for _ in range(4):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.15)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            inside = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        else:
            inside = (abs(y - cy) < r) & (abs(x - cx) < r * 1.5)
        image[inside] = 0.3 * image[inside] + 0.7 * colour
    image += rng.normal(0, 1.5, image.shape)  # a little sensor noise
    return np.clip(image, 0, 255).astype(np.uint8)


def write_encoded(pool: list[Any], n: int, name: str, pattern: str) -> tuple[int, int]:
    photo = PHOTO_TYPES[name]
    with atdata.ShardWriter(pattern, maxcount=10_000, manifest=False) as sink:
        for i in range(n):
            sink.write(photo(image=pool[i % len(pool)], label=_LABELS[i % 4]))
    return n, tree_size(sink.shards)


def write_wds_jpg(jpegs: list[bytes], n: int, pattern: str) -> tuple[int, int]:
    """The same JPEG bytes atdata stores, as ``.jpg`` members (webdataset's convention)."""
    import webdataset as wds

    with wds.ShardWriter(pattern, maxcount=10_000, verbose=0) as sink:
        for i in range(n):
            sink.write(
                {"__key__": f"sample_{i:08d}", "jpg": jpegs[i % len(jpegs)], "txt": _LABELS[i % 4]}
            )
    shards = sorted(glob.glob(pattern.replace("%06d", "*")))
    return n, tree_size(shards)


def read_encoded(shards: list[str], name: str) -> tuple[int, int]:
    n = 0
    for sample in atdata.Dataset[PHOTO_TYPES[name]](shards).ordered():
        n += 1
        assert sample.image.shape == (256, 256, 3)
    return n, tree_size(shards)


def decode_jpegs(jpegs: list[bytes], n: int, library: str) -> tuple[int, int]:
    """Decode ``n`` of the JPEGs to RGB arrays with Pillow or simplejpeg (the codec choice)."""
    if library == "pillow":
        from PIL import Image

        def decode(data: bytes) -> Any:
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    else:
        import simplejpeg

        def decode(data: bytes) -> Any:
            return simplejpeg.decode_jpeg(data, "RGB")

    for i in range(n):
        assert decode(jpegs[i % len(jpegs)]).shape == (256, 256, 3)
    return n, sum(len(jpegs[i % len(jpegs)]) for i in range(n))


def read_wds_jpg(shards: list[str]) -> tuple[int, int]:
    import webdataset as wds

    n = 0
    for image, _label in (
        wds.WebDataset(shards, shardshuffle=False).decode("rgb8").to_tuple("jpg", "txt")
    ):
        n += 1
        assert image.shape == (256, 256, 3)
    return n, tree_size(shards)


def run_encoded(n: int, root: str, repeat: int) -> list[Result]:
    print(f"\n== encoded: {n:,} samples, natural-looking 256x256x3 uint8 images ==")
    pool = [natural_image(seed) for seed in range(32)]
    # the very JPEG bytes atdata stores: the data of each packed sample's extension value
    jpeg_photo = PHOTO_TYPES["jpeg"]
    jpegs = [
        msgspec.msgpack.decode(jpeg_photo(image=image, label="").packed)["image"].data
        for image in pool
    ]
    patterns = {}
    for name in [*ENCODINGS, "wds-jpg"]:
        os.makedirs(os.path.join(root, "encoded", name), exist_ok=True)
        patterns[name] = os.path.join(root, "encoded", name, "shard-%06d.tar")
    writers: dict[str, Any] = {
        f"write {name}": (lambda name=name: write_encoded(pool, n, name, patterns[name]))
        for name in ENCODINGS
    }
    writers["write webdataset .jpg"] = lambda: write_wds_jpg(jpegs, n, patterns["wds-jpg"])
    written = best_interleaved(repeat, writers)
    shards = {
        name: sorted(glob.glob(os.path.join(root, "encoded", name, "*.tar"))) for name in patterns
    }
    for paths in shards.values():
        read_raw(paths, n)  # warm the page cache
    readers: dict[str, Any] = {
        f"read {name}": (lambda name=name: read_encoded(shards[name], name)) for name in ENCODINGS
    }
    readers["read webdataset .jpg decode('rgb8')"] = lambda: read_wds_jpg(shards["wds-jpg"])
    readers["decode jpeg bytes: Pillow"] = lambda: decode_jpegs(jpegs, n, "pillow")
    readers["decode jpeg bytes: simplejpeg"] = lambda: decode_jpegs(jpegs, n, "simplejpeg")
    read = best_interleaved(repeat, readers)
    results = [*written.values(), *read.values()]
    report(results)
    npy_bytes_on_disk = written["write npy"].nbytes
    print("  bytes on disk (per sample, and vs npy):")
    for name, result in written.items():
        size = result.nbytes
        print(f"    {name[6:]:<22} {size / n:>10,.0f} B  {size / npy_bytes_on_disk:>6.3f}x")
    wds_read = read["read webdataset .jpg decode('rgb8')"]
    print("  ratios:")
    for name in ENCODINGS:
        print(
            f"    read {name:<5} / webdataset .jpg rgb8   {ratio(read[f'read {name}'], wds_read)}"
        )
    pillow, simple = read["decode jpeg bytes: Pillow"], read["decode jpeg bytes: simplejpeg"]
    print(f"    jpeg decode simplejpeg / Pillow      {ratio(simple, pillow)}")
    return results


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
    parser.add_argument("--only", choices=["small", "large", "encoded"], default=None)
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
        if args.only in (None, "encoded"):
            run_encoded(1_000 // scale, root, repeat)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
