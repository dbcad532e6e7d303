"""Writing to the network: schemas, dataset entries, labels and lenses, and shard blobs.

:class:`RecordPublisher` is the writing half of :class:`~atdata.atmosphere.Atmosphere`.
Every write is idempotent: publishing what is already published finds the
existing record (through the reading half it extends) and writes nothing.
Records are built, and checked against their lexicons, by
:mod:`atdata.atmosphere._records`; shards are read through :mod:`atdata.storage`
(hashing, blob uploads), so every URL kind reads with the same errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from atdata.atmosphere import _records as rec
from atdata.atmosphere._records import CodeRef
from atdata.atmosphere._resolve import RecordReader
from atdata.atmosphere._transport import Record
from atdata.errors import (
    AtmosphereError,
    InvalidRecordError,
    RecordConflictError,
    RecordNotFoundError,
)
from atdata.sample import Schema, schema_of
from atdata.storage import expand_urls, sibling, store_for

__all__ = ["PublishedDataset", "RecordPublisher"]


@dataclasses.dataclass(frozen=True)
class PublishedDataset:
    """What :meth:`Atmosphere.publish_dataset` wrote (or found already written).

    Attributes:
        entry: the entry record.
        schema: the schema record.
        label: the label record, when a label was asked for.
        created: the records this call created (empty when all existed: idempotent).
        blobs_uploaded: shards uploaded as blobs by this call.

    Example:
        >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
        ...                            sample_type=ImageSample)
        >>> pub.blobs_uploaded, len(pub.created)
        (1, 3)
        >>> again = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
        ...                              sample_type=ImageSample)
        >>> again.created, again.uri == pub.uri                 # idempotent
        ((), True)
    """

    entry: Record
    schema: Record
    label: Record | None
    created: tuple[str, ...]
    blobs_uploaded: int = 0

    @property
    def uri(self) -> str:
        """The entry's ``at://`` URI.

        Example:
            >>> pub = atmo.publish_dataset("data/shard-000000.tar", name="mnist",
            ...                            sample_type=ImageSample)
            >>> pub.uri.startswith("at://did:plc:"), pub.uri.split("/")[3]
            (True, 'science.alt.dataset.entry')
        """
        return self.entry.uri


class RecordPublisher(RecordReader):
    """Publishes atdata's records into the logged-in account's repository."""

    # -- schemas -------------------------------------------------------------------------

    def publish_schema(
        self,
        sample_type: type | Schema,
        *,
        schema_id: str | None = None,
        description: str | None = None,
        license: str | None = None,
        tags: Sequence[str] = (),
    ) -> Record:
        """Publish a sample type's schema as a ``science.alt.dataset.schema`` record.

        The record key is ``{schema_id}:{version}``, so publishing the same
        version again returns the existing record (one read, no write).

        Args:
            sample_type: a ``@packable`` class or a :class:`~atdata.Schema`.
            schema_id: the schema's NSID; default: reversed handle + type name.

        Raises:
            RecordConflictError: this version is already published with other
                fields (bump the version: ``@atdata.packable(version="1.1.0")``).
        """
        return self._publish_schema(
            sample_type, schema_id=schema_id, description=description, license=license, tags=tags
        )[0]

    def _publish_schema(
        self, sample_type: type | Schema, *, schema_id: str | None = None, **prose: Any
    ) -> tuple[Record, bool]:
        """Publish a schema; returns the record and whether this call created it."""
        me = self._me("publish a schema")
        schema = sample_type if isinstance(sample_type, Schema) else schema_of(sample_type)
        nsid = schema_id or rec.default_schema_id(self.handle or me, schema.name)
        rkey = rec.schema_rkey(nsid, schema.version)
        record = rec.schema_record(schema, **prose)
        try:
            existing = self._fetch(me, rec.SCHEMA, rkey)
        except RecordNotFoundError:
            return self.transport.put_record(rec.SCHEMA, rkey, record), True
        if rec.schema_definition(existing.value) != rec.schema_definition(record):
            hint = "publish the change as a new version, e.g. @atdata.packable(version=...)."
            raise RecordConflictError(
                f"Schema {nsid} version {schema.version} is already published ({existing.uri}) "
                f"with a different definition; {hint}"
            ).with_cli_hint(
                hint,
                "publish the change as a new version: give the sample type one and rebuild "
                "the manifests with it (atdata manifest build URL --force --type MODULE:CLASS).",
            )
        return existing, False

    # -- datasets --------------------------------------------------------------------------

    def publish_dataset(
        self,
        urls: str | Sequence[str],
        *,
        name: str,
        sample_type: type | Schema | None = None,
        schema_uri: str | None = None,
        storage: str = "auto",
        description: str | None = None,
        tags: Sequence[str] = (),
        license: str | None = None,
        label: bool = True,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> PublishedDataset:
        """Publish a dataset: its schema, an entry record and (by default) a label.

        Publishing the same shards under the same name again writes nothing and
        returns the existing records.

        Args:
            urls: the shards (paths, URLs, brace patterns).
            name: the dataset's name; others load it as ``@handle/name``.
            sample_type: the sample type (or schema); default: read from manifests.
            schema_uri: an already published schema to reference instead.
            storage: ``"http"`` (the URLs as they are), ``"s3"``, ``"blobs"``
                (upload the shards to the PDS, resharding to fit its blob limit),
                or ``"auto"``: http(s) URLs -> http, ``s3://`` -> s3, else blobs.
            description, tags, license: shown to people who find the dataset.
            label: also publish a ``science.alt.dataset.label`` named ``name``.
            version: the label's version (e.g. ``"1.0.0"``).
            metadata: extra information (msgpack-encoded into the entry).

        Raises:
            InvalidRecordError: a value breaks a lexicon rule.
            AtmosphereError: the PDS refused a request.
            StorageError: a shard cannot be read (``UnreadableURLError`` when missing).
        """
        self._me("publish a dataset")
        shards = expand_urls(urls)
        if not shards:
            raise InvalidRecordError(f"No shards to publish for {name!r}.")
        kind = _storage_kind(storage, shards)
        created: list[str] = []

        if schema_uri is not None:
            schema_rec = self._get(schema_uri, rec.SCHEMA)
        else:
            schema_rec, new = self._publish_schema(_schema_for(sample_type, shards))
            if new:
                created.append(schema_rec.uri)

        digests = [(url, _sha256(url)) for url in shards]
        existing = self._find_entry(name, schema_rec.uri, [d for _, (d, _) in digests], kind)
        uploaded = 0
        if existing is None:
            if kind == "blobs":
                store, uploaded = self._upload_shards(shards)
            elif kind == "s3":
                store = _s3_storage(digests)
            else:
                store = rec.http_storage((u, d) for u, (d, _) in digests)
            extra = dict(metadata or {})
            manifests = _manifest_urls(shards) if kind != "blobs" else []
            if manifests:
                extra["manifests"] = manifests
            record = rec.entry_record(
                name=name,
                schema_uri=schema_rec.uri,
                storage=store,
                description=description,
                tags=tags,
                license=license,
                samples=_count_samples(shards),
                size_bytes=sum(size for _, (_, size) in digests),
                shards=len(shards) if kind != "blobs" else len(store["blobs"]),
                metadata=extra,
            )
            existing = self.transport.create_record(rec.ENTRY, record)
            created.append(existing.uri)

        label_rec = None
        if label:
            label_rec, new = self._publish_label(name, existing.uri, version=version)
            if new:
                created.append(label_rec.uri)
        return PublishedDataset(existing, schema_rec, label_rec, tuple(created), uploaded)

    def publish_local(self, name: str, **options: Any) -> PublishedDataset:
        """Publish a dataset of the local index (``@local/name``) under the same name.

        Example:
            >>> pub = atmo.publish_local("@local/my-dataset", storage="blobs")
            >>> pub.entry.value["name"], pub.blobs_uploaded
            ('my-dataset', 10)
        """
        from atdata.index import resolve_local

        record = resolve_local(name)
        options.setdefault("description", record.description or None)
        return self.publish_dataset(
            record.urls, name=record.name, sample_type=Schema.from_json(record.schema), **options
        )

    def _find_entry(
        self, name: str, schema_uri: str, digests: list[str], kind: str
    ) -> Record | None:
        """Our entry of this name and schema over the same shards, if already published."""
        for record in self._list(self._me("publish"), rec.ENTRY):
            value = record.value
            if value["name"] != name or value["schemaRef"] != schema_uri:
                continue
            if _entry_digests(value) == digests or (
                kind == "blobs" and _entry_source_digests(value) == digests
            ):
                return record
        return None

    def _upload_shards(self, shards: Sequence[str]) -> tuple[dict[str, Any], int]:
        """Upload shards as blobs (resharding those over the blob limit): storage, count."""
        limit = self.transport.blob_limit()
        blobs: list[tuple[dict[str, Any], str]] = []
        sources: list[str] = []
        with tempfile.TemporaryDirectory(prefix="atdata-blobs-") as tmp:
            for i, url in enumerate(shards):
                digest, size = _sha256(url)
                sources.append(digest)
                parts = [url] if size <= limit else _reshard(url, limit, os.path.join(tmp, str(i)))
                for part in parts:
                    store, path = store_for(part)
                    data = store.read(path)
                    blob = self.transport.upload_blob(data, rec.TAR_MIME)
                    blobs.append((blob, hashlib.sha256(data).hexdigest()))
        storage = rec.blob_storage(blobs)
        # The source shards' digests, so republishing the same (resharded) data is found.
        storage["sourceChecksums"] = [rec.checksum(d) for d in sources]
        return storage, len(blobs)

    # -- labels ----------------------------------------------------------------------------

    def publish_label(
        self,
        name: str,
        dataset_uri: str,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> Record:
        """Point a name at a dataset entry (a ``science.alt.dataset.label``); idempotent."""
        return self._publish_label(name, dataset_uri, version=version, description=description)[0]

    def _publish_label(
        self,
        name: str,
        dataset_uri: str,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> tuple[Record, bool]:
        """Publish a label; returns the record and whether this call created it."""
        me = self._me("publish a label")
        for existing in self._list(me, rec.LABEL):
            value = existing.value
            if (value["name"], value["datasetUri"], value.get("version")) == (
                name,
                dataset_uri,
                version,
            ):
                return existing, False
        record = rec.label_record(
            name=name, dataset_uri=dataset_uri, version=version, description=description
        )
        return self.transport.create_record(rec.LABEL, record), True

    # -- lenses ----------------------------------------------------------------------------

    def publish_lens(
        self,
        name: str,
        *,
        source_schema: str,
        target_schema: str,
        getter: CodeRef,
        putter: CodeRef,
        description: str | None = None,
    ) -> Record:
        """Publish a lens as references to its code (never the code); idempotent.

        Example:
            >>> rgb_uri = atmo.publish_schema(ImageSample).uri
            >>> gray_uri = atmo.publish_schema(LabelSample).uri
            >>> repo_url, commit = "https://github.com/alice/vision", "0123abc"
            >>> atmo.publish_lens("to-gray", source_schema=rgb_uri, target_schema=gray_uri,
            ...     getter=CodeRef(repo_url, commit, "vision.py:to_gray"),
            ...     putter=CodeRef(repo_url, commit, "vision.py:from_gray"),
            ... ).value["name"]
            'to-gray'
        """
        me = self._me("publish a lens")
        record = rec.lens_record(
            name=name,
            source_schema=source_schema,
            target_schema=target_schema,
            getter=getter,
            putter=putter,
            description=description,
        )
        same = rec.same_content(record)
        for existing in self._list(me, rec.LENS):
            if rec.same_content(existing.value) == same:
                return existing
        return self.transport.create_record(rec.LENS, record)


# -- helpers ----------------------------------------------------------------------------------


def _storage_kind(storage: str, shards: Sequence[str]) -> str:
    """The storage kind to publish ``shards`` with: ``storage``, or chosen for ``"auto"``."""
    if storage not in ("auto", "http", "s3", "blobs"):
        raise InvalidRecordError(
            f"storage must be 'auto', 'http', 's3' or 'blobs', got {storage!r}."
        )
    if storage != "auto":
        if storage == "http" and not all(s.startswith(("http://", "https://")) for s in shards):
            message = (
                "storage='http' needs http(s):// shard URLs; "
                "upload local shards with storage='blobs'."
            )
            raise InvalidRecordError(message).with_cli_hint(
                message,
                "--storage http needs http(s):// shard URLs; upload local shards with "
                "--storage blobs.",
            )
        if storage == "s3" and not all(s.startswith("s3://") for s in shards):
            message = "storage='s3' needs s3:// shard URLs."
            raise InvalidRecordError(message).with_cli_hint(
                message, "--storage s3 needs s3:// shard URLs."
            )
        return storage
    if all(s.startswith(("http://", "https://")) for s in shards):
        return "http"
    if all(s.startswith("s3://") for s in shards):
        return "s3"
    return "blobs"


def _schema_for(sample_type: type | Schema | None, shards: Sequence[str]) -> Schema:
    """The schema to publish: the one given, else the one the shards' manifests record."""
    if isinstance(sample_type, Schema):
        return sample_type
    if sample_type is not None:
        return schema_of(sample_type)
    from atdata.manifest.loader import dataset_schema

    try:
        return dataset_schema(list(shards))
    except Exception as exc:  # noqa: BLE001 - any failure means: we need the type
        hint = "pass sample_type=."
        raise InvalidRecordError(
            f"Cannot tell the sample schema of {shards[0]} ({exc}); {hint}"
        ).with_cli_hint(hint, "build the manifests first (atdata manifest build URL).") from None


