"""Tar shards: the writer (keys, splitting, atomic commit), the reader (stream, range, damage)."""

from __future__ import annotations

import glob
import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import warnings
from pathlib import Path

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata import observability as obs
from atdata.errors import SchemaError, SchemaMismatchError, ShardCorruptError, ShardError
from atdata.sample import DictSample
from atdata.shards import (
    ShardWriter,
    check_key,
    iter_shard,
    read_sample,
    sample_spans,
    split_key,
)
from atdata.shards._tar import BLOCK, TarFormatError, iter_members, member_header


@atdata.packable
class Item:
    image: NDArray
    label: str
    index: int


def item(i: int, shape: tuple[int, ...] = (4, 4)) -> Item:
    return Item(image=np.full(shape, i % 256, np.uint8), label=f"l{i}", index=i)


def write(pattern: str, n: int, shape: tuple[int, ...] = (4, 4), **options: object) -> list[str]:
    options.setdefault("manifest", False)
    with ShardWriter(pattern, **options) as sink:  # type: ignore[arg-type]
        for i in range(n):
            sink.write(item(i, shape))
    return sink.shards


def read_all(url: str, decode=Item.from_bytes, **kw):  # type: ignore[no-untyped-def]
    return [s for s, _, _ in iter_shard(url, decode, **kw)]


# -- writing ------------------------------------------------------------------------------


def test_pattern_and_maxcount(tmp_path: Path) -> None:
    shards = write(str(tmp_path / "out" / "shard-%06d.tar"), 25, maxcount=10)
    assert [os.path.basename(s) for s in shards] == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    counts = [len(read_all(s)) for s in shards]
    assert counts == [10, 10, 5]
    assert sorted(os.listdir(tmp_path / "out")) == [os.path.basename(s) for s in shards]


def test_maxsize_splits_shards(tmp_path: Path) -> None:
    # each sample is one 512-byte header plus ~1.5 KiB of data
    shards = write(str(tmp_path / "s-%06d.tar"), 20, shape=(1200,), maxsize=10_000)
    assert len(shards) > 3
    for s in shards:
        assert 1 <= len(read_all(s)) <= 4


def test_start_shard_and_single_file_pattern(tmp_path: Path) -> None:
    shards = write(str(tmp_path / "s-%03d.tar"), 3, maxcount=2, start_shard=7)
    assert [os.path.basename(s) for s in shards] == ["s-007.tar", "s-008.tar"]
    single = str(tmp_path / "one.tar")
    assert write(single, 3) == [single]
    with pytest.raises(ShardError, match="use a pattern with %06d"):
        write(single, 3, maxcount=2)


def test_bad_patterns_and_limits(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="needs a number field"):
        ShardWriter(str(tmp_path / "shards"), manifest=False)
    with pytest.raises(ValueError, match="positive"):
        ShardWriter(str(tmp_path / "s-%06d.tar"), maxcount=0, manifest=False)


def test_accepts_samples_records_dicts(tmp_path: Path) -> None:
    url = str(tmp_path / "s.tar")
    arr = np.arange(3, dtype=np.int16)
    with ShardWriter(url, manifest=False) as sink:
        k1 = sink.write(item(1))
        k2 = sink.write(item(2).as_wds)
        k3 = sink.write({"__key__": "raw", "msgpack": item(3).packed})
        k4 = sink.write({"image": arr, "label": "d", "index": 4})
        k5 = sink.write(DictSample.from_bytes(item(5).packed, key="from-dict"))
    assert [k1, k2, k3, k4, k5] == [
        "sample_00000000",
        "sample_00000001",
        "raw",
        "sample_00000003",
        "from-dict",
    ]
    got = read_all(url)
    assert [s.index for s in got] == [1, 2, 3, 4, 5]
    assert [s.__key__ for s in got] == [k1, k2, k3, k4, k5]
    np.testing.assert_array_equal(got[3].image, arr)


def test_refuses_other_things(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "s.tar"), manifest=False) as sink:
        with pytest.raises(SchemaError, match="cannot write a list"):
            sink.write([1, 2])
        with pytest.raises(SchemaError, match="must be bytes"):
            sink.write({"__key__": "a", "msgpack": "text"})


