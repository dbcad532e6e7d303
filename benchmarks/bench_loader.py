"""Training-loader throughput: atdata vs webdataset vs LitData, local and remote, and resume.

On the same samples (small: 32x32x3 uint8 image + int label + float score;
large: 256x256x3), in one run:

- a torch DataLoader with 2 workers over local disk, shuffled, batches of 64
  collated to tensors: ``atdata`` (``ds.shuffled(seed, batch_size=64)``,
  ``collate_fn=atdata.torch.collate``), the ``webdataset`` package (its usual
  ``WebDataset(...).shuffle().decode().to_tuple().batched()`` pipeline over
  its own shards) and LitData (``litdata.optimize`` then ``StreamingDataset``
  + ``StreamingDataLoader``) when it is installed;
- the same atdata and webdataset loaders reading from an S3 API server (moto)
  on loopback behind a proxy written here that adds 20 ms to every request:
  atdata with prefetch (the default) and without, webdataset over HTTP;
- resume: the time from ``load_state_dict`` (a state at 90 % of an epoch) to
  the first sample, against reading from the start to the same point.

Mosaic Streaming (``MDSWriter`` then ``StreamingDataset`` +
``StreamingDataLoader``, local and from the same S3 server) when it imports.
Its package declares numpy < 2.2 and the torchvision, Azure, GCS and OCI SDKs;
installed with ``--no-deps`` (see benchmarks/README.md) it runs on this numpy,
and the torchvision modules its vision helpers import at package import (this
benchmark uses none of them) are replaced by empty placeholders when no
working torchvision is installed.

Run:
    python benchmarks/bench_loader.py            # 100,000 small + 5,000 large samples
    python benchmarks/bench_loader.py --quick    # a tenth
    python benchmarks/bench_loader.py --only large --repeat 1   # the large case, once
"""

from __future__ import annotations

import argparse
import glob
import http.client
import http.server
import io
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack
import numpy as np
import numpy.lib.format as npf
from numpy.typing import NDArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atdata
from _common import npy_bytes

BATCH = 64
WORKERS = 2
LATENCY_S = 0.020


@atdata.packable
class Small:
    """The benchmark's sample type (both shapes)."""

    image: NDArray[np.uint8]
    label: int
    score: float


def rows(n: int, shape: tuple[int, ...]) -> Iterator[tuple[NDArray[np.uint8], int, float]]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, shape, dtype=np.uint8)
    for i in range(n):
        yield np.roll(base, i, axis=0), i % 1000, float(i) / n


# -- writers ----------------------------------------------------------------------------


def write_atdata(n: int, shape: tuple[int, ...], folder: str, per_shard: int) -> list[str]:
    with atdata.ShardWriter(os.path.join(folder, "shard-%06d.tar"), maxcount=per_shard) as sink:
        for image, label, score in rows(n, shape):
            sink.write(Small(image=image, label=label, score=score))
    return sink.shards


def write_wds(n: int, shape: tuple[int, ...], folder: str, per_shard: int) -> list[str]:
    import webdataset as wds

    with wds.ShardWriter(
        os.path.join(folder, "shard-%06d.tar"), maxcount=per_shard, verbose=0
    ) as sink:
        for i, (image, label, score) in enumerate(rows(n, shape)):
            sink.write(
                {
                    "__key__": f"sample_{i:08d}",
                    "msgpack": {"image": npy_bytes(image), "label": label, "score": score},
                }
            )
    return sorted(glob.glob(os.path.join(folder, "*.tar")))


def _litdata_item(i: int, shape: tuple[int, ...], n: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, shape, dtype=np.uint8)
    return {"image": np.roll(base, i, axis=0), "label": i % 1000, "score": float(i) / n}


