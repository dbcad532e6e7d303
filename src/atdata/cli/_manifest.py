"""``atdata manifest build``: write manifests for shards that lack them."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

from atdata.cli._output import console
from atdata.cli._resolve import resolve
from atdata.errors import SchemaError

__all__ = ["build", "import_type", "render"]


def build(target: str, *, force: bool = False, sample_type: str | None = None) -> dict[str, Any]:
    """Build the missing manifests (all of them with ``force``).

    Args:
        target: the dataset.
        force: rebuild manifests that exist.
        sample_type: ``"module:Class"`` of the ``@packable`` type; default: the
            registered schema for ``@local/`` names, else the type the dataset's
            other manifests record, else a schema inferred from the samples.

    Returns:
        ``{"url", "built": [shard URLs], "skipped": [shard URLs that had one],
        "type": "Name@version" or None, "type_from": "--type", "index",
        "manifests" or None, "inferred"}``; ``inferred`` (when the schema was
        inferred) has the recorded ``schema`` name, its ``fields`` and the
        fields ``left_out`` (name -> why), plus a ``hint`` on giving ``--type``.
    """
    resolved = resolve(target)
    headers = _headers(resolved.shards)
    work = force or any(h is None for h in headers)
    tp: type | None = None
    type_from = None
    if sample_type is not None:
        tp, type_from = import_type(sample_type), "--type"
    elif resolved.record is not None:
        tp, type_from = _type_of(resolved.record.schema), "index"
    elif work:
        recorded = _recorded_schema(headers)
        if recorded is not None:
            tp, type_from = _type_of(recorded), "manifests"
    built: list[str] = []
    if work:  # else nothing to do, known from the headers alone (no pyarrow, no numpy)
        from atdata.manifest.builder import build as build_manifests

        built = build_manifests(resolved.shards, tp, overwrite=force)
    done = set(built)
    return {
        "url": target,
        "type": None if tp is None else f"{tp.__schema__.name}@{tp.__schema__.version}",  # type: ignore[attr-defined]
        "type_from": type_from,
        "built": built,
        "skipped": [s for s in resolved.shards if s not in done],
        "inferred": _inferred(target, built) if tp is None and built else None,
    }


def _headers(shards: list[str]) -> list[dict[str, Any] | None]:
    """Each shard's manifest header; None where there is none, ``{}`` where it is unreadable
    (a manifest all the same: ``--force`` rebuilds it)."""
    from atdata.cli._headers import read_headers
    from atdata.errors import ManifestError

    try:
        return read_headers(shards)
    except ManifestError:
        pass
    out: list[dict[str, Any] | None] = []
    for shard in shards:
        try:
            out.extend(read_headers([shard]))
        except ManifestError:
            out.append({})
    return out


def _type_of(schema: Mapping[str, Any]) -> type:
    from atdata.sample import Schema

    return Schema.from_json(schema).to_type()


def _recorded_schema(headers: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The sample type the dataset's manifests record, for the shards built without one.

    Manifests whose schema was inferred from the samples (or that name the
    untyped ``DictSample``) record no type: those shards are inferred again.
    """
    from atdata.cli._headers import dataset_schema
    from atdata.errors import ManifestError

    typed = [h for h in headers if h is not None and _records_a_type(h.get("schema"))]
    try:
        return dataset_schema(typed)
    except ManifestError:  # schemas that do not merge: infer instead
        return None


def _records_a_type(schema: Any) -> bool:
    return (
        isinstance(schema, dict) and "inferred" not in schema and schema.get("name") != "DictSample"
    )


def _inferred(target: str, built: list[str]) -> dict[str, Any]:
    """What the manifests just built record of the schema inferred from the samples."""
    from atdata.cli._headers import read_headers

    (header,) = read_headers(built[:1])  # every shard built records the same schema
    assert header is not None
    schema = header["schema"]
    left_out = dict(schema.get("inferred", {}).get("left_out", {}))
    command = f"atdata manifest build {target} --force --type MODULE:CLASS"
    return {
        "schema": schema["name"],
        "fields": [f["name"] for f in schema["fields"]],
        "left_out": left_out,
        "hint": (
            f"To record every field, give the sample type: {command}"
            if left_out
            else f"To record a sample type instead: {command}"
        ),
    }


def import_type(spec: str) -> type:
    """Import ``"package.module:ClassName"`` (the working directory is importable).

    Raises:
        SchemaError: the spec is malformed, the module or class is missing, or the
            class is not ``@atdata.packable``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SchemaError(f"--type must look like 'package.module:ClassName', got {spec!r}.")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchemaError(
            f"Cannot import {module_name!r} for --type {spec}: {exc}. Run from the folder "
            "that holds the package, or install it."
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        tp = getattr(module, attr)
    except AttributeError:
        from atdata.errors import closest

        hint = closest(attr, [n for n in dir(module) if not n.startswith("_")])
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise SchemaError(f"Module {module_name!r} has no {attr!r}.{did_you_mean}") from None
    from atdata.sample import schema_of

    schema_of(tp)  # raises for a class that is not @packable
    return tp  # type: ignore[no-any-return]


def render(result: Mapping[str, Any]) -> None:
    """Print what was built and what was left alone, and the schema the manifests record."""
    from rich.text import Text

    out = console()
    built, skipped = result["built"], result["skipped"]
    for shard in built:
        out.print(Text.assemble(("built ", "green"), shard))
    summary = f"Built manifests for {len(built):,} shard{'s' if len(built) != 1 else ''}"
    if skipped:
        summary += f"; {len(skipped):,} already had one (--force rebuilds them)"
    out.print(Text(summary + ".", style="bold"))
    if built and result["type"] is not None:
        origin = _TYPE_ORIGINS[result["type_from"]]
        out.print(Text(f"Read as {result['type']} ({origin}).", style="dim"))
    inferred = result.get("inferred")
    if inferred:
        count = len(inferred["fields"])
        out.print(
            Text(
                f"Schema inferred from the samples: {inferred['schema']}, {count} "
                f"field{'s' if count != 1 else ''} (see `atdata schema show {result['url']}`).",
                style="dim",
            )
        )
        for name, why in inferred["left_out"].items():
            out.print(Text(f"Not recorded: field {name!r} ({why}).", style="yellow"))
        out.print(Text(inferred["hint"] + ".", style="dim"))


_TYPE_ORIGINS = {
    "--type": "--type",
    "index": "the schema registered for it",
    "manifests": "the schema its manifests record",
}
