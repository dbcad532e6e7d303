"""Reading the network: records, checked against their lexicons, and references resolved.

:class:`RecordReader` is the reading half of :class:`~atdata.atmosphere.Atmosphere`:
it looks up DIDs, reads and lists records, and turns ``@handle/name[@version]``
and ``at://`` references into a :class:`ResolvedDataset` (shard URLs and the
sample schema). Every ``science.alt.dataset.*`` record it hands out has been
checked against the package's lexicons, so a malformed record from another
repository is refused with ``InvalidRecordError`` instead of surfacing later as
a ``KeyError``. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from atdata.atmosphere import _lexicon as lexicon
from atdata.atmosphere import _records as rec
from atdata.atmosphere._records import AtUri, DatasetRef, parse_dataset_ref
from atdata.atmosphere._transport import Record, Transport
from atdata.errors import (
    AtmosphereAuthError,
    InvalidRecordError,
    RecordNotFoundError,
)
from atdata.sample import Schema

__all__ = ["RecordReader", "ResolvedDataset"]


@dataclasses.dataclass(frozen=True)
class ResolvedDataset:
    """A published dataset, resolved: where its shards are and what its samples look like.

    Attributes:
        uri: the ``science.alt.dataset.entry`` record's ``at://`` URI.
        cid: that record's CID (pins this exact version).
        name: the dataset's name.
        urls: shard URLs any reader can stream (HTTP, ``s3://``, or PDS blob URLs).
        schema: the sample schema, rebuilt from the schema record.
        schema_uri: the schema record's URI.
        entry: the entry record itself.
        label_uri: the label that led here, if any.

    Example:
        >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
        ...                            sample_type=ImageSample)
        >>> resolved = atmo.resolve("@alice.test/mnist")
        >>> resolved.name, resolved.uri == pub.uri, resolved.label_uri == pub.label.uri
        ('mnist', True, True)
    """

    uri: str
    cid: str
    name: str
    urls: list[str]
    schema: Schema
    schema_uri: str
    entry: dict[str, Any] = dataclasses.field(repr=False)
    label_uri: str | None = None

    def sample_type(self) -> type:
        """A packable type built from the schema (no code from the publisher runs).

        Example:
            >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
            ...                            sample_type=ImageSample)
            >>> Sample = atmo.resolve("@alice.test/mnist").sample_type()
            >>> Sample.__name__, Sample.__schema__.field_names
            ('ImageSample', ['image', 'label', 'confidence'])
        """
        return self.schema.to_type()


class RecordReader:
    """Reads and resolves atdata's records through a :class:`Transport`.

    Args:
        transport: the connection to a PDS (or the in-process fake).
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def did(self) -> str | None:
        """The logged-in account's DID (None when anonymous)."""
        return self.transport.did

    @property
    def handle(self) -> str | None:
        """The logged-in account's handle (None when anonymous)."""
        return self.transport.handle

    def _me(self, action: str) -> str:
        """Our DID, for an ``action`` that needs an account."""
        did = self.did
        if did is None:
            raise AtmosphereAuthError(
                f"Cannot {action} anonymously: log in with Atmosphere.login(handle, app_password)."
            )
        return did

    # -- identity ------------------------------------------------------------------------

    def resolve_did(self, actor: str) -> str:
        """The DID of a handle (a DID is returned as is).

        Raises:
            RecordNotFoundError: no account has that handle.
        """
        actor = actor.lstrip("@")
        if actor.startswith("did:"):
            return actor
        try:
            return self.transport.resolve_handle(actor)
        except RecordNotFoundError:
            raise RecordNotFoundError(
                f"No account has the handle {actor!r} (asked {self.transport.service}). "
                "Check the spelling, or give the DID.",
                ref=actor,
                service=self.transport.service,
            ) from None

    # -- records -------------------------------------------------------------------------

    def _fetch(self, did: str, collection: str, rkey: str) -> Record:
        """One record of a repository, checked against its lexicon.

        Raises:
            RecordNotFoundError: the repository has no such record.
            InvalidRecordError: it does not conform to its lexicon.
        """
        return _conforming(self.transport.get_record(did, collection, rkey), collection)

    def _list(self, did: str, collection: str) -> Iterator[Record]:
        """The records of a collection, newest first, each checked against its lexicon."""
        for record in self.transport.list_records(did, collection):
            yield _conforming(record, collection)

    def _get(self, uri: str, collection: str | None) -> Record:
        """The record at ``uri``, which must be of ``collection`` when one is given."""
        at = AtUri.parse(uri)
        if collection and at.collection != collection:
            raise InvalidRecordError(f"{uri} is not a {collection} record.")
        if not at.collection or not at.rkey:
            raise InvalidRecordError(f"{uri} names a repository, not a record.")
        did = self.resolve_did(at.authority)
        try:
            return self._fetch(did, at.collection, at.rkey)
        except RecordNotFoundError:
            raise RecordNotFoundError(
                f"No record {uri} (asked the PDS of {did}).", ref=uri
            ) from None

    def get_record(self, uri: str) -> Record:
        """Any record by ``at://`` URI (the authority may be a handle)."""
        return self._get(uri, None)

    def get_schema(self, uri: str) -> Schema:
        """The :class:`~atdata.Schema` of a schema record (by ``at://`` URI)."""
        record = self._get(uri, rec.SCHEMA)
        return rec.schema_from_record(record.value, record.uri)

    def sample_type(self, uri: str) -> type:
        """A packable type built at run time from a published schema."""
        return self.get_schema(uri).to_type()

    # -- discovery ---------------------------------------------------------------------------

    def _repo(self, repo: str | None) -> str:
        return self.resolve_did(repo) if repo else self._me("list your own records")

    def list_schemas(self, repo: str | None = None) -> list[Record]:
        """The schema records of a repository (a handle or DID; default: yours)."""
        return list(self._list(self._repo(repo), rec.SCHEMA))

    def list_datasets(self, repo: str | None = None) -> list[Record]:
        """The dataset entry records of a repository (default: yours)."""
        return list(self._list(self._repo(repo), rec.ENTRY))

    def list_labels(self, repo: str | None = None) -> list[Record]:
        """The label records of a repository (default: yours)."""
        return list(self._list(self._repo(repo), rec.LABEL))

    def list_lenses(self, repo: str | None = None) -> list[Record]:
        """The lens records of a repository (default: yours). Lenses are never run
        from a record: import the referenced code yourself to use one."""
        return list(self._list(self._repo(repo), rec.LENS))

    # -- resolving -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ResolvedDataset:
        """Resolve ``@handle/name[@version]`` or an ``at://`` entry or label URI.

        A name is looked up among the owner's labels (the newest with that name
        and version), then among their entries by name.

        Raises:
            RecordNotFoundError: no such account, label or dataset (one line).
            InvalidRecordError: a record on the way does not conform to its lexicon.

        Example:
            >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
            ...                            sample_type=ImageSample)
            >>> r = atmo.resolve("@alice.test/mnist")
            >>> len(r.urls), r.schema.field_names
            (1, ['image', 'label', 'confidence'])
        """
        label_uri = None
        if ref.startswith("at://"):
            at = AtUri.parse(ref)
            if at.collection == rec.LABEL:
                label = self._get(ref, rec.LABEL)
                label_uri = label.uri
                entry = self._get(str(label.value["datasetUri"]), rec.ENTRY)
            else:
                entry = self._get(ref, rec.ENTRY)
        else:
            entry, label_uri = self._entry_by_name(parse_dataset_ref(ref))
        value = entry.value
        schema_uri = str(value["schemaRef"])
        return ResolvedDataset(
            uri=entry.uri,
            cid=entry.cid,
            name=str(value["name"]),
            urls=self._urls(entry),
            schema=self.get_schema(schema_uri),
            schema_uri=schema_uri,
            entry=value,
            label_uri=label_uri,
        )

    def _entry_by_name(self, ref: DatasetRef) -> tuple[Record, str | None]:
        """The entry a name refers to, and the label that named it (None: found by entry name)."""
        did = self.resolve_did(ref.authority)
        labels = list(self._list(did, rec.LABEL))
        matching = [
            r
            for r in labels
            if r.value["name"] == ref.name
            and (ref.version is None or r.value.get("version") == ref.version)
        ]
        if matching:
            newest = max(matching, key=lambda r: str(r.value["createdAt"]))
            return self._get(str(newest.value["datasetUri"]), rec.ENTRY), newest.uri
        entries = [r for r in self._list(did, rec.ENTRY) if r.value["name"] == ref.name]
        if entries and ref.version is None:
            return max(entries, key=lambda r: str(r.value["createdAt"])), None
        known = sorted({str(r.value["name"]) for r in labels})
        hint = f" Published names: {', '.join(known)}." if known else ""
        raise RecordNotFoundError(
            f"{ref.authority} has published no dataset named {ref.name!r}"
            f"{' version ' + ref.version if ref.version else ''}.{hint}",
            ref=str(ref),
        )

    def storage_urls(self, entry: Record) -> list[str]:
        """The shard URLs of an entry record, whatever its storage kind.

        Raises:
            InvalidRecordError: the record is not a conforming entry.
        """
        return self._urls(_conforming(entry, rec.ENTRY))

    def _urls(self, entry: Record) -> list[str]:
        """The shard URLs of an entry already checked against its lexicon."""
        storage = entry.value["storage"]
        kind = storage["$type"]
        if kind == rec.STORAGE_HTTP:
            return [str(s["url"]) for s in storage["shards"]]
        if kind == rec.STORAGE_S3:
            return [f"s3://{storage['bucket']}/{s['key']}" for s in storage["shards"]]
        if kind == rec.STORAGE_BLOBS:
            return [
                self.transport.blob_url(entry.did, _blob_cid(item["blob"]))
                for item in storage["blobs"]
            ]
        if kind == rec.STORAGE_EXTERNAL:
            return [str(u) for u in storage["urls"]]
        raise InvalidRecordError(f"{entry.uri} has storage of unknown type {kind!r}.")


def _conforming(record: Record, collection: str) -> Record:
    """``record`` once it is known to conform to the lexicon of ``collection`` (if we ship it)."""
    if lexicon.is_record_type(collection):
        lexicon.validate(record.value, collection, record.uri)
    return record


def _blob_cid(blob: dict[str, Any]) -> str:
    """The CID of a blob reference (``{"ref": {"$link": cid}}``, or the legacy ``{"cid"}``)."""
    link = blob.get("ref")
    return str(link["$link"] if isinstance(link, dict) else blob["cid"])
