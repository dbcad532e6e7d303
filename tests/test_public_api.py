"""The public surface: every exported name imports, and ``import atdata`` stays light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import atdata

# What the README and docs/architecture.md promise at the top level.
_PROMISED = {
    "Dataset",
    "DatasetDict",
    "DictSample",
    "ManifestField",
    "NDArray",
    "PackableSample",
    "SampleBatch",
    "Schema",
    "ShardWriter",
    "lens",
    "load_dataset",
    "packable",
    "schema_of",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(atdata.__all__) == sorted(set(atdata.__all__))


@pytest.mark.parametrize("name", atdata.__all__)
def test_every_name_imports(name: str) -> None:
    value = getattr(atdata, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from atdata import {name}", namespace)
    assert namespace[name] is value or name == "lens"


def test_nothing_promised_is_missing() -> None:
    assert set(atdata.__all__) >= _PROMISED
    assert set(dir(atdata)) >= _PROMISED


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        atdata.nope  # noqa: B018


def test_lens_stays_a_decorator_after_the_module_is_imported() -> None:
    importlib.import_module("atdata.lens")

    @atdata.packable
    class A:
        x: int

    @atdata.packable
    class B:
        y: int

    @atdata.lens
    def a_to_b(a: A) -> B:
        return B(y=a.x)

    assert a_to_b(A(x=3)) == B(y=3)


def test_version() -> None:
    assert isinstance(atdata.__version__, str) and atdata.__version__.count(".") == 2


_HEAVY = ["numpy", "pyarrow", "duckdb", "torch", "fsspec", "msgspec", "pandas", "dask"]


def test_import_atdata_is_light() -> None:
    code = (
        "import json, sys; import atdata; "
        f"print(json.dumps([m for m in {_HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
