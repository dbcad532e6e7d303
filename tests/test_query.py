"""Queries over manifests: pruning, vectorised filtering, fallback, SQL, direct access."""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import atdata
from atdata import Dataset, ShardWriter
from atdata import observability as obs
from atdata.errors import ManifestError, QueryError, SampleNotFoundError
from atdata.manifest import QueryResult, SampleLocation
from atdata.shards.reader import iter_shard

SEED = 20240601  # the random datasets below are drawn from random.Random(SEED)
LABELS = ["dog", "cat", "bird", "fish", "horse", "zebra"]
TAGS = ["outdoor", "indoor", "night", "day", "blurry"]
UTC = dt.UTC
START = dt.datetime(2024, 1, 1, tzinfo=UTC)


class Weather(enum.Enum):
    SUNNY = "sunny"
    RAINY = "rainy"


@atdata.packable
class ImageSample:
    image: atdata.NDArray
    label: str
    confidence: float
    tags: list[str]
    width: int
    taken_at: dt.datetime
    flagged: bool
    weather: Weather
    camera: str | None = None


def make_samples(n: int, seed: int = SEED) -> list[ImageSample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        # zebras only appear in a narrow band of the data: aggregates can prune them
        label = "zebra" if 400 <= i < 440 else rng.choice(LABELS[:-1])
        out.append(
            ImageSample(
                image=np.full((2, 2, 3), i % 256, dtype=np.uint8),
                label=label,
                confidence=rng.random(),
                tags=rng.sample(TAGS, rng.randint(0, 3)),
                width=rng.randint(16, 4096),
                taken_at=START + dt.timedelta(hours=i) + dt.timedelta(minutes=rng.randint(0, 59)),
                flagged=rng.random() < 0.1,
                weather=rng.choice(list(Weather)),
                camera=rng.choice([None, "canon", "nikon"]),
            )
        )
    return out


def write(samples: list[Any], pattern: str, per_shard: int, **kwargs: Any) -> list[str]:
    with ShardWriter(pattern, maxcount=per_shard, **kwargs) as sink:
        for s in samples:
            sink.write(s.as_wds)
    return sink.shards


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Dataset[ImageSample], list[ImageSample]]:
    folder = tmp_path_factory.mktemp("query")
    samples = make_samples(1200)
    shards = write(samples, str(folder / "shard-%06d.tar"), 40)
    assert len(shards) == 30
    return Dataset[ImageSample](str(folder / "shard-{000000..000029}.tar")), samples


def brute_force(ds: Dataset[Any], predicate: Callable[[Any], Any]) -> list[SampleLocation]:
    """Read every sample of every shard and test it: what a query must equal."""
    out = []
    for url in ds.shards:
        for sample, offset, span in iter_shard(url, ds.sample_type.from_bytes):
            if predicate(sample):
                out.append(SampleLocation(url, sample.__key__, offset, span))
    return out


# -- the roadmap's query ---------------------------------------------------------------------------


def test_roadmap_lambda_equals_brute_force(dataset):
    ds, _ = dataset
    result = ds.query(where=lambda m: m.confidence > 0.9 and m.label in ["dog", "cat"])
    expected = brute_force(ds, lambda m: m.confidence > 0.9 and m.label in ["dog", "cat"])
    assert len(expected) > 20, f"seed {SEED} gave too few matches"
    assert list(result) == expected, f"seed {SEED}"
    assert result.vectorized
    assert result.count == len(result) == len(expected)
    assert result.shards_scanned + result.shards_pruned == len(ds.shards)
    for loc in result[:5]:
        sample = ds.get_sample(loc)
        assert sample.__key__ == loc.key
        assert sample.confidence > 0.9 and sample.label in ("dog", "cat")


THRESHOLD = 0.25
WANTED = ("bird", "fish")


def _closure_predicate() -> Callable[[Any], bool]:
    low, high = 0.2, 0.6
    labels = {"dog", "horse"}
    return lambda m: low <= m.confidence < high and m.label in labels


def named_predicate(m):
    """A def function works like a lambda."""
    return m.width > 2000 and "night" in m.tags


