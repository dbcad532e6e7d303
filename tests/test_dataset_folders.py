"""``atdata.Dataset("folder/")``: a folder of shards, local or a remote prefix.

The library and the CLI list a folder the same way (``atdata.storage.shards_under``):
every ``.tar`` under it, subfolders included, hidden files skipped, sorted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import atdata
from atdata.errors import UnreadableURLError
from cli_helpers import ok_json, user_error


@atdata.packable
class Reading:
    value: float
    site: str


def write(pattern: str, start: int, n: int, maxcount: int = 4) -> list[str]:
    with atdata.ShardWriter(pattern, maxcount=maxcount) as sink:
        for i in range(start, start + n):
            sink.write(
                Reading(value=float(i), site=["north", "south"][i % 2]).with_key(f"k{i:03d}")
            )
    return list(sink.shards)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """10 readings in 3 shards, plus a hidden half-written one and a stray file."""
    root = tmp_path / "readings"
    write(str(root / "shard-%06d.tar"), 0, 10)
    (root / ".shard-000003.tar").write_bytes(b"half written")
    (root / "README.txt").write_text("readings")
    return root


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))


@pytest.mark.parametrize("form", ["path", "path/", "absolute", "file URL"])
def test_a_folder_reads_like_its_shards(
    folder: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder.parent)
    url = {
        "path": "readings",
        "path/": "readings/",
        "absolute": str(folder),
        "file URL": f"file://{folder}",
    }[form]
    ds = atdata.Dataset[Reading](url)
    assert [os.path.basename(s) for s in ds.shards] == [f"shard-00000{i}.tar" for i in range(3)]
    assert len(ds) == 10
    assert [s.value for s in ds.ordered()] == [float(i) for i in range(10)]
    hits = ds.query(where=lambda m: (m.site == "south") & (m.value > 4))
    assert sorted(hits.keys) == ["k005", "k007", "k009"]
    assert ds.get("k003").site == "south"


def test_subfolders_are_read_and_the_cli_lists_the_same_shards(folder: Path) -> None:
    write(str(folder / "extra" / "part-%06d.tar"), 10, 2)
    ds = atdata.Dataset[Reading](str(folder))
    assert len(ds.shards) == 4 and len(ds) == 12
    assert ds.shards[-1].endswith(os.path.join("readings", "shard-000002.tar"))
    assert [s["url"] for s in ok_json("inspect", str(folder), "--shards")["shards"]] == ds.shards


def test_a_folder_through_load_dataset_is_the_same(folder: Path) -> None:
    assert atdata.load_dataset(str(folder), Reading).shards == atdata.Dataset(str(folder)).shards


def test_a_folder_without_shards_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no shards here")
    ds = atdata.Dataset[Reading](str(empty))
    for use in (len, list, lambda d: d.head(1)):
        with pytest.raises(UnreadableURLError, match=r"No \.tar shards under .*empty") as info:
            use(ds)
        assert "shard-{000000..000009}.tar" in str(info.value)
    assert "No .tar shards under" in user_error("inspect", str(empty))


def test_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(UnreadableURLError, match=r"No such folder: .*missing/"):
        len(atdata.Dataset[Reading](str(tmp_path / "missing") + "/"))


def test_a_remote_prefix(s3_bucket: str) -> None:
    write(f"{s3_bucket}/readings/shard-%06d.tar", 0, 10)
    ds = atdata.Dataset[Reading](f"{s3_bucket}/readings/")
    assert ds.shards == [f"{s3_bucket}/readings/shard-00000{i}.tar" for i in range(3)]
    assert len(ds) == 10 and [s.value for s in ds.head(2)] == [0.0, 1.0]
    assert len(ds.query(where=lambda m: m.value >= 8)) == 2
    assert ok_json("inspect", f"{s3_bucket}/readings")["num_samples"] == 10  # no slash: the CLI
    with pytest.raises(UnreadableURLError, match=r"No \.tar shards under"):
        len(atdata.Dataset[Reading](f"{s3_bucket}/nothing/"))
