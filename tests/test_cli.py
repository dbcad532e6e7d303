"""The ``atdata`` CLI through typer's runner: every verb, ``--json``, and the errors users hit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata import NDArray
from atdata.errors import AtdataError
from atdata.index import Catalog
from cli_helpers import cli, ok, ok_json, user_error

LABELS = ["dog", "cat", "bird"]
N = 30  # samples, 10 per shard


@atdata.packable
class ImageSample:
    image: NDArray
    label: str
    confidence: float
    tags: list[str]
    caption: str = ""


def make_sample(i: int) -> ImageSample:
    return ImageSample(
        image=np.arange(12, dtype=np.uint8).reshape(2, 2, 3) + i,
        label=LABELS[i % 3],
        confidence=i / N,
        tags=["outdoor", "blurry"][: i % 3],
        caption="long caption " * (i + 1),
    )


def write(folder: Path, samples: list[Any], *, manifest: bool = True, maxcount: int = 10) -> str:
    """Write shards into ``folder``; returns the brace pattern of the shards."""
    with atdata.ShardWriter(
        str(folder / "shard-%06d.tar"), maxcount=maxcount, manifest=manifest
    ) as sink:
        for sample in samples:
            sink.write(sample)
    last = len(sink.shards) - 1
    return str(folder / f"shard-{{000000..{last:06d}}}.tar")


@atdata.packable
class Unrelated:
    width: int
    height: int


def reading_type(version: str) -> type:
    """Two versions of one sample type, ``Reading``: 1.1.0 retypes, adds and removes fields."""
    if version == "1.0.0":

        @atdata.packable(version="1.0.0")
        class Reading:
            value: int
            site: str
            legacy: str

        return Reading

    @atdata.packable(version="1.1.0")
    class Reading:  # type: ignore[no-redef]
        value: float
        site: str
        tags: list[str]

    return Reading


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """30 ImageSamples in 3 shards with manifests; the brace pattern."""
    return write(tmp_path_factory.mktemp("images"), [make_sample(i) for i in range(N)])


@pytest.fixture
def bare_dataset(tmp_path: Path) -> str:
    """The same samples without manifests (fresh for each test: some build them)."""
    return write(tmp_path / "bare", [make_sample(i) for i in range(N)], manifest=False)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private local index for every test; the real ~/.atdata is never touched."""
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))
    monkeypatch.setenv("COLUMNS", "120")
    return tmp_path / "atdata-home"


# -- help and usage ------------------------------------------------------------------

COMMANDS = [
    ["inspect"],
    ["schema"],
    ["schema", "show"],
    ["schema", "diff"],
    ["preview"],
    ["query"],
    ["manifest"],
    ["manifest", "build"],
    ["register"],
    ["ls"],
    ["serve"],
    ["pipeline"],
    ["pipeline", "poll"],
]


def test_top_level_help_lists_every_command() -> None:
    out = ok("--help")
    for name in (
        "inspect",
        "schema",
        "preview",
        "query",
        "manifest",
        "register",
        "ls",
        "serve",
        "pipeline",
    ):
        assert name in out
    assert "Example" in out
    assert ok() == out  # a bare `atdata` prints the same help
    for group in ("schema", "manifest", "pipeline"):  # so does a bare group
        assert ok(group) == ok(group, "--help")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    out = ok(*command, "--help")
    assert "Example" in out
    assert "Usage: atdata " + " ".join(command) in out


def test_version() -> None:
    assert ok("--version").strip() == f"atdata {atdata.__version__}"


def test_usage_mistakes_are_one_line_errors() -> None:
    assert "Did you mean 'inspect'" in user_error("inspec", "x")
    line = user_error("inspect", "--jsn", "x")
    assert "--jsn" in line and "--json" in line
    assert "Missing argument 'URL'" in user_error("inspect")


# -- inspect ----------------------------------------------------------------------------


