"""Storage: local disk, memory://, s3:// and r2:// (loopback S3 server), http:// (http.server)."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata.errors import CredentialsError, StorageError, UnreadableURLError
from atdata.shards import ShardWriter, iter_shard, read_sample
from atdata.storage import FsspecStore, LocalStore, expand_urls, sibling, store_for


@atdata.packable
class Rec:
    vector: NDArray
    name: str


def write_recs(pattern: str, n: int, maxcount: int = 4) -> list[str]:
    with ShardWriter(pattern, maxcount=maxcount, manifest=False) as sink:
        for i in range(n):
            sink.write(Rec(vector=np.arange(i, i + 3, dtype=np.float32), name=f"r{i}"))
    return sink.shards


def names(ds: atdata.Dataset) -> list[str]:  # type: ignore[type-arg]
    return [s.name for s in ds.ordered()]


# -- the store interface ----------------------------------------------------------------


@pytest.fixture(params=["local", "memory"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path)
    return f"memory://atdata-test-{uuid.uuid4().hex[:8]}"


def test_store_verbs(store_root: str, tmp_path: Path) -> None:
    """Every store has the same verbs and the same behaviour."""
    store, path = store_for(f"{store_root}/dir/a.bin")
    store.write(path, b"hello world")
    assert store.exists(path) and store.size(path) == 11
    assert store.read(path) == b"hello world"
    assert store.range(path, 6, 5) == b"world"
    with store.open(path) as f:
        assert f.read() == b"hello world"
    local = tmp_path / "upload.bin"
    local.write_bytes(b"abc")
    _, other = store_for(f"{store_root}/dir/b.bin")
    store.put(str(local), other)
    assert store.read(other) == b"abc"
    listed = store.list(store_for(f"{store_root}/dir/*.bin")[1])
    assert [p.rsplit("/", 1)[1] for p in listed] == ["a.bin", "b.bin"]
    store.delete(path)
    store.delete(path)  # deleting twice is fine
    assert not store.exists(path)
    with pytest.raises(UnreadableURLError, match="No such file"):
        store.read(path)


def test_store_for_picks_the_store() -> None:
    assert isinstance(store_for("/tmp/x.tar")[0], LocalStore)
    assert store_for("file:///tmp/x.tar")[1] == "/tmp/x.tar"
    store, path = store_for("memory://b/x.tar")
    assert isinstance(store, FsspecStore) and path == "b/x.tar"
    with pytest.raises(UnreadableURLError, match="Cannot open nope://"):
        store_for("nope://b/x.tar")


def test_local_write_is_atomic(tmp_path: Path) -> None:
    store, path = store_for(str(tmp_path / "sub" / "f.bin"))
    store.write(path, b"x")
    assert os.listdir(tmp_path / "sub") == ["f.bin"]


def test_sibling() -> None:
    assert (
        sibling("s3://b/shard-000042.tar", ".manifest.json") == "s3://b/shard-000042.manifest.json"
    )


# -- URL expansion ----------------------------------------------------------------------


def test_expand_braces_globs_and_lists(tmp_path: Path) -> None:
    shards = write_recs(str(tmp_path / "s-%06d.tar"), 12)
    assert expand_urls(str(tmp_path / "s-{000000..000002}.tar")) == shards
    assert expand_urls(str(tmp_path / "s-*.tar")) == shards
    assert expand_urls([shards[2], shards[0], shards[2]]) == [shards[2], shards[0]]
    assert expand_urls(str(tmp_path / "**" / "*.tar")) == shards
    with pytest.raises(UnreadableURLError, match="No files match"):
        expand_urls(str(tmp_path / "nothing-*.tar"))


def test_missing_file_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing-000000.tar")
    with pytest.raises(UnreadableURLError) as info:
        list(atdata.Dataset[Rec](missing))
    assert missing in str(info.value) and info.value.url == missing


# -- memory:// --------------------------------------------------------------------------


def test_memory_urls() -> None:
    root = f"memory://atdata-{uuid.uuid4().hex[:8]}"
    shards = write_recs(f"{root}/s-%06d.tar", 10)
    assert shards[0] == f"{root}/s-000000.tar"
    assert names(atdata.Dataset[Rec](f"{root}/s-{{000000..000002}}.tar")) == [
        f"r{i}" for i in range(10)
    ]
    assert names(atdata.Dataset[Rec](f"{root}/s-*.tar")) == [f"r{i}" for i in range(10)]


# -- s3:// --------------------------------------------------------------------------------


def test_s3_write_and_read(s3_bucket: str) -> None:
    shards = write_recs(f"{s3_bucket}/train/s-%06d.tar", 10)
    assert shards == [f"{s3_bucket}/train/s-{i:06d}.tar" for i in range(3)]
    ds = atdata.Dataset[Rec](f"{s3_bucket}/train/s-{{000000..000002}}.tar")
    assert names(ds) == [f"r{i}" for i in range(10)]
    assert expand_urls(f"{s3_bucket}/train/*.tar") == shards
    batch = next(ds.ordered(batch_size=4))
    assert batch.vector.shape == (4, 3)
    # one range read fetches one sample
    _, offset, span = list(iter_shard(shards[1], Rec.from_bytes))[2]
    assert read_sample(shards[1], offset, span, Rec.from_bytes).name == "r6"
    # no temporary objects are left in the bucket
    store, path = store_for(s3_bucket)
    assert sorted(p.rsplit("/", 1)[1] for p in store.list(f"{path}/train/*")) == [
        "s-000000.tar",
        "s-000001.tar",
        "s-000002.tar",
    ]


def test_s3_missing_object(s3_bucket: str) -> None:
    with pytest.raises(UnreadableURLError, match="No such file"):
        list(atdata.Dataset[Rec](f"{s3_bucket}/nope.tar"))


# -- r2:// --------------------------------------------------------------------------------


def test_r2_urls_go_to_the_r2_endpoint(
    s3_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    monkeypatch.setenv("R2_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("R2_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("R2_SECRET_ACCESS_KEY", "testing")
    shards = write_recs(f"r2://{bucket}/s-%06d.tar", 6)
    assert shards == [f"r2://{bucket}/s-000000.tar", f"r2://{bucket}/s-000001.tar"]
    assert names(atdata.Dataset[Rec](f"r2://{bucket}/s-*.tar")) == [f"r{i}" for i in range(6)]
    # the objects really are in that bucket of the S3 API server
    assert names(atdata.Dataset[Rec](f"{s3_bucket}/s-*.tar")) == [f"r{i}" for i in range(6)]
    store, _ = store_for(f"r2://{bucket}/x")
    assert isinstance(store, FsspecStore)
    assert store.fs.client_kwargs.get("endpoint_url", store.fs.endpoint_url) == s3_server


def test_r2_endpoint_from_account_id(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.delenv("R2_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("R2_ACCOUNT_ID", "abc123")
    store, path = store_for("r2://bucket/key.tar")
    assert path == "bucket/key.tar"
    assert store.fs.endpoint_url == "https://abc123.r2.cloudflarestorage.com"


def test_r2_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("R2_ENDPOINT_URL", "R2_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialsError, match="R2_ACCOUNT_ID") as info:
        store_for("r2://bucket/key.tar")
    assert isinstance(info.value, StorageError)


# -- http(s):// ----------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain ``http.server`` (no Range support) serving ``tmp_path``; yields (folder, URL)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_reading(http_root: tuple[Path, str]) -> None:
    folder, base = http_root
    shards = write_recs(str(folder / "s-%06d.tar"), 10)
    ds = atdata.Dataset[Rec](f"{base}/s-{{000000..000002}}.tar")
    got = list(ds.ordered())
    assert expand_urls(f"{base}/s-*.tar") == [f"{base}/s-{i:06d}.tar" for i in range(3)]
    assert [s.name for s in got] == [f"r{i}" for i in range(10)]
    assert [s.__key__ for s in got] == [f"sample_{i:08d}" for i in range(10)]
    # a range read, even from a server that ignores Range headers
    _, offset, span = list(iter_shard(shards[2], Rec.from_bytes))[1]
    assert read_sample(f"{base}/s-000002.tar", offset, span, Rec.from_bytes).name == "r9"


def test_http_missing_file(http_root: tuple[Path, str]) -> None:
    _, base = http_root
    with pytest.raises(UnreadableURLError, match="No such file") as info:
        list(atdata.Dataset[Rec](f"{base}/missing.tar"))
    assert f"{base}/missing.tar" in str(info.value)


def test_s3_shards_appear_only_when_complete(s3_bucket: str) -> None:
    store, path = store_for(s3_bucket)
    sink = ShardWriter(f"{s3_bucket}/s-%06d.tar", maxcount=3, manifest=False)
    for i in range(4):  # shard 0 is committed; shard 1 is open
        sink.write(Rec(vector=np.zeros(2), name=f"r{i}"))
    assert [p.rsplit("/", 1)[1] for p in store.list(f"{path}/*")] == ["s-000000.tar"]
    sink.abort()
    assert [p.rsplit("/", 1)[1] for p in store.list(f"{path}/*")] == ["s-000000.tar"]


# -- literal URLs -----------------------------------------------------------------------


def test_literal_urls_name_one_object_whatever_their_characters(tmp_path: Path) -> None:
    from atdata.pipeline._trigger import Trigger
    from atdata.storage import LiteralURL

    for name in ("shard[1].tar", "*.tar", "100%.tar", "odd {a,b} ?.tar", "naïve ü.tar"):
        url = LiteralURL(str(tmp_path / name))
        assert expand_urls(url) == [url]
        with atdata.ShardWriter(url) as sink:
            sink.write({"__key__": "only", "msgpack": b"\x80"})
        assert sink.shards == [url] and os.path.exists(url)
        assert [s.__key__ for s in atdata.Dataset(url)] == ["only"]
    # a glob-looking name read literally reads that file alone, not its look-alikes
    assert len(atdata.Dataset(LiteralURL(str(tmp_path / "*.tar"))).shards) == 1
    assert len(atdata.Dataset(str(tmp_path / "*.tar")).shards) == 5
    trigger = Trigger.parse("s3://bkt/incoming/")
    assert isinstance(trigger.shard_url("incoming/shard[1].tar"), LiteralURL)
