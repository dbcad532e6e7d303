"""``atdata atmo ls``: what a repository on the AT Protocol network has published.

Also the one place the CLI picks its AT Protocol client (:func:`client`), shared
with ``atdata publish``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from atdata.cli._output import console, human_bytes, make_table

if TYPE_CHECKING:
    from atdata.atmosphere import Atmosphere, Record

__all__ = ["client", "listing", "render_listing"]

_NO_ACCOUNT = (
    "`atdata {command}` needs an AT Protocol account: set ATDATA_HANDLE and "
    "ATDATA_APP_PASSWORD (an app password), or ATDATA_SESSION (an exported session); "
    "and ATDATA_PDS when your PDS is not https://bsky.social."
)


@contextlib.contextmanager
def client(command: str, *, login: bool) -> Iterator[Atmosphere]:
    """The client a command runs with: the one in ``atdata.atmosphere.use(...)``, else
    one logged in from the environment (closed afterwards), else (when ``login`` is
    False) an anonymous one.

    Args:
        command: the command, for the error message (``"publish"``).
        login: the command writes or lists the user's own records.

    Raises:
        AtmosphereAuthError: ``login`` and no account: one line naming the variables.
    """
    from atdata.atmosphere import _client as atmo
    from atdata.atmosphere import current
    from atdata.errors import AtmosphereAuthError

    chosen = atmo._CURRENT.get()
    env = os.environ
    has_credentials = bool(
        env.get(atmo.ENV_SESSION) or (env.get(atmo.ENV_HANDLE) and env.get(atmo.ENV_PASSWORD))
    )
    if login and (chosen.did is None if chosen is not None else not has_credentials):
        # Checked before building a client: the SDK alone takes seconds to import.
        raise AtmosphereAuthError(_NO_ACCOUNT.format(command=command))
    if chosen is not None:
        yield chosen
    else:
        with current() as made:
            yield made


def listing(repo: str | None = None) -> dict[str, Any]:
    """The labels, dataset entries, schemas and lenses of a repository.

    Args:
        repo: a handle or DID; default: the logged-in account.

    Returns:
        ``{"repo": DID, "handle", "labels", "datasets", "schemas", "lenses"}``; each
        list holds one JSON object per record (``uri`` and the fields people read).

    Raises:
        AtmosphereAuthError: no ``repo`` and no account to default to.
        RecordNotFoundError: no account has that handle.
    """
    did: str | None
    with client("atmo ls", login=not repo) as atmo:
        if repo:
            repo = repo.lstrip("@")
            did, handle = atmo.resolve_did(repo), None if repo.startswith("did:") else repo
        else:
            did, handle = atmo.did, atmo.handle  # a DID: client(login=True) checked
        return {
            "repo": did,
            "handle": handle,
            "labels": [_label(r) for r in atmo.list_labels(did)],
            "datasets": [_entry(r) for r in atmo.list_datasets(did)],
            "schemas": [_schema(r) for r in atmo.list_schemas(did)],
            "lenses": [_lens(r) for r in atmo.list_lenses(did)],
        }


def _label(record: Record) -> dict[str, Any]:
    v = record.value
    return {
        "uri": record.uri,
        "name": v.get("name"),
        "version": v.get("version"),
        "dataset": v.get("datasetUri"),
        "description": v.get("description"),
        "created_at": v.get("createdAt"),
    }


def _entry(record: Record) -> dict[str, Any]:
    v = record.value
    size = v.get("size") or {}
    kind = str((v.get("storage") or {}).get("$type", ""))
    return {
        "uri": record.uri,
        "name": v.get("name"),
        "schema": v.get("schemaRef"),
        "storage": kind.rpartition(".")[2].removeprefix("storage").lower() or None,
        "num_shards": size.get("shards"),
        "num_samples": size.get("samples"),
        "size_bytes": size.get("bytes"),
        "description": v.get("description"),
        "tags": list(v.get("tags") or []),
        "license": v.get("license"),
        "created_at": v.get("createdAt"),
    }


def _schema(record: Record) -> dict[str, Any]:
    v = record.value
    return {
        "uri": record.uri,
        "name": v.get("name"),
        "version": v.get("version"),
        "description": v.get("description"),
        "created_at": v.get("createdAt"),
    }


def _lens(record: Record) -> dict[str, Any]:
    from atdata.atmosphere import CodeRef

    v = record.value

    def code(key: str) -> str | None:
        data = v.get(key)
        if not isinstance(data, Mapping):
            return None
        ref = CodeRef.from_record(data)
        return f"{ref.repository}@{ref.commit[:12]}:{ref.path}"

    return {
        "uri": record.uri,
        "name": v.get("name"),
        "source_schema": v.get("sourceSchema"),
        "target_schema": v.get("targetSchema"),
        "getter": code("getterCode"),
        "putter": code("putterCode"),
        "description": v.get("description"),
    }


def render_listing(result: Mapping[str, Any]) -> None:
    """One table per kind of record (labels, datasets, schemas, lenses)."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    who = result["handle"] or result["repo"]
    title = Text(f"@{who}", style="bold cyan")
    if result["handle"]:
        title.append(f"  ({result['repo']})", style="dim")
    out.print(title)
    if not any(result[k] for k in ("labels", "datasets", "schemas", "lenses")):
        out.print(
            Text(
                "Nothing published yet. Publish a dataset with "
                "`atdata publish @local/NAME` or `atdata publish PATH --name NAME`.",
                style="yellow",
            )
        )
        return

    def table(name: str, *columns: str) -> Table:
        t = make_table(name)
        for i, column in enumerate(columns):
            t.add_column(column, overflow="fold", style="bold cyan" if i == 0 else None)
        return t

    if result["labels"]:
        t = table("labels", "name", "version", "dataset")
        for r in result["labels"]:
            t.add_row(f"@{who}/{r['name']}", r["version"] or "-", r["dataset"])
        out.print(t)
    if result["datasets"]:
        t = table("datasets", "name", "storage", "shards", "samples", "size", "uri")
        for r in result["datasets"]:
            t.add_row(
                str(r["name"]),
                r["storage"] or "?",
                "?" if r["num_shards"] is None else f"{r['num_shards']:,}",
                "?" if r["num_samples"] is None else f"{r['num_samples']:,}",
                human_bytes(r["size_bytes"]),
                r["uri"],
            )
        out.print(t)
    if result["schemas"]:
        t = table("schemas", "name", "version", "uri")
        for r in result["schemas"]:
            t.add_row(str(r["name"]), str(r["version"]), r["uri"])
        out.print(t)
    if result["lenses"]:
        t = table("lenses", "name", "getter", "uri")
        for r in result["lenses"]:
            t.add_row(str(r["name"]), r["getter"] or "?", r["uri"])
        out.print(t)
        out.print(
            Text(
                "Lenses are references to code, never run from a record: import the "
                "referenced code yourself to use one.",
                style="dim",
            )
        )
