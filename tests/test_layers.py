"""The package's layers: no module imports a layer above its own, no package cycles.

Every ``src/atdata/**/*.py`` is parsed with :mod:`ast` (nothing is imported, so
optional extras do not matter). All ``import atdata.x`` and ``from atdata.x
import y`` statements are collected — at module level, under ``if
TYPE_CHECKING:``, and deferred inside functions — with relative imports resolved
against the importing module. ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module, else of ``pkg``.

Imports made from strings (``importlib.import_module``) are not statements and
are not seen: that is how the resolver registry in ``atdata.shards._shardset``
and the lazy ``__getattr__`` of the packages reach upward without depending on
the layers they name.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "atdata"

# The layers, top to bottom. A module may import its own layer and any layer below.
LAYERS: list[tuple[str, frozenset[str]]] = [
    # Entry points and top-level helpers: the lazy facade (``atdata/__init__.py``,
    # which re-exports names from every layer), ``python -m atdata``, the CLI, the
    # pytest kit and the torch helpers.
    (
        "entry points",
        frozenset({"atdata", "atdata.__main__", "atdata.cli", "atdata.testing", "atdata.torch"}),
    ),
    # Event pipelines and their Modal deployment (which wraps the pipeline service).
    ("pipelines", frozenset({"atdata.pipeline", "atdata.modal"})),
    # Map jobs: plan, run, ledger, executors.
    ("processing", frozenset({"atdata.processing"})),
    # Name resolvers: the local index and the AT Protocol client. They may build a
    # Dataset (``Atmosphere.load_dataset``); the dataset layer reaches them only
    # through the string-keyed resolver registry in ``atdata.shards._shardset``.
    ("resolvers", frozenset({"atdata.index", "atdata.atmosphere"})),
    # Dataset, DatasetDict, load_dataset: views over a ShardSet.
    ("dataset", frozenset({"atdata.dataset"})),
    # The training loader: DatasetView, mix, the shard cache.
    ("loader", frozenset({"atdata.loader"})),
    # Manifests: build, load, query.
    ("manifest", frozenset({"atdata.manifest"})),
    # Tar shards: reader, writer, ShardSet.
    ("shards", frozenset({"atdata.shards"})),
    # URLs, stores, pattern expansion.
    ("storage", frozenset({"atdata.storage"})),
    # Sample types and their encoding; lenses between them.
    (
        "samples",
        frozenset(
            {"atdata.sample", "atdata._types", "atdata._npy", "atdata._encodings", "atdata.lens"}
        ),
    ),
    # Cross-cutting and stdlib-only: the error tree, lazy exports, reference forms,
    # logs/metrics/traces, the progress bar and Ctrl-C's one line.
    (
        "foundation",
        frozenset(
            {
                "atdata.errors",
                "atdata._interrupt",
                "atdata._lazy",
                "atdata._progress",
                "atdata._refs",
                "atdata._semver",
                "atdata._version",
                "atdata.observability",
            }
        ),
    ),
]

# The only imports allowed to point up, as (importing module, enclosing function, imported
# unit). Each needs a reason.
ALLOWED_UPWARD: dict[tuple[str, str, str], str] = {
    # ``ds.map(fn)`` is a shortcut for ``atdata.processing.map_dataset(ds, fn)``; the import
    # is deferred to the call, so reading a dataset never loads the processing engine.
    ("atdata.dataset", "Dataset.map", "atdata.processing"): "the Dataset.map shortcut",
    # A shard is written with its manifest beside it (the writer feeds each sample to a
    # ManifestBuilder); the import waits for the first shard and ``manifest=False`` skips it.
    ("atdata.shards.writer", "ShardWriter._open", "atdata.manifest"): "the manifest sidecar",
}


@dataclasses.dataclass(frozen=True)
class Edge:
    """One import statement's target, as found in the source."""

    source: str  # importing module, e.g. "atdata.shards.writer"
    target: str  # imported module, e.g. "atdata.manifest.builder"
    path: Path
    line: int
    scope: str  # enclosing "Class.method" qualname, "" at module level
    type_checking: bool
    names: tuple[str, ...] = ()  # for ``from x import a, b``: the names, when x is the target

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"

    @property
    def what(self) -> str:
        if self.names:
            return f"{self.source} imports {', '.join(self.names)} from {self.target}"
        return f"{self.source} imports {self.target}"

    @property
    def how(self) -> str:
        if self.type_checking:
            return "under TYPE_CHECKING"
        if self.scope:
            return f"deferred, in {self.scope}()"
        return "at module level"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


MODULES: frozenset[str] = frozenset(module_name(p) for p in source_files())


def unit_of(module: str) -> str:
    """The package (or top-level module) an ``atdata`` module belongs to."""
    return ".".join(module.split(".")[:2])


