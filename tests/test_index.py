"""Tests for atdata.index: the local SQLite catalog of datasets and schemas."""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

import atdata.index
from atdata.errors import CatalogError, DatasetNotFoundError, SchemaError
from atdata.index import (
    DB_FORMAT_VERSION,
    Catalog,
    DatasetRecord,
    default_index_path,
    resolve_local,
    version_key,
)


def make_schema(
    name: str = "ImageSample",
    version: str = "1.0.0",
    *,
    extra_field: str | None = None,
    module: str = "my_project.samples",
) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "image", "type": "ndarray", "optional": False, "manifest": None},
        {"name": "label", "type": "str", "optional": False, "manifest": "categorical"},
    ]
    if extra_field:
        fields.append(
            {"name": extra_field, "type": "float", "optional": False, "manifest": "numeric"}
        )
    return {"name": name, "version": version, "fields": fields, "module": module}


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "index.db") as cat:
        yield cat


# -- datasets ----------------------------------------------------------------------


def test_register_get_list_remove_round_trip(catalog: Catalog) -> None:
    schema = make_schema()
    rec = catalog.register_dataset(
        "mnist-train",
        ["/data/train-{000..009}.tar", "s3://bucket/extra.tar"],
        schema,
        description="digits",
        metadata={"split": "train", "n": 60000},
    )
    assert isinstance(rec, DatasetRecord)
    assert rec.uri == "@local/mnist-train"
    catalog.register_dataset("mnist-test", ["/data/test.tar"], schema)

    got = catalog.get_dataset("mnist-train")
    assert got == rec
    assert got.urls == ["/data/train-{000..009}.tar", "s3://bucket/extra.tar"]
    assert got.schema == schema
    assert (got.schema_name, got.schema_version) == ("ImageSample", "1.0.0")
    assert got.description == "digits"
    assert got.metadata == {"split": "train", "n": 60000}
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == UTC.utcoffset(None)
    assert got.updated_at == got.created_at

    assert [d.name for d in catalog.list_datasets()] == ["mnist-test", "mnist-train"]
    assert "mnist-train" in catalog
    assert "@local/mnist-train" in catalog

    catalog.remove_dataset("mnist-train")
    assert [d.name for d in catalog.list_datasets()] == ["mnist-test"]
    assert "mnist-train" not in catalog
    with pytest.raises(DatasetNotFoundError):
        catalog.get_dataset("mnist-train")
    # The schema outlives the dataset: other datasets (or shards) still use it.
    assert catalog.get_schema("ImageSample").schema == schema


def test_records_survive_reopening(tmp_path: Path) -> None:
    with Catalog(tmp_path / "index.db") as first:
        written = first.register_dataset("ds", ["/a.tar"], make_schema(), metadata={"k": [1, 2]})
    with Catalog(tmp_path / "index.db") as second:
        assert second.get_dataset("ds") == written
    # A folder is accepted as the location too.
    with Catalog(tmp_path) as third:
        assert third.path == str(tmp_path / "index.db")
        assert third.get_dataset("ds") == written


def test_local_prefix_and_resolve_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog: Catalog
) -> None:
    catalog.register_dataset("@local/cifar.v2", ["/c.tar"], make_schema())
    assert catalog.get_dataset("@local/cifar.v2").name == "cifar.v2"
    assert catalog.get_dataset("cifar.v2").name == "cifar.v2"
    assert resolve_local("@local/cifar.v2", catalog).urls == ["/c.tar"]

    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "home"))
    with Catalog() as default:
        default.register_dataset("in-home", ["/h.tar"], make_schema())
    assert resolve_local("@local/in-home").urls == ["/h.tar"]
    with pytest.raises(DatasetNotFoundError):
        resolve_local("@local/cifar.v2")  # lives in the other index

    catalog.remove_dataset("@local/cifar.v2")
    assert catalog.list_datasets() == []


