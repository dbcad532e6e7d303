"""The training loader: views, epochs, balanced ranks, exact resume, remote reading, mixing.

Everything runs through real DataLoaders with worker processes, a real S3 API
server (moto) and a real HTTP server on loopback.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import http.server
import itertools
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata.errors import StorageError
from atdata.loader import DatasetView, ShardCache, mix
from atdata.loader._index import ShardIndex
from atdata.shards import ShardWriter

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, IterableDataset  # noqa: E402

N = 103  # over 7 shards of 15 (the last has 13): nothing divides evenly


@atdata.packable
class Item:
    image: atdata.NDArray
    label: int
    score: float
    name: str


def write(
    root: Path,
    n: int = N,
    per_shard: int = 15,
    *,
    start: int = 0,
    manifest: bool = True,
    shape: tuple[int, ...] = (2, 2),
) -> list[str]:
    with ShardWriter(str(root / "s-%04d.tar"), maxcount=per_shard, manifest=manifest) as sink:
        for i in range(start, start + n):
            sink.write(Item(image=np.full(shape, i, np.int32), label=i, score=i / 10, name=f"n{i}"))
    return sink.shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write(tmp_path_factory.mktemp("loader"))


def labels(items: Any) -> list[int]:
    out: list[int] = []
    for item in items:
        if isinstance(item, atdata.SampleBatch):
            out.extend(item.label.tolist())
        else:
            out.append(item.label)
    return out


def loader(view: Any, workers: int, **options: Any) -> DataLoader[Any]:
    return DataLoader(view, batch_size=None, num_workers=workers, **options)


# -- views ------------------------------------------------------------------------------


def test_views_are_iterable_datasets_that_pickle(shards: list[str]) -> None:
    view = atdata.Dataset[Item](shards).shuffled(seed=0)
    assert isinstance(view, DatasetView) and isinstance(view, IterableDataset)
    assert labels(pickle.loads(pickle.dumps(view))) == labels(view)
    assert sorted(labels(view)) == list(range(N))
    assert len(view) == N and view.num_samples == N


def test_a_view_iterates_again_and_next_takes_from_its_current_pass(shards: list[str]) -> None:
    view = atdata.Dataset[Item](shards).ordered()
    assert labels(view) == labels(view) == list(range(N))
    assert [next(view).label for _ in range(3)] == [0, 1, 2]


def test_batches_stack_arrays_and_make_numeric_columns_numpy(shards: list[str]) -> None:
    batch = next(iter(atdata.Dataset[Item](shards).ordered(batch_size=10)))
    assert batch.image.shape == (10, 2, 2)
    assert isinstance(batch.label, np.ndarray) and batch.label.dtype == np.int64
    assert isinstance(batch.score, np.ndarray) and batch.score.dtype == np.float64
    assert batch.name[:2] == ["n0", "n1"]  # strings stay lists
    assert len(atdata.Dataset[Item](shards).ordered(batch_size=10)) == 11  # the last is short


def test_collate_turns_samples_and_batches_into_tensors(shards: list[str]) -> None:
    from atdata.torch import collate

    ds = atdata.Dataset[Item](shards)
    out = next(iter(DataLoader(ds.shuffled(seed=0), batch_size=8, collate_fn=collate)))
    assert out["image"].shape == (8, 2, 2) and out["label"].dtype == torch.int64
    assert isinstance(out["name"], list) and len(out["__key__"]) == 8
    batched = next(iter(loader(ds.ordered(batch_size=8), 0, collate_fn=collate)))
    assert torch.equal(batched["label"], torch.arange(8))


def test_lens_and_filter_views_carry_into_the_loader(shards: list[str]) -> None:
    ds = atdata.Dataset[Item](shards).filter(lambda s: s.label % 2 == 0)
    assert labels(loader(ds.shuffled(seed=3), 2)) and sorted(labels(ds.shuffled(seed=3))) == list(
        range(0, N, 2)
    )


# -- epochs and workers -------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_exactly_once_per_epoch_whatever_the_workers_and_ranks(
    shards: list[str], world: int, workers: int
) -> None:
    seen: collections.Counter[int] = collections.Counter()
    for rank in range(world):
        ds = atdata.Dataset[Item](shards, rank=rank, world_size=world)
        view = ds.shuffled(seed=7, buffer_size=20)
        view.set_epoch(1)
        got = labels(loader(view, workers))
        # every rank the same count (the remainder is dropped), as len() says
        assert len(got) == len(view) == N // world
        # and the order is the one of the single-process run, whatever the workers
        assert got == labels(view)
        seen.update(got)
    assert set(seen.values()) == {1} and len(seen) == world * (N // world)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_batched_views_keep_their_order_across_worker_counts(shards: list[str]) -> None:
    view = atdata.Dataset[Item](shards).shuffled(seed=1, buffer_size=30, batch_size=8)
    expected = labels(view)
    for workers in (1, 2, 3):
        assert labels(loader(view, workers)) == expected


def test_each_epoch_is_a_new_permutation_and_repeatable(shards: list[str]) -> None:
    view = atdata.Dataset[Item](shards).shuffled(seed=11, buffer_size=50)
    orders = []
    for epoch in range(3):
        view.set_epoch(epoch)
        orders.append(labels(view))
        assert sorted(orders[-1]) == list(range(N))
    assert len({tuple(o) for o in orders}) == 3
    view.set_epoch(1)
    assert labels(view) == orders[1]
    other = atdata.Dataset[Item](shards).shuffled(seed=11, buffer_size=50)
    other.set_epoch(2)
    assert labels(other) == orders[2]  # derived from (seed, epoch) only


def test_padding_instead_of_dropping(shards: list[str]) -> None:
    counts = collections.Counter[int]()
    for rank in range(3):
        view = atdata.Dataset[Item](shards, rank=rank, world_size=3).shuffled(
            seed=0, drop_last=False
        )
        got = labels(view)
        assert len(got) == len(view) == 35
        counts.update(got)
    assert set(counts) == set(range(N)) and sum(counts.values()) == 105


def test_a_shuffled_view_across_ranks_needs_a_seed(shards: list[str]) -> None:
    with pytest.raises(ValueError, match="seed every rank shares"):
        atdata.Dataset[Item](shards, rank=0, world_size=2).shuffled()


# -- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 6])
def test_resume_at_random_points_equals_the_uninterrupted_run(
    shards: list[str], batch_size: int | None
) -> None:
    ds = atdata.Dataset[Item](shards)
    full = ds.shuffled(seed=5, buffer_size=17, batch_size=batch_size)
    full.set_epoch(2)
    expected = labels(full)
    rng = random.Random(0)
    for k in [0, 1, len(full) - 1, len(full), *rng.sample(range(2, len(full) - 1), 6)]:
        view = ds.shuffled(seed=5, buffer_size=17, batch_size=batch_size)
        view.set_epoch(2)
        head = labels(itertools.islice(iter(view), k))
        state = pickle.loads(pickle.dumps(view.state_dict()))
        resumed = ds.shuffled(seed=5, buffer_size=17, batch_size=batch_size)
        resumed.load_state_dict(state)
        assert head + labels(resumed) == expected, k


def test_resume_reads_only_the_window_it_needs(tmp_path: Path) -> None:
    urls = write(tmp_path, n=400, per_shard=100)
    view = atdata.Dataset[Item](urls).shuffled(seed=0, buffer_size=50)
    state = {**view.state_dict(), "position": 390}
    opened: list[tuple[str, int, int | None]] = []
    real = atdata.shards.reader.iter_raw

    def spy(url: str, **kw: Any) -> Iterator[Any]:
        opened.append((url, *(kw.get("byte_range") or (0, None))))
        return real(url, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("atdata.loader._fetch.iter_raw", spy)
        view.load_state_dict(state)
        rest = labels(view)
    assert len(rest) == 10
    sizes = [os.path.getsize(u) for u in urls]
    spans = zip(opened, sizes, strict=False)
    read = sum((stop or size) - start for (_, start, stop), size in spans)
    assert read < sum(sizes) / 5  # one window of 50 samples, not the epoch


def test_a_state_from_another_order_is_refused(shards: list[str]) -> None:
    state = atdata.Dataset[Item](shards).shuffled(seed=1).state_dict()
    with pytest.raises(ValueError, match=r"different order.*seed"):
        atdata.Dataset[Item](shards).shuffled(seed=2).load_state_dict(state)


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on torch 2.13
@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly_inside_workers(
    shards: list[str], workers: int
) -> None:
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    ds = atdata.Dataset[Item](shards)

    def make() -> Any:
        view = ds.shuffled(seed=9, buffer_size=20, batch_size=4)
        view.set_epoch(1)
        return stateful.StatefulDataLoader(view, batch_size=None, num_workers=workers)

    expected = labels(make())
    for k in (3, 10, 17):
        first = make()
        it = iter(first)
        head = labels(next(it) for _ in range(k))
        state = first.state_dict()
        del it
        second = make()
        second.load_state_dict(state)
        assert head + labels(second) == expected, k


# -- sources without manifests, remote sources ---------------------------------------------


def test_shards_without_manifests_are_scanned_and_still_balanced(tmp_path: Path) -> None:
    urls = write(tmp_path, manifest=False)
    per_rank = [
        labels(atdata.Dataset[Item](urls, rank=r, world_size=2).shuffled(seed=0)) for r in range(2)
    ]
    assert [len(p) for p in per_rank] == [N // 2, N // 2]
    assert len(set(per_rank[0]) | set(per_rank[1])) == 2 * (N // 2)


def test_s3_with_prefetch_reads_what_local_reads(tmp_path: Path, s3_server: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="loader")
    local = write(tmp_path)
    for url in Path(tmp_path).iterdir():
        s3.upload_file(str(url), "loader", url.name)
    remote = [f"s3://loader/{Path(u).name}" for u in local]
    expected = labels(atdata.Dataset[Item](local).shuffled(seed=4, buffer_size=25))
    for prefetch in (0, 2):
        view = atdata.Dataset[Item](remote, prefetch=prefetch).shuffled(seed=4, buffer_size=25)
        assert labels(loader(view, 2)) == expected


def test_the_cache_downloads_an_overwritten_shard_again(tmp_path: Path, s3_server: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="cache-versions")
    (old,) = write(tmp_path / "v1", n=10, per_shard=10)
    (new,) = write(tmp_path / "v2", n=10, per_shard=10, start=100)
    for name in ("s-0000.tar", "s-0000.manifest.json", "s-0000.manifest.parquet"):
        s3.upload_file(str(tmp_path / "v1" / name), "cache-versions", name)
    url = "s3://cache-versions/s-0000.tar"
    cache = str(tmp_path / "cache")
    assert labels(atdata.Dataset[Item](url, cache_dir=cache).ordered()) == list(range(10))
    for name in ("s-0000.tar", "s-0000.manifest.json", "s-0000.manifest.parquet"):
        s3.upload_file(str(tmp_path / "v2" / name), "cache-versions", name)
    again = atdata.Dataset[Item](url, cache_dir=cache).ordered()
    assert labels(again) == list(range(100, 110))
    assert old != new


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; counts GETs; can fail or stall on purpose."""

    gets: collections.Counter[str]
    failures: int = 0
    stall: float = 0.0

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = type(self)
        name = self.path.lstrip("/")
        server.gets[name] += 1
        if name.endswith(".tar") and server.failures > 0:
            server.failures -= 1
            self.send_error(503, "try again")
            return
        data = (Path(self.directory) / name).read_bytes()
        start, end = 0, len(data)
        header = self.headers.get("Range")
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first), (int(last) + 1 if last else len(data))
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = data[start:end]
        step = max(len(body) // 20, 1) if server.stall else len(body)
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            self.wfile.flush()
            time.sleep(server.stall)


@contextlib.contextmanager
def serve(folder: Path, **behaviour: Any) -> Iterator[tuple[str, type[_Files]]]:
    handler = type("Handler", (_Files,), {"gets": collections.Counter(), **behaviour})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_shared_cache_downloads_each_shard_once(tmp_path: Path) -> None:
    local = write(tmp_path / "data")
    cache = tmp_path / "cache"
    with serve(tmp_path / "data") as (base, handler):
        remote = [f"{base}/{Path(u).name}" for u in local]
        got: list[int] = []
        for rank in range(2):
            ds = atdata.Dataset[Item](remote, rank=rank, world_size=2, cache_dir=cache)
            got += labels(loader(ds.shuffled(seed=0, buffer_size=30), 2))
        assert len(set(got)) == len(got) == 2 * (N // 2)
        tar_gets = {k: v for k, v in handler.gets.items() if k.endswith(".tar")}
    assert tar_gets and set(tar_gets.values()) == {1}  # 2 ranks x 2 workers, one download each
    cached = [p for p in cache.iterdir() if p.suffix == ".tar"]
    assert len(cached) == len(tar_gets)
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("workers", [0, 2])  # a window is read out of order from local copies
def test_workers_share_one_download_of_a_remote_shard_without_a_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    local = write(tmp_path / "data")
    expected = labels(atdata.Dataset[Item](local).shuffled(seed=3, buffer_size=30))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with serve(tmp_path / "data") as (base, handler):
        remote = [f"{base}/{Path(u).name}" for u in local]
        view = atdata.Dataset[Item](remote).shuffled(seed=3, buffer_size=30)
        assert labels(loader(view, workers)) == expected
        tar_gets = {k: v for k, v in handler.gets.items() if k.endswith(".tar")}
    assert len(tar_gets) == len(local) and set(tar_gets.values()) == {1}
    assert [p.name[:15] for p in temp.iterdir()] == ["atdata-scratch-"]
    del view
    gc.collect()
    assert not list(temp.iterdir())  # the scratch cache goes with its view


def test_the_cache_evicts_least_recently_used_beyond_its_limit(tmp_path: Path) -> None:
    local = write(tmp_path / "data")
    size = os.path.getsize(local[0])
    with serve(tmp_path / "data") as (base, _):
        cache = ShardCache(str(tmp_path / "cache"), limit=3 * size)
        paths = [cache.fetch(f"{base}/{Path(u).name}") for u in local[:5]]
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.suffix == ".tar")
    assert kept == sorted(Path(p).name for p in paths[-3:])


def test_a_killed_download_leaves_nothing_half_cached(tmp_path: Path) -> None:
    local = write(tmp_path / "data", n=30, per_shard=30, shape=(64, 64))
    cache_dir = tmp_path / "cache"
    with serve(tmp_path / "data", stall=0.2) as (base, _):
        url = f"{base}/{Path(local[0]).name}"
        code = (
            f"from atdata.loader import ShardCache; ShardCache({str(cache_dir)!r}).fetch({url!r})"
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 30
        while not list(cache_dir.glob("*.partial")) and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not [p for p in cache_dir.iterdir() if p.suffix == ".tar"]  # nothing to serve
    with serve(tmp_path / "data") as (base, _):
        ds = atdata.Dataset[Item]([f"{base}/{Path(local[0]).name}"], cache_dir=cache_dir)
        assert labels(ds.ordered()) == list(range(30))


def test_transient_errors_are_retried_then_named(tmp_path: Path) -> None:
    local = write(tmp_path / "data")
    with serve(tmp_path / "data", failures=2) as (base, _):
        remote = [f"{base}/{Path(u).name}" for u in local]
        assert labels(atdata.Dataset[Item](remote).ordered()) == list(range(N))
    with serve(tmp_path / "data", failures=1000) as (base, _):
        remote = [f"{base}/{Path(u).name}" for u in local]
        with pytest.raises(StorageError, match=r"Cannot read shard http://.*s-0000\.tar"):
            labels(atdata.Dataset[Item](remote).ordered())


# -- mixing -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    a = write(tmp_path_factory.mktemp("mix-a"), n=3000, per_shard=400)
    b = write(tmp_path_factory.mktemp("mix-b"), n=1000, per_shard=300, start=10_000)
    return atdata.Dataset[Item](a), atdata.Dataset[Item](b)


def test_mixing_follows_the_weights(two_sources: tuple[Any, Any]) -> None:
    mixed = mix(list(two_sources), weights=[0.7, 0.3], seed=0)
    got = labels(mixed)
    assert len(got) == len(mixed) and len(set(got)) == len(got)  # nothing repeated
    share_b = sum(x >= 10_000 for x in got[: len(got) // 2]) / (len(got) // 2)
    assert abs(share_b - 0.3) < 0.03
    assert got == labels(mix(list(two_sources), weights=[0.7, 0.3], seed=0))


def test_mixing_all_exhausted_repeats_the_short_source(two_sources: tuple[Any, Any]) -> None:
    got = labels(mix(list(two_sources), weights=[0.5, 0.5], seed=1, stop="all_exhausted"))
    a = [x for x in got if x < 10_000]
    b = [x for x in got if x >= 10_000]
    assert sorted(set(a)) == list(range(3000)) and len(a) == 3000  # the last to finish
    assert set(b) == set(range(10_000, 11_000)) and len(b) > 2000


@pytest.mark.parametrize("workers", [0, 2])
def test_mixing_resumes_and_ignores_the_worker_count(
    two_sources: tuple[Any, Any], workers: int
) -> None:
    expected = labels(mix(list(two_sources), weights=[0.6, 0.4], seed=2, batch_size=32))
    mixed = mix(list(two_sources), weights=[0.6, 0.4], seed=2, batch_size=32)
    assert labels(loader(mixed, workers)) == expected
    head = labels(itertools.islice(iter(mixed), 20))
    resumed = mix(list(two_sources), weights=[0.6, 0.4], seed=2, batch_size=32)
    resumed.load_state_dict(mixed.state_dict())
    assert head + labels(resumed) == expected


def test_mix_refuses_bad_weights(two_sources: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="one non-negative weight per dataset"):
        mix(list(two_sources), weights=[1.0])
    with pytest.raises(ValueError, match="unbatched views"):
        mix([two_sources[0].ordered(batch_size=4), two_sources[1]])


# -- streaming out of a window ------------------------------------------------------------

# Orders recorded from the loader as it was before windows were streamed (when a window
# was gathered whole, then yielded): streaming changes when samples are read, not the order.
RECORDED: list[tuple[dict[str, Any], list[int]]] = [
    (
        {"rank": 0, "world": 1, "epoch": 1, "seed": 7, "buffer_size": 20, "batch_size": None},
        [47, 57, 51, 49, 1, 56, 55, 3, 45, 53, 2, 52, 58, 48, 50, 0, 46, 54, 59, 4, 12, 10, 24,
         13, 15, 22, 17, 14, 21, 5, 23, 6, 9, 7, 20, 16, 8, 19, 18, 11, 25, 68, 64, 62, 61, 27,
         67, 69, 28, 60, 26, 70, 73, 71, 66, 29, 63, 74, 72, 65, 76, 33, 30, 86, 32, 81, 89, 31,
         75, 80, 82, 77, 85, 79, 88, 78, 34, 87, 83, 84, 41, 98, 43, 95, 38, 90, 36, 40, 93, 94,
         92, 44, 96, 39, 42, 35, 97, 91, 37, 99, 101, 100, 102],
    ),
    (
        {"rank": 1, "world": 3, "epoch": 2, "seed": 5, "buffer_size": 17, "batch_size": 6},
        [37, 10, 14, 34, 7, 11, 31, 30, 36, 9, 13, 8, 6, 12, 33, 35, 32, 22, 43, 23, 39, 21, 41,
         24, 16, 19, 18, 17, 42, 44, 20, 40, 38, 15],
    ),
    (
        {"rank": 1, "world": 2, "epoch": 0, "seed": 3, "buffer_size": 40, "batch_size": None,
         "drop_last": False},
        [1, 61, 102, 71, 30, 41, 101, 64, 0, 32, 67, 70, 43, 60, 97, 35, 72, 74, 38, 62, 42, 34,
         39, 2, 31, 40, 65, 99, 36, 44, 98, 100, 33, 3, 68, 37, 63, 73, 69, 66, 75, 14, 4, 12,
         10, 6, 13, 11, 9, 5, 7, 8],
    ),
    (  # the default window: these samples are small, so it is the 10,000 cap, as before
        {"rank": 0, "world": 1, "epoch": 0, "seed": 0, "buffer_size": None, "batch_size": None},
        [91, 35, 13, 81, 94, 34, 99, 95, 23, 69, 9, 4, 72, 40, 42, 75, 88, 44, 24, 2, 43, 57, 46,
         55, 92, 77, 90, 100, 11, 5, 89, 3, 25, 8, 27, 87, 22, 59, 58, 66, 82, 86, 14, 71, 36, 6,
         41, 68, 52, 62, 33, 18, 79, 78, 60, 67, 93, 102, 31, 98, 28, 15, 19, 61, 83, 63, 39, 56,
         30, 45, 48, 74, 50, 0, 70, 47, 21, 76, 54, 97, 32, 84, 37, 12, 64, 49, 96, 10, 51, 65,
         1, 26, 7, 53, 38, 85, 17, 73, 101, 80, 16, 20, 29],
    ),
]  # fmt: skip


def _recorded_view(shards: list[str], case: dict[str, Any]) -> DatasetView:
    ds = atdata.Dataset[Item](shards, rank=case["rank"], world_size=case["world"])
    view = ds.shuffled(
        seed=case["seed"],
        batch_size=case["batch_size"],
        drop_last=case.get("drop_last", True),
        **({"buffer_size": case["buffer_size"]} if case["buffer_size"] else {}),
    )
    view.set_epoch(case["epoch"])
    return view


@pytest.mark.parametrize("hold", [None, 1])  # one group per window; a group per sample
@pytest.mark.parametrize("workers", [0, 2])
def test_the_order_is_the_one_recorded_before_windows_were_streamed(
    shards: list[str], monkeypatch: pytest.MonkeyPatch, hold: int | None, workers: int
) -> None:
    if hold is not None:  # forked DataLoader workers inherit the patch
        monkeypatch.setattr("atdata.loader._assemble.HOLD_BYTES", hold)
    for case, expected in RECORDED:
        assert labels(loader(_recorded_view(shards, case), workers)) == expected, case
        # resuming anywhere continues the recorded order
        for k in (1, len(expected) // 2):
            view = _recorded_view(shards, case)
            unit = case["batch_size"] or 1
            view.load_state_dict({**view.state_dict(), "position": k * unit})
            assert labels(view) == expected[k * unit :], (case, k)


class _ReadSpy:
    """Wraps the fetcher's ``iter_raw``: which byte ranges are read, and the samples they bring."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, int, int | None]] = []
        self.spans: dict[str, int] = {}  # key -> bytes, of every sample read
        self.bytes_read = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = atdata.shards.reader.iter_raw

        def spy(url: str, **kw: Any) -> Iterator[Any]:
            self.reads.append((url, *(kw.get("byte_range") or (0, None))))
            for raw in real(url, **kw):
                self.spans[raw.key] = raw.span
                self.bytes_read += raw.span
                yield raw

        monkeypatch.setattr("atdata.loader._fetch.iter_raw", spy)


BIG = (132, 132)  # int32: ~70 KB a sample, more than the gap the fetcher reads across


def test_a_shuffled_window_yields_its_first_sample_after_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = write(tmp_path, n=80, per_shard=10, shape=BIG)
    view = atdata.Dataset[Item](urls).shuffled(seed=0, buffer_size=80)  # one window, 8 shards
    spy = _ReadSpy()
    spy.install(monkeypatch)
    it = iter(view)
    first = next(it)
    assert len(spy.reads) == 1 and len({url for url, *_ in spy.reads}) == 1
    assert first.label // 10 == urls.index(spy.reads[0][0])  # the read held the first sample
    rest = labels(it)
    assert sorted([first.label, *rest]) == list(range(80))
    assert len({url for url, *_ in spy.reads}) == 8


def test_a_reader_holds_a_bounded_number_of_bytes_whatever_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = write(tmp_path, n=100, per_shard=25, shape=BIG)
    hold = 1 << 20  # about 14 samples
    monkeypatch.setattr("atdata.loader._assemble.HOLD_BYTES", hold)
    spy = _ReadSpy()
    spy.install(monkeypatch)
    view = atdata.Dataset[Item](urls).shuffled(seed=1, buffer_size=100)  # 7 MB in one window
    yielded, peak = 0, 0
    for sample in view:
        peak = max(peak, spy.bytes_read - yielded)  # read, not yet handed on
        yielded += spy.spans[sample.__key__]
    assert yielded == spy.bytes_read == sum(spy.spans.values())  # every sample read once
    assert len(spy.spans) == 100
    assert peak <= hold + max(spy.spans.values())
    assert peak < yielded / 4  # far from the whole window


def test_dataloader_workers_read_only_their_own_samples(tmp_path: Path) -> None:
    urls = write(tmp_path / "data", n=60, per_shard=20, shape=BIG)
    log = tmp_path / "reads"
    log.mkdir()

    def count_reads(_: int) -> None:  # in each worker: log the samples it reads
        from atdata.loader import _fetch

        real = _fetch.iter_raw

        def spy(url: str, **kw: Any) -> Iterator[Any]:
            for raw in real(url, **kw):
                with open(log / str(os.getpid()), "a") as out:
                    out.write(f"{raw.key}\n")
                yield raw

        setattr(_fetch, "iter_raw", spy)  # noqa: B010 - the worker's own copy of the module

    view = atdata.Dataset[Item](urls).shuffled(seed=2, buffer_size=60, batch_size=4)
    got = labels(loader(view, 2, worker_init_fn=count_reads))
    assert got == labels(view)
    per_worker = [path.read_text().split() for path in log.iterdir()]
    assert len(per_worker) == 2
    assert sorted(per_worker[0] + per_worker[1]) == sorted(set(per_worker[0] + per_worker[1]))
    assert len(per_worker[0]) + len(per_worker[1]) == 60  # each sample read by one worker


@pytest.mark.parametrize("hold", [None, 1])
def test_a_truncated_shard_in_a_window_loses_only_its_unreadable_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hold: int | None
) -> None:
    if hold is not None:
        monkeypatch.setattr("atdata.loader._assemble.HOLD_BYTES", hold)
    urls = write(tmp_path, n=60, per_shard=15, shape=(16, 16))
    expected = labels(atdata.Dataset[Item](urls).shuffled(seed=4, buffer_size=60))
    index = ShardIndex(urls)
    index.counts()
    offsets = index.offsets(1)[0]
    with open(urls[1], "r+b") as shard:
        shard.truncate(int(offsets[7]) + 100)  # samples 7.. of shard 1 (labels 22..29) are cut
    view = atdata.Dataset[Item](urls, handler="skip").shuffled(seed=4, buffer_size=60)
    assert labels(view) == [x for x in expected if not 22 <= x < 30]


def test_the_default_window_spans_a_byte_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atdata.loader._plan import WINDOW_BYTES

    urls = write(tmp_path, n=40, per_shard=20, shape=BIG)
    view = atdata.Dataset[Item](urls).shuffled(seed=0)
    sample_bytes = sum(os.path.getsize(u) for u in urls) / 40
    assert view.buffer_size == int(WINDOW_BYTES // sample_bytes) < 10_000  # ~3,800 of 70 KB
    assert view.plan().window == view.buffer_size
    assert view.state_dict()["buffer_size"] == view.buffer_size
    again = atdata.Dataset[Item](urls).shuffled(seed=0)
    again.load_state_dict(view.state_dict())  # the same default: accepted
    with pytest.raises(ValueError, match="buffer_size"):
        atdata.Dataset[Item](urls).shuffled(seed=0, buffer_size=16).load_state_dict(
            view.state_dict()
        )
    monkeypatch.setattr("atdata.loader._plan.WINDOW_BYTES", 10 * 75_000)
    assert atdata.Dataset[Item](urls).shuffled(seed=0).buffer_size == 10  # the budget decides
    assert atdata.Dataset[Item](urls).shuffled(seed=0, buffer_size=7).buffer_size == 7