def _sha256(url: str) -> tuple[str, int]:
    """The SHA-256 hex digest and the size of the object at ``url``, streamed."""
    store, path = store_for(url)
    digest = hashlib.sha256()
    size = 0
    with store.open(path) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _count_samples(shards: Sequence[str]) -> int | None:
    """The number of samples the shards' manifests record (None without manifests)."""
    try:
        from atdata.manifest.loader import count_samples

        return int(count_samples(list(shards)))
    except Exception:  # noqa: BLE001 - no manifests: leave the count out
        return None


def _manifest_urls(shards: Sequence[str]) -> list[str]:
    """The manifest URL beside each shard, or [] unless every shard has one."""
    out = []
    for url in shards:
        manifest = sibling(url, ".manifest.json")
        store, path = store_for(manifest)
        if not store.exists(path):
            return []
        out.append(manifest)
    return out


def _s3_storage(digests: Sequence[tuple[str, tuple[str, int]]]) -> dict[str, Any]:
    """``storageS3`` for shards of one bucket, from ``(url, (digest, size))`` pairs."""
    buckets = {url[len("s3://") :].split("/", 1)[0] for url, _ in digests}
    if len(buckets) != 1:
        raise InvalidRecordError(
            f"storageS3 holds one bucket; these shards are in {len(buckets)}: {sorted(buckets)}."
        )
    bucket = buckets.pop()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return rec.s3_storage(
        bucket,
        ((url[len("s3://") + len(bucket) + 1 :], d) for url, (d, _) in digests),
        region=region,
        endpoint=endpoint,
    )