def test_default_path_comes_from_env_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "nested" / "atdata-home"
    monkeypatch.setenv("ATDATA_HOME", str(home))
    assert default_index_path() == home / "index.db"
    with Catalog() as cat:
        assert cat.path == str(home / "index.db")
        cat.register_dataset("x", ["/x.tar"], make_schema())
    assert (home / "index.db").is_file()

    monkeypatch.delenv("ATDATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_index_path() == tmp_path / "user" / ".atdata" / "index.db"


def test_unknown_dataset_suggests_close_name(catalog: Catalog) -> None:
    catalog.register_dataset("mnist-train", ["/t.tar"], make_schema())
    catalog.register_dataset("imagenet", ["/i.tar"], make_schema())
    with pytest.raises(DatasetNotFoundError) as info:
        catalog.get_dataset("@local/mnist-trian")
    assert info.value.name == "mnist-trian"
    assert "Did you mean 'mnist-train'?" in str(info.value)
    assert "imagenet" not in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="mnist-train"):
        catalog.remove_dataset("mnist-trian")
    with pytest.raises(DatasetNotFoundError, match="mnist-train"):
        resolve_local("@local/mnist-trian", catalog)
    # Still both there: a failed remove removes nothing.
    assert len(catalog.list_datasets()) == 2


@pytest.mark.parametrize(
    "name",
    ["", "-leading-dash", ".hidden", "has space", "a/b", "@hub/mnist", "über", "tab\t", "@local/"],
)
def test_invalid_names_are_refused(catalog: Catalog, name: str) -> None:
    with pytest.raises(CatalogError, match="Invalid dataset name") as info:
        catalog.register_dataset(name, ["/x.tar"], make_schema())
    assert "letters, digits" in str(info.value)
    with pytest.raises(CatalogError, match="Invalid dataset name"):
        catalog.get_dataset(name)
    assert catalog.list_datasets() == []


@pytest.mark.parametrize("name", ["a", "0", "A.b_c-1", "mnist-train.v2", "x" * 200])
def test_valid_names_are_accepted(catalog: Catalog, name: str) -> None:
    catalog.register_dataset(name, ["/x.tar"], make_schema())
    assert catalog.get_dataset(name).name == name


def test_overwrite_keeps_created_at_and_can_be_refused(catalog: Catalog) -> None:
    first = catalog.register_dataset("ds", ["/v1.tar"], make_schema(), description="one")
    time.sleep(0.002)
    second = catalog.register_dataset("ds", ["/v2.tar"], make_schema(version="1.1.0"))
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    got = catalog.get_dataset("ds")
    assert got.urls == ["/v2.tar"]
    assert got.schema_version == "1.1.0"
    assert got.description == ""

    with pytest.raises(CatalogError, match=r"already registered.*overwrite=True"):
        catalog.register_dataset("ds", ["/v3.tar"], make_schema(), overwrite=False)
    assert catalog.get_dataset("ds").urls == ["/v2.tar"]
    catalog.register_dataset("fresh", ["/f.tar"], make_schema(), overwrite=False)


def test_argument_validation(catalog: Catalog) -> None:
    # A single pattern string is one URL, not a list of characters.
    assert catalog.register_dataset("one", "/d-{0..9}.tar", make_schema()).urls == ["/d-{0..9}.tar"]
    assert catalog.register_dataset("path", [Path("/p.tar")], make_schema()).urls == ["/p.tar"]
    with pytest.raises(CatalogError, match="at least one shard URL"):
        catalog.register_dataset("none", [], make_schema())
    with pytest.raises(CatalogError, match="must be strings"):
        catalog.register_dataset("bad-url", [42], make_schema())  # type: ignore[list-item]
    with pytest.raises(CatalogError, match="JSON-serialisable"):
        catalog.register_dataset("bad-meta", ["/x.tar"], make_schema(), metadata={"f": object()})
    with pytest.raises(CatalogError, match="must be a dict"):
        catalog.register_dataset("bad-meta", ["/x.tar"], make_schema(), metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="needs a 'version'"):
        catalog.register_dataset("no-version", ["/x.tar"], {"name": "S", "fields": []})
    with pytest.raises(SchemaError, match="non-empty 'name'"):
        catalog.register_dataset("no-name", ["/x.tar"], {"version": "1.0.0"})
    with pytest.raises(SchemaError, match="not a semantic version"):
        catalog.register_dataset("bad-version", ["/x.tar"], make_schema(version="1.0"))
    assert sorted(d.name for d in catalog.list_datasets()) == ["one", "path"]


# -- schemas -----------------------------------------------------------------------


