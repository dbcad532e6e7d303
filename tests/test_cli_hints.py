"""The CLI's error messages give the CLI's own advice, never a Python-only argument.

Library errors whose advice is a Python argument (``handler='skip'``,
``overwrite=True``, ``storage='blobs'``) carry the same advice for the command
(``AtdataError.cli_hint``), which ``report_error`` shows. Each case runs the
command that fails, checks the line has no Python in it and names an option,
then runs what it names and checks that works.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

import atdata
from atdata import DictSample, ShardWriter, atmosphere
from atdata.errors import AtdataError, ShardCorruptError
from cli_helpers import ok, ok_json, user_error

# keyword arguments, calls, annotations and decorators: what only a Python caller can follow
PYTHON = re.compile(r"\b\w+=|\w\((\)|\.\.\.|['\"])|Annotated\[|@atdata\.|DictSample")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATDATA_HOME", str(tmp_path / "atdata-home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)  # --type MODULE:CLASS imports from here
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no stale mytypes.pyc


def cli_error(*args: str) -> str:
    """The one ``error:`` line of a failing command, checked to hold no Python."""
    line = user_error(*args)
    assert not PYTHON.search(line), line
    return line


@pytest.fixture
def corrupt(tmp_path: Path) -> str:
    """A shard whose second sample is not msgpack (the tar itself is sound)."""
    url = str(tmp_path / "corrupt.tar")
    with ShardWriter(url, manifest=False) as sink:
        sink.write(DictSample({"n": 1}, key="a"))
        sink.write({"__key__": "broken", "msgpack": b"\xc1\xc1 not msgpack"})
        sink.write(DictSample({"n": 3}, key="c"))
    return url


@pytest.mark.parametrize(
    "advice",
    [
        "read with handler='skip'",
        "Pass overwrite=True",
        "@atdata.packable(version='2.0.0')",
        "upload local shards with storage='blobs'",
        "Annotated[..., atdata.ManifestField(indexed=False)]",
        "or as DictSample",
        "pass sample_type=.",
    ],
)
def test_python_advice_is_told_apart(advice: str) -> None:
    assert PYTHON.search(advice)


def test_the_library_error_keeps_its_python_advice(corrupt: str) -> None:
    with pytest.raises(ShardCorruptError) as info:
        list(atdata.Dataset(corrupt))
    assert "handler='skip'" in str(info.value)
    assert not PYTHON.search(info.value.cli_message())


def test_preview_of_a_corrupt_shard_names_skip_corrupt(corrupt: str) -> None:
    line = cli_error("preview", corrupt)
    assert "corrupt at byte 1024 (sample 'broken')" in line and "--skip-corrupt" in line
    result = ok_json("preview", corrupt, "--skip-corrupt")
    assert [s["key"] for s in result["samples"]] == ["a", "c"]
    assert [(s["key"], s["offset"]) for s in result["skipped"]] == [("broken", 1024)]
    assert "Skipped 1 corrupt sample" in ok("preview", corrupt, "--skip-corrupt")


def test_preview_of_a_truncated_shard_shows_what_comes_before(corrupt: str, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(Path(corrupt).read_bytes()[:1500])  # cut inside the second header
    assert "--skip-corrupt" in cli_error("preview", str(truncated))
    result = ok_json("preview", str(truncated), "--skip-corrupt")
    assert [s["key"] for s in result["samples"]] == ["a"] and len(result["skipped"]) == 1


def test_manifest_build_of_a_corrupt_shard(corrupt: str) -> None:
    assert "Rewrite the shard" in cli_error("manifest", "build", corrupt)


def write_types(tmp_path: Path, x: str = "int", version: str = "1.0.0") -> None:
    """``mytypes.py`` for --type; rewritten, it is imported afresh (the runner shares a process)."""
    sys.modules.pop("mytypes", None)
    (tmp_path / "mytypes.py").write_text(
        textwrap.dedent(
            f"""
            import atdata

            @atdata.packable
            class Other:
                width: int

            @atdata.packable(version={version!r})
            class Thing:
                x: {x}
            """
        )
    )


def test_manifest_build_with_the_wrong_type(tmp_path: Path) -> None:
    write_types(tmp_path)
    with ShardWriter(str(tmp_path / "d" / "s-%06d.tar"), manifest=False) as sink:
        sink.write(DictSample({"x": 1}, key="a"))
    line = cli_error("manifest", "build", "d/", "--type", "mytypes:Other")
    assert "do not match Other" in line and "--type" in line and "leave --type out" in line
    assert ok_json("manifest", "build", "d/")["inferred"]["fields"] == ["x"]  # no --type
    built = ok_json("manifest", "build", "d/", "--force", "--type", "mytypes:Thing")
    assert built["type"] == "Thing@1.0.0"


def test_register_an_existing_name_names_overwrite(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "d" / "s-%06d.tar")) as sink:
        sink.write(DictSample({"x": 1}, key="a"))
    ok("register", "d/", "one")
    assert "--overwrite" in cli_error("register", "d/", "one", "--no-overwrite")
    assert ok_json("register", "d/", "one", "--overwrite")["uri"] == "@local/one"


def test_register_a_changed_schema_says_how_to_give_it_a_version(tmp_path: Path) -> None:
    write_types(tmp_path)
    for folder, value in (("a", 1), ("b", "one")):
        with ShardWriter(str(tmp_path / folder / "s-%06d.tar"), manifest=False) as sink:
            sink.write(DictSample({"x": value}, key="k"))
    ok("manifest", "build", "a/", "--type", "mytypes:Thing")
    ok("register", "a/", "a")
    # b holds strings: Thing 1.0.0 with x: str is another definition of that version
    write_types(tmp_path, x="str")
    ok("manifest", "build", "b/", "--type", "mytypes:Thing")
    line = cli_error("register", "b/", "b")
    assert "version 2.0.0" in line
    assert "atdata manifest build URL --force --type MODULE:CLASS" in line
    write_types(tmp_path, x="str", version="2.0.0")  # what it says: a new version, rebuilt
    ok("manifest", "build", "b/", "--force", "--type", "mytypes:Thing")
    assert ok_json("register", "b/", "b")["schema_version"] == "2.0.0"


def test_publish_with_a_storage_the_shards_do_not_fit(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "d" / "s-%06d.tar")) as sink:
        sink.write(DictSample({"x": 1}, key="a"))
    with atmosphere.mock_atmosphere() as network:
        network.create_account("alice.test", "alice-password")
        with atmosphere.use(network.login("alice.test", "alice-password")):
            line = cli_error("publish", "d/", "--name", "tiny", "--storage", "http")
            assert "--storage http needs http(s):// shard URLs" in line
            assert "--storage blobs" in line
            published = ok_json("publish", "d/", "--name", "tiny", "--storage", "blobs")
            assert published["ref"] == "@alice.test/tiny"


def test_an_error_without_python_advice_shows_as_it_is() -> None:
    error = AtdataError("No dataset named 'x'. List them with `atdata ls`.")
    assert error.cli_hint is None and error.cli_message() == str(error)