def write_litdata(n: int, shape: tuple[int, ...], folder: str) -> str:
    import functools

    import litdata

    litdata.optimize(
        fn=functools.partial(_litdata_item, shape=shape, n=n),
        inputs=list(range(n)),
        output_dir=folder,
        chunk_bytes="64MB",
        num_workers=1,
    )
    # optimize() switches the whole process to "spawn"; every other loader here forks
    multiprocessing.set_start_method("fork", force=True)
    return folder


def import_streaming() -> Any:
    """Mosaic's ``streaming`` package, or None when it is not installed."""
    import importlib.machinery
    import importlib.util
    import types

    if importlib.util.find_spec("streaming") is None:
        return None
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or built for another torch
        # ``import streaming`` imports its vision datasets, which import torchvision
        for name in (
            "torchvision",
            "torchvision.datasets",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        ):
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            module.__path__ = []  # type: ignore[attr-defined]
            sys.modules[name] = module
        sys.modules["torchvision.datasets"].VisionDataset = type("VisionDataset", (), {})  # type: ignore[attr-defined]
        sys.modules["torchvision.transforms.functional"].to_tensor = None  # type: ignore[attr-defined]
    import streaming

    return streaming


def write_mosaic(n: int, shape: tuple[int, ...], folder: str) -> str:
    streaming = import_streaming()
    columns = {
        "image": f"ndarray:uint8:{','.join(map(str, shape))}",
        "label": "int",
        "score": "float64",
    }
    with streaming.MDSWriter(out=folder, columns=columns, size_limit=1 << 26) as sink:
        for image, label, score in rows(n, shape):
            sink.write({"image": image, "label": label, "score": score})
    return folder


# -- loaders (each returns the samples it saw) --------------------------------------------


def _wds_tuple(sample: dict[str, Any]) -> tuple[Any, ...]:
    fields = msgpack.unpackb(sample["msgpack"])
    return npf.read_array(io.BytesIO(fields["image"])), fields["label"], fields["score"]


def load_atdata(urls: list[str], **options: Any) -> int:
    import torch

    import atdata.torch

    view = atdata.Dataset[Small](urls, **options).shuffled(seed=0, batch_size=BATCH)
    loader = torch.utils.data.DataLoader(
        view, batch_size=None, num_workers=WORKERS, collate_fn=atdata.torch.collate
    )
    return count(loader, lambda batch: len(batch["label"]))


def load_wds(urls: list[str]) -> int:
    import webdataset as wds

    pipeline = (
        wds.WebDataset(urls, shardshuffle=len(urls), empty_check=False)
        .shuffle(10_000)
        .map(_wds_tuple)
        .batched(BATCH)
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=WORKERS)
    return count(loader, lambda batch: len(batch[1]))


def load_litdata(folder: str) -> int:
    import litdata

    ds = litdata.StreamingDataset(folder, shuffle=True, seed=0)
    loader = litdata.StreamingDataLoader(ds, batch_size=BATCH, num_workers=WORKERS)
    return count(loader, lambda batch: len(batch["label"]))


def load_mosaic(local: str, remote: str | None = None) -> int:
    streaming = import_streaming()
    streaming.base.util.clean_stale_shared_memory()
    ds = streaming.StreamingDataset(
        local=local, remote=remote, shuffle=True, shuffle_seed=0, batch_size=BATCH
    )
    loader = streaming.StreamingDataLoader(ds, batch_size=BATCH, num_workers=WORKERS)
    return count(loader, lambda batch: len(batch["label"]))


_first_batch_at: list[float] = []  # when the current run's first batch arrived


def count(batches: Iterable[Any], size: Callable[[Any], int]) -> int:
    """The samples in ``batches``, noting when the first batch arrives."""
    total = 0
    for batch in batches:
        if not total:
            _first_batch_at.append(time.perf_counter())
        total += size(batch)
    return total


