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


def test_workers_share_one_download_of_a_remote_shard_without_a_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = write(tmp_path / "data")
    expected = labels(atdata.Dataset[Item](local).shuffled(seed=3, buffer_size=30))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with serve(tmp_path / "data") as (base, handler):
        remote = [f"{base}/{Path(u).name}" for u in local]
        view = atdata.Dataset[Item](remote).shuffled(seed=3, buffer_size=30)
        assert labels(loader(view, 2)) == expected
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