def test_schema_versions_compare_numerically(catalog: Catalog) -> None:
    for version in ["1.0.0", "1.10.0", "v1.1.0", "1.9.0"]:
        catalog.register_schema(make_schema(version=version))
    catalog.register_schema(make_schema("Other", "3.0.0"))

    assert catalog.schema_versions("ImageSample") == ["1.0.0", "1.1.0", "1.9.0", "1.10.0"]
    latest = catalog.get_schema("ImageSample")
    assert latest.version == "1.10.0"
    assert latest.schema["version"] == "1.10.0"
    assert catalog.get_schema("ImageSample", "v1.1.0").version == "1.1.0"
    assert catalog.get_schema("ImageSample", "1.1.0").schema["version"] == "1.1.0"
    assert [(s.name, s.version) for s in catalog.list_schemas()] == [
        ("ImageSample", "1.0.0"),
        ("ImageSample", "1.1.0"),
        ("ImageSample", "1.9.0"),
        ("ImageSample", "1.10.0"),
        ("Other", "3.0.0"),
    ]


def test_semver_precedence_follows_the_spec() -> None:
    # The ordering example from semver.org section 11, shuffled.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0",
    ]
    shuffled = ordered[::2] + ordered[1::2]
    assert sorted(shuffled, key=version_key) == ordered
    assert atdata.index.normalize_version(" v2.0.0 ") == "2.0.0"
    for bad in ["1", "1.0", "01.0.0", "1.0.0.0", "one.two.three", "v", ""]:
        with pytest.raises(SchemaError, match="not a semantic version"):
            version_key(bad)


def test_changed_schema_at_same_version_is_refused(catalog: Catalog) -> None:
    original = catalog.register_schema(make_schema())
    catalog.register_dataset("ds", ["/a.tar"], make_schema())

    changed = make_schema(extra_field="confidence")
    with pytest.raises(SchemaError, match="bump") as info:
        catalog.register_schema(changed)
    message = str(info.value)
    assert "'ImageSample' version 1.0.0" in message
    assert "added confidence" in message
    assert "version='2.0.0'" in message  # a required field added: new readers fail on old data

    # Through register_dataset the whole write is refused, the dataset included.
    with pytest.raises(SchemaError, match="different definition"):
        catalog.register_dataset("ds", ["/b.tar"], changed)
    with pytest.raises(SchemaError, match="different definition"):
        catalog.register_dataset("new-ds", ["/b.tar"], changed)
    assert catalog.get_dataset("ds").urls == ["/a.tar"]
    assert "new-ds" not in catalog
    assert catalog.get_schema("ImageSample", "1.0.0") == original

    # Bumping the version is the way out.
    bumped = catalog.register_schema(make_schema(version="1.1.0", extra_field="confidence"))
    assert catalog.get_schema("ImageSample") == bumped


def test_identical_schema_registers_idempotently(catalog: Catalog) -> None:
    first = catalog.register_schema(make_schema())
    time.sleep(0.002)
    # Same definition, other key order and a "v" prefix on the version.
    again = dict(reversed(list(make_schema(version="v1.0.0").items())))
    second = catalog.register_schema(again)
    assert second.created_at == first.created_at
    assert second.schema == first.schema
    catalog.register_dataset("a", ["/a.tar"], make_schema())
    catalog.register_dataset("b", ["/b.tar"], make_schema())
    assert len(catalog.list_schemas()) == 1


def test_moving_the_class_to_another_module_is_not_a_new_definition(
    catalog: Catalog,
) -> None:
    catalog.register_dataset("ds", ["/a.tar"], make_schema(module="__main__"))
    moved = catalog.register_schema(make_schema(module="pkg.samples"))
    assert moved.schema["module"] == "pkg.samples"
    assert catalog.get_dataset("ds").schema["module"] == "pkg.samples"


def test_unknown_schema_name_or_version_suggests(catalog: Catalog) -> None:
    catalog.register_schema(make_schema(version="1.0.0"))
    catalog.register_schema(make_schema(version="1.2.0"))
    with pytest.raises(SchemaError, match="Did you mean 'ImageSample'") as info:
        catalog.get_schema("ImageSampel")
    assert "Registered schemas: ImageSample" in str(info.value)
    with pytest.raises(SchemaError, match="Did you mean 'ImageSample'"):
        catalog.schema_versions("imagesample")
    with pytest.raises(
        SchemaError, match=r"no version '1\.1\.0'.*Registered versions: 1\.0\.0, 1\.2\.0"
    ):
        catalog.get_schema("ImageSample", "v1.1.0")
    with pytest.raises(SchemaError, match="not a semantic version"):
        catalog.get_schema("ImageSample", "latest")


