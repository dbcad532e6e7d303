"""``atdata query``: locate samples by a condition on manifest fields."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from atdata.cli._output import console, emit_json, human_bytes, make_table
from atdata.cli._resolve import resolve

__all__ = ["render", "run", "show"]

TABLE_ROWS = 20
"""Matches the table shows unless ``--limit`` says otherwise (``--json`` gives all)."""


def show(
    target: str,
    where: str,
    *,
    count_only: bool = False,
    limit: int | None = None,
    as_json: bool = False,
) -> None:
    """Run the query and print it as ``atdata query`` does: JSON, the count, or a table.

    ``limit`` None shows :data:`TABLE_ROWS` matches in the table and all of them as JSON.
    """
    shown = limit if as_json or limit is not None else TABLE_ROWS
    result = run(target, where, count_only=count_only, limit=shown)
    if as_json:
        emit_json(result)
    else:
        render(result)


def run(
    target: str, where: str, *, count_only: bool = False, limit: int | None = None
) -> dict[str, Any]:
    """Run ``where`` (a SQL condition) over the manifests of ``target``.

    Common conditions run on the manifest rows directly, the rest by DuckDB (see
    ``docs/query.md``).

    Args:
        target: the dataset.
        where: e.g. ``"confidence > 0.9 AND label = 'dog'"``.
        count_only: leave out the matches, keep the count.
        limit: at most this many matches in the result (None or 0: all).

    Returns:
        ``url``, ``where``, ``count``, ``shards_scanned``, ``shards_pruned`` and,
        unless ``count_only``, ``matches`` (``key``, ``shard``, ``offset``,
        ``size``) with ``truncated`` telling whether ``limit`` cut them.

    Raises:
        QueryError: an unknown field (the message suggests the closest) or bad syntax.
    """
    from atdata.dataset import Dataset
    from atdata.errors import ManifestError, QueryError

    if not where.strip():
        raise QueryError(
            "Empty query. Give a condition such as \"confidence > 0.9 AND label = 'dog'\"."
        )
    resolved = resolve(target)
    try:
        found = Dataset(resolved.shards).query(sql=where)
    except ManifestError as exc:
        published = resolved.published
        storage = (published.entry.get("storage") or {}).get("$type", "") if published else ""
        if not storage.endswith("storageBlobs"):
            raise
        # The generic hint (build the manifest beside the shard) cannot apply to a PDS blob.
        raise ManifestError(
            f"{target} is published as PDS blobs, which carry no manifests, so it cannot be "
            f"queried. Read its samples with `atdata preview {target}`, or ask the publisher "
            "to publish it over http or s3 beside its manifests.",
            url=exc.url,
        ) from None
    result: dict[str, Any] = {
        "url": target,
        "where": where,
        "count": len(found),
        "shards_scanned": getattr(found, "shards_scanned", None),
        "shards_pruned": getattr(found, "shards_pruned", None),
    }
    if not count_only:
        shown = found if not limit else found[:limit]
        result["matches"] = [
            {"key": loc.key, "shard": loc.shard, "offset": loc.offset, "size": loc.size}
            for loc in shown
        ]
        result["truncated"] = len(result["matches"]) < len(found)
    return result


def render(result: Mapping[str, Any]) -> None:
    """The count alone (``--count``), or a table of matches and a summary line."""
    if "matches" not in result:
        sys.stdout.write(f"{result['count']}\n")  # no rich needed for a number
        return
    from rich.text import Text

    out = console()
    matches = result["matches"]
    if matches:
        table = make_table()
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("shard", overflow="fold")
        table.add_column("offset", justify="right")
        table.add_column("size", justify="right")
        for m in matches:
            table.add_row(str(m["key"]), m["shard"], f"{m['offset']:,}", human_bytes(m["size"]))
        out.print(table)
    line = f"{result['count']:,} match{'es' if result['count'] != 1 else ''}"
    if result["truncated"]:
        line += f" ({len(matches):,} shown; --limit 0 for all)"
    scanned, pruned = result.get("shards_scanned"), result.get("shards_pruned")
    if scanned is not None and pruned is not None:
        line += f"; {scanned:,} shards scanned, {pruned:,} ruled out by their aggregates"
    out.print(Text(line, style="dim" if matches else "yellow"))