# predicates whose meaning on a sample and on a manifest row is the same
PREDICATES: dict[str, Callable[[Any], Any]] = {
    "or-not": lambda m: (m.label == "dog" or m.label == "cat") and not m.flagged,
    "chain": lambda m: 0.1 < m.confidence <= 0.3,
    "reversed": lambda m: 0.5 < m.confidence and 1000 >= m.width,  # noqa: SIM300
    "set-membership": lambda m: "outdoor" in m.tags and "night" not in m.tags,
    "not-in-list": lambda m: m.label not in ["dog", "cat", "bird"],
    "globals": lambda m: m.confidence < THRESHOLD and m.label in WANTED,
    "closure": _closure_predicate(),
    "def-function": named_predicate,
    "truthiness": lambda m: m.flagged and m.tags,
    "negated-truth": lambda m: not m.tags,
    "datetime": lambda m: (
        m.taken_at >= dt.datetime(2024, 1, 20, tzinfo=UTC)
        and m.taken_at < START + dt.timedelta(days=30)
    ),
    "enum": lambda m: m.weather == Weather.RAINY and m.width < 500,
    "is-none": lambda m: m.camera is None and m.label == "fish",
    "optional-eq": lambda m: m.camera == "canon" and m.confidence > 0.8,
    "int-float": lambda m: m.width > 4000.5 or m.width == 16,
    "bool-eq": lambda m: m.flagged == True,  # noqa: E712 - testing the comparison itself
    "constant-true": lambda m: True,
    "constant-false": lambda m: 1 > 2,
    "computed-constant": lambda m: m.width < 2**10 and m.label in [x.lower() for x in ("DOG",)],
    "if-else": lambda m: m.width > 3000 if m.flagged else m.label < "cat",
    "field-vs-field": lambda m: m.width > m.confidence and m.label == "cat",
    "key": lambda m: m.__key__ in ("sample_00000003", "sample_00000777"),
}


@pytest.mark.parametrize("name", list(PREDICATES))
def test_translated_predicates_equal_brute_force(dataset, name):
    ds, _ = dataset
    predicate = PREDICATES[name]
    result = ds.query(where=predicate)
    assert list(result) == brute_force(ds, predicate), f"{name}, seed {SEED}"
    assert result.vectorized, f"{name} fell back to per-row evaluation: {result.predicate}"


def test_several_lambdas_on_one_line(dataset):
    ds, _ = dataset
    a, b = ds.query(where=lambda m: m.label == "dog"), ds.query(where=lambda m: m.label == "cat")
    assert {ds.get_sample(loc).label for loc in a} == {"dog"}
    assert {ds.get_sample(loc).label for loc in b} == {"cat"}


def test_query_without_predicate_returns_everything(dataset):
    ds, samples = dataset
    result = ds.query()
    assert len(result) == len(samples)
    assert result.keys == [f"sample_{i:08d}" for i in range(len(samples))]


# -- pruning ---------------------------------------------------------------------------------------


