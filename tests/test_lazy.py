"""atdata._lazy: the one helper behind every package's lazily imported names."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from atdata._lazy import lazy_exports


@pytest.fixture
def demo() -> Iterator[types.ModuleType]:
    module = types.ModuleType("lazy_demo")
    sys.modules["lazy_demo"] = module
    module.__getattr__, module.__dir__ = lazy_exports(  # type: ignore[method-assign]
        "lazy_demo", {"dumps": "json", "OrderedDict": "collections"}, submodules=("tool",)
    )
    yield module
    del sys.modules["lazy_demo"]


def test_a_name_is_imported_on_first_use_then_cached(demo: types.ModuleType) -> None:
    import json

    assert "dumps" not in vars(demo)
    assert demo.dumps is json.dumps
    assert vars(demo)["dumps"] is json.dumps


def test_dir_lists_exports_and_submodules(demo: types.ModuleType) -> None:
    assert {"dumps", "OrderedDict", "tool"} <= set(dir(demo))


def test_an_unknown_name_names_the_module_and_suggests(demo: types.ModuleType) -> None:
    with pytest.raises(AttributeError, match=r"^module 'lazy_demo' has no attribute 'dump'\. "):
        demo.dump  # noqa: B018
    with pytest.raises(AttributeError, match=r"Did you mean 'dumps'\?$"):
        demo.dump  # noqa: B018
    with pytest.raises(AttributeError, match=r"no attribute 'zzz'$") as info:
        demo.zzz  # noqa: B018
    assert info.value.name == "zzz"


def test_dunder_probes_get_a_plain_attribute_error(demo: types.ModuleType) -> None:
    assert not hasattr(demo, "__wrapped__")


def test_the_packages_use_it() -> None:
    import atdata

    with pytest.raises(AttributeError, match=r"module 'atdata' has no attribute 'Datset'\. "):
        atdata.Datset  # noqa: B018
    with pytest.raises(AttributeError, match="Did you mean 'build'"):
        atdata.manifest.buil  # noqa: B018
