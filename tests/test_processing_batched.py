"""Batched processors (``SampleBatch[In]`` in, many samples out), plain functions, progress.

Maps run on the ``"inline"`` executor unless the test is about another one;
the conformance suite in ``test_processing_executors.py`` runs a batched
processor on every executor.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata.errors import PartialFailureError, ProcessingError
from atdata.processing import InlineExecutor, LocalExecutor, job_status, processor
from atdata.processing._processor import DEFAULT_BATCH_SIZE, as_processor


@atdata.packable
class Image:
    pixels: atdata.NDArray
    label: int


@atdata.packable
class Embedding:
    vector: atdata.NDArray
    label: int
    batch: int  # the size of the batch the sample was in


def write_images(folder: Path, shards: int = 2, per_shard: int = 10) -> atdata.Dataset[Image]:
    """Keys ``img_00000``...; label = index; pixels = a 2x3 array of the index."""
    folder.mkdir(parents=True, exist_ok=True)
    with atdata.ShardWriter(str(folder / "img-%03d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            image = Image(pixels=np.full((2, 3), i, np.float32), label=i)
            sink.write(image.with_key(f"img_{i:05d}"))
    return atdata.Dataset[Image](str(folder / f"img-{{000..{shards - 1:03d}}}.tar"))


@pytest.fixture
def images(tmp_path: Path) -> atdata.Dataset[Image]:
    return write_images(tmp_path / "in")


def embed_rows(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
    vectors = batch.pixels.reshape(len(batch), -1) * 2  # one array op for the whole batch
    return [
        Embedding(vector=v, label=int(label), batch=len(batch))
        for v, label in zip(vectors, batch.label, strict=True)
    ]


@processor(batch_size=4)
def embed(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
    return embed_rows(batch)


@processor(batch_size=4)
def embed_lazily(batch: atdata.SampleBatch[Image]) -> Iterator[Embedding]:
    yield from embed_rows(batch)


@processor(batch_size=4)
def embed_as_batch(batch: atdata.SampleBatch[Image]) -> atdata.SampleBatch[Embedding]:
    return atdata.SampleBatch(embed_rows(batch))


def run(ds: atdata.Dataset[Any], fn: Any, out: Path, **options: Any) -> atdata.Dataset[Any]:
    options.setdefault("executor", "inline")
    return ds.map(fn, output_prefix=str(out), **options)


# -- the processor --------------------------------------------------------------------------


def test_a_sample_batch_parameter_makes_a_batched_processor() -> None:
    assert embed.batch_size == 4 and embed.input_type is Image
    assert embed.output_type is Embedding and embed.emits == "many"
    assert repr(embed) == "<processor embed: SampleBatch[Image] -> Embedding[] (batch_size=4)>"
    assert as_processor(embed_rows).batch_size == DEFAULT_BATCH_SIZE  # no decorator needed


def test_sample_batch_is_subscriptable_at_runtime() -> None:
    alias = atdata.SampleBatch[Image]
    batch = alias([Image(pixels=np.zeros(2), label=1)])
    assert isinstance(batch, atdata.SampleBatch) and batch.label.tolist() == [1]


def test_calling_a_batched_processor_on_one_sample_is_a_clear_error() -> None:
    one = Image(pixels=np.zeros((2, 3), np.float32), label=3)
    with pytest.raises(ProcessingError, match=r"batched processor: call it with a SampleBatch"):
        embed(one)
    (out,) = embed(atdata.SampleBatch([one]))
    assert out.label == 3 and out.batch == 1


def test_batch_size_needs_a_batch_parameter_and_batches_return_several() -> None:
    def single(image: Image) -> Embedding: ...

    with pytest.raises(ProcessingError, match=r"annotate its parameter `SampleBatch\[Image\]`"):
        processor(batch_size=8)(single)

    def returns_one(batch: atdata.SampleBatch[Image]) -> Embedding: ...

    with pytest.raises(ProcessingError, match="returns several samples"):
        processor(returns_one)

    def bare(batch: atdata.SampleBatch) -> list[Embedding]: ...  # type: ignore[type-arg]

    with pytest.raises(ProcessingError, match=r"SampleBatch\[T\]"):
        processor(bare)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        processor(batch_size=0)(embed_rows)


# -- the shard task ----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [embed, embed_lazily, embed_as_batch], ids=lambda f: f.name)
def test_batches_in_order_with_a_short_last_one(
    fn: Any, images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    out = list(run(images, fn, tmp_path / "out"))
    inputs = list(images)
    assert [s.__key__ for s in out] == [s.__key__ for s in inputs]
    assert [s.label for s in out] == list(range(20))
    assert all(
        np.array_equal(s.vector, i.pixels.ravel() * 2) for s, i in zip(out, inputs, strict=True)
    )
    # 10 samples per shard in batches of 4: 4, 4, 2 in each shard
    assert [s.batch for s in out] == ([4] * 8 + [2] * 2) * 2


def test_outputs_not_one_to_one_are_named_after_the_batch(
    images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    @processor(batch_size=5)
    def evens(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        return [e for e in embed_rows(batch) if e.label % 2 == 0]

    @processor(batch_size=5)
    def own_keys(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        return [e.with_key(f"mine-{e.label}") for e in embed_rows(batch)][:1]

    out = run(images, evens, tmp_path / "evens")
    keys = [s.__key__ for s in out]
    assert keys[:3] == ["img_00000_0", "img_00000_1", "img_00000_2"]
    assert [s.label for s in out] == list(range(0, 20, 2))
    mine = run(images, own_keys, tmp_path / "own")
    assert [s.__key__ for s in mine] == ["mine-0", "mine-5", "mine-10", "mine-15"]


def test_a_view_filter_applies_before_batching(
    images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    view = images.filter(lambda s: s.label % 10 < 5)  # 5 samples per shard remain
    out = list(run(view, embed, tmp_path / "out"))
    assert [s.label for s in out] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert [s.batch for s in out] == [4, 4, 4, 4, 1] * 2


def test_on_error_skip_skips_and_records_the_whole_batch(
    images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    @processor(batch_size=4)
    def fragile(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        if 5 in batch.label:
            raise ValueError("label 5 breaks the model")
        return embed_rows(batch)

    prefix = tmp_path / "out"
    out = run(images, fragile, prefix, on_error="skip")
    assert [s.label for s in out] == [0, 1, 2, 3, 8, 9, *range(10, 20)]
    status = job_status(str(prefix))
    assert status.shards[0].samples_skipped == 4
    assert status.shards[0].skipped_keys == [f"img_{i:05d}" for i in range(4, 8)]


def test_on_error_raise_names_the_batch(images: atdata.Dataset[Image], tmp_path: Path) -> None:
    @processor(batch_size=4)
    def broken(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        raise RuntimeError("out of GPU memory")

    with pytest.raises(PartialFailureError) as info:
        run(images, broken, tmp_path / "out")
    error = info.value.errors[images.shards[0]]
    assert "batch of 4 samples 'img_00000'..'img_00003'" in error
    assert "out of GPU memory" in error


def test_on_error_callable_is_called_once_per_failing_batch(
    images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    log = tmp_path / "errors.log"  # a copy of the callable runs, so it reports through the disk

    def record(exc: Exception) -> None:
        with log.open("a") as f:
            f.write(f"{exc}\n")

    @processor(batch_size=4)
    def fragile(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        if batch.label[0] >= 10:
            raise ValueError(f"batch from {batch.keys[0]}")
        return embed_rows(batch)

    out = run(images, fragile, tmp_path / "out", on_error=record)
    assert len(list(out)) == 10
    assert log.read_text().splitlines() == [
        "batch from img_00010",
        "batch from img_00014",
        "batch from img_00018",
    ]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("one", r"returned a Embedding for a batch; a batched processor returns a SampleBatch"),
        ("wrong", r"returned a Image, expected Embedding"),
    ],
)
def test_a_batch_of_the_wrong_type_fails_the_shard_clearly(
    result: str, message: str, images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    @processor(batch_size=4)
    def sloppy(batch: atdata.SampleBatch[Image]) -> list[Embedding]:
        if result == "one":
            return embed_rows(batch)[0]  # type: ignore[return-value]
        return list(batch)  # type: ignore[arg-type]

    with pytest.raises(PartialFailureError) as info:
        run(images, sloppy, tmp_path / "out")
    assert all(re.search(message, e) for e in info.value.errors.values()), info.value.errors


def test_none_from_a_batch_emits_nothing(images: atdata.Dataset[Image], tmp_path: Path) -> None:
    @processor(batch_size=4)
    def nothing(batch: atdata.SampleBatch[Image]) -> list[Embedding] | None:
        return None

    out = run(images, nothing, tmp_path / "out")
    assert list(out) == [] and job_status(str(tmp_path / "out")).complete


# -- plain functions --------------------------------------------------------------------------


def _scale(image: Image) -> Embedding:
    return Embedding(vector=image.pixels.ravel(), label=image.label, batch=0)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_plain_functions_map_without_a_decorator(
    executor: str, images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    for fn, name in ((_scale, "_scale"), (embed_rows, "embed_rows")):
        prefix = tmp_path / f"{executor}-{name}"
        out = run(images, fn, prefix, executor=executor)
        assert [s.label for s in out] == list(range(20))
        job = job_status(str(prefix)).job
        assert job.processor == name
        assert job.pipeline_version.startswith(f"{__name__}.{name}@")


def test_a_plain_functions_version_follows_its_code(
    images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    def scale(image: Image) -> Embedding:
        return Embedding(vector=image.pixels.ravel(), label=image.label, batch=0)

    first = as_processor(scale).version
    assert as_processor(scale).version == first  # stable

    def scale(image: Image) -> Embedding:  # type: ignore[no-redef]  # edited
        return Embedding(vector=image.pixels.ravel() + 1, label=image.label, batch=0)

    assert as_processor(scale).version != first


# -- progress from running tasks ------------------------------------------------------------------


def _slow(image: Image) -> Embedding:
    time.sleep(0.05)
    return _scale(image)


@pytest.mark.parametrize("make", [InlineExecutor, lambda: LocalExecutor(workers=1)])
def test_executors_report_samples_while_a_task_runs(
    make: Any, images: atdata.Dataset[Image], tmp_path: Path
) -> None:
    ds = atdata.Dataset[Image](images.shards[0])
    reports: list[tuple[str, int]] = []
    with make() as executor:
        assert executor.reports_progress
        ds.map(_slow, output_prefix=str(tmp_path / "warm"), executor=executor)
        from atdata.processing._serialize import dumps
        from atdata.processing._task import Payload, ShardTask

        payload = Payload(
            fn=as_processor(_slow),
            stored_type=Image,
            transform=ds.transform_one,
            output_type=Embedding,
            name="slow",
        )
        task = ShardTask(
            job_id="j",
            task_id="t",
            input_url=ds.shards[0],
            output_url=str(tmp_path / "o.tar"),
            payload=dumps(payload),
        )
        ((_, result),) = executor.map([task], progress=lambda t, n: reports.append((t.task_id, n)))
    assert result.ok and result.samples_in == 10
    # 10 samples of 50 ms, at most one report per 0.2 s: about two, never all ten
    assert 1 <= len(reports) <= 4
    assert all(t == "t" for t, _ in reports)
    counts = [n for _, n in reports]
    assert counts == sorted(counts) and 0 < counts[-1] <= 10


def test_the_progress_bar_counts_running_tasks_samples() -> None:
    from atdata._progress import Progress
    from atdata.processing._run import _MapProgress
    from atdata.processing._task import ShardResult, ShardTask

    a, b = (ShardTask("j", name, "in.tar", "out.tar", b"") for name in "ab")
    bar = Progress("embed", enabled=False, shards_total=2)
    counts = _MapProgress(bar)
    counts.running(a, 7)
    counts.running(b, 3)
    assert bar.samples == 10
    counts.running(a, 9)
    counts.finished(ShardResult(task_id="a", ok=True, samples_in=12))
    assert (bar.samples, bar.shards) == (15, 1)  # a finished with 12; b is at 3
    counts.finished(ShardResult(task_id="b", ok=True, samples_in=4))
    assert (bar.samples, bar.shards) == (16, 2)