def test_inspect_json(dataset: str) -> None:
    info = ok_json("inspect", dataset)
    assert info["num_samples"] == N
    assert info["num_shards"] == 3
    assert info["manifests"] == {"present": 3, "missing": 0}
    assert info["schema"]["name"] == "ImageSample"
    assert [f["name"] for f in info["schema"]["fields"]] == [
        "image",
        "label",
        "confidence",
        "tags",
        "caption",
    ]
    shards = info["shards"]
    assert [s["num_samples"] for s in shards] == [10, 10, 10]
    assert all(s["manifest"] for s in shards)
    assert info["size_bytes"] == sum(os.path.getsize(s["url"]) for s in shards)
    fields = info["fields"]
    assert fields["label"]["kind"] == "categorical"
    assert fields["label"]["top"] == {"bird": 10, "cat": 10, "dog": 10}
    assert fields["label"]["distinct"] == 3
    assert fields["confidence"]["min"] == 0.0
    assert fields["confidence"]["max"] == pytest.approx((N - 1) / N)
    assert fields["confidence"]["mean"] == pytest.approx(sum(range(N)) / N / N)
    assert fields["tags"]["top"] == {"outdoor": 20, "blurry": 10}
    assert "image" not in fields  # arrays are never in the manifest


def test_inspect_human(dataset: str) -> None:
    out = ok("inspect", dataset)
    assert "30" in out and "ImageSample 1.0.0" in out
    assert "3 of 3 shards" in out
    assert "dog 10" in out and "min 0" in out
    assert "list[str]" in out  # types are printed literally, not eaten as rich markup


@pytest.mark.parametrize("form", ["folder", "glob", "one shard", "file URL", "manifest file"])
def test_inspect_accepts_every_local_form(dataset: str, form: str) -> None:
    folder = os.path.dirname(dataset)
    target = {
        "folder": folder,
        "glob": os.path.join(folder, "shard-*.tar"),
        "one shard": os.path.join(folder, "shard-000001.tar"),
        "file URL": "file://" + os.path.join(folder, "shard-000001.tar"),
        "manifest file": os.path.join(folder, "shard-000001.manifest.json"),
    }[form]
    info = ok_json("inspect", target)
    assert info["num_samples"] == (N if form in ("folder", "glob") else 10)


def test_inspect_shard_without_manifest(tmp_path: Path) -> None:
    pattern = write(tmp_path / "d", [make_sample(i) for i in range(N)])
    os.remove(tmp_path / "d" / "shard-000002.manifest.json")
    info = ok_json("inspect", pattern)
    assert info["num_samples"] is None
    assert info["num_samples_in_manifests"] == 20
    assert info["manifests"] == {"present": 2, "missing": 1}
    assert info["shards"][2] == {
        "url": str(tmp_path / "d" / "shard-000002.tar"),
        "num_samples": None,
        "size_bytes": os.path.getsize(tmp_path / "d" / "shard-000002.tar"),
        "manifest": False,
    }
    out = ok("inspect", pattern)
    assert "atdata manifest build" in out


def test_every_verb_on_s3(s3_bucket: str) -> None:
    prefix = f"{s3_bucket}/train"
    with atdata.ShardWriter(f"{prefix}/shard-%06d.tar", maxcount=10, manifest=False) as sink:
        for i in range(N):
            sink.write(make_sample(i))
    pattern = f"{prefix}/shard-{{000000..000002}}.tar"
    assert ok_json("inspect", f"{prefix}/")["manifests"] == {"present": 0, "missing": 3}
    assert len(ok_json("manifest", "build", pattern)["built"]) == 3
    for target in (f"{prefix}/", pattern, f"{prefix}/shard-*.tar"):
        info = ok_json("inspect", target)
        assert info["num_samples"] == N, target
        assert info["manifests"]["present"] == 3
    inferred = ok_json("schema", "show", pattern)  # from the samples: no type was given
    assert inferred["name"].startswith("Inferred_")
    assert [f["name"] for f in inferred["fields"]] == list(ImageSample.__annotations__)
    assert ok_json("preview", pattern, "-n", "2")["samples"][1]["fields"]["label"]["value"] == "cat"
    assert ok_json("query", pattern, WHERE, "--count")["count"] == len(EXPECTED)
    assert ok_json("register", pattern, "on-s3")["urls"] == [pattern]
    assert ok_json("inspect", "@local/on-s3")["num_samples"] == N
    assert "No such file or object" in user_error("inspect", f"{prefix}/shard-000009.tar")
    assert "No .tar shards under" in user_error("inspect", f"{s3_bucket}/nothing/")


