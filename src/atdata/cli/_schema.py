"""``atdata schema show`` and ``atdata schema diff``.

A schema argument is either data (a path, pattern, URL or ``@local/name``,
whose schema is read from its manifests or the index; or a published
``@handle/name`` / ``at://`` dataset, whose schema record is read, never its
shards) or a registered schema ``NAME`` / ``NAME@VERSION`` (the latest version
when none is given).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from atdata.cli._output import console, make_table
from atdata.cli._resolve import is_dataset_ref, resolve
from atdata.errors import SchemaError

if TYPE_CHECKING:
    from atdata.cli._resolve import Target
    from atdata.index import Catalog
    from atdata.sample import FieldChange, Schema

__all__ = ["diff", "load", "render_diff", "render_show", "show"]

_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def load(source: str, catalog: Catalog | None = None) -> tuple[dict[str, Any], str]:
    """The schema (a JSON dict) that ``source`` names, and where it came from.

    Returns:
        ``(schema, origin)``; origin is ``"index"``, ``"manifest"`` or
        ``"atmosphere"`` (the schema record of a published dataset).

    Raises:
        SchemaError: an unknown schema name or version (with suggestions).
        UnreadableURLError, ManifestError: data that cannot be read or has no manifest.
        AtmosphereError: a published dataset that cannot be resolved.
    """
    if is_dataset_ref(source):
        return _target_schema(resolve(source))
    name, _, version = source.partition("@")
    from atdata.index import Catalog

    try:
        if catalog is not None:
            record = catalog.get_schema(name, version or None)
        else:
            with Catalog() as own:
                record = own.get_schema(name, version or None)
    except SchemaError as exc:
        if version or "No schema named" not in str(exc):
            raise
        raise SchemaError(
            f"{exc} If you meant a dataset: there is no file or folder named {source!r}."
        ) from None
    return dict(record.schema), "index"


def _target_schema(target: Target) -> tuple[dict[str, Any], str]:
    if target.record is not None:
        return dict(target.record.schema), "index"
    if target.schema is not None:
        return dict(target.schema), "atmosphere"
    return _dataset_schema(target.shards), "manifest"


def _dataset_schema(shards: Sequence[str]) -> dict[str, Any]:
    """The schema in the shards' manifests (merged when shards hold several versions).

    Raises:
        ManifestError: no shard has a manifest (the message says how to build them).
    """
    from atdata.cli._headers import BUILD_HINT, dataset_schema, read_headers
    from atdata.errors import ManifestError

    schema = dataset_schema(read_headers(shards))
    if schema is None:
        raise ManifestError(
            f"No manifest records a schema for {shards[0] if len(shards) == 1 else 'these shards'}"
            f", so it is unknown. Build manifests with `{BUILD_HINT}`."
        )
    return schema


# -- show -----------------------------------------------------------------------------


def show(source: str) -> dict[str, Any]:
    """The schema ``source`` names, with its registered versions and datasets.

    Returns:
        The schema dict (``name``, ``version``, ``module``, ``fields``) plus
        ``source``, ``origin``, ``versions`` (registered versions of this name),
        ``datasets`` (``@local/`` names using exactly this version) and
        ``published`` (``uri`` and ``schema_uri`` of a published dataset, else None).
    """
    from atdata.index import Catalog, default_index_path

    result: dict[str, Any]
    published = None
    if not is_dataset_ref(source) or source.startswith("@local/"):
        with Catalog() as catalog:
            schema, origin = load(source, catalog)
            result = _with_index_facts(schema, catalog)
    else:
        target = resolve(source)
        schema, origin = _target_schema(target)
        if target.published is not None:
            published = {"uri": target.published.uri, "schema_uri": target.published.schema_uri}
        result = dict(schema)
        if default_index_path().exists():
            with Catalog() as catalog:
                result = _with_index_facts(schema, catalog)
        else:
            result.update(versions=[], datasets=[])
    result.update(source=source, origin=origin, published=published)
    return result


def _with_index_facts(schema: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    name, version = schema.get("name", "?"), schema.get("version", "?")
    registered = {s.version for s in catalog.list_schemas() if s.name == name}
    versions = catalog.schema_versions(name) if registered else []
    datasets = [
        d.uri
        for d in catalog.list_datasets()
        if d.schema_name == name and d.schema_version == _bare(version)
    ]
    return {**schema, "versions": versions, "datasets": datasets}


def _bare(version: str) -> str:
    return version[1:] if version.startswith("v") else version


def render_show(result: Mapping[str, Any]) -> None:
    """Print a schema as a header line and a table of its fields."""
    from rich.text import Text

    out = console()
    header = Text.assemble(
        (str(result.get("name", "?")), "bold cyan"), " ", (str(result.get("version", "?")), "bold")
    )
    published = result.get("published")
    # A published schema's module is its record's URI, printed on the next line.
    if result.get("module") and not published:
        header.append(f"  (module {result['module']})", style="dim")
    out.print(header)
    if published:
        where = f"published schema {published['schema_uri']}"
    else:
        where = "local index" if result["origin"] == "index" else "manifests"
    out.print(Text(f"from {result['source']} ({where})", style="dim"))
    versions = result.get("versions") or []
    if versions:
        marked = [f"[{v}]" if v == _bare(str(result.get("version"))) else v for v in versions]
        out.print(Text("registered versions: " + ", ".join(marked), style="dim"))
    if result.get("datasets"):
        out.print(Text("datasets: " + ", ".join(result["datasets"]), style="dim"))
    inferred = result.get("inferred")
    if isinstance(inferred, dict):
        out.print(Text("inferred from the samples (written without a sample type)", style="dim"))
        for name, why in dict(inferred.get("left_out") or {}).items():
            out.print(Text(f"not recorded: field {name!r} ({why})", style="yellow"))
    table = make_table()
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("type", style="magenta")
    table.add_column("manifest")
    table.add_column("notes", style="dim")
    for field in result.get("fields", []):
        notes = []
        if field.get("optional"):
            notes.append("optional")
        if field.get("has_default"):
            notes.append("has default")
        if isinstance(field.get("encoding"), dict):
            notes.append(f"stored as {field['encoding'].get('name')}")
        if field.get("dtype") or field.get("shape") is not None:
            notes.append(_array_note(field.get("dtype"), field.get("shape")))
        table.add_row(
            str(field.get("name")),
            str(field.get("type")),
            str(field.get("manifest") or "-"),
            ", ".join(notes),
        )
    out.print(table)


def _array_note(dtype: Any, shape: Any) -> str:
    """``uint8 (28, 28)``; an axis whose length varies is ``?``."""
    parts = [str(dtype)] if dtype else []
    if isinstance(shape, list):
        dims = ["?" if n is None else str(n) for n in shape]
        parts.append("(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")")
    return " ".join(parts)


# -- diff -----------------------------------------------------------------------------


def diff(sources: Sequence[str]) -> dict[str, Any]:
    """Fields added, removed and retyped going from the first schema to the second.

    ``sources`` is ``[A, B]`` (each a dataset, ``NAME``, ``NAME@VERSION``; two bare
    versions pick the one registered name that has both; a bare version next to
    ``NAME@VERSION`` means that name) or ``[NAME, V1, V2]``.

    Raises:
        SchemaError: wrong number of arguments, or unknown names or versions.
    """
    from atdata.index import Catalog

    with Catalog() as catalog:
        old_source, new_source = _diff_sources(list(sources), catalog)
        old, _ = load(old_source, catalog)
        new, _ = load(new_source, catalog)
    return compare(old, new, old_source, new_source)


def _diff_sources(sources: list[str], catalog: Catalog) -> tuple[str, str]:
    if len(sources) == 3:
        name, v1, v2 = sources
        for v in (v1, v2):
            if not _VERSION.match(v):
                raise SchemaError(
                    f"{v!r} is not a version. Give NAME V1 V2, e.g. "
                    f"`atdata schema diff {name} v1.0.0 v1.1.0`."
                )
        return f"{name}@{v1}", f"{name}@{v2}"
    if len(sources) != 2:
        raise SchemaError(
            f"schema diff compares two schemas: give A B (datasets or NAME@VERSION) or "
            f"NAME V1 V2; got {len(sources)} argument{'s' if len(sources) != 1 else ''}."
        )
    a, b = sources
    a_bare, b_bare = bool(_VERSION.match(a)), bool(_VERSION.match(b))
    if a_bare and b_bare:
        name = _name_with_versions(a, b, catalog)
        return f"{name}@{a}", f"{name}@{b}"
    if a_bare and "@" in b and not is_dataset_ref(b):
        return f"{b.partition('@')[0]}@{a}", b
    if b_bare and "@" in a and not is_dataset_ref(a):
        return a, f"{a.partition('@')[0]}@{b}"
    return a, b


def _name_with_versions(a: str, b: str, catalog: Catalog) -> str:
    wanted = {_bare(a), _bare(b)}
    by_name: dict[str, set[str]] = {}
    for record in catalog.list_schemas():
        by_name.setdefault(record.name, set()).add(record.version)
    names = sorted(n for n, versions in by_name.items() if wanted <= versions)
    if len(names) == 1:
        return names[0]
    if not names:
        registered = ", ".join(f"{n} ({', '.join(sorted(v))})" for n, v in sorted(by_name.items()))
        raise SchemaError(
            f"No registered schema has both versions {a} and {b}. Name the type: "
            f"`atdata schema diff NAME {a} {b}`. Registered: {registered or '(none)'}."
        )
    raise SchemaError(
        f"Several registered schemas have versions {a} and {b}: {', '.join(names)}. "
        f"Name one: `atdata schema diff {names[0]} {a} {b}`."
    )


def compare(
    old: Mapping[str, Any], new: Mapping[str, Any], old_source: str, new_source: str
) -> dict[str, Any]:
    """The JSON result of a diff between two schema dicts (the library's ``Schema.diff``).

    Each added, removed or retyped field carries ``old_readers`` /
    ``new_readers``: why readers of that version cannot read the other's data,
    or None (manifest kinds and encodings never stop a reader). ``compatibility`` sums them
    up per version, ``bump`` is the version the change needs (None when the
    names differ or nothing changed), and ``summary`` holds the lines printed.
    """
    diff = _parse(old, old_source).diff(_parse(new, new_source))
    before = {f.name: f for f in diff.old.fields}
    after = {f.name: f for f in diff.new.fields}

    def entry(change: FieldChange) -> dict[str, Any]:
        if change.kind in ("manifest", "encoding"):  # no reader minds these
            return {"name": change.name, "old": change.old, "new": change.new}
        described: dict[str, Any]
        if change.kind == "added":
            described = {"type": change.new, "manifest": after[change.name].manifest}
        elif change.kind == "removed":
            described = {"type": change.old, "manifest": before[change.name].manifest}
        else:
            described = {"old": change.old, "new": change.new}
        return {
            "name": change.name,
            **described,
            "old_readers": change.old_readers,
            "new_readers": change.new_readers,
        }

    result: dict[str, Any] = {
        "old": {"name": diff.old.name, "version": diff.old.version, "source": old_source},
        "new": {"name": diff.new.name, "version": diff.new.version, "source": new_source},
        **{kind: [entry(c) for c in diff.changes if c.kind == kind] for kind in diff},
        "identical": diff.identical,
    }
    old_label, new_label = _labels(result["old"], result["new"])
    result["compatibility"] = {
        "old_readers": _readers(old_label, new_label, diff.old_readers),
        "new_readers": _readers(new_label, old_label, diff.new_readers),
    }
    result["bump"] = None
    if diff.next_version is not None and diff.old.name == diff.new.name:
        result["bump"] = {
            "part": diff.bump,
            "at_least": diff.next_version,
            "given": diff.new.version,
            "enough": diff.version_enough,
        }
    result["summary"] = _summary(result)
    return result


_CHANGE_OF = {
    "major": "A breaking change",
    "minor": "A compatible change of fields",
    "patch": "A change readers do not see",
}


def _labels(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str]:
    """How the two sides are named in the verdicts: by version, or by source when alike."""
    if old["version"] != new["version"]:
        return f"v{_bare(old['version'])}", f"v{_bare(new['version'])}"
    return (
        f"{old['name']} {old['version']} ({old['source']})",
        f"{new['name']} {new['version']} ({new['source']})",
    )


def _readers(label: str, other: str, problems: Sequence[str]) -> dict[str, Any]:
    return {"of": label, "reading": other, "compatible": not problems, "problems": list(problems)}


def _summary(result: Mapping[str, Any]) -> list[str]:
    lines = []
    for side in ("old_readers", "new_readers"):
        verdict = result["compatibility"][side]
        answer = "yes" if verdict["compatible"] else "no: " + "; ".join(verdict["problems"])
        lines.append(
            f"Compatible for readers of {verdict['of']} (reading {verdict['reading']} data): "
            f"{answer}"
        )
    bump = result["bump"]
    if bump is not None:
        what = _CHANGE_OF[bump["part"]]
        needs = f"{what} ({bump['part']}): it needs version {bump['at_least']} or later"
        if bump["enough"]:
            lines.append(f"{needs}, and {bump['given']} is.")
        else:
            lines.append(f"{needs}, but the new schema is {bump['given']}.")
    return lines


def _parse(schema: Mapping[str, Any], source: str) -> Schema:
    from atdata.sample import Schema

    try:
        return Schema.from_json(schema)
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"The schema of {source} is malformed ({exc}).") from None


def render_diff(result: Mapping[str, Any]) -> None:
    """Print a diff: ``+`` added, ``-`` removed, ``~`` retyped or re-indexed fields,
    then whether readers of each version read the other's data, and the version needed."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    old, new = result["old"], result["new"]
    out.print(
        Text.assemble(
            (f"{old['name']} {old['version']}", "bold"),
            " → ",
            (f"{new['name']} {new['version']}", "bold"),
            (f"   ({old['source']} → {new['source']})", "dim"),
        )
    )
    if result["identical"]:
        out.print(
            Text(
                "No differences: the fields, their types, manifest kinds and encodings "
                "are the same.",
                style="green",
            )
        )
        return
    table = Table.grid(padding=(0, 2))
    for _ in range(4):
        table.add_column()
    compatibility = result["compatibility"]

    def breaks(change: Mapping[str, Any]) -> Text:
        broken = [compatibility[s]["of"] for s in ("old_readers", "new_readers") if change.get(s)]
        return Text(f"breaks readers of {' and '.join(broken)}" if broken else "", "red")

    for f in result["added"]:
        kind = f"  (manifest: {f['manifest']})" if f["manifest"] else ""
        table.add_row(Text("+", "green"), Text(f["name"], "green"), f["type"] + kind, breaks(f))
    for f in result["removed"]:
        table.add_row(Text("-", "red"), Text(f["name"], "red"), f["type"], breaks(f))
    for f in result["retyped"]:
        table.add_row(
            Text("~", "yellow"), Text(f["name"], "yellow"), f"{f['old']} → {f['new']}", breaks(f)
        )
    for f in result["manifest"]:
        table.add_row(
            Text("~", "yellow"),
            Text(f["name"], "yellow"),
            f"manifest: {f['old'] or 'none'} → {f['new'] or 'none'}",
            "",
        )
    for f in result["encoding"]:
        table.add_row(
            Text("~", "yellow"), Text(f["name"], "yellow"), f"encoding: {f['old']} → {f['new']}", ""
        )
    out.print(table)
    counts = [
        f"{len(result[k])} {label}"
        for k, label in (
            ("added", "added"),
            ("removed", "removed"),
            ("retyped", "retyped"),
            ("manifest", "re-indexed"),
            ("encoding", "re-encoded"),
        )
        if result[k]
    ]
    out.print(Text(", ".join(counts), style="dim"))
    verdicts = [compatibility[side]["compatible"] for side in ("old_readers", "new_readers")]
    if result["bump"] is not None:
        verdicts.append(result["bump"]["enough"])
    for line, good in zip(result["summary"], verdicts, strict=True):
        out.print(Text(line, style="green" if good else "bold red"), soft_wrap=True)
