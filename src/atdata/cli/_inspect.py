"""``atdata inspect``: what a dataset holds, from its manifest headers alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atdata.cli._headers import dataset_schema, read_headers, shard_sizes, summarize_fields
from atdata.cli._output import console, human_bytes, make_table
from atdata.cli._resolve import resolve

__all__ = ["gather", "render"]

_SHARDS_SHOWN = 5


def gather(target: str) -> dict[str, Any]:
    """Counts, schema, shards and field statistics of the dataset at ``target``.

    Only the manifests' JSON headers are read (concurrently); shards without a
    manifest are counted by size only. For a published dataset (``@handle/name``,
    ``at://``) the schema and sample count also come from its records, so a
    dataset stored as PDS blobs (which carry no manifests) is described too.

    Returns:
        ``url``, ``dataset`` (the ``@local/`` name, the ``at://`` entry URI of a
        published dataset, or None), ``description``, ``published`` (``uri``,
        ``cid``, ``schema_uri``, ``label_uri`` of a published dataset, else None),
        ``num_samples`` (None when a shard has no manifest and no record says), ``num_shards``,
        ``size_bytes``, ``manifests`` (``present``/``missing`` counts),
        ``schema`` (dict or None; merged when shards hold several versions),
        ``shard_schemas`` (the distinct ``NAME@VERSION`` the manifests record),
        ``fields`` (per-field summary) and
        ``shards`` (``url``, ``num_samples``, ``size_bytes``, ``manifest``).
    """
    resolved = resolve(target)
    shards = resolved.shards
    headers = read_headers(shards)
    missing = [s for s, h in zip(shards, headers, strict=True) if h is None]
    sizes = dict(zip(missing, shard_sizes(missing), strict=True))
    rows: list[dict[str, Any]] = []
    for shard, header in zip(shards, headers, strict=True):
        if header is None:
            rows.append(
                {"url": shard, "num_samples": None, "size_bytes": sizes[shard], "manifest": False}
            )
        else:
            rows.append(
                {
                    "url": shard,
                    "num_samples": int(header.get("num_samples", 0)),
                    "size_bytes": header.get("size_bytes"),
                    "manifest": True,
                }
            )
    present = [h for h in headers if h is not None]
    schema = dataset_schema(present)
    if schema is None and resolved.record is not None:
        schema = resolved.record.schema
    if schema is None:
        schema = resolved.schema
    seen = sorted({i for h in present if (i := _schema_id(h.get("schema"))) is not None})
    known_sizes = [r["size_bytes"] for r in rows if r["size_bytes"] is not None]
    record, published = resolved.record, resolved.published
    num_samples = None if missing else sum(r["num_samples"] for r in rows)
    dataset, description = None, ""
    if record is not None:
        dataset, description = record.uri, record.description
    elif published is not None:
        dataset, description = published.uri, str(published.entry.get("description") or "")
        counted = (published.entry.get("size") or {}).get("samples")
        if num_samples is None and isinstance(counted, int):
            num_samples = counted  # the publisher's count, for shards without manifests
    return {
        "url": target,
        "dataset": dataset,
        "description": description,
        "published": None
        if published is None
        else {
            "uri": published.uri,
            "cid": published.cid,
            "schema_uri": published.schema_uri,
            "label_uri": published.label_uri,
        },
        "num_samples": num_samples,
        "num_samples_in_manifests": sum(r["num_samples"] or 0 for r in rows),
        "num_shards": len(shards),
        "size_bytes": sum(known_sizes),
        "manifests": {"present": len(present), "missing": len(missing)},
        "schema": schema,
        "shard_schemas": seen,
        "fields": summarize_fields(present),
        "shards": rows,
    }


def _schema_id(schema: Any) -> str | None:
    if not isinstance(schema, Mapping):
        return None
    return f"{schema.get('name')}@{schema.get('version')}"


# -- rendering ----------------------------------------------------------------------


def render(result: Mapping[str, Any], *, all_shards: bool = False) -> None:
    """Print the overview, the fields with their statistics, and the shards."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    title = Text(str(result["url"]), style="bold cyan")
    if result["dataset"] and result["dataset"] != result["url"]:
        title.append(f"  ({result['dataset']})", style="dim")
    out.print(title)
    if result["description"]:
        out.print(Text(result["description"], style="italic"))

    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column()
    manifests = result["manifests"]
    if result["num_samples"] is not None:
        samples = f"{result['num_samples']:,}"
    else:
        samples = (
            f"≥ {result['num_samples_in_manifests']:,} "
            f"({manifests['missing']} shards without manifests not counted)"
        )
    overview.add_row("samples", samples)
    sizes = [r["size_bytes"] for r in result["shards"] if r["size_bytes"] is not None]
    low, high = (human_bytes(min(sizes)), human_bytes(max(sizes))) if sizes else ("", "")
    spread = "" if len(sizes) < 2 else f"; {low} each" if low == high else f"; {low}–{high} each"
    total = human_bytes(result["size_bytes"])
    overview.add_row("shards", f"{result['num_shards']:,} ({total}{spread})")
    style = "green" if not manifests["missing"] else "yellow"
    # A published dataset's shards are the publisher's to index (PDS blobs have no manifests).
    hint = manifests["missing"] and result.get("published") is None
    overview.add_row(
        "manifests",
        Text(f"{manifests['present']:,} of {result['num_shards']:,} shards", style=style)
        + (
            Text(f"  build the rest with `atdata manifest build {result['url']}`", style="dim")
            if hint
            else Text("")
        ),
    )
    schema = result["schema"]
    if schema:
        overview.add_row(
            "schema",
            f"{schema.get('name')} {schema.get('version')}"
            + (f"  ({schema['module']})" if schema.get("module") else ""),
        )
    if len(result["shard_schemas"]) > 1:
        overview.add_row(
            "",
            Text(
                "shards hold several versions: " + ", ".join(result["shard_schemas"]) + " (merged)",
                style="yellow",
            ),
        )
    out.print(overview)

    fields = result["fields"]
    if schema or fields:
        table = make_table("fields")
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("type", style="magenta")
        table.add_column("manifest")
        table.add_column("summary", overflow="fold")
        listed = set()
        for spec in (schema or {}).get("fields", []):
            name = spec.get("name")
            listed.add(name)
            stats = fields.get(name)
            table.add_row(
                str(name),
                str(spec.get("type")),
                str(spec.get("manifest") or "-"),
                describe_stats(stats) if stats else "",
            )
        for name, stats in fields.items():
            if name not in listed:
                table.add_row(
                    name, str(stats.get("type")), str(stats.get("kind")), describe_stats(stats)
                )
        out.print(table)

    rows = result["shards"]
    shown = rows if all_shards else rows[:_SHARDS_SHOWN]
    table = make_table(
        "shards"
        if len(shown) == len(rows)
        else f"shards (first {len(shown)} of {len(rows)}; --shards for all)",
    )
    table.add_column("shard", overflow="fold")
    table.add_column("samples", justify="right")
    table.add_column("size", justify="right")
    table.add_column("manifest")
    for row in shown:
        table.add_row(
            row["url"],
            "?" if row["num_samples"] is None else f"{row['num_samples']:,}",
            human_bytes(row["size_bytes"]),
            Text("yes", style="green") if row["manifest"] else Text("missing", style="yellow"),
        )
    out.print(table)


def describe_stats(stats: Mapping[str, Any]) -> str:
    """One line for a field's summary: top values, or min/max/mean."""
    parts = []
    if stats.get("kind") == "numeric":
        if stats.get("min") is not None:
            parts.append(f"min {_fmt(stats['min'])}  max {_fmt(stats['max'])}")
            if stats.get("mean") is not None:
                parts.append(f"mean {_fmt(stats['mean'])}")
    else:
        top = stats.get("top") or {}
        shown = " · ".join(f"{_value(value)} {count:,}" for value, count in top.items())
        if "distinct" in stats:
            extra = stats["distinct"] - len(top)
            distinct = f"{stats['distinct']:,} distinct"
        else:
            extra = 1
            distinct = f"≥ {stats.get('distinct_at_least', len(top)):,} distinct"
        parts.append(shown + (" · …" if extra > 0 else ""))
        parts.append(f"({distinct})")
    if stats.get("nulls"):
        parts.append(f"{stats['nulls']:,} null")
    if stats.get("nans"):
        parts.append(f"{stats['nans']:,} NaN")
    return "  ".join(p for p in parts if p)


def _value(value: str, width: int = 24) -> str:
    """A categorical value as shown: quoted when empty or spaced, cut when long."""
    text = value if len(value) <= width else value[: width - 1] + "…"
    return repr(text) if not value or any(ch.isspace() for ch in value) else text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