def test_inspect_missing_file_suggests_the_close_name(dataset: str) -> None:
    folder = os.path.dirname(dataset)
    line = user_error("inspect", os.path.join(folder, "shard-00001.tar"))
    assert "No such file or folder" in line and "shard-000001.tar" in line


def test_inspect_pattern_past_the_last_shard(dataset: str) -> None:
    line = user_error("inspect", dataset.replace("000002", "000009"))
    assert "7 of the 10 shards" in line


def test_inspect_empty_folder(tmp_path: Path) -> None:
    assert "No .tar shards" in user_error("inspect", str(tmp_path))


def test_inspect_unknown_scheme() -> None:
    line = user_error("inspect", "nosuchproto://bucket/shard-000000.tar")
    assert "nosuchproto://" in line


def test_inspect_r2_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("R2_ACCOUNT_ID", "R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    line = user_error("inspect", "r2://bucket/shard-000000.tar")
    assert "R2_ACCOUNT_ID" in line and "R2_ACCESS_KEY_ID" in line


def test_inspect_unknown_local_name_suggests(dataset: str) -> None:
    ok("register", dataset, "images")
    line = user_error("inspect", "@local/imagse")
    assert "'images'" in line and "atdata ls" in line
    assert "@local/images" in user_error("inspect", "images")  # a bare name hints at @local/


def test_debug_shows_the_traceback(dataset: str) -> None:
    result = cli("--debug", "inspect", dataset + "-nope")
    assert isinstance(result.exception, AtdataError)
    result = cli("inspect", dataset + "-nope", "--debug")  # at the end of the line too
    assert isinstance(result.exception, AtdataError)


# -- schema show / diff --------------------------------------------------------------------


def register_reading_versions() -> None:
    with Catalog() as catalog:
        for version in ("1.0.0", "1.1.0"):
            catalog.register_schema(atdata.schema_of(reading_type(version)).to_json())


def test_schema_show_dataset(dataset: str) -> None:
    info = ok_json("schema", "show", dataset)
    assert info["name"] == "ImageSample" and info["version"] == "1.0.0"
    assert info["origin"] == "manifest"
    by_name = {f["name"]: f for f in info["fields"]}
    assert by_name["tags"]["type"] == "list[str]"
    assert by_name["tags"]["manifest"] == "set"
    assert by_name["image"]["manifest"] is None
    out = ok("schema", "show", dataset)
    assert "ImageSample 1.0.0" in out and "list[str]" in out and "categorical" in out


def test_schema_show_registered_versions() -> None:
    register_reading_versions()
    latest = ok_json("schema", "show", "Reading")
    assert latest["version"] == "1.1.0"
    assert latest["versions"] == ["1.0.0", "1.1.0"]
    old = ok_json("schema", "show", "Reading@v1.0.0")
    assert old["version"] == "1.0.0"
    assert [f["name"] for f in old["fields"]] == ["value", "site", "legacy"]
    assert "registered versions" in ok("schema", "show", "Reading@1.0.0")


def test_schema_show_misspelled_name() -> None:
    register_reading_versions()
    line = user_error("schema", "show", "Readin")
    assert "Did you mean 'Reading'" in line
    line = user_error("schema", "show", "Reading@2.0.0")
    assert "1.0.0, 1.1.0" in line


def test_schema_diff_two_versions_of_one_type() -> None:
    register_reading_versions()
    for args in (
        ["Reading", "v1.0.0", "v1.1.0"],
        ["v1.0.0", "v1.1.0"],
        ["Reading@1.0.0", "Reading@1.1.0"],
        ["Reading@1.0.0", "1.1.0"],
    ):
        diff = ok_json("schema", "diff", *args)
        assert diff["old"]["version"] == "1.0.0" and diff["new"]["version"] == "1.1.0"
        missing_tags = "field `tags` is required and absent in old data"
        missing_legacy = "field `legacy` is required by the old type and absent in new data"
        floats = "field `value` is float in new data, and int does not read it"
        assert diff["added"] == [
            {"name": "tags", "type": "list[str]", "manifest": "set"}
            | {"old_readers": None, "new_readers": missing_tags}
        ]
        assert diff["removed"] == [
            {"name": "legacy", "type": "str", "manifest": "categorical"}
            | {"old_readers": missing_legacy, "new_readers": None}
        ]
        assert diff["retyped"] == [
            {"name": "value", "old": "int", "new": "float"}
            | {"old_readers": floats, "new_readers": None}
        ]
        assert diff["compatibility"]["old_readers"]["problems"] == [missing_legacy, floats]
        assert diff["compatibility"]["new_readers"]["problems"] == [missing_tags]
        bump = {"part": "major", "at_least": "2.0.0", "given": "1.1.0", "enough": False}
        assert diff["bump"] == bump
        assert diff["identical"] is False
    out = ok("schema", "diff", "Reading", "1.0.0", "1.1.0")
    assert "+ tags" in " ".join(out.split()) or "tags" in out
    assert "int → float" in out


def test_schema_diff_two_datasets(tmp_path: Path) -> None:
    old = reading_type("1.0.0")
    new = reading_type("1.1.0")
    a = write(tmp_path / "a", [old(value=i, site="x", legacy="y") for i in range(3)])
    b = write(tmp_path / "b", [new(value=float(i), site="x", tags=["t"]) for i in range(3)])
    diff = ok_json("schema", "diff", a, b)
    assert [f["name"] for f in diff["added"]] == ["tags"]
    assert [f["name"] for f in diff["removed"]] == ["legacy"]
    assert [f["name"] for f in diff["retyped"]] == ["value"]
    same = ok_json("schema", "diff", a, a)
    assert same["identical"] is True
    assert "No differences" in ok("schema", "diff", a, a)


def test_schema_diff_errors() -> None:
    register_reading_versions()
    assert "got 1 argument" in user_error("schema", "diff", "Reading")
    assert "No registered schema has both" in user_error("schema", "diff", "v1.0.0", "v9.0.0")
    assert "is not a version" in user_error("schema", "diff", "Reading", "one", "two")


# -- preview -------------------------------------------------------------------------------


def test_preview_human(dataset: str) -> None:
    out = ok("preview", dataset, "--limit", "2", "--width", "20")
    assert "sample_00000000" in out and "sample_00000001" in out
    assert "sample_00000002" not in out
    assert "uint8 2×2×3" in out  # arrays by dtype and shape...
    assert "[0, 1, 2, 3, 4, 5, …]" in out  # ...and a few values
    assert "(26 chars)" in out  # "long caption " * 2, cut at 20 characters
    assert "2 samples shown" in out


def test_preview_json(dataset: str) -> None:
    info = ok_json("preview", dataset, "-n", "3", "--fields", "label,image,caption")
    samples = info["samples"]
    assert [s["key"] for s in samples] == ["sample_00000000", "sample_00000001", "sample_00000002"]
    first = samples[0]["fields"]
    assert list(first) == ["label", "image", "caption"]
    assert first["label"]["value"] == "dog"
    assert first["image"]["value"] == {
        "ndarray": {"shape": [2, 2, 3], "dtype": "uint8", "values": [0, 1, 2, 3, 4, 5]}
    }
    assert samples[2]["fields"]["caption"]["value"] == "long caption " * 3  # JSON keeps it whole
    assert samples[0]["shard"].endswith("shard-000000.tar") and samples[0]["offset"] == 0


def test_preview_works_without_manifests(bare_dataset: str) -> None:
    assert len(ok_json("preview", bare_dataset)["samples"]) == 5


def test_preview_misspelled_field(dataset: str) -> None:
    line = user_error("preview", dataset, "--fields", "lable")
    assert "Did you mean 'label'" in line


# -- query ---------------------------------------------------------------------------------

WHERE = "confidence > 0.5 AND label = 'dog'"
EXPECTED = [f"sample_{i:08d}" for i in range(N) if i / N > 0.5 and LABELS[i % 3] == "dog"]


def test_query_json(dataset: str) -> None:
    info = ok_json("query", dataset, WHERE)
    assert info["count"] == len(EXPECTED)
    assert [m["key"] for m in info["matches"]] == EXPECTED
    assert info["shards_pruned"] + info["shards_scanned"] == 3
    first = info["matches"][0]
    sample = atdata.Dataset[ImageSample](dataset).get_sample(
        type(
            "Loc",
            (),
            {
                "shard": first["shard"],
                "offset": first["offset"],
                "size": first["size"],
                "key": first["key"],
            },
        )()
    )
    assert sample.label == "dog" and sample.confidence > 0.5


def test_query_count_and_table(dataset: str) -> None:
    assert ok("query", dataset, WHERE, "--count").strip() == str(len(EXPECTED))
    assert ok_json("query", dataset, WHERE, "--count")["count"] == len(EXPECTED)
    out = ok("query", dataset, WHERE, "--limit", "2")
    assert EXPECTED[0] in out and EXPECTED[2] not in out
    assert f"{len(EXPECTED)} matches (2 shown" in out
    assert ok("query", dataset, "'outdoor' IN tags", "--count").strip() == "20"


def test_query_misspelled_field(dataset: str) -> None:
    line = user_error("query", dataset, "confidance > 0.9")
    assert "confidance" in line and "Did you mean 'confidence'" in line


def test_query_bad_syntax(dataset: str) -> None:
    result = cli("query", dataset, "confidence >>> AND")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "syntax error" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


# -- manifest build ------------------------------------------------------------------------


def test_manifest_build(bare_dataset: str) -> None:
    assert ok_json("inspect", bare_dataset)["manifests"]["missing"] == 3
    built = ok_json("manifest", "build", bare_dataset)
    assert len(built["built"]) == 3 and built["skipped"] == []
    info = ok_json("inspect", bare_dataset)
    assert info["num_samples"] == N and info["fields"]["label"]["top"]["dog"] == 10
    again = ok_json("manifest", "build", bare_dataset)
    assert again["built"] == [] and len(again["skipped"]) == 3
    assert "already had one" in ok("manifest", "build", bare_dataset)
    assert len(ok_json("manifest", "build", bare_dataset, "--force")["built"]) == 3


def test_manifest_build_with_type(bare_dataset: str) -> None:
    built = ok_json("manifest", "build", bare_dataset, "--type", f"{__name__}:ImageSample")
    assert built["type"] == "ImageSample@1.0.0"
    assert ok_json("schema", "show", bare_dataset)["name"] == "ImageSample"
    assert "Did you mean 'ImageSample'" in user_error(
        "manifest", "build", bare_dataset, "--type", f"{__name__}:ImageSampel"
    )
    assert "Cannot import" in user_error("manifest", "build", bare_dataset, "--type", "nope.x:Y")


def test_manifest_build_with_the_wrong_type(bare_dataset: str) -> None:
    line = user_error("manifest", "build", bare_dataset, "--type", f"{__name__}:Unrelated")
    assert "do not match Unrelated" in line and "atdata schema show" in line
    line = user_error("manifest", "build", bare_dataset, "--type", f"{__name__}:make_sample")
    assert "not a sample type" in line


# -- register and ls -------------------------------------------------------------------------


def test_ls_empty(home: Path) -> None:
    assert "is empty" in ok("ls")
    assert ok_json("ls") == {"index": str(home / "index.db"), "datasets": [], "schemas": []}
    assert not (home / "index.db").exists()  # listing does not create an index


def test_register_then_ls(dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.path.dirname(dataset))
    record = ok_json("register", os.path.basename(dataset), "images", "-d", "thirty pictures")
    assert record["uri"] == "@local/images"
    assert record["urls"] == [dataset]  # stored absolute, so it works from any folder
    assert record["num_samples"] == N and record["num_shards"] == 3
    monkeypatch.chdir(tmp_path)
    listing = ok_json("ls")
    assert [d["uri"] for d in listing["datasets"]] == ["@local/images"]
    assert listing["datasets"][0]["description"] == "thirty pictures"
    assert listing["schemas"] == [{"name": "ImageSample", "versions": ["1.0.0"], "latest": "1.0.0"}]
    out = ok("ls")
    assert "@local/images" in out and "thirty pictures" in out and "ImageSample" in out
    # the name now works everywhere
    assert ok_json("inspect", "@local/images")["num_samples"] == N
    assert ok_json("schema", "show", "@local/images")["datasets"] == ["@local/images"]
    assert len(ok_json("preview", "@local/images", "-n", "1")["samples"]) == 1
    assert ok_json("query", "@local/images", WHERE, "--count")["count"] == len(EXPECTED)
    assert atdata.load_dataset("@local/images").schema.name == "ImageSample"


def test_register_folder_and_overwrite(dataset: str) -> None:
    folder = os.path.dirname(dataset)
    record = ok_json("register", folder, "images")
    assert len(record["urls"]) == 3 and all(os.path.isabs(u) for u in record["urls"])
    assert "already registered" in user_error("register", folder, "images", "--no-overwrite")
    assert "Invalid dataset name" in user_error("register", folder, "bad name!")


def test_register_needs_manifests(bare_dataset: str) -> None:
    line = user_error("register", bare_dataset, "bare")
    assert "atdata manifest build" in line


def test_register_copies_a_local_name(dataset: str) -> None:
    ok("register", dataset, "images")
    assert ok_json("register", "@local/images", "images-copy")["urls"] == [dataset]


def test_results_are_plain_json(dataset: str, tmp_path: Path) -> None:
    shutil.copytree(os.path.dirname(dataset), tmp_path / "copy")
    for args in (
        ["inspect", str(tmp_path / "copy")],
        ["ls"],
        ["preview", str(tmp_path / "copy"), "-n", "1"],
    ):
        text = ok(*args, "--json")
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


def test_shards_with_two_versions_of_a_type(tmp_path: Path) -> None:
    old, new = reading_type("1.0.0"), reading_type("1.1.0")
    with atdata.ShardWriter(str(tmp_path / "a-%06d.tar"), key_prefix="a_") as sink:
        sink.write(old(value=1, site="x", legacy="y"))
    with atdata.ShardWriter(str(tmp_path / "b-%06d.tar"), key_prefix="b_") as sink:
        sink.write(new(value=2.0, site="x", tags=["t"]))
    info = ok_json("inspect", str(tmp_path))
    assert info["shard_schemas"] == ["Reading@1.0.0", "Reading@1.1.0"]
    assert info["schema"]["version"] == "1.1.0"  # the newest wins...
    fields = {f["name"]: f for f in info["schema"]["fields"]}
    assert fields["legacy"]["optional"] and fields["tags"]["optional"]  # ...others turn optional
    assert ok_json("schema", "show", str(tmp_path))["fields"] == info["schema"]["fields"]
    assert "several versions" in ok("inspect", str(tmp_path))