def test_sample_keys(tmp_path: Path) -> None:
    url = str(tmp_path / "s.tar")
    with ShardWriter(url, manifest=False, key_prefix="img-") as sink:
        sink.write(item(0).with_key("first"))
        sink.write(item(1))
        sink.write(item(2))
    assert [s.__key__ for s in read_all(url)] == ["first", "img-00000001", "img-00000002"]


def test_keys_are_deterministic(tmp_path: Path) -> None:
    a = write(str(tmp_path / "a-%06d.tar"), 30, maxcount=7)
    b = write(str(tmp_path / "b-%06d.tar"), 30, maxcount=7)
    for x, y in zip(a, b, strict=True):
        assert Path(x).read_bytes() == Path(y).read_bytes()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("a.b", "contains a dot"),
        ("", "non-empty string"),
        (5, "non-empty string"),
        ("x" * 93, "longer than 92 bytes"),
        ("nul\x00", "control characters"),
        ("../../etc/x", "not a relative name"),
        ("/abs/y", "not a relative name"),
        ("a//b", "not a relative name"),
        ("a/./b", "not a relative name"),
        ("a\\b", "not a relative name"),
    ],
)
def test_bad_keys(tmp_path: Path, key: object, message: str) -> None:
    with ShardWriter(str(tmp_path / "s.tar"), manifest=False) as sink:
        with pytest.raises(ShardError, match=message):
            sink.write({"__key__": key, "msgpack": item(0).packed})
        sink.write(item(0))  # the writer is still usable
    assert check_key("folder.v1/sample") == "folder.v1/sample"


def test_duplicate_keys(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "s-%06d.tar"), maxcount=1, manifest=False) as sink:
        sink.write(item(0).with_key("k"))
        with pytest.raises(ShardError, match=r"duplicate sample key 'k'.*unique") as info:
            sink.write(item(1).with_key("k"))
        assert isinstance(info.value, atdata.errors.AtdataError)
        sink.write(item(2))
    assert len(sink.shards) == 2


def test_error_in_with_block_discards_only_the_open_shard(tmp_path: Path) -> None:
    pattern = str(tmp_path / "s-%06d.tar")
    with pytest.raises(RuntimeError), ShardWriter(pattern, maxcount=3, manifest=False) as sink:
        for i in range(5):
            sink.write(item(i))
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["s-000000.tar"]  # no temporary files either
    assert len(read_all(str(tmp_path / "s-000000.tar"))) == 3


def test_close_returns_shards_and_empty_writer_writes_nothing(tmp_path: Path) -> None:
    sink = ShardWriter(str(tmp_path / "s-%06d.tar"), manifest=False)
    assert sink.close() == []
    assert os.listdir(tmp_path) == []


