"""Every public name is in its module's ``__all__``, and everything in ``__all__`` exists.

A module's public names are read from its source with :mod:`ast`: what it defines
at module level (``def``, ``class``, assignments) and what it re-exports from a
private atdata module (``from atdata.x._impl import Name``), including the lazy
exports declared for type checkers under ``if TYPE_CHECKING:`` when the module
really provides them. Names starting with ``_``, pytest hooks (``pytest_configure``
in the plugin ``atdata.testing``), module objects and type variables are left
out; so are imports from public modules, which are the caller's to import from
there.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, TypeVarTuple

import pytest

import atdata
import atdata.errors

# Module -> the optional package it needs at import time, if any.
PUBLIC_MODULES: dict[str, str | None] = {
    "atdata": None,
    "atdata.atmosphere": None,
    "atdata.errors": None,
    "atdata.index": None,
    "atdata.lens": None,
    "atdata.loader": None,
    "atdata.manifest": None,
    "atdata.pipeline": None,
    "atdata.processing": None,
    "atdata.shards": None,
    "atdata.storage": None,
    "atdata.testing": "pytest",
    "atdata.torch": "torch",
}


def _load(name: str) -> types.ModuleType:
    needs = PUBLIC_MODULES[name]
    if needs is not None:
        pytest.importorskip(needs)
    return importlib.import_module(name)


def _is_private_atdata(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "atdata" and any(p.startswith("_") for p in parts[1:])


def _resolve(module: types.ModuleType, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.__name__.split(".")
    if not hasattr(module, "__path__"):  # a plain module: relative to its package
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _statements(body: list[ast.stmt], in_type_checking: bool = False) -> Any:
    """Module-level statements, with those inside ``if`` and ``try`` blocks."""
    for node in body:
        if isinstance(node, ast.If):
            guarded = in_type_checking or ast.unparse(node.test).endswith("TYPE_CHECKING")
            yield from _statements(node.body, guarded)
            yield from _statements(node.orelse, in_type_checking)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _statements(block, in_type_checking)
        else:
            yield node, in_type_checking


def _bound_names(module: types.ModuleType) -> dict[str, str]:
    """Public names the module defines or re-exports from a private module -> where from."""
    source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for node, type_checking in _statements(ast.parse(source).body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = f"line {node.lineno}"
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        found[leaf.id] = f"line {node.lineno}"
        elif isinstance(node, ast.ImportFrom):
            origin = _resolve(module, node)
            if not _is_private_atdata(origin):
                continue
            for alias in node.names:
                name = alias.asname or alias.name
                if not type_checking or hasattr(module, name):
                    found[name] = f"from {origin}"
    return {
        name: where
        for name, where in found.items()
        if not name.startswith(("_", "pytest_")) and not _is_helper(getattr(module, name, None))
    }


def _is_helper(value: object) -> bool:
    return isinstance(value, types.ModuleType | TypeVar | ParamSpec | TypeVarTuple)


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_all_lists_every_public_name(name: str) -> None:
    module = _load(name)
    missing = {n: w for n, w in sorted(_bound_names(module).items()) if n not in module.__all__}
    assert not missing, (
        f"{name} has public names missing from __all__ (add them, or prefix with _): {missing}"
    )


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_every_name_in_all_resolves(name: str) -> None:
    module = _load(name)
    assert len(module.__all__) == len(set(module.__all__)), f"{name}.__all__ has duplicates"
    unresolved = [n for n in module.__all__ if not hasattr(module, n)]
    assert not unresolved, f"{name}.__all__ lists names it does not provide: {unresolved}"


ERRORS = sorted(
    name
    for name, value in vars(atdata.errors).items()
    if isinstance(value, type)
    and issubclass(value, Exception)
    and value.__module__ == "atdata.errors"
)


def test_errors_are_found() -> None:
    assert {"AtdataError", "MissingDependencyError", "AtmosphereError"} <= set(ERRORS)


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_exported_at_the_top_level(name: str) -> None:
    assert name in atdata.errors.__all__
    assert name in atdata.__all__
    assert getattr(atdata, name) is getattr(atdata.errors, name)
