"""The dataset as a torch IterableDataset: DataLoader workers and ranks see each sample once."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata.shards import ShardWriter

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, IterableDataset  # noqa: E402

N = 48


@atdata.packable
class Tensorish:
    image: NDArray
    label: str


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("torch")
    with ShardWriter(str(root / "s-%06d.tar"), maxcount=6, manifest=False) as sink:
        for i in range(N):
            sink.write(Tensorish(image=np.full((2, 3), i, np.float32), label=f"l{i}"))
    return sink.shards  # 8 shards


def all_keys() -> list[str]:
    return [f"sample_{i:08d}" for i in range(N)]


def test_is_an_iterable_dataset(shards: list[str]) -> None:
    ds = atdata.Dataset[Tensorish](shards)
    assert isinstance(ds, IterableDataset)
    assert isinstance(atdata.Dataset(shards), IterableDataset)


def test_dataloader_two_workers_sees_each_sample_once(shards: list[str]) -> None:
    ds = atdata.Dataset[Tensorish](shards)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    keys = [s.__key__ for s in loader]
    assert sorted(keys) == all_keys()
    assert isinstance(next(iter(loader)), Tensorish)


def test_two_ranks_two_workers_see_each_sample_once(shards: list[str]) -> None:
    seen: collections.Counter[str] = collections.Counter()
    for rank in range(2):
        ds = atdata.Dataset[Tensorish](shards, rank=rank, world_size=2)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        rank_keys = [s.__key__ for s in loader]
        assert len(rank_keys) == N // 2
        seen.update(rank_keys)
    assert sorted(seen) == all_keys() and set(seen.values()) == {1}


def test_untyped_samples_cross_worker_processes(shards: list[str]) -> None:
    loader = DataLoader(atdata.Dataset(shards), batch_size=None, num_workers=2)
    samples = list(loader)
    assert sorted(s.__key__ for s in samples) == all_keys()
    assert samples[0].image.shape == (2, 3)


def test_batches_through_a_dataloader(shards: list[str]) -> None:
    ds = atdata.Dataset[Tensorish](shards)
    loader = DataLoader(
        ds,
        batch_size=8,
        num_workers=2,
        collate_fn=lambda b: torch.from_numpy(np.stack([s.image for s in b])),
    )
    batches = list(loader)
    assert sum(b.shape[0] for b in batches) == N
    assert batches[0].shape == (8, 2, 3) and batches[0].dtype == torch.float32
    values = sorted(int(v) for b in batches for v in b[:, 0, 0])
    assert values == list(range(N))


def test_untyped_samples_become_tensors_and_keep_their_key(shards: list[str]) -> None:
    sample = next(iter(DataLoader(atdata.Dataset(shards), batch_size=None)))
    assert sample.__key__ == "sample_00000000"
    assert isinstance(sample["image"], torch.Tensor) and sample.label == "l0"