def test_output_is_plain_tar(tmp_path: Path) -> None:
    url = write(str(tmp_path / "s.tar"), 3)[0]
    with tarfile.open(url) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"sample_{i:08d}.msgpack" for i in range(3)]
        assert all(m.isfile() and m.mtime == 0 for m in members)
        data = tar.extractfile(members[1]).read()  # type: ignore[union-attr]
    assert Item.from_bytes(data).index == 1
    assert os.path.getsize(url) % (20 * BLOCK) == 0
    listing = subprocess.run(["tar", "tf", url], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == [m.name for m in members]


def test_webdataset_reads_atdata_shards(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    shards = write(str(tmp_path / "s-%06d.tar"), 12, maxcount=5)
    expected = [(s.__key__, s.packed) for url in shards for s in read_all(url)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webdataset's own deprecation notices
        got = [(r["__key__"], r["msgpack"]) for r in wds.WebDataset(shards, shardshuffle=False)]
    assert got == expected
    assert expected[3][1] == item(3).packed


@pytest.mark.parametrize("shape", [(300,), (300, 300)], ids=["small", "large"])
def test_offsets_match_tarfile(tmp_path: Path, shape: tuple[int, ...]) -> None:
    url = write(str(tmp_path / "s.tar"), 5, shape=shape)[0]
    with tarfile.open(url) as tar:
        offsets = [m.offset for m in tar.getmembers()]
    got = list(iter_shard(url, Item.from_bytes))
    assert [off for _, off, _ in got] == offsets
    for (sample, off, span), nxt in zip(got, [*offsets[1:], None], strict=True):
        if nxt is not None:
            assert off + span == nxt
        assert read_sample(url, off, span, Item.from_bytes).index == sample.index


def test_read_sample_errors(tmp_path: Path) -> None:
    url = write(str(tmp_path / "s.tar"), 3)[0]
    samples = list(iter_shard(url, Item.from_bytes))
    _, off, span = samples[1]
    with pytest.raises(ShardCorruptError, match="stale manifest offset") as info:
        read_sample(url, off + 100, span, Item.from_bytes)
    assert info.value.offset == off + 100 and url in str(info.value)
    size = os.path.getsize(url)
    with pytest.raises(ShardCorruptError, match="truncated"):
        read_sample(url, size - 10, span, Item.from_bytes)


@pytest.mark.parametrize("borrow", [False, True], ids=["from_bytes", "reader-decoder"])
def test_large_samples(tmp_path: Path, borrow: bool) -> None:
    """Samples bigger than the direct-read threshold, mixed with small ones."""
    from atdata.shards.reader import decoder_for

    url = str(tmp_path / "s.tar")
    shapes = [(8,), (300, 300), (8,), (100, 1000), (256, 256, 3), (8,)]
    with ShardWriter(url, manifest=False) as sink:
        for i, shape in enumerate(shapes):
            sink.write(item(i, shape))
    got = read_all(url, decoder_for(Item) if borrow else Item.from_bytes)
    assert [s.image.shape for s in got] == shapes
    for i, s in enumerate(got):
        assert (s.image == i).all() and s.image.flags.writeable
    got[3].image[...] = 0
    assert (got[4].image == 4).all()


@pytest.mark.parametrize("chunk_size", [512, 1000, 4096, 1 << 20])
def test_members_across_chunk_boundaries(tmp_path: Path, chunk_size: int) -> None:
    url = str(tmp_path / "s.tar")
    sizes = [0, 1, 511, 512, 513, 5000, 70_000, 3, 200_000, 10]
    with ShardWriter(url, manifest=False) as sink:
        for i, n in enumerate(sizes):
            sink.write({"__key__": f"k{i}", "msgpack": msgspec.msgpack.encode(b"x" * n)})
    with open(url, "rb") as f:
        members = [(m.name, m.size, bytes(m.data)) for m in iter_members(f, chunk_size)]
    assert [m[0] for m in members] == [f"k{i}.msgpack" for i in range(len(sizes))]
    assert [msgspec.msgpack.decode(m[2]) for m in members] == [b"x" * n for n in sizes]


def test_reads_tars_written_by_tarfile(tmp_path: Path) -> None:
    """Long names (pax/GNU), folders in keys and directories are handled."""
    url = str(tmp_path / "t.tar")
    long_key = "deep/" + "d" * 120 + "/sample"
    entries = {"plain": item(0), "folder/sample": item(1), long_key: item(2)}
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        with tarfile.open(url, "w", format=fmt) as tar:
            folder = tarfile.TarInfo("folder")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            for key, s in entries.items():
                info = tarfile.TarInfo(key + ".msgpack")
                info.size = len(s.packed)
                tar.addfile(info, io.BytesIO(s.packed))
        got = read_all(url)
        assert [s.__key__ for s in got] == list(entries)
        assert [s.index for s in got] == [0, 1, 2]


def test_non_sample_members_are_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "t.tar")
    with tarfile.open(url, "w") as tar:
        info = tarfile.TarInfo("a.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(ShardError, match=r"not an atdata sample.*webdataset package"):
        read_all(url)


def test_split_key() -> None:
    assert split_key("sample_1.msgpack") == ("sample_1", "msgpack")
    assert split_key("a.b/c.d.e") == ("a.b/c", "d.e")


# -- damage ---------------------------------------------------------------------------


@pytest.fixture
def shard(tmp_path: Path) -> str:
    return write(str(tmp_path / "good.tar"), 6, shape=(100,))[0]


def member_offsets(url: str) -> list[int]:
    return [off for _, off, _ in iter_shard(url, Item.from_bytes)]


def test_truncated_shard(shard: str, tmp_path: Path) -> None:
    offsets = member_offsets(shard)
    data = Path(shard).read_bytes()
    cut = str(tmp_path / "cut.tar")
    Path(cut).write_bytes(data[: offsets[3] + 700])  # inside the 4th sample
    with pytest.raises(ShardCorruptError) as info:
        read_all(cut)
    assert info.value.url == cut and info.value.offset == offsets[3]
    assert cut in str(info.value) and f"byte {offsets[3]}" in str(info.value)
    assert "handler='skip'" in str(info.value)
    # cut exactly between members: no end-of-archive marker
    Path(cut).write_bytes(data[: offsets[2]])
    with pytest.raises(ShardCorruptError, match=f"at byte {offsets[2]}.*truncated"):
        read_all(cut)
    # cut inside a header
    Path(cut).write_bytes(data[: offsets[2] + 100])
    with pytest.raises(ShardCorruptError, match="inside a tar header"):
        read_all(cut)


def test_garbage_shard(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.tar"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ShardCorruptError) as info:
        read_all(str(bad))
    assert info.value.offset == 0 and "not a tar header" in str(info.value)
    assert str(bad) in str(info.value)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with pytest.raises(ShardCorruptError, match="at byte 0"):
        read_all(str(empty))


def test_garbage_after_good_samples(shard: str, tmp_path: Path) -> None:
    offsets = member_offsets(shard)
    data = bytearray(Path(shard).read_bytes())
    data[offsets[4] : offsets[4] + BLOCK] = b"\xab" * BLOCK  # smash a header
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(ShardCorruptError) as info:
        read_all(str(bad))
    assert info.value.offset == offsets[4]


def corrupt_sample_shard(tmp_path: Path) -> str:
    """A valid tar whose second member is not msgpack."""
    url = str(tmp_path / "bad-sample.tar")
    with ShardWriter(url, manifest=False) as sink:
        sink.write(item(0))
        sink.write({"__key__": "broken", "msgpack": b"\xc1\xc1\xc1 not msgpack"})
        sink.write(item(2))
    return url


def test_corrupt_sample_raises_by_default(tmp_path: Path) -> None:
    url = corrupt_sample_shard(tmp_path)
    with pytest.raises(ShardCorruptError, match="sample 'broken'") as info:
        read_all(url)
    assert info.value.key == "broken" and info.value.offset == 1024


def test_skip_mode_counts(tmp_path: Path) -> None:
    url = corrupt_sample_shard(tmp_path)
    before = obs.metrics.samples_skipped.value
    got = read_all(url, handler="skip")
    assert [s.index for s in got] == [0, 2]
    assert obs.metrics.samples_skipped.value - before == 1
    # a truncated shard under skip: the samples before the damage survive, counted once
    data = Path(url).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:2700])  # inside the third sample
    before = obs.metrics.samples_skipped.value
    got = read_all(str(cut), handler="skip")
    assert [s.index for s in got] == [0]
    assert obs.metrics.samples_skipped.value - before == 2


def test_warn_mode_and_callable_handler(tmp_path: Path) -> None:
    url = corrupt_sample_shard(tmp_path)
    with pytest.warns(RuntimeWarning, match="corrupt at byte 1024"):
        assert len(read_all(url, handler="warn")) == 2
    seen: list[ShardCorruptError] = []
    assert len(read_all(url, handler=seen.append)) == 2
    assert [e.key for e in seen] == ["broken"]


def test_dataset_skip_mode(tmp_path: Path) -> None:
    url = corrupt_sample_shard(tmp_path)
    ds = atdata.Dataset[Item](url, handler="skip")
    assert [s.index for s in ds] == [0, 2]
    with pytest.raises(ShardCorruptError):
        list(atdata.Dataset[Item](url))


def test_wrong_type_is_a_mismatch_not_corruption(shard: str) -> None:
    @atdata.packable
    class Other:
        name: str

    with pytest.raises(SchemaMismatchError) as info:
        read_all(shard, Other.from_bytes, handler="skip")
    assert info.value.url == shard and info.value.key == "sample_00000000"
    assert shard in str(info.value)


def test_tar_format_error_has_offset() -> None:
    stream = io.BytesIO(member_header(b"a.msgpack", 10_000) + b"x" * 100)
    with pytest.raises(TarFormatError) as info:
        list(iter_members(stream))
    assert info.value.offset == 0 and "needs" in info.value.reason


# -- atomic commit ---------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import atdata
    from numpy.typing import NDArray

    @atdata.packable
    class Item:
        image: NDArray
        label: str
        index: int

    sink = atdata.ShardWriter(sys.argv[1], maxcount=50, manifest=False)
    for i in range(60):  # one full shard, then 10 samples into the second
        sink.write(Item(image=np.zeros((64, 64), np.uint8), label="x", index=i))
    while not os.path.exists(sys.argv[1] % 0):  # shard 0 commits in the background
        time.sleep(0.01)
    print("mid-shard", flush=True)
    while True:
        sink.write(Item(image=np.zeros((64, 64), np.uint8), label="x", index=i))
        i += 1
        if i % 40 == 0:  # stay inside shard 1: never reach its 50th sample
            time.sleep(60)
    """
)


def test_sigkill_mid_shard_leaves_no_final_file(tmp_path: Path) -> None:
    pattern = str(tmp_path / "shard-%06d.tar")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, pattern], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "mid-shard"
        deadline = time.monotonic() + 10
        while not glob.glob(str(tmp_path / ".shard-000001.tar.tmp-*")):
            assert time.monotonic() < deadline, "the writer never started shard 1"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "shard-000001.tar").exists()
    assert atdata.storage.expand_urls(str(tmp_path / "shard-*.tar")) == [
        str(tmp_path / "shard-000000.tar")
    ]
    assert [s.index for s in read_all(str(tmp_path / "shard-000000.tar"))] == list(range(50))
    # a rerun overwrites whatever is left
    write(pattern, 3)
    assert len(read_all(str(tmp_path / "shard-000000.tar"))) == 3


class _FailingFile(io.FileIO):
    """A file whose writes fail once it holds more than a few bytes (a full disk)."""

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        if self.tell() > 100:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_write_errors_surface_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import atdata.shards.writer as writer_module

    monkeypatch.setattr(
        writer_module, "open", lambda path, *a, **k: _FailingFile(path, "w"), raising=False
    )
    pattern = str(tmp_path / "s-%06d.tar")
    with pytest.raises(ShardError, match="No space left on device"):  # noqa: SIM117
        with ShardWriter(pattern, manifest=False) as sink:
            for i in range(2000):  # enough to pass several blocks to the I/O thread
                sink.write(item(i, (64, 64)))
    assert os.listdir(tmp_path) == []


def test_duplicates_of_generated_keys(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "s.tar"), manifest=False) as sink:
        sink.write(item(0))  # sample_00000000
        sink.write(item(1).with_key("sample_00000005"))  # index 1 brings its own key
        with pytest.raises(ShardError, match="duplicate sample key 'sample_00000000'"):
            sink.write(item(2).with_key("sample_00000000"))
        sink.write(item(2).with_key("sample_00000001"))  # index 1 was never generated
        sink.write(item(3))
        sink.write(item(4))
        with pytest.raises(ShardError, match="duplicate sample key 'sample_00000005'"):
            sink.write(item(5))  # would generate a key a sample already brought
        sink.write(item(6).with_key("sample_0000009"))  # not the generated form
    keys = [s.__key__ for s in read_all(str(tmp_path / "s.tar"))]
    assert len(keys) == len(set(keys)) == 6


def range_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The ``(offset, size)`` of every local range read from now on."""
    from atdata.storage import LocalStore

    calls: list[tuple[int, int]] = []
    real = LocalStore.range

    def counting(self: LocalStore, path: str, offset: int, size: int) -> bytes:
        calls.append((offset, size))
        return real(self, path, offset, size)

    monkeypatch.setattr(LocalStore, "range", counting)
    return calls


def test_read_sample_is_one_range_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atdata.storage import LocalStore

    url = write(str(tmp_path / "s.tar"), 4, shape=(2000,))[0]
    located = list(iter_shard(url, Item.from_bytes))
    calls = range_reads(monkeypatch)
    monkeypatch.setattr(LocalStore, "open", lambda *a: pytest.fail("read_sample streamed"))
    _, offset, span = located[2]
    assert read_sample(url, offset, span, Item.from_bytes).index == 2
    assert calls == [(offset, span)]


def test_read_samples_shares_a_range_read_and_checks_every_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atdata.shards.reader import SampleLocation, read_samples

    url = write(str(tmp_path / "s.tar"), 10, shape=(300,))[0]
    located = iter_shard(url, Item.from_bytes)
    spans = {i: (offset, span) for i, (_, offset, span) in enumerate(located)}

    def at(i: int, key: str | None = None) -> SampleLocation:
        return SampleLocation(url, f"sample_{i:08d}" if key is None else key, *spans[i])

    calls = range_reads(monkeypatch)
    got = [s.index for _, s in read_samples([at(1), at(2), at(5), at(9)], Item.from_bytes)]
    assert got == [1, 2, 5, 9] and len(calls) == 1  # the gaps' samples are read past, not kept

    with pytest.raises(ShardCorruptError, match="expected sample 'sample_00000004'"):
        list(read_samples([at(1), at(5, key="sample_00000004")], Item.from_bytes))
    inside = SampleLocation(url, "", spans[5][0] + BLOCK, spans[5][1] - BLOCK)  # mid-member
    with pytest.raises(ShardCorruptError, match="stale manifest offset"):
        list(read_samples([at(1), inside], Item.from_bytes))


def test_commit_errors_surface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atdata.errors import StorageError
    from atdata.storage import LocalStore

    def refuse(self: LocalStore, local_path: str, path: str) -> None:
        raise StorageError(f"cannot put {path}", url=path)

    monkeypatch.setattr(LocalStore, "put", refuse)
    with pytest.raises(StorageError, match="cannot put"):  # noqa: SIM117
        with ShardWriter(str(tmp_path / "s-%06d.tar"), maxcount=2, manifest=False) as sink:
            for i in range(5):
                sink.write(item(i))
    assert os.listdir(tmp_path) == []
    sink = ShardWriter(str(tmp_path / "t-%06d.tar"), manifest=False)
    sink.write(item(0))
    with pytest.raises(StorageError, match="cannot put"):
        sink.close()
    assert os.listdir(tmp_path) == []


def test_a_rerun_removes_what_killed_writers_left(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".s-000000.tar.tmp-{dead.pid}-123"
    leftover.write_bytes(b"half a shard")
    alive = tmp_path / f".s-000000.tar.tmp-{os.getpid()}-456"  # ours: in use
    alive.write_bytes(b"in use")
    other = tmp_path / ".unrelated.tmp-1-1"
    other.write_bytes(b"not ours")
    with ShardWriter(str(tmp_path / "s-%06d.tar")) as sink:
        sink.write({"__key__": "k", "msgpack": b"\x80"})
    assert not leftover.exists() and alive.exists() and other.exists()


def test_only_a_number_field_makes_a_pattern(tmp_path: Path) -> None:
    assert write(str(tmp_path / "a%20b.tar"), 1) == [str(tmp_path / "a%20b.tar")]
    assert write(str(tmp_path / "100%-%04d.tar"), 2, maxcount=1) == [
        str(tmp_path / "100%-0000.tar"),
        str(tmp_path / "100%-0001.tar"),
    ]


def test_sample_spans_match_the_manifest_without_reading_the_data(tmp_path: Path) -> None:
    (url,) = write(str(tmp_path / "s-%06d.tar"), 20, shape=(64, 64), manifest=True)
    rows = atdata.manifest.load_manifests(url)[0].read_table(["__offset__", "__size__"])
    expected = list(zip(rows["__offset__"].to_pylist(), rows["__size__"].to_pylist(), strict=True))
    assert sample_spans(url) == expected
    data = Path(url).read_bytes()
    Path(url).write_bytes(data[: expected[-1][0] + 100])  # cut inside the last sample
    with pytest.raises(ShardCorruptError, match=r"s-000000\.tar"):
        sample_spans(url)