# -- the database itself -----------------------------------------------------------------


def test_new_db_uses_wal_and_records_its_format(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    with Catalog(db) as cat:
        cat.list_datasets()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == DB_FORMAT_VERSION
    conn.close()


def test_db_from_a_newer_atdata_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {DB_FORMAT_VERSION + 1}")
    conn.commit()
    conn.close()
    with Catalog(db) as cat:
        with pytest.raises(CatalogError, match="Upgrade atdata") as info:
            cat.list_datasets()
        assert f"format version {DB_FORMAT_VERSION + 1}" in str(info.value)
        with pytest.raises(CatalogError, match="Upgrade atdata"):
            cat.register_dataset("ds", ["/a.tar"], make_schema())
    # The newer database was left as it was.
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == DB_FORMAT_VERSION + 1
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_broken_or_unwritable_index_raises_catalog_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = tmp_path / "index.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with Catalog(garbage) as cat, pytest.raises(CatalogError, match="not a valid atdata index"):
        cat.list_datasets()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ATDATA_HOME", str(blocker))
    with Catalog() as cat, pytest.raises(CatalogError, match="ATDATA_HOME"):
        cat.register_dataset("ds", ["/a.tar"], make_schema())


def test_close_reopens_and_pickles_by_path(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "index.db")
    cat.register_dataset("ds", ["/a.tar"], make_schema())
    cat.close()
    cat.close()  # idempotent
    assert cat.get_dataset("ds").urls == ["/a.tar"]  # reopened lazily
    clone = pickle.loads(pickle.dumps(cat))
    assert clone.path == cat.path
    assert clone.get_dataset("ds") == cat.get_dataset("ds")
    clone.close()
    cat.close()
    assert repr(cat) == f"Catalog({str(tmp_path / 'index.db')!r})"


def test_in_memory_catalog(tmp_path: Path) -> None:
    with Catalog(":memory:") as cat:
        cat.register_dataset("ds", ["/a.tar"], make_schema())
        assert [d.name for d in cat.list_datasets()] == ["ds"]
    assert not (tmp_path / ":memory:").exists()


def test_threads_can_share_one_catalog(catalog: Catalog) -> None:
    def work(t: int) -> None:
        for i in range(20):
            catalog.register_dataset(f"t{t}-{i}", [f"/{t}/{i}.tar"], make_schema())
            assert catalog.get_dataset(f"t{t}-{i}").urls == [f"/{t}/{i}.tar"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(work, t) for t in range(4)]:
            future.result()  # re-raises a worker's error here
    assert len(catalog.list_datasets()) == 80


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from atdata.index import Catalog

    db, tag, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("start signal never came")
        time.sleep(0.001)
    shared = {"name": "Shared", "version": "1.0.0", "fields": [], "module": "m"}
    with Catalog(db) as cat:
        for i in range(50):
            cat.register_dataset(
                f"{tag}-{i:03d}", [f"/data/{tag}/{i}.tar"], shared, metadata={"i": i}
            )
            own = {"name": "Proc-" + tag, "version": f"1.{i}.0", "fields": []}
            cat.register_schema(own)
    print("done", tag)
    """
)


def test_two_processes_register_concurrently_without_losing_writes(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "index.db"  # neither process finds a database yet
    go = tmp_path / "go"
    src = str(Path(atdata.index.__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [src, env.get("PYTHONPATH")] if p)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(db), tag, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("alpha", "beta")
    ]
    time.sleep(0.3)  # let both interpreters start, then release them together
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.startswith("done")

    with Catalog(db) as cat:
        records = cat.list_datasets()
        assert len(records) == 100
        by_name = {r.name: r for r in records}
        for tag in ("alpha", "beta"):
            for i in range(50):
                rec = by_name[f"{tag}-{i:03d}"]
                assert rec.urls == [f"/data/{tag}/{i}.tar"]
                assert rec.metadata == {"i": i}
            assert cat.get_schema("Proc-" + tag).version == "1.49.0"
            assert len(cat.schema_versions("Proc-" + tag)) == 50
        assert cat.schema_versions("Shared") == ["1.0.0"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
