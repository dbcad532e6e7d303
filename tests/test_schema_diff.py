"""``Schema.diff`` and ``atdata schema diff`` say who can still read across a change, truly.

Each case is two versions of one sample type. Shards are written with each
version (with the values that put a reader to the test: a None, a fraction,
the new enum choice) and read with the other; the verdict of the library and of
the CLI must be what really happens, and the expected answer too, so a verdict
that always says "yes" cannot pass.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import numpy as np
import pytest

import atdata
from atdata.errors import SchemaError
from cli_helpers import ok, ok_json


class Colour(enum.Enum):
    RED = "red"


class MoreColours(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Case(NamedTuple):
    old: dict[str, Any]  # field -> annotation of version 1.0.0
    new: dict[str, Any]  # ... of version 1.1.0
    old_rows: list[dict[str, Any]]  # samples written with the old version
    new_rows: list[dict[str, Any]]
    old_readers: bool  # do readers of 1.0.0 read data of 1.1.0?
    new_readers: bool  # do readers of 1.1.0 read data of 1.0.0?
    bump: str


IMAGE = np.arange(16, dtype=np.uint8).reshape(4, 4)
PNG = Annotated[atdata.NDArray, atdata.Encoding("png")]
UNINDEXED = Annotated[str, atdata.ManifestField(indexed=False)]

CASES = {
    "added optional field": Case(
        {"v": int}, {"v": int, "note": str | None},
        [{"v": 1}], [{"v": 1, "note": None}, {"v": 2, "note": "x"}],
        old_readers=True, new_readers=True, bump="minor",
    ),
    "added field with a default": Case(
        {"v": int}, {"v": int, "unit": (str, "m")},
        [{"v": 1}], [{"v": 1, "unit": "km"}],
        old_readers=True, new_readers=True, bump="minor",
    ),
    "added required field": Case(
        {"v": int}, {"v": int, "site": str},
        [{"v": 1}], [{"v": 1, "site": "a"}],
        old_readers=True, new_readers=False, bump="major",
    ),
    "removed required field": Case(
        {"v": int, "site": str}, {"v": int},
        [{"v": 1, "site": "a"}], [{"v": 1}],
        old_readers=False, new_readers=True, bump="major",
    ),
    "removed optional field": Case(
        {"v": int, "note": str | None}, {"v": int},
        [{"v": 1, "note": None}], [{"v": 1}],
        old_readers=True, new_readers=True, bump="minor",
    ),
    "int widened to float": Case(
        {"v": int}, {"v": float},
        [{"v": 1}], [{"v": 0.5}],
        old_readers=False, new_readers=True, bump="major",
    ),
    "str retyped to int": Case(
        {"v": str}, {"v": int},
        [{"v": "a"}], [{"v": 1}],
        old_readers=False, new_readers=False, bump="major",
    ),
    "made optional": Case(
        {"v": int}, {"v": int | None},
        [{"v": 1}], [{"v": None}],
        old_readers=False, new_readers=True, bump="major",
    ),
    "made required": Case(
        {"v": int | None}, {"v": int},
        [{"v": None}], [{"v": 1}],
        old_readers=True, new_readers=False, bump="major",
    ),
    "list items widened": Case(
        {"v": list[int]}, {"v": list[float]},
        [{"v": [1, 2]}], [{"v": [0.5]}],
        old_readers=False, new_readers=True, bump="major",
    ),
    "enum choice added": Case(
        {"v": Colour}, {"v": MoreColours},
        [{"v": Colour.RED}], [{"v": MoreColours.BLUE}],
        old_readers=False, new_readers=True, bump="major",
    ),
    "array re-encoded": Case(
        {"image": atdata.NDArray}, {"image": PNG},
        [{"image": IMAGE}], [{"image": IMAGE}],
        old_readers=True, new_readers=True, bump="patch",
    ),
    "manifest kind changed": Case(
        {"v": str}, {"v": UNINDEXED},
        [{"v": "a"}], [{"v": "b"}],
        old_readers=True, new_readers=True, bump="patch",
    ),
}  # fmt: skip


def make_type(version: str, fields: dict[str, Any]) -> type:
    """Version ``version`` of the sample type ``Reading`` (a tuple annotation: type, default)."""
    annotations = {n: a[0] if isinstance(a, tuple) else a for n, a in fields.items()}
    defaults = {n: a[1] for n, a in fields.items() if isinstance(a, tuple)}
    return atdata.packable(
        type("Reading", (), {"__annotations__": annotations, **defaults}), version=version
    )


def write(folder: Path, sample_type: type, rows: list[dict[str, Any]]) -> str:
    with atdata.ShardWriter(str(folder / "s-%06d.tar")) as sink:
        for i, row in enumerate(rows):
            sink.write(sample_type(**row).with_key(f"k{i}"))
    return str(folder / "s-000000.tar")


def reads(sample_type: type, url: str, rows: list[dict[str, Any]]) -> bool:
    """True when ``sample_type`` reads every sample at ``url``, the values as written."""
    try:
        samples = atdata.Dataset[sample_type](url).head(len(rows))
    except SchemaError:
        return False
    for sample, row in zip(samples, rows, strict=True):
        for name, value in row.items():
            if name in sample.__schema__.field_names:
                got = plain(getattr(sample, name))
                assert np.array_equal(got, plain(value)), (name, got, value)
    return True


def plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_verdicts_match_what_readers_do(case: Case, tmp_path: Path) -> None:
    old, new = make_type("1.0.0", case.old), make_type("1.1.0", case.new)
    old_data = write(tmp_path / "old", old, case.old_rows)
    new_data = write(tmp_path / "new", new, case.new_rows)

    outcome = (reads(old, new_data, case.new_rows), reads(new, old_data, case.old_rows))
    assert outcome == (case.old_readers, case.new_readers)

    diff = old.__schema__.diff(new.__schema__)
    assert (not diff.old_readers, not diff.new_readers) == outcome
    assert diff.bump == case.bump
    assert diff.compatible == all(outcome)

    # the CLI gives the same verdicts, for the datasets themselves
    result = ok_json("schema", "diff", old_data, new_data)
    verdicts = result["compatibility"]
    assert (verdicts["old_readers"]["compatible"], verdicts["new_readers"]["compatible"]) == outcome
    assert result["bump"]["part"] == case.bump
    old_line, new_line = result["summary"][:2]
    assert old_line.startswith("Compatible for readers of v1.0.0 (reading v1.1.0 data): ")
    assert old_line.endswith(": yes") == case.old_readers
    assert new_line.endswith(": yes") == case.new_readers


def test_the_summary_names_the_field_and_the_version_needed(tmp_path: Path) -> None:
    case = CASES["added required field"]
    old = write(tmp_path / "old", make_type("1.0.0", case.old), case.old_rows)
    new = write(tmp_path / "new", make_type("1.1.0", case.new), case.new_rows)
    out = ok("schema", "diff", old, new)
    assert "Compatible for readers of v1.0.0 (reading v1.1.0 data): yes" in out
    assert (
        "Compatible for readers of v1.1.0 (reading v1.0.0 data): no: "
        "field `site` is required and absent in old data"
    ) in out
    assert "it needs version 2.0.0 or later, but the new schema is 1.1.0" in out
    assert "breaks readers of v1.1.0" in out


def test_a_compatible_change_with_enough_of_a_version(tmp_path: Path) -> None:
    case = CASES["added optional field"]
    old = write(tmp_path / "old", make_type("1.0.0", case.old), case.old_rows)
    new = write(tmp_path / "new", make_type("1.1.0", case.new), case.new_rows)
    summary = ok_json("schema", "diff", old, new)["summary"]
    assert summary == [
        "Compatible for readers of v1.0.0 (reading v1.1.0 data): yes",
        "Compatible for readers of v1.1.0 (reading v1.0.0 data): yes",
        "A compatible change of fields (minor): it needs version 1.1.0 or later, and 1.1.0 is.",
    ]


def test_the_index_suggests_the_version_the_change_needs(tmp_path: Path) -> None:
    """Registering a changed schema under a taken version names the bump ``diff`` says."""
    from atdata.index import Catalog

    with Catalog(tmp_path / "index.db") as catalog:
        catalog.register_schema(make_type("1.0.0", {"v": int}).__schema__.to_json())
        changed = make_type("1.0.0", {"v": int, "site": str}).__schema__.to_json()
        with pytest.raises(SchemaError, match=r"version='2\.0\.0'"):
            catalog.register_schema(changed)
        optional = make_type("1.0.0", {"v": int, "note": str | None}).__schema__.to_json()
        with pytest.raises(SchemaError, match=r"version='1\.1\.0'"):
            catalog.register_schema(optional)
