"""Lazy module attributes: a package names what it exports, each is imported on first use.

Packages whose names pull in numpy, pyarrow or an optional extra keep
``import atdata`` (and every CLI command) fast by importing a name's module
only when the name is first looked up (:pep:`562`). The looked-up value is then
stored on the package, so later lookups are plain attribute reads.

Example:
    In ``atdata/manifest/__init__.py``::

        from atdata import _lazy  # a private name: the package does not re-export it

        _EXPORTS = {"build": "atdata.manifest.builder"}
        __all__ = ["build"]
        __getattr__, __dir__ = _lazy.lazy_exports(__name__, _EXPORTS)

        if TYPE_CHECKING:  # what type checkers and IDEs see
            from atdata.manifest.builder import build as build
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module_name: str,
    exports: Mapping[str, str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a module's ``__getattr__`` and ``__dir__`` for lazily imported names.

    Args:
        module_name: the module being defined (pass ``__name__``).
        exports: public name -> the module that defines it, e.g.
            ``{"Dataset": "atdata.dataset"}``; the value is imported from there
            on first access and cached on the module.
        submodules: names of subpackages to import on attribute access
            (``atdata.manifest`` without ``import atdata.manifest``). A name
            that is both a submodule and an export resolves to the submodule.

    Returns:
        ``(__getattr__, __dir__)``, to assign at module level. ``__getattr__``
        raises :class:`AttributeError` naming the module, with a "Did you mean"
        hint when the name is close to one it knows; ``__dir__`` lists the
        module's globals plus every export and submodule.

    Example:
        >>> import types
        >>> mod = types.ModuleType("demo")
        >>> sys.modules["demo"] = mod
        >>> mod.__getattr__, mod.__dir__ = lazy_exports("demo", {"dumps": "json"})
        >>> mod.dumps([1])
        '[1]'
        >>> mod.dump
        Traceback (most recent call last):
        AttributeError: module 'demo' has no attribute 'dump'. Did you mean 'dumps'?
    """
    exports = dict(exports)
    children = frozenset(submodules)

    def module_getattr(name: str) -> Any:
        if name in children:
            return importlib.import_module(f"{module_name}.{name}")
        source = exports.get(name)
        if source is None:
            raise AttributeError(_no_attribute(module_name, name, [*exports, *children]), name=name)
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module_name], name, value)  # later lookups skip __getattr__
        return value

    def module_dir() -> list[str]:
        return sorted(set(vars(sys.modules[module_name])) | exports.keys() | children)

    return module_getattr, module_dir


def _no_attribute(module_name: str, name: str, known: list[str]) -> str:
    message = f"module {module_name!r} has no attribute {name!r}"
    if name.startswith("__"):  # probes by copy, pickle, inspect: keep them cheap
        return message
    import difflib  # only on the error path: its import is not free

    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"{message}. Did you mean {matches[0]!r}?" if matches else message
