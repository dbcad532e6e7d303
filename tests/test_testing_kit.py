"""atdata.testing as a user meets it: a separate test module run by pytest."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Optional

import numpy as np
import pytest

import atdata
from atdata.testing import ExampleSample, assert_datasets_equal, make_samples


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


@atdata.packable
class Everything:
    image: atdata.NDArray
    name: str
    count: int
    score: float
    flag: bool
    blob: bytes
    when: dt.datetime
    mood: Mood
    tags: list[str]
    extra: dict[str, float]
    mask: Optional[atdata.NDArray] = None  # noqa: UP045 - Optional is what users write


def test_make_samples_is_seeded_and_valid() -> None:
    first = make_samples(Everything, 20, seed=3)
    again = make_samples(Everything, 20, seed=3)
    other = make_samples(Everything, 20, seed=4)
    assert [s.packed for s in first] == [s.packed for s in again]
    assert [s.packed for s in first] != [s.packed for s in other]
    for s in first:
        back = Everything.from_bytes(s.packed)
        assert back.name == s.name and back.mood == s.mood
        assert np.array_equal(back.image, s.image)
    assert [s.__key__ for s in first][:2] == ["sample_00000000", "sample_00000001"]


def test_assert_datasets_equal_finds_the_difference(make_dataset) -> None:
    a = make_dataset(num_samples=30, shard_size=10, seed=1, name="a")
    b = make_dataset(num_samples=30, shard_size=15, seed=1, name="b")
    c = make_dataset(num_samples=30, shard_size=10, seed=2, name="c")
    assert_datasets_equal(a, b)
    with pytest.raises(AssertionError, match="sample 'sample_00000000'"):
        assert_datasets_equal(a, c)
    d = make_dataset(num_samples=29, shard_size=10, seed=1, name="d")
    with pytest.raises(AssertionError, match="1 only on the left"):
        assert_datasets_equal(a, d)


USER_TEST = """
import numpy as np
import pytest
import atdata
from atdata.testing import ExampleSample

@atdata.packable
class Label:
    label: str

@atdata.processor
def my_processor(sample: ExampleSample) -> Label:
    return Label(label=sample.label.upper())

def test_roadmap_example(tmp_dataset):
    result = tmp_dataset.map(my_processor)
    assert len(result.head(10)) == 10
    assert all(s.label.isupper() for s in result.head(10))

@pytest.mark.atdata_dataset(num_samples=12, shard_size=5)
def test_configured(tmp_dataset):
    assert len(tmp_dataset.shards) == 3
    assert len(tmp_dataset) == 12

def test_inline_executor(tmp_dataset, inline_executor, tmp_path):
    out = tmp_dataset.map(my_processor, output_prefix=str(tmp_path / "out"),
                          executor=inline_executor)
    assert len(out) == len(tmp_dataset)

def test_s3(s3_bucket):
    with atdata.ShardWriter(s3_bucket + "/x-%06d.tar") as sink:
        sink.write(ExampleSample(image=np.zeros((2, 2), "uint8"), label="a",
                                 confidence=0.5, tags=[]))
    ds = atdata.Dataset[ExampleSample](s3_bucket + "/x-000000.tar")
    assert [s.label for s in ds] == ["a"]
"""


def test_plugin_fixtures_from_a_user_test_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-q", "-W", "error")
    result.assert_outcomes(passed=4)


def test_example_sample_is_the_default_type(tmp_dataset) -> None:
    assert tmp_dataset.sample_type is ExampleSample
    assert len(tmp_dataset.shards) == 4
