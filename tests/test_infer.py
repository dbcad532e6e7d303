"""Manifests of untyped shards record a schema inferred from the samples, and it reads them.

Shards are written without a sample type (``DictSample`` s and plain dicts, as
other tools write msgpack samples), then ``atdata.manifest.build`` or ``atdata
manifest build`` runs without ``--type``: the recorded schema must name every
field with its type, validate as a header, and read every sample back as the
type rebuilt from it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata import DictSample, ShardWriter
from atdata.manifest._header import parse_header
from atdata.sample import SchemaInference
from cli_helpers import ok, ok_json

UTC = dt.UTC


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private local index; wide output so lines are not wrapped."""
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "atdata-home"


def record(i: int) -> dict[str, Any]:
    """An untyped sample of every inferable kind; some fields absent or None in some samples."""
    row: dict[str, Any] = {
        "label": ["cat", "dog"][i % 2],
        "score": i / 4 if i % 2 else i,  # ints and floats: a float field
        "count": i,
        "ok": i % 3 == 0,
        "taken": dt.datetime(2024, 1, 1 + i),  # naive: written as an RFC 3339 string
        "seen": dt.datetime(2024, 2, 1 + i, tzinfo=UTC),  # aware: a msgpack timestamp
        "tags": ["outdoor", "blurry"][: i % 3],
        "image": np.full((4, 2 + i % 2, 3), i, np.uint8),  # the second axis varies
        "depth": np.arange(6, dtype=np.float32) + i,
        "ratio": None if i == 2 else 0.5,
    }
    if i % 2:
        row["note"] = f"note {i}"  # absent from half the samples
    return row


def write_untyped(folder: Path, rows: list[dict[str, Any]], per_shard: int = 4) -> str:
    with ShardWriter(str(folder / "s-%06d.tar"), maxcount=per_shard, manifest=False) as sink:
        for i, row in enumerate(rows):
            sink.write(DictSample(row, key=f"k{i:04d}"))
    return str(folder / f"s-{{000000..{len(sink.shards) - 1:06d}}}.tar")


def headers(pattern: str) -> list[dict[str, Any]]:
    out = []
    for shard in atdata.storage.expand_urls(pattern):
        path = shard.removesuffix(".tar") + ".manifest.json"
        with open(path, "rb") as f:
            out.append(parse_header(path, f.read()))  # validates, as every reader does
    return out


def test_build_records_every_field_with_its_type(tmp_path: Path) -> None:
    pattern = write_untyped(tmp_path, [record(i) for i in range(8)])
    assert len(atdata.manifest.build(pattern)) == 2
    (schema,) = {json.dumps(h["schema"], sort_keys=True) for h in headers(pattern)}
    recorded = json.loads(schema)
    assert recorded["name"].startswith("Inferred_") and recorded["inferred"] == {"left_out": {}}
    fields = {f["name"]: f for f in recorded["fields"]}
    assert {n: f["type"] for n, f in fields.items()} == {
        "label": "str", "score": "float", "count": "int", "ok": "bool", "taken": "datetime",
        "seen": "datetime", "tags": "list[str]", "image": "ndarray", "depth": "ndarray",
        "ratio": "float | None", "note": "str | None",
    }  # fmt: skip
    assert (fields["image"]["dtype"], fields["image"]["shape"]) == ("uint8", [4, None, 3])
    assert (fields["depth"]["dtype"], fields["depth"]["shape"]) == ("float32", [6])
    assert {n: f["manifest"] for n, f in fields.items() if f["manifest"]} == {
        "label": "categorical", "score": "numeric", "count": "numeric", "ok": "categorical",
        "taken": "numeric", "seen": "numeric", "tags": "set", "ratio": "numeric",
        "note": "categorical",
    }  # fmt: skip


def test_the_inferred_schema_reads_every_sample(tmp_path: Path) -> None:
    rows = [record(i) for i in range(8)]
    pattern = write_untyped(tmp_path, rows)
    atdata.manifest.build(pattern)
    untyped = atdata.Dataset(pattern)
    sample_type = untyped.schema.to_type()
    samples = list(atdata.Dataset[sample_type](pattern).ordered())
    assert len(samples) == len(untyped) == 8
    for row, sample in zip(rows, samples, strict=True):
        assert sample.label == row["label"] and sample.score == row["score"]
        assert sample.taken == row["taken"] and sample.seen == row["seen"]
        assert sample.note == row.get("note") and sample.ratio == row["ratio"]
        np.testing.assert_array_equal(sample.image, row["image"])
    # the manifest columns are typed: a time range and a number compare as such
    hits = untyped.query(sql="taken >= TIMESTAMP '2024-01-05' AND score > 1")
    assert sorted(hits.keys) == ["k0004", "k0005", "k0006", "k0007"]


def test_shards_of_one_dataset_record_one_schema(tmp_path: Path) -> None:
    """Ints in one shard and floats in the next make a float field in every manifest;
    a field one shard lacks is optional in all of them."""
    rows = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}, {"x": 0.5, "y": "c", "z": 1}, {"x": 1.5}]
    pattern = write_untyped(tmp_path, rows, per_shard=2)
    atdata.manifest.build(pattern)
    first, second = (h["schema"] for h in headers(pattern))
    assert first == second
    assert [(f["name"], f["type"]) for f in first["fields"]] == [
        ("x", "float"), ("y", "str | None"), ("z", "int | None"),
    ]  # fmt: skip


