"""``atdata publish``: publish a dataset's records on the AT Protocol network.

Publishing is idempotent (the library finds existing records by content before
writing), so running the same command twice writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from atdata.cli._output import console

__all__ = ["STORAGE_KINDS", "publish", "render"]

STORAGE_KINDS = ("auto", "http", "s3", "blobs")


def publish(
    source: str,
    *,
    name: str | None = None,
    storage: str = "auto",
    version: str | None = None,
    tags: Sequence[str] = (),
    license: str | None = None,
) -> dict[str, Any]:
    """Publish ``@local/NAME`` (with its registered schema) or shards at a path or URL.

    Args:
        source: ``@local/NAME``, or a shard, folder, pattern or URL.
        name: the name others load it by (``@handle/name``); needed for a path,
            and for ``@local/NAME`` it is NAME.
        storage: ``auto``, ``http``, ``s3`` or ``blobs`` (upload to the PDS).
        version: the label's version.
        tags, license: shown to people who find the dataset.

    Returns:
        ``ref`` (``@handle/name``), ``entry``, ``label``, ``schema`` (record URIs),
        ``created`` (the URIs this call wrote; empty when all existed) and
        ``blobs_uploaded``.

    Raises:
        AtmosphereAuthError: no account in the environment (one line naming the variables).
        InvalidRecordError: no name for a path, or a value that breaks a lexicon rule.
    """
    from atdata.atmosphere import InvalidRecordError
    from atdata.cli._atmo import client
    from atdata.cli._resolve import is_published_ref, resolve

    if is_published_ref(source):
        raise InvalidRecordError(
            f"{source} is already published. Give a local dataset to publish: "
            "@local/NAME, or a shard, folder, pattern or URL with --name NAME."
        )
    local = source.removeprefix("@local/") if source.startswith("@local/") else None
    if local is not None and name not in (None, local):
        raise InvalidRecordError(
            f"{source} is published under its own name, {local!r}, not {name!r}. To use "
            f"another name, register it under that name first (`atdata register {source} "
            f"{name}`), or publish its shards: `atdata publish PATH --name {name}`."
        )
    if local is None and not name:
        raise InvalidRecordError(
            f"Give the name to publish {source} under: "
            f"`atdata publish {source} --name NAME`; others then load it as @HANDLE/NAME."
        )
    options: dict[str, Any] = {
        "storage": storage,
        "version": version,
        "tags": list(tags),
        "license": license,
    }
    with client("publish", login=True) as atmo:
        if local is None:
            shards = resolve(source).shards  # a folder or glob becomes its shards
            published = atmo.publish_dataset(shards, name=str(name), **options)
        else:
            published = atmo.publish_local(source, **options)
        who = atmo.handle or atmo.did
    return {
        "ref": f"@{who}/{name or local}",
        "source": source,
        "entry": published.entry.uri,
        "label": published.label.uri if published.label is not None else None,
        "schema": published.schema.uri,
        "created": list(published.created),
        "blobs_uploaded": published.blobs_uploaded,
    }


def render(result: Mapping[str, Any]) -> None:
    """What was published (or found already published), and the record URIs."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    created = set(result["created"])
    if created:
        out.print(
            Text.assemble(
                ("Published ", "green"),
                (result["ref"], "bold cyan"),
                f" ({len(created)} record{'s' if len(created) != 1 else ''} "
                "written"
                + (
                    f", {result['blobs_uploaded']} blobs uploaded"
                    if result["blobs_uploaded"]
                    else ""
                )
                + ").",
            )
        )
    else:
        out.print(
            Text.assemble(
                ("Already published: ", "green"),
                (result["ref"], "bold cyan"),
                " (nothing written).",
            )
        )
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    rows.add_column(style="dim")
    for kind in ("entry", "label", "schema"):
        uri = result[kind]
        if uri:
            rows.add_row(kind, uri, "new" if uri in created else "existing")
    out.print(rows)
    out.print(
        Text(
            f"Use it as: atdata inspect {result['ref']}  or  "
            f"atdata.load_dataset({result['ref']!r})",
            style="dim",
        )
    )