def _entry_digests(value: Mapping[str, Any]) -> list[str]:
    """The shard digests an entry records (its storage's checksums, in order)."""
    storage = value["storage"]
    items = storage.get("shards") or storage.get("blobs") or []
    return [str((i.get("checksum") or {}).get("digest", "")) for i in items]


def _entry_source_digests(value: Mapping[str, Any]) -> list[str]:
    """The digests of the shards a blob entry was resharded from."""
    sources = value["storage"].get("sourceChecksums")
    if not isinstance(sources, list):
        return []
    return [str(c.get("digest", "")) for c in sources if isinstance(c, dict)]


def _reshard(url: str, limit: int, folder: str) -> list[str]:
    """Rewrite one shard as several that each fit in ``limit`` bytes."""
    from atdata.shards import ShardWriter
    from atdata.shards.reader import iter_shard

    os.makedirs(folder, exist_ok=True)
    # Leave room for tar headers and the end-of-archive blocks.
    budget = max(limit - 64 * 1024, limit // 2)
    with ShardWriter(os.path.join(folder, "part-%06d.tar"), maxsize=budget, manifest=False) as sink:
        for record, _offset, _span in iter_shard(
            url, lambda data, key: {"__key__": key, "msgpack": bytes(data)}
        ):
            sink.write(record)
    parts = list(sink.shards)
    too_big = [p for p in parts if os.path.getsize(p) > limit]
    if too_big:
        shutil.rmtree(folder, ignore_errors=True)
        hint = "(storage='http' or 's3')."
        raise AtmosphereError(
            f"A sample of {url} is larger than the PDS blob limit ({limit} bytes); "
            f"store this dataset over HTTP or S3 instead {hint}"
        ).with_cli_hint(hint, "(--storage http or --storage s3).")
    return parts
