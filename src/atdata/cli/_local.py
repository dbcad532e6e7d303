"""``atdata ls`` and ``atdata register``: the local index of datasets and schemas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atdata.cli._output import console, human_bytes, make_table
from atdata.cli._resolve import resolve

__all__ = ["listing", "register", "render_listing", "render_register"]


def register(
    target: str, name: str, *, description: str = "", overwrite: bool = True
) -> dict[str, Any]:
    """Register the dataset at ``target`` as ``@local/name``, with its manifests' schema.

    Local paths are stored absolute (so ``@local/name`` works from any folder);
    patterns stay patterns; a folder is stored as its list of shards.

    Raises:
        ManifestError: a shard has no manifest (the message says how to build one).
        CatalogError: a bad name, or the name exists and ``overwrite`` is False.
    """
    from atdata.cli._headers import dataset_schema, read_headers
    from atdata.errors import ManifestError
    from atdata.index import Catalog

    resolved = resolve(target)
    schema: dict[str, Any] | None
    if resolved.record is not None:
        schema = dict(resolved.record.schema)
        metadata = dict(resolved.record.metadata)
    else:
        headers = read_headers(resolved.shards)
        missing = [s for s, h in zip(resolved.shards, headers, strict=True) if h is None]
        if missing:
            raise ManifestError(
                f"{len(missing)} of {len(resolved.shards)} shards have no manifest "
                f"(first: {missing[0]}), so the dataset's schema and size are unknown. "
                f"Build them first: atdata manifest build {target}",
                url=missing[0],
            )
        present = [h for h in headers if h is not None]
        schema = dataset_schema(present)
        if schema is None:
            raise ManifestError(
                f"The manifests of {target} record no schema. Rebuild them: "
                f"atdata manifest build {target} --force",
                url=target,
            )
        metadata = {
            "num_samples": sum(int(h.get("num_samples", 0)) for h in present),
            "num_shards": len(resolved.shards),
            "size_bytes": sum(int(h.get("size_bytes", 0)) for h in present),
            "registered_from": target,
        }
    with Catalog() as catalog:
        record = catalog.register_dataset(
            name,
            resolved.urls,
            schema,
            description=description,
            metadata=metadata,
            overwrite=overwrite,
        )
    return _dataset_json(record)


def _dataset_json(record: Any) -> dict[str, Any]:
    meta = record.metadata or {}
    return {
        "name": record.name,
        "uri": record.uri,
        "urls": record.urls,
        "schema_name": record.schema_name,
        "schema_version": record.schema_version,
        "description": record.description,
        "num_shards": meta.get("num_shards"),
        "num_samples": meta.get("num_samples"),
        "size_bytes": meta.get("size_bytes"),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def render_register(result: Mapping[str, Any]) -> None:
    """One line: what was registered and how to use it."""
    from rich.text import Text

    out = console()
    facts = [f"{result['schema_name']} {result['schema_version']}"]
    if result.get("num_shards") is not None:
        facts.append(f"{result['num_shards']:,} shards")
    if result.get("num_samples") is not None:
        facts.append(f"{result['num_samples']:,} samples")
    out.print(
        Text.assemble(
            ("Registered ", "green"), (result["uri"], "bold cyan"), f" ({', '.join(facts)})."
        )
    )
    out.print(
        Text(
            f"Use it as: atdata inspect {result['uri']}  or  "
            f"atdata.load_dataset({result['uri']!r})",
            style="dim",
        )
    )


def listing() -> dict[str, Any]:
    """Every registered dataset and schema.

    Returns:
        ``{"index": path, "datasets": [...], "schemas": [{"name", "versions", "latest"}]}``.
    """
    from atdata.index import Catalog, default_index_path

    path = default_index_path()
    if not path.exists():  # do not create an index just to say it is empty
        return {"index": str(path), "datasets": [], "schemas": []}
    with Catalog() as catalog:
        datasets = catalog.list_datasets()
        schemas = catalog.list_schemas()
    versions: dict[str, list[str]] = {}
    for s in schemas:  # sorted by name, then semantic version
        versions.setdefault(s.name, []).append(s.version)
    return {
        "index": str(path),
        "datasets": [_dataset_json(d) for d in datasets],
        "schemas": [{"name": n, "versions": v, "latest": v[-1]} for n, v in versions.items()],
    }


def render_listing(result: Mapping[str, Any]) -> None:
    """Two tables: datasets, then schemas."""
    from rich.text import Text

    out = console()
    if not result["datasets"] and not result["schemas"]:
        out.print(
            Text(
                f"The local index ({result['index']}) is empty. Register a dataset with "
                "`atdata register URL NAME`.",
                style="yellow",
            )
        )
        return
    if result["datasets"]:
        table = make_table("datasets")
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("schema", style="magenta")
        table.add_column("shards", justify="right")
        table.add_column("samples", justify="right")
        table.add_column("size", justify="right")
        table.add_column("description", overflow="fold")
        for d in result["datasets"]:
            table.add_row(
                d["uri"],
                f"{d['schema_name']} {d['schema_version']}",
                "?" if d["num_shards"] is None else f"{d['num_shards']:,}",
                "?" if d["num_samples"] is None else f"{d['num_samples']:,}",
                human_bytes(d["size_bytes"]),
                d["description"],
            )
        out.print(table)
    else:
        out.print(
            Text("No datasets registered; add one with `atdata register URL NAME`.", style="yellow")
        )
    if result["schemas"]:
        table = make_table("schemas")
        table.add_column("name", style="bold magenta", no_wrap=True)
        table.add_column("versions")
        for s in result["schemas"]:
            table.add_row(s["name"], ", ".join(s["versions"]))
        out.print(table)
