"""Dataset[T]: URLs, ordered and shuffled iteration, batches, views, ranks, load_dataset."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata.dataset import Dataset, DatasetDict, SampleBatch, load_dataset
from atdata.errors import SchemaError, UnreadableURLError
from atdata.sample import DictSample
from atdata.shards import ShardWriter


@atdata.packable
class Img:
    image: NDArray
    label: str
    score: float
    mask: NDArray | None = None


N = 50
SHAPE = (8, 6, 3)


def make(i: int) -> Img:
    return Img(image=np.full(SHAPE, i % 256, np.uint8), label=f"l{i % 3}", score=i / N)


def write(pattern: str, n: int = N, maxcount: int = 10, start: int = 0) -> list[str]:
    with ShardWriter(pattern, maxcount=maxcount, manifest=False, key_prefix=f"k{start}_") as sink:
        for i in range(start, start + n):
            sink.write(make(i))
    return sink.shards


@pytest.fixture
def shards(tmp_path: Path) -> list[str]:
    return write(str(tmp_path / "data-%06d.tar"))


def scores(samples) -> list[float]:  # type: ignore[no-untyped-def]
    return [s.score for s in samples]


# -- URLs ---------------------------------------------------------------------------------


def test_brace_glob_list_and_path_inputs(shards: list[str], tmp_path: Path) -> None:
    expected = [i / N for i in range(N)]
    for urls in (
        str(tmp_path / "data-{000000..000004}.tar"),
        str(tmp_path / "data-*.tar"),
        shards,
        tmp_path / "data-000000.tar",
    ):
        ds = Dataset[Img](urls)  # type: ignore[arg-type]
        got = scores(ds)
        assert got == (expected if not isinstance(urls, Path) else expected[:10])
    assert Dataset[Img](str(tmp_path / "data-*.tar")).shards == shards


def test_typed_and_untyped(shards: list[str]) -> None:
    typed = Dataset[Img](shards)
    assert typed.sample_type is Img and isinstance(typed, Dataset)
    assert all(isinstance(s, Img) for s in typed)
    untyped = Dataset(shards)
    first = next(iter(untyped))
    assert isinstance(first, DictSample) and first.label == "l0"
    assert first.image.shape == SHAPE
    assert "Dataset[Img]" in repr(typed)


def test_bad_type_and_no_urls() -> None:
    with pytest.raises(SchemaError, match=r"@atdata.packable"):
        Dataset[int]
    with pytest.raises(UnreadableURLError, match="at least one"):
        Dataset[Img]([])


# -- iteration ----------------------------------------------------------------------------


def test_ordered_exposes_keys(shards: list[str]) -> None:
    got = list(Dataset[Img](shards).ordered())
    assert [s.__key__ for s in got] == [f"k0_{i:08d}" for i in range(N)]


def test_batches_stack_arrays(shards: list[str]) -> None:
    batches = list(Dataset[Img](shards).ordered(batch_size=16))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    first = batches[0]
    assert isinstance(first, SampleBatch)
    assert first.image.shape == (16, *SHAPE) and first.image.dtype == np.uint8
    assert first.image[3, 0, 0, 0] == 3
    assert first.label[:4] == ["l0", "l1", "l2", "l0"]
    assert first.score[1] == pytest.approx(1 / N)
    assert first.mask == [None] * 16  # optional arrays that are absent stay a list
    assert first.keys[:2] == ["k0_00000000", "k0_00000001"]
    assert [s.score for s in first][:2] == [0.0, 1 / N] and first[0].score == 0.0
    assert repr(first) == "SampleBatch[Img](size=16)"
    with pytest.raises(AttributeError, match="no field 'nope'"):
        first.nope  # noqa: B018


def test_batches_of_32(tmp_path: Path) -> None:
    shards = write(str(tmp_path / "b-%06d.tar"), n=64, maxcount=20)
    batch = next(Dataset[Img](shards).shuffled(seed=1, batch_size=32))
    assert batch.image.shape == (32, 8, 6, 3)


def test_shuffled_is_deterministic(shards: list[str]) -> None:
    ds = Dataset[Img](shards)
    a = scores(ds.shuffled(buffer_size=16, seed=42))
    b = scores(ds.shuffled(buffer_size=16, seed=42))
    c = scores(ds.shuffled(buffer_size=16, seed=7))
    assert a == b
    assert a != c
    assert sorted(a) == sorted(c) == [i / N for i in range(N)]
    assert a != sorted(a)
    unseeded = scores(ds.shuffled(buffer_size=16))
    assert sorted(unseeded) == sorted(a)


def test_shuffled_batches(shards: list[str]) -> None:
    ds = Dataset[Img](shards)
    batches = list(ds.shuffled(buffer_size=8, seed=3, batch_size=8))
    assert sum(len(b) for b in batches) == N and batches[0].image.shape == (8, *SHAPE)
    again = list(ds.shuffled(buffer_size=8, seed=3, batch_size=8))
    assert [b.keys for b in batches] == [b.keys for b in again]


def test_head(shards: list[str]) -> None:
    ds = Dataset[Img](shards)
    assert scores(ds.head(3)) == [0.0, 1 / N, 2 / N]
    assert len(ds.head()) == 5
    assert len(ds.head(1000)) == N


def test_filter_view(shards: list[str]) -> None:
    ds = Dataset[Img](shards)
    high = ds.filter(lambda s: s.score >= 0.9)
    assert scores(high) == [i / N for i in range(45, 50)]
    assert scores(ds)[:1] == [0.0]  # the original is unchanged


def test_a_filtered_view_has_no_length_or_positions(shards: list[str]) -> None:
    high = Dataset[Img](shards).filter(lambda s: s.score >= 0.9)
    with pytest.raises(TypeError, match="filtered"):
        len(high)
    with pytest.raises(TypeError, match="filtered"):
        high[0]
    assert len(list(high)) == 5  # list() still works: the length is only "unknown"


# -- random access ------------------------------------------------------------------------


@pytest.mark.parametrize("manifests", [True, False], ids=["manifests", "scanned"])
def test_indexing_reads_the_sample_iteration_yields_there(tmp_path: Path, manifests: bool) -> None:
    pattern = str(tmp_path / "data-%06d.tar")
    with ShardWriter(pattern, maxcount=7, manifest=manifests) as sink:
        for i in range(N):
            sink.write(make(i))
    ds = Dataset[Img](sink.shards)
    every = list(ds)

    for position in (0, 6, 7, 31, N - 1, -1, -N):
        got, want = ds[position], every[position]
        assert (got.__key__, got.score) == (want.__key__, want.score)
        assert np.array_equal(got.image, want.image)
    assert scores(ds[5:12]) == scores(every[5:12])  # across a shard boundary
    assert scores(ds[::-9]) == scores(every[::-9])
    assert ds[N:] == [] and ds[3:3] == []


@pytest.mark.parametrize("position", [N, -N - 1, 10**9])
def test_an_index_out_of_range_says_how_many_samples_there_are(
    shards: list[str], position: int
) -> None:
    with pytest.raises(IndexError, match=f"the dataset has {N}"):
        Dataset[Img](shards)[position]


def test_indexing_rejects_what_is_not_a_position(shards: list[str]) -> None:
    with pytest.raises(TypeError):
        Dataset[Img](shards)["k0_000001"]  # type: ignore[call-overload]  # ds.get(key) does this


def test_indexing_a_view_applies_its_lens(shards: list[str]) -> None:
    @atdata.packable
    class Score:
        score: float

    @atdata.lens
    def score_only(img: Img) -> Score:
        return Score(score=img.score)

    assert Dataset[Img](shards).as_type(Score)[3] == Score(score=3 / N)


def test_a_manifest_whose_rows_disagree_with_its_count_is_named(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    with ShardWriter(str(tmp_path / "data-%06d.tar"), maxcount=10) as sink:
        for i in range(20):
            sink.write(make(i))
    rows = tmp_path / "data-000000.manifest.parquet"
    pq.write_table(pq.read_table(rows).slice(0, 5), rows)  # hostile or stale: 10 counted, 5 rows

    ds = Dataset[Img](sink.shards)
    with pytest.raises(atdata.errors.ManifestError, match=r"5 rows, but the header says .* 10"):
        ds[4]
    assert ds[14].score == 14 / N  # the other shard reads


def test_pickles(shards: list[str]) -> None:
    ds = Dataset[Img](shards, handler="skip")
    other = pickle.loads(pickle.dumps(ds))
    assert type(other) is type(ds) and other.handler == "skip"
    assert scores(other) == scores(ds)


# -- ranks ------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_ranks_get_equal_shares_and_never_a_sample_twice(shards: list[str], world: int) -> None:
    seen: collections.Counter[str] = collections.Counter()
    counts = []
    for rank in range(world):
        view = Dataset[Img](shards, rank=rank, world_size=world).ordered()
        keys = [s.__key__ for s in view]
        assert len(keys) == len(view) == N // world  # the remainder is dropped
        counts.append(len(keys))
        seen.update(keys)
    assert set(seen.values()) == {1} and len(seen) == world * (N // world)


@pytest.mark.parametrize("world", [2, 3, 7])
def test_ranks_without_drop_last_pad_by_repeating(shards: list[str], world: int) -> None:
    seen: collections.Counter[str] = collections.Counter()
    for rank in range(world):
        view = Dataset[Img](shards, rank=rank, world_size=world).ordered(drop_last=False)
        keys = [s.__key__ for s in view]
        assert len(keys) == len(view) == -(-N // world)
        seen.update(keys)
    assert sorted(seen) == [f"k0_{i:08d}" for i in range(N)]  # every sample read
    assert sum(seen.values()) - N == -N % world  # and only the padding twice


def test_ranks_shuffled_see_every_sample_once(shards: list[str]) -> None:
    seen: collections.Counter[str] = collections.Counter()
    for rank in range(2):
        ds = Dataset[Img](shards, rank=rank, world_size=2)
        seen.update(s.__key__ for s in ds.shuffled(buffer_size=4, seed=5))
    assert len(seen) == N and set(seen.values()) == {1}


def test_ranks_must_share_a_seed(shards: list[str]) -> None:
    with pytest.raises(ValueError, match="seed every rank shares"):
        Dataset[Img](shards, rank=0, world_size=2).shuffled()


def test_rank_from_environment(shards: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "5")
    assert len(list(Dataset[Img](shards))) == 10


# -- load_dataset ---------------------------------------------------------------------------


def test_load_dataset_splits_from_file_names(tmp_path: Path) -> None:
    root = tmp_path / "test-data"  # a split word above the dataset folder does not count
    write(str(root / "train-%06d.tar"), n=20, maxcount=10)
    write(str(root / "valid-%06d.tar"), n=5, start=100)
    write(str(root / "test-%06d.tar"), n=7, start=200)
    dd = load_dataset(str(root), Img)
    assert isinstance(dd, DatasetDict) and sorted(dd) == ["test", "train", "validation"]
    assert len(list(dd["train"])) == 20 and len(dd["train"].shards) == 2
    assert len(list(dd["validation"])) == 5 and len(list(dd["test"])) == 7
    assert "DatasetDict" in repr(dd)
    only = load_dataset(str(root), Img, split="test")
    assert isinstance(only, Dataset) and only.sample_type is Img
    assert scores(only)[0] == 200 / N
    with pytest.raises(UnreadableURLError, match=r"No split 'dev'.*available splits"):
        load_dataset(str(root), Img, split="dev")


def test_load_dataset_splits_from_folders(tmp_path: Path) -> None:
    write(str(tmp_path / "ds" / "train" / "shard-%06d.tar"), n=10)
    write(str(tmp_path / "ds" / "validation" / "shard-%06d.tar"), n=4, start=50)
    dd = load_dataset(str(tmp_path / "ds"))
    assert sorted(dd) == ["train", "validation"]
    sample = next(iter(dd["validation"]))
    assert isinstance(sample, DictSample) and sample.label == "l2"


def test_load_dataset_single_split_and_patterns(tmp_path: Path) -> None:
    shards = write(str(tmp_path / "testing-runs" / "shard-%06d.tar"), n=10, maxcount=5)
    ds = load_dataset(str(tmp_path / "testing-runs"), Img)
    assert isinstance(ds, Dataset) and ds.shards == shards  # one split: a Dataset
    assert load_dataset(shards, Img, split="train").shards == shards
    dd = load_dataset(str(tmp_path), Img, data_files={"eval": str(tmp_path / "*" / "*.tar")})
    assert isinstance(dd, Dataset) and len(list(dd)) == 10
    with pytest.raises(UnreadableURLError, match=r"No such folder: .*nothing/"):
        load_dataset(str(tmp_path / "testing-runs" / "nothing") + "/")


def test_batch_stacking_matches_numpy() -> None:
    same = [np.full((2, 3), i, np.int16) for i in range(5)]
    batch = SampleBatch([Img(image=a, label="x", score=0.0, mask=np.array(1.5)) for a in same])
    np.testing.assert_array_equal(batch.image, np.stack(same))
    assert batch.image.dtype == np.int16 and batch.image.flags.writeable
    assert batch.mask.shape == (5,)  # 0-d arrays stack too
    mixed = SampleBatch(
        [
            Img(image=np.zeros((2, 2)), label="a", score=0.0),
            Img(image=np.zeros((3, 2)), label="b", score=0.0),
        ]
    )
    with pytest.raises(ValueError, match="same shape"):
        mixed.image  # noqa: B018