def test_pruned_shards_are_never_opened(tmp_path):
    samples = make_samples(1200)
    shards = write(samples, str(tmp_path / "shard-%06d.tar"), 40)
    ds = Dataset[ImageSample](shards)
    # zebras live in samples 400..439: shard 10 only
    holders = {i // 40 for i in range(400, 440)}
    for i, shard in enumerate(shards):
        if i not in holders:
            with open(shard[: -len(".tar")] + ".manifest.parquet", "wb") as f:
                f.write(b"this is not parquet")
    before = obs.metrics.shards_pruned.value
    result = ds.query(where=lambda m: m.label == "zebra" and m.confidence >= 0.0)
    assert result.shards_pruned == len(shards) - len(holders)
    assert result.shards_scanned == len(holders)
    assert obs.metrics.shards_pruned.value - before == len(shards) - len(holders)
    assert [loc.key for loc in result] == [f"sample_{i:08d}" for i in range(400, 440)]
    by_sql = ds.query(sql="label = 'zebra' AND confidence >= 0")
    assert by_sql.shards_pruned == len(shards) - len(holders)
    assert list(by_sql) == list(result)
    # a predicate the aggregates cannot rule out must open them (and hit the garbage)
    with pytest.raises(ManifestError, match="cannot read manifest rows"):
        ds.query(where=lambda m: m.confidence > 0.5)


def test_pruning_by_ranges_sets_and_time(dataset):
    ds, _ = dataset
    assert ds.query(where=lambda m: m.confidence > 1.5).shards_pruned == len(ds.shards)
    assert ds.query(where=lambda m: "rainbow" in m.tags).shards_pruned == len(ds.shards)
    first_day = ds.query(where=lambda m: m.taken_at < START + dt.timedelta(hours=30))
    assert first_day.shards_scanned == 1
    nothing: list[str] = []
    assert ds.query(where=lambda m: m.label in nothing).count == 0
    negated = ds.query(where=lambda m: not (m.width >= 16))
    assert negated.shards_pruned == len(ds.shards)


def test_partly_translated_predicates_still_prune(dataset):
    ds, _ = dataset
    result = ds.query(where=lambda m: m.label == "zebra" and (m.camera or "").upper() == "CANON")
    assert not result.vectorized
    assert result.shards_scanned == 1  # zebras are samples 400..439: shard 10 only
    expected = brute_force(ds, lambda m: m.label == "zebra" and (m.camera or "").upper() == "CANON")
    assert list(result) == expected and expected


# -- per-row fallback ------------------------------------------------------------------------------

FALLBACKS: dict[str, Callable[[Any], Any]] = {
    "method-call": lambda m: m.label.startswith("d") and m.confidence > 0.5,
    "len": lambda m: len(m.tags) >= 2,
    "arithmetic": lambda m: m.width * m.confidence > 1500,
    "any": lambda m: any(t.startswith("in") for t in m.tags),
    "substring": lambda m: "o" in m.label,
    "getattr": lambda m: getattr(m, "width") > 3000,  # noqa: B009 - dynamic access on purpose
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_untranslatable_predicates_fall_back_per_row(dataset, name):
    ds, _ = dataset
    predicate = FALLBACKS[name]
    result = ds.query(where=predicate)
    assert not result.vectorized
    assert list(result) == brute_force(ds, predicate), f"{name}, seed {SEED}"


def test_predicate_without_source_falls_back(dataset):
    ds, _ = dataset
    namespace: dict[str, Any] = {}
    exec("pred = lambda m: m.confidence > 0.75 and m.label == 'cat'", namespace)  # no source file
    result = ds.query(where=namespace["pred"])
    assert not result.vectorized
    assert list(result) == brute_force(ds, namespace["pred"])

    class Predicate:
        def __call__(self, m):
            return m.width < 100

    assert list(ds.query(where=Predicate())) == brute_force(ds, Predicate())


def test_fallback_and_vectorised_agree(dataset):
    ds, _ = dataset
    fast = ds.query(where=lambda m: m.confidence > 0.3 and "day" in m.tags)
    namespace: dict[str, Any] = {}
    exec("slow = lambda m: m.confidence > 0.3 and 'day' in m.tags", namespace)
    slow = ds.query(where=namespace["slow"])
    assert fast.vectorized and not slow.vectorized
    assert list(fast) == list(slow)


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_field_suggests_the_closest(dataset):
    ds, _ = dataset
    with pytest.raises(QueryError, match=r"'confidnce'.*Did you mean 'confidence'") as err:
        ds.query(where=lambda m: m.confidnce > 0.9)
    assert err.value.field == "confidnce"
    with pytest.raises(QueryError, match="Did you mean 'label'"):
        ds.query(sql="labl = 'dog'")
    namespace: dict[str, Any] = {}
    exec("pred = lambda m: m.lable == 'dog'", namespace)
    with pytest.raises(QueryError, match="Did you mean 'label'"):
        ds.query(where=namespace["pred"])


def test_wrong_value_types_are_query_errors(dataset):
    ds, _ = dataset
    with pytest.raises(QueryError, match="'label' holds text"):
        ds.query(where=lambda m: m.label == 3)
    with pytest.raises(QueryError, match="'taken_at' holds datetime"):
        ds.query(where=lambda m: m.taken_at > "2024-01-01")
    with pytest.raises(QueryError, match="either where= or sql="):
        ds.query(where=lambda m: True, sql="TRUE")
    with pytest.raises(QueryError, match="SQL query failed"):
        ds.query(sql="label = = 'dog'")


# -- SQL -------------------------------------------------------------------------------------------


def test_sql_matches_the_lambda(dataset):
    ds, _ = dataset
    by_sql = ds.query(sql="confidence > 0.9 AND label IN ('dog','cat')")
    by_lambda = ds.query(where=lambda m: m.confidence > 0.9 and m.label in ["dog", "cat"])
    assert list(by_sql) == list(by_lambda)
    tags = ds.query(
        sql="WHERE list_contains(tags, 'outdoor') AND taken_at < TIMESTAMP '2024-01-10'"
    )
    assert list(tags) == brute_force(
        ds, lambda m: "outdoor" in m.tags and m.taken_at < dt.datetime(2024, 1, 10, tzinfo=UTC)
    )


SQL_CASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "roadmap": (
        "confidence > 0.9 AND label IN ('dog','cat')",
        lambda m: m.confidence > 0.9 and m.label in ("dog", "cat"),
    ),
    "between": ("confidence BETWEEN 0.2 AND 0.3", lambda m: 0.2 <= m.confidence <= 0.3),
    "not-in": (
        "label NOT IN ('dog', 'cat', 'bird')",
        lambda m: m.label not in ("dog", "cat", "bird"),
    ),
    "or-not": (
        "(label = 'dog' OR label = 'cat') AND NOT flagged",
        lambda m: m.label in ("dog", "cat") and not m.flagged,
    ),
    "is-null": (
        "camera IS NULL AND label = 'fish'",
        lambda m: m.camera is None and m.label == "fish",
    ),
    "contains": (
        "list_contains(tags, 'outdoor') AND NOT list_contains(tags, 'night')",
        lambda m: "outdoor" in m.tags and "night" not in m.tags,
    ),
    "timestamps": (
        "taken_at >= TIMESTAMP '2024-01-20' AND taken_at < TIMESTAMPTZ '2024-01-31 00:00:00+00:00'",
        lambda m: (
            dt.datetime(2024, 1, 20, tzinfo=UTC)
            <= m.taken_at
            < dt.datetime(2024, 1, 31, tzinfo=UTC)
        ),
    ),
    "reversed": (
        "0.5 < confidence AND 1000 >= width",
        lambda m: m.confidence > 0.5 and m.width <= 1000,
    ),
    "function": (
        "lower(label) = 'zebra' AND width > 2000",
        lambda m: m.label == "zebra" and m.width > 2000,
    ),
}


@pytest.mark.parametrize("name", list(SQL_CASES))
def test_sql_equals_brute_force(dataset, name):
    ds, _ = dataset
    clause, predicate = SQL_CASES[name]
    assert list(ds.query(sql=clause)) == brute_force(ds, predicate), f"{name}, seed {SEED}"


def test_sql_prunes_with_aggregates(dataset):
    ds, _ = dataset
    assert ds.query(sql="label = 'zebra'").shards_pruned == len(ds.shards) - 1
    assert ds.query(sql="confidence > 1.5 OR width < 0").shards_pruned == len(ds.shards)
    assert ds.query(sql="list_contains(tags, 'rainbow')").shards_pruned == len(ds.shards)
    early = ds.query(sql="taken_at < TIMESTAMP '2024-01-02 06:00'")
    assert early.shards_scanned == 1 and early.count == 30
    # what the parse tree reader does not understand prunes nothing, but stays right
    assert ds.query(sql="lower(label) = 'zebra'").shards_pruned == 0
    assert ds.query(sql="lower(label) = 'zebra'").count == 40


# -- direct access ---------------------------------------------------------------------------------


def test_get_sample_and_get(dataset):
    ds, samples = dataset
    for i in (0, 39, 40, 777, len(samples) - 1):
        key = f"sample_{i:08d}"
        got = ds.get(key)
        assert got.__key__ == key
        assert got.label == samples[i].label and got.confidence == samples[i].confidence
        assert np.array_equal(got.image, samples[i].image)
    loc = ds.query(where=lambda m: m.__key__ == "sample_00000500")[0]
    assert ds.get_sample(loc).width == samples[500].width


def test_get_reads_no_shard_data(dataset, monkeypatch):
    from atdata.manifest import locate_key
    from atdata.storage import LocalStore

    ds, _ = dataset
    opened: list[str] = []
    real_read = LocalStore.read
    monkeypatch.setattr(LocalStore, "open", lambda self, p: opened.append(p))
    monkeypatch.setattr(LocalStore, "range", lambda self, p, o, s: opened.append(p))

    def read(self, path):
        assert not path.endswith(".tar")
        return real_read(self, path)

    monkeypatch.setattr(LocalStore, "read", read)
    loc = locate_key(ds, "sample_00000901")
    assert loc.shard.endswith("shard-000022.tar") and not opened


def test_get_unknown_key(dataset):
    ds, _ = dataset
    with pytest.raises(SampleNotFoundError, match="sample_0000004"):
        ds.get("sample_0000004")
    with pytest.raises(KeyError):
        ds.get("nope")


def test_describe_from_manifests(dataset):
    ds, samples = dataset
    info = ds.describe()
    assert info["num_samples"] == len(samples)
    assert info["num_shards"] == len(ds.shards)
    assert info["size_bytes"] == sum(os.path.getsize(s) for s in ds.shards)
    fields = info["fields"]
    assert set(fields) == {"label", "confidence", "tags", "width", "taken_at", "flagged",
                           "weather", "camera"}  # fmt: skip
    assert sum(fields["label"]["counts"].values()) == len(samples)
    assert fields["label"]["counts"]["zebra"] == 40
    assert fields["confidence"]["min"] == min(s.confidence for s in samples)
    assert fields["width"]["max"] == max(s.width for s in samples)
    assert fields["camera"]["nulls"] == sum(s.camera is None for s in samples)
    assert fields["tags"]["values"] == sorted({t for s in samples for t in s.tags})
    assert info["time_bounds"]["taken_at"]["min"] == min(s.taken_at for s in samples).isoformat()
    assert json.loads(json.dumps(info)) == info  # plain JSON, ready for the CLI


def test_result_sequence_behaviour(dataset):
    ds, _ = dataset
    result = ds.query(where=lambda m: m.label == "zebra")
    assert isinstance(result, QueryResult)
    everything = list(result)
    assert result[-1] == everything[-1] and result[3] == everything[3]
    assert result[2:5] == everything[2:5]
    with pytest.raises(IndexError):
        result[len(result)]
    table = result.to_arrow()
    assert table.column("key").to_pylist() == [loc.key for loc in everything]
    assert result.shards == sorted({loc.shard for loc in everything})
    assert "zebra" in repr(result)


# -- missing and mixed manifests -------------------------------------------------------------------


def test_missing_json_makes_a_shard_invisible(tmp_path):
    samples = make_samples(120)
    shards = write(samples, str(tmp_path / "shard-%06d.tar"), 40)
    os.remove(shards[1][: -len(".tar")] + ".manifest.json")  # a crash before the JSON
    ds = Dataset[ImageSample](shards)
    result = ds.query()
    assert result.shards_without_manifest == 1
    assert {loc.shard for loc in result} == {shards[0], shards[2]}
    assert len(ds.query(sql="TRUE")) == 80
    assert ds.describe()["num_samples"] == 80
    with pytest.raises(SampleNotFoundError):
        ds.get("sample_00000050")


@atdata.packable(version="1.0.0")
class RecordV1:
    label: str
    score: float


@atdata.packable(version="1.1.0")
class RecordV2:
    label: str
    score: float
    tags: list[str]
    source: str


def test_old_and_new_manifests_mixed(tmp_path):
    rng = random.Random(SEED)
    old = [RecordV1(label=rng.choice(["a", "b"]), score=rng.random()) for _ in range(50)]
    new = [
        RecordV2(label=rng.choice(["a", "b"]), score=rng.random(),
                 tags=rng.sample(TAGS, 2), source=rng.choice(["web", "cam"]))
        for _ in range(50)
    ]  # fmt: skip
    old_shards = write(old, str(tmp_path / "data-%06d.tar"), 25)
    new_shards = write(new, str(tmp_path / "data-%06d.tar"), 25, start_shard=2, key_prefix="new_")
    ds = Dataset(old_shards + new_shards)
    assert len(ds) == 100
    outdoor = ds.query(where=lambda m: "outdoor" in m.tags)
    assert outdoor.shards_pruned == 2  # the old shards have no tags at all
    assert [loc.key for loc in outdoor] == [
        f"new_{i:08d}" for i, r in enumerate(new) if "outdoor" in r.tags
    ]
    untagged = ds.query(where=lambda m: m.tags is None and m.score > 0.5)
    assert [loc.key for loc in untagged] == [
        f"sample_{i:08d}" for i, r in enumerate(old) if r.score > 0.5
    ]
    assert ds.query(where=lambda m: m.source != "web").keys == [
        f"new_{i:08d}" for i, r in enumerate(new) if r.source != "web"
    ]  # a missing value never matches, negated or not
    sql = ds.query(sql="source = 'cam' OR source IS NULL")
    assert len(sql) == 50 + sum(r.source == "cam" for r in new)
    namespace: dict[str, Any] = {}
    exec("pred = lambda m: m.source == 'cam' or m.score > 0.9", namespace)
    slow = ds.query(where=namespace["pred"])
    assert slow.keys == ds.query(where=lambda m: m.source == "cam" or m.score > 0.9).keys
    schema = ds.schema
    assert schema.version == "1.1.0" and schema.field("tags").optional
    typed = Dataset[schema.to_type()](old_shards + new_shards)
    assert typed.get("sample_00000003").tags is None
    assert ds.describe()["fields"]["tags"]["count"] == 50


# -- materialised views ----------------------------------------------------------------------------


def test_materialize_a_query(dataset, tmp_path):
    ds, samples = dataset
    result = ds.query(where=lambda m: m.label == "zebra" or m.confidence > 0.97)
    out = result.materialize(str(tmp_path / "view-%06d.tar"), maxcount=16)
    assert type(out) is type(ds)
    assert len(out) == len(result)
    copied = list(out)
    assert [s.__key__ for s in copied] == [loc.key for loc in result]
    by_key = {f"sample_{i:08d}": s for i, s in enumerate(samples)}
    for s in copied:
        assert s.label == by_key[s.__key__].label and s.weather == by_key[s.__key__].weather
    again = out.query(where=lambda m: m.label == "zebra")
    assert again.keys == [f"sample_{i:08d}" for i in range(400, 440)]
    header = atdata.manifest.load_manifests(out)[0].header
    assert header["provenance"]["parent_shards"] == result.shards
    assert header["schema"]["name"] == "ImageSample"
    with pytest.raises(QueryError, match="nothing to materialize"):
        ds.query(where=lambda m: m.confidence > 2).materialize(str(tmp_path / "none-%06d.tar"))


def test_materialize_untyped_dataset_keeps_schema(dataset, tmp_path):
    ds, _ = dataset
    untyped = Dataset(ds.shards)
    result = untyped.query(where=lambda m: m.label == "zebra")
    out = result.materialize(str(tmp_path / "u-%06d.tar"))
    assert out.sample_type is atdata.DictSample
    assert out.schema.field("tags").manifest == "set"
    assert len(out) == 40


# -- object storage --------------------------------------------------------------------------------


def test_query_over_s3(s3_bucket, tmp_path):
    samples = make_samples(160)
    shards = write(samples, f"{s3_bucket}/train/shard-%06d.tar", 40)
    ds = Dataset[ImageSample](f"{s3_bucket}/train/shard-{{000000..000003}}.tar")
    assert len(ds) == 160
    result = ds.query(where=lambda m: m.confidence > 0.8 and "outdoor" in m.tags)
    assert list(result) == brute_force(ds, lambda m: m.confidence > 0.8 and "outdoor" in m.tags)
    assert result.count > 0
    loc = result[0]
    assert ds.get_sample(loc).__key__ == loc.key
    assert ds.get("sample_00000123").width == samples[123].width
    assert ds[123].__key__ == "sample_00000123" and ds[-1].width == samples[-1].width
    assert [s.__key__ for s in ds[38:42]] == [f"sample_{i:08d}" for i in range(38, 42)]
    assert list(ds.query(sql="confidence > 0.8 AND list_contains(tags, 'outdoor')")) == list(result)
    out = result.materialize(f"{s3_bucket}/view/shard-%06d.tar")
    assert out.shards[0].startswith("s3://") and len(out) == len(result)
    assert ds.describe()["num_shards"] == len(shards)


def test_untyped_dataset_from_dicts(tmp_path):
    rng = random.Random(SEED)
    rows = [
        {"label": rng.choice(["a", "b", "c"]), "score": rng.random(), "n": rng.randint(0, 9),
         "tags": rng.sample(TAGS, 2), "when": START + dt.timedelta(days=i)}
        for i in range(90)
    ]  # fmt: skip
    with ShardWriter(str(tmp_path / "d-%06d.tar"), maxcount=30) as sink:
        for row in rows:
            sink.write(row)
    ds = Dataset(sink.shards)
    result = ds.query(where=lambda m: m.score > 0.5 and "night" in m.tags and m.n != 3)
    expected = [
        f"sample_{i:08d}" for i, r in enumerate(rows)
        if r["score"] > 0.5 and "night" in r["tags"] and r["n"] != 3
    ]  # fmt: skip
    assert result.vectorized and result.keys == expected
    late = ds.query(where=lambda m: m.when >= START + dt.timedelta(days=60))
    assert late.shards_pruned == 2 and len(late) == 30
    assert ds.query(sql="score > 0.5 AND list_contains(tags, 'night') AND n <> 3").keys == expected
    assert ds.get("sample_00000042")["label"] == rows[42]["label"]


def test_dataset_without_any_manifest(tmp_path):
    with ShardWriter(str(tmp_path / "x-%06d.tar"), manifest=False) as sink:
        sink.write({"label": "a"})
    with pytest.raises(ManifestError, match="atdata manifest build"):
        Dataset(sink.shards).query(where=lambda m: m.label == "a")