def timed(label: str, fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(best samples/s, samples) over ``repeat`` runs; each run's rate, and the wait
    for its first batch (worker start-up included), are printed."""
    best, samples = 0.0, 0
    for _ in range(repeat):
        _first_batch_at.clear()
        start = time.perf_counter()
        samples = fn()
        rate = samples / (time.perf_counter() - start)
        first = _first_batch_at[0] - start if _first_batch_at else float("nan")
        print(f"    ({label}: {rate:,.0f} samples/s, first batch after {first:.2f} s)", flush=True)
        best = max(best, rate)
    return best, samples


# -- remote: moto behind a latency proxy ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Delay(http.server.BaseHTTPRequestHandler):
    """Forwards each request to the S3 server after sleeping ``LATENCY_S``."""

    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        time.sleep(LATENCY_S)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        # a HEAD answer has no body but tells the object's length
        length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815


def start_remote(root: str) -> tuple[Callable[[], None], str]:
    """moto on loopback behind the latency proxy; returns (stop, proxy endpoint)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    handler = type("Delay", (_Delay,), {"upstream": ("127.0.0.1", port)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )

    def stop() -> None:
        proxy.shutdown()
        proxy.server_close()
        moto.stop()

    return stop, endpoint


def upload(folder: str, bucket: str, endpoint: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        s3.upload_file(path, bucket, os.path.basename(path))
    return [
        f"s3://{bucket}/{os.path.basename(p)}"
        for p in sorted(glob.glob(os.path.join(folder, "*.tar")))
    ]


def presigned(endpoint: str, bucket: str, path: str) -> str:
    """An HTTP URL webdataset can fetch with curl (the S3 server refuses anonymous reads)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    return str(
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": os.path.basename(path)}, ExpiresIn=3600
        )
    )


# -- resume -----------------------------------------------------------------------------------


def resume_cost(urls: list[str]) -> tuple[float, float]:
    """(seconds from load_state_dict to the first sample, seconds to read up to it)."""
    ds = atdata.Dataset[Small](urls)
    view = ds.shuffled(seed=0)
    at = int(len(view) * 0.9)
    start = time.perf_counter()
    for i, _ in enumerate(view):
        if i + 1 == at:
            break
    from_start = time.perf_counter() - start
    state = {**view.state_dict(), "position": at}
    fresh = ds.shuffled(seed=0)
    start = time.perf_counter()
    fresh.load_state_dict(state)
    next(iter(fresh))
    return time.perf_counter() - start, from_start


# -- the run ----------------------------------------------------------------------------------


def run_case(
    name: str,
    n: int,
    shape: tuple[int, ...],
    per_shard: int,
    root: str,
    repeat: int,
    litdata_ok: bool,
    mosaic_ok: bool,
) -> None:
    print(
        f"\n== {name}: {n:,} samples, image {shape}, {WORKERS} DataLoader workers, "
        f"batches of {BATCH} =="
    )
    folders = {k: os.path.join(root, name, k) for k in ("atdata", "wds", "litdata", "mosaic")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    at = write_atdata(n, shape, folders["atdata"], per_shard)
    wd = write_wds(n, shape, folders["wds"], per_shard)
    rates: dict[str, float] = {}
    rates["local atdata"], got = timed("local atdata", lambda: load_atdata(at), repeat)
    assert got == n - n % BATCH or got <= n, got
    rates["local webdataset"], _ = timed("local webdataset", lambda: load_wds(wd), repeat)
    if litdata_ok:
        try:
            write_litdata(n, shape, folders["litdata"])
            rates["local litdata"], _ = timed(
                "local litdata", lambda: load_litdata(folders["litdata"]), repeat
            )
        except Exception as exc:  # noqa: BLE001 - a peer failing is reported, not fatal
            print(f"  litdata: skipped ({type(exc).__name__}: {exc})")
    if mosaic_ok:
        write_mosaic(n, shape, folders["mosaic"])
        rates["local mosaic"], _ = timed(
            "local mosaic", lambda: load_mosaic(folders["mosaic"]), repeat
        )
    stop, endpoint = start_remote(root)
    try:
        remote_at = upload(folders["atdata"], f"{name}-atdata", endpoint)
        upload(folders["wds"], f"{name}-wds", endpoint)
        remote_wd = [f"pipe:curl -s '{presigned(endpoint, f'{name}-wds', u)}'" for u in wd]
        rates["remote atdata prefetch=2"], _ = timed(
            "remote atdata prefetch=2", lambda: load_atdata(remote_at), repeat
        )
        rates["remote atdata prefetch=0"], _ = timed(
            "remote atdata prefetch=0", lambda: load_atdata(remote_at, prefetch=0), repeat
        )
        if shutil.which("curl"):
            rates["remote webdataset"], _ = timed(
                "remote webdataset", lambda: load_wds(remote_wd), repeat
            )
        if mosaic_ok:
            upload(folders["mosaic"], f"{name}-mosaic", endpoint)
            os.environ["S3_ENDPOINT_URL"] = endpoint  # where Mosaic's boto3 client goes

            def remote_mosaic() -> int:
                local = tempfile.mkdtemp(dir=root)  # a fresh cache: every run downloads
                return load_mosaic(local, f"s3://{name}-mosaic")

            try:
                rates["remote mosaic"], _ = timed("remote mosaic", remote_mosaic, repeat)
            except Exception as exc:  # noqa: BLE001 - a peer failing is reported, not fatal
                print(f"  remote mosaic: failed ({type(exc).__name__}: {str(exc)[:200]})")
    finally:
        stop()
        for var in ("AWS_ENDPOINT_URL", "S3_ENDPOINT_URL"):
            os.environ.pop(var, None)
    resumed, from_start = resume_cost(at)
    for label, rate in rates.items():
        print(f"  {label:28s} {rate:12,.0f} samples/s")
    print("  ratios:")
    local = rates["local atdata"]
    for peer in ("local webdataset", "local litdata", "local mosaic"):
        if peer in rates:
            print(f"    local atdata / {peer[6:]:18s} {local / rates[peer]:8.2f}x")
    remote = rates["remote atdata prefetch=2"]
    print(f"    remote atdata / local atdata      {remote / local:8.2f}x  (goal >= 0.67)")
    no_prefetch = rates["remote atdata prefetch=0"]
    print(f"    prefetch=2 / prefetch=0            {remote / no_prefetch:8.2f}x")
    for peer in ("remote webdataset", "remote mosaic"):
        if peer in rates:
            print(f"    remote atdata / {peer[7:]:18s} {remote / rates[peer]:8.2f}x")
    print(
        f"  resume at 90%: {resumed * 1e3:.0f} ms to the first sample vs "
        f"{from_start * 1e3:.0f} ms reading from the start ({from_start / resumed:.0f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the samples, 1 run")
    parser.add_argument("--repeat", type=int, default=None, help="runs per loader (best)")
    parser.add_argument("--only", choices=["small", "large"], default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    scale = 10 if args.quick else 1
    repeat = args.repeat or (1 if args.quick else 2)
    try:
        import litdata  # noqa: F401

        litdata_ok = True
    except ImportError:
        print("litdata: not installed (pip install litdata 'torch==2.13.0'); its rows are skipped")
        litdata_ok = False
    mosaic_ok = import_streaming() is not None
    if not mosaic_ok:
        print("mosaicml-streaming: not installed (see benchmarks/README.md); its rows are skipped")
    root = tempfile.mkdtemp(prefix="atdata-bench-loader-")
    try:
        if args.only in (None, "small"):
            run_case(
                "small",
                100_000 // scale,
                (32, 32, 3),
                10_000 // scale,
                root,
                repeat,
                litdata_ok,
                mosaic_ok,
            )
        if args.only in (None, "large"):
            run_case(
                "large",
                5_000 // scale,
                (256, 256, 3),
                500 // scale,
                root,
                repeat,
                litdata_ok,
                mosaic_ok,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