_RANK: dict[str, int] = {
    unit: len(LAYERS) - i for i, (_, units) in enumerate(LAYERS) for unit in units
}
_LAYER_NAME: dict[str, str] = {unit: name for name, units in LAYERS for unit in units}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.module = module_name(path)
        self.is_package = path.name == "__init__.py"
        self.scope: list[str] = []
        self.type_checking = 0
        self.edges: list[Edge] = []

    # scopes
    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    # imports
    def _add(self, target: str, node: ast.stmt, names: tuple[str, ...] = ()) -> None:
        if target == "atdata" or target.startswith("atdata."):
            self.edges.append(
                Edge(
                    self.module,
                    target,
                    self.path,
                    node.lineno,
                    ".".join(self.scope),
                    self.type_checking > 0,
                    names,
                )
            )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            package = self.module.split(".")
            if not self.is_package:
                package.pop()
            if node.level > 1:
                package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            if candidate in MODULES:
                self._add(candidate, node)
            else:
                self._add(base, node, (alias.name,))


def collect(path: Path) -> list[Edge]:
    collector = _Collector(path)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.edges


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return [edge for path in source_files() for edge in collect(path)]


def _allowed(edge: Edge) -> bool:
    return (edge.source, edge.scope, unit_of(edge.target)) in ALLOWED_UPWARD


# -- the spec itself -------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in MODULES if unit_of(m) not in _RANK)
    assert not unplaced, (
        f"modules in no layer: {unplaced}; add their package to LAYERS in tests/test_layers.py"
    )


def test_every_layer_entry_exists() -> None:
    units = {unit_of(m) for m in MODULES}
    stale = sorted(u for _, layer in LAYERS for u in layer if u not in units)
    assert not stale, f"LAYERS names packages that do not exist: {stale}"


def test_no_unit_is_in_two_layers() -> None:
    seen: dict[str, str] = {}
    for name, units in LAYERS:
        for unit in units:
            assert unit not in seen, f"{unit} is in layers {seen[unit]!r} and {name!r}"
            seen[unit] = name


def test_the_scanner_sees_deferred_relative_and_submodule_imports(edges: list[Edge]) -> None:
    found = {(e.source, e.target, e.scope) for e in edges}
    # deferred inside a method
    assert ("atdata.dataset", "atdata.processing", "Dataset.map") in found
    # relative: ``from ._catalog import ...`` in atdata/index/__init__.py
    assert ("atdata.index", "atdata.index._catalog", "") in found
    # ``from atdata import observability as obs`` names the submodule, not the facade
    assert ("atdata.shards.reader", "atdata.observability", "") in found


def test_allowlist_entries_are_still_used(edges: list[Edge]) -> None:
    used = {(e.source, e.scope, unit_of(e.target)) for e in edges}
    stale = sorted(set(ALLOWED_UPWARD) - used)
    assert not stale, f"ALLOWED_UPWARD lists imports that no longer exist: {stale}"


# -- the rules -------------------------------------------------------------------------------


def test_no_import_points_up_the_layer_order(edges: list[Edge]) -> None:
    problems = []
    for edge in edges:
        src_unit, dst_unit = unit_of(edge.source), unit_of(edge.target)
        if src_unit not in _RANK or dst_unit not in _RANK:
            continue  # reported by test_every_module_has_a_layer
        if _RANK[dst_unit] > _RANK[src_unit] and not _allowed(edge):
            problems.append(
                f"{edge.where}: {edge.what} ({edge.how}) — "
                f"{src_unit} is in layer {_LAYER_NAME[src_unit]!r}, which lies below layer "
                f"{_LAYER_NAME[dst_unit]!r} of {dst_unit}, so this import points up"
            )
    assert not problems, "upward imports:\n" + "\n".join(problems)


def _shortest_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest path start -> ... -> start, found breadth first."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def test_no_import_cycle_between_packages(edges: list[Edge]) -> None:
    """Between packages, within a layer or across layers (the allowlist is left out)."""
    graph: dict[str, set[str]] = defaultdict(set)
    examples: dict[tuple[str, str], Edge] = {}
    for edge in sorted(edges, key=lambda e: (e.type_checking, bool(e.scope), e.where)):
        a, b = unit_of(edge.source), unit_of(edge.target)
        if a != b and not _allowed(edge):
            graph[a].add(b)
            examples.setdefault((a, b), edge)  # prefer a module-level, runtime example
    cycles: dict[frozenset[str], list[str]] = {}
    for node in sorted(graph):
        cycle = _shortest_cycle(graph, node)
        if cycle is not None:
            cycles.setdefault(frozenset(cycle), cycle)
    problems = []
    for cycle in cycles.values():
        steps = [examples[(a, b)] for a, b in itertools.pairwise(cycle)]
        problems.append(
            " -> ".join(cycle) + "".join(f"\n    {e.where}: {e.what} ({e.how})" for e in steps)
        )
    assert not problems, "import cycles between packages:\n  " + "\n  ".join(problems)