def test_a_field_of_mixed_types_is_left_out_and_the_cli_says_how_to_give_the_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"id": i if i % 2 else f"id-{i}", "label": "cat"} for i in range(6)]
    pattern = write_untyped(tmp_path / "data", rows)
    result = ok_json("manifest", "build", pattern)
    assert result["type"] is None and result["inferred"]["left_out"] == {"id": "int and str values"}
    assert result["inferred"]["fields"] == ["label"]
    out = ok("manifest", "build", pattern, "--force")
    assert "Not recorded: field 'id' (int and str values)" in out
    assert f"atdata manifest build {pattern} --force --type MODULE:CLASS" in out
    shown = ok("schema", "show", pattern)
    assert "not recorded: field 'id' (int and str values)" in shown
    # the command it names works: a type that says what id is records every field
    # (a module name of its own: other tests import their own mytypes.py in this process)
    (tmp_path / "infer_record_types.py").write_text(
        textwrap.dedent(
            """
            import atdata

            @atdata.packable
            class Record:
                id: str
                label: str
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    rows = [{"id": f"id-{i}", "label": "cat"} for i in range(6)]
    pattern = write_untyped(tmp_path / "typed", rows)
    result = ok_json("manifest", "build", pattern, "--force", "--type", "infer_record_types:Record")
    assert result["type"] == "Record@1.0.0" and result["inferred"] is None
    assert ok_json("schema", "show", pattern)["name"] == "Record"


def test_two_untyped_datasets_register_side_by_side(tmp_path: Path) -> None:
    """Their schemas have different fields, so they must not claim one name and version."""
    a = write_untyped(tmp_path / "a", [{"label": "cat"}])
    b = write_untyped(tmp_path / "b", [{"width": 3}])
    ok("manifest", "build", a)
    ok("manifest", "build", b)
    ok("register", a, "a")
    ok("register", b, "b")
    assert ok_json("schema", "show", "@local/a")["fields"][0]["name"] == "label"
    assert ok_json("schema", "show", "@local/b")["fields"][0]["name"] == "width"
    assert atdata.load_dataset("@local/b").head(1)[0].width == 3


@atdata.packable
class Photo:
    label: str
    score: float


def test_a_rebuild_keeps_the_type_the_other_manifests_record(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "p-%06d.tar"), maxcount=2) as sink:
        for i in range(6):
            sink.write(Photo(label="cat", score=float(i)))
    pattern = str(tmp_path / "p-{000000..000002}.tar")
    os.remove(tmp_path / "p-000001.manifest.json")
    result = ok_json("manifest", "build", pattern)
    assert result["type"] == "Photo@1.0.0" and result["type_from"] == "manifests"
    assert "the schema its manifests record" in ok("manifest", "build", pattern, "--force")
    assert {h["schema"]["name"] for h in headers(pattern)} == {"Photo"}


def test_shard_writer_records_the_schema_of_untyped_samples(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "w-%06d.tar")) as sink:
        sink.write({"__key__": "k0", "msgpack": atdata.sample.encode_mapping({"n": 1})})
        sink.write(DictSample({"n": 2, "extra": [1.5]}, key="k1"))
    (header,) = headers(str(tmp_path / "w-000000.tar"))
    types = {f["name"]: f["type"] for f in header["schema"]["fields"]}
    assert types == {"n": "int", "extra": "list[float] | None"}


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([1, "a"], "int and str values"),
        ([True, 1], "bool and int values"),
        ([None, None], "only None values"),
        ([[1], ["a"]], "lists of int and str values"),
        ([{"a": 1}, {"a": "b"}], "dicts of int and str values"),
        ([{1: "a"}], "non-string-keyed dict values, which no field type stores"),
        ([b"raw", "text"], "bytes and str values"),
    ],
)
def test_fields_whose_type_cannot_be_told(values: list[Any], reason: str) -> None:
    inference = SchemaInference()
    for value in values:
        inference.observe({"field": value, "label": "cat"})
    inferred = inference.result()
    assert inferred.left_out == {"field": reason}
    assert inferred.schema.field_names == ["label"]


def test_strings_are_datetimes_only_when_every_one_reads_as_one() -> None:
    inference = SchemaInference()
    inference.observe({"at": "2024-01-01T10:00:00", "day": "2024-01-01"})
    inference.observe({"at": "2024-01-02T10:00:00+02:00", "day": "2024-01-02"})
    types = {f.name: str(f.type) for f in inference.result().schema.fields}
    assert types == {"at": "datetime", "day": "str"}


def test_a_broken_manifest_is_rebuilt_with_the_type_the_others_record(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "p-%06d.tar"), maxcount=2) as sink:
        for i in range(4):
            sink.write(Photo(label="cat", score=float(i)))
    (tmp_path / "p-000001.manifest.json").write_text("{broken")
    pattern = str(tmp_path / "p-{000000..000001}.tar")
    assert ok_json("manifest", "build", pattern)["built"] == []  # it has one, if broken
    result = ok_json("manifest", "build", pattern, "--force")
    assert len(result["built"]) == 2 and result["type"] == "Photo@1.0.0"
    assert {h["schema"]["name"] for h in headers(pattern)} == {"Photo"}


def test_nothing_to_build_is_known_from_the_headers_alone(tmp_path: Path) -> None:
    """No pyarrow or numpy is loaded when every shard has its manifest."""
    with ShardWriter(str(tmp_path / "p-%06d.tar"), maxcount=2) as sink:
        for i in range(4):
            sink.write(Photo(label="cat", score=float(i)))
    code = (
        "import json, sys\n"
        "from atdata.cli import main\n"
        f"rc = main(['manifest', 'build', {str(tmp_path)!r}, '--json'])\n"
        "sys.stderr.write(json.dumps([rc, 'pyarrow' in sys.modules, 'numpy' in sys.modules]))\n"
    )
    env = {**os.environ, "ATDATA_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [0, False, False]
    assert json.loads(done.stdout)["skipped"] == [str(tmp_path / f"p-00000{i}.tar") for i in (0, 1)]
