"""``Atmosphere``: publish, discover and load atdata datasets on the AT Protocol network.

Example:
    >>> from atdata.atmosphere import Atmosphere
    >>> atmo = Atmosphere.login("alice.bsky.social", "app-password")   # doctest: +SKIP
    >>> pub = atmo.publish_dataset("data/shard-{000000..000009}.tar", name="mnist",
    ...                            sample_type=Digit, storage="blobs")  # doctest: +SKIP
    >>> ds = atmo.load_dataset("@alice.bsky.social/mnist")              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from atdata._refs import is_published_ref
from atdata.atmosphere import _records as rec
from atdata.atmosphere._errors import (
    AtmosphereError,
    InvalidRecordError,
    RecordConflictError,
    RecordNotFoundError,
)
from atdata.atmosphere._records import AtUri, CodeRef, DatasetRef, parse_dataset_ref
from atdata.atmosphere._transport import (
    DEFAULT_PDS,
    DEFAULT_PLC,
    Record,
    SdkTransport,
    Transport,
)
from atdata.sample import Schema, schema_of

if TYPE_CHECKING:
    from atdata.shards import ErrorHandler, ShardSet

__all__ = [
    "Atmosphere",
    "PublishedDataset",
    "ResolvedDataset",
    "current",
    "resolve",
    "use",
]

_CURRENT: contextvars.ContextVar[Atmosphere | None] = contextvars.ContextVar(
    "atdata_atmosphere", default=None
)
ENV_HANDLE = "ATDATA_HANDLE"
ENV_PASSWORD = "ATDATA_APP_PASSWORD"
ENV_SESSION = "ATDATA_SESSION"
ENV_PDS = "ATDATA_PDS"
ENV_PLC = "ATDATA_PLC"


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
        """A packable type built from the schema (no code from the publisher runs)."""
        return self.schema.to_type()


@dataclasses.dataclass(frozen=True)
class PublishedDataset:
    """What :meth:`Atmosphere.publish_dataset` wrote (or found already written).

    Attributes:
        entry: the entry record.
        schema: the schema record.
        label: the label record, when a label was asked for.
        created: the records this call created (empty when all existed: idempotent).
        blobs_uploaded: shards uploaded as blobs by this call.
    """

    entry: Record
    schema: Record
    label: Record | None
    created: tuple[str, ...]
    blobs_uploaded: int = 0

    @property
    def uri(self) -> str:
        """The entry's ``at://`` URI."""
        return self.entry.uri


class Atmosphere:
    """A client for atdata's records on the AT Protocol network.

    Build one with :meth:`login`, :meth:`from_env`, :meth:`restore` or
    :meth:`anonymous` (read-only); ``atdata.testing.mock_atmosphere()`` gives an
    in-process fake with the same behaviour for tests.

    Example:
        >>> atmo = Atmosphere.login("alice.bsky.social", "xxxx-xxxx-xxxx-xxxx")  # doctest: +SKIP
        >>> atmo.publish_schema(ImageSample).uri                                  # doctest: +SKIP
        'at://did:plc:.../science.alt.dataset.schema/social.bsky.alice.ImageSample:1.0.0'
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    # -- sessions ----------------------------------------------------------------------

    @classmethod
    def login(
        cls,
        handle: str,
        app_password: str,
        base_url: str | None = None,
        *,
        plc_url: str | None = None,
        timeout: float = 30.0,
    ) -> Atmosphere:
        """Log in to a PDS with a handle and an app password.

        Args:
            handle: the account's handle (or DID, or email).
            app_password: an app password (never your main password).
            base_url: the PDS; default ``ATDATA_PDS`` or ``https://bsky.social``.
            plc_url: the DID directory; default ``ATDATA_PLC`` or ``https://plc.directory``.
            timeout: seconds per request.

        Raises:
            AtmosphereAuthError: wrong handle or password.
            AtmosphereConnectionError: the PDS cannot be reached.
            MissingDependencyError: the ``atproto`` SDK is not installed.
        """
        service = (base_url or os.environ.get(ENV_PDS) or DEFAULT_PDS).rstrip("/")
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(
            SdkTransport.login(handle, app_password, service=service, plc_url=plc, timeout=timeout)
        )

    @classmethod
    def restore(
        cls,
        session: str,
        base_url: str | None = None,
        *,
        plc_url: str | None = None,
        timeout: float = 30.0,
    ) -> Atmosphere:
        """Resume a session exported with :meth:`export_session` (no password needed)."""
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(SdkTransport.restore(session, service=base_url, plc_url=plc, timeout=timeout))

    @classmethod
    def anonymous(
        cls, base_url: str | None = None, *, plc_url: str | None = None, timeout: float = 30.0
    ) -> Atmosphere:
        """A read-only client: lists and resolves public records, loads datasets."""
        service = (base_url or os.environ.get(ENV_PDS) or DEFAULT_PDS).rstrip("/")
        plc = plc_url or os.environ.get(ENV_PLC) or DEFAULT_PLC
        return cls(SdkTransport.anonymous(service=service, plc_url=plc, timeout=timeout))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Atmosphere:
        """Log in from the environment.

        ``ATDATA_SESSION`` (an exported session) wins; else ``ATDATA_HANDLE`` and
        ``ATDATA_APP_PASSWORD``. ``ATDATA_PDS`` and ``ATDATA_PLC`` pick the servers.

        Raises:
            AtmosphereAuthError: neither a session nor a handle and password are set.
        """
        env = os.environ if environ is None else environ
        base_url, plc = env.get(ENV_PDS), env.get(ENV_PLC)
        if env.get(ENV_SESSION):
            return cls.restore(env[ENV_SESSION], base_url, plc_url=plc)
        if env.get(ENV_HANDLE) and env.get(ENV_PASSWORD):
            return cls.login(env[ENV_HANDLE], env[ENV_PASSWORD], base_url, plc_url=plc)
        from atdata.atmosphere._errors import AtmosphereAuthError

        raise AtmosphereAuthError(
            f"No AT Protocol credentials in the environment: set {ENV_HANDLE} and "
            f"{ENV_PASSWORD} (an app password), or {ENV_SESSION} (from export_session())."
        )

    def export_session(self) -> str:
        """A string to resume this session later with :meth:`restore`; keep it secret."""
        return self.transport.export_session()

    def close(self) -> None:
        """Close network connections."""
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Atmosphere:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def did(self) -> str | None:
        """The logged-in account's DID (None when anonymous)."""
        return self.transport.did

    @property
    def handle(self) -> str | None:
        """The logged-in account's handle (None when anonymous)."""
        return self.transport.handle

    def __repr__(self) -> str:
        who = self.handle or "anonymous"
        return f"Atmosphere({who} @ {self.transport.service})"

    def _me(self, action: str) -> str:
        did = self.did
        if did is None:
            from atdata.atmosphere._errors import AtmosphereAuthError

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
            existing = self.transport.get_record(me, rec.SCHEMA, rkey)
        except RecordNotFoundError:
            return self.transport.put_record(rec.SCHEMA, rkey, record), True
        if rec.schema_definition(existing.value) != rec.schema_definition(record):
            raise RecordConflictError(
                f"Schema {nsid} version {schema.version} is already published ({existing.uri}) "
                "with a different definition; publish the change as a new version, e.g. "
                "@atdata.packable(version=...)."
            )
        return existing, False

    def get_schema(self, uri: str) -> Schema:
        """The :class:`~atdata.Schema` of a schema record (by ``at://`` URI)."""
        record = self._get(uri, rec.SCHEMA)
        return rec.schema_from_record(record.value, record.uri)

    def sample_type(self, uri: str) -> type:
        """A packable type built at run time from a published schema."""
        return self.get_schema(uri).to_type()

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
        """
        from atdata.storage import expand_urls

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
        size_bytes = sum(size for _, (_, size) in digests)
        samples = _count_samples(shards)
        extra = dict(metadata or {})
        manifests = _manifest_urls(shards) if kind != "blobs" else []
        if manifests:
            extra["manifests"] = manifests

        existing = self._find_entry(name, schema_rec.uri, [d for _, (d, _) in digests], kind)
        uploaded = 0
        if existing is None:
            if kind == "blobs":
                store, uploaded = self._upload_shards(shards)
            elif kind == "s3":
                store = _s3_storage(digests)
            else:
                store = rec.http_storage((u, d) for u, (d, _) in digests)
            record = rec.entry_record(
                name=name,
                schema_uri=schema_rec.uri,
                storage=store,
                description=description,
                tags=tags,
                license=license,
                samples=samples,
                size_bytes=size_bytes,
                shards=len(shards) if kind != "blobs" else len(store["blobs"]),
                metadata=extra,
            )
            existing = self.transport.create_record(rec.ENTRY, record)
            created.append(existing.uri)

        label_rec = None
        if label:
            label_rec = self._find_label(name, existing.uri, version)
            if label_rec is None:
                record = rec.label_record(name=name, dataset_uri=existing.uri, version=version)
                label_rec = self.transport.create_record(rec.LABEL, record)
                created.append(label_rec.uri)
        return PublishedDataset(existing, schema_rec, label_rec, tuple(created), uploaded)

    def publish_local(self, name: str, **options: Any) -> PublishedDataset:
        """Publish a dataset of the local index (``@local/name``) under the same name.

        Example:
            >>> atmo.publish_local("@local/mnist", storage="blobs")   # doctest: +SKIP
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
        me = self._me("publish")
        for record in self.transport.list_records(me, rec.ENTRY):
            value = record.value
            if value.get("name") != name or value.get("schemaRef") != schema_uri:
                continue
            if _entry_digests(value) == digests or (
                kind == "blobs" and _entry_source_digests(value) == digests
            ):
                return record
        return None

    def _upload_shards(self, shards: Sequence[str]) -> tuple[dict[str, Any], int]:
        limit = self.transport.blob_limit()
        blobs: list[tuple[dict[str, Any], str]] = []
        sources: list[str] = []
        with tempfile.TemporaryDirectory(prefix="atdata-blobs-") as tmp:
            for i, url in enumerate(shards):
                digest, size = _sha256(url)
                sources.append(digest)
                parts = [url] if size <= limit else _reshard(url, limit, os.path.join(tmp, str(i)))
                for part in parts:
                    data = _read_all(part)
                    blob = self.transport.upload_blob(data, rec.TAR_MIME)
                    blobs.append((blob, hashlib.sha256(data).hexdigest()))
        storage = rec.blob_storage(blobs)
        # The source shards' digests, so republishing the same (resharded) data is found.
        storage["sourceChecksums"] = [rec.checksum(d) for d in sources]
        return storage, len(blobs)

    def publish_label(
        self,
        name: str,
        dataset_uri: str,
        *,
        version: str | None = None,
        description: str | None = None,
    ) -> Record:
        """Point a name at a dataset entry (a ``science.alt.dataset.label``); idempotent."""
        self._me("publish a label")
        found = self._find_label(name, dataset_uri, version)
        if found is not None:
            return found
        record = rec.label_record(
            name=name, dataset_uri=dataset_uri, version=version, description=description
        )
        return self.transport.create_record(rec.LABEL, record)

    def _find_label(self, name: str, dataset_uri: str, version: str | None) -> Record | None:
        me = self._me("publish")
        for record in self.transport.list_records(me, rec.LABEL):
            value = record.value
            if (value.get("name"), value.get("datasetUri"), value.get("version")) == (
                name,
                dataset_uri,
                version,
            ):
                return record
        return None

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
            >>> atmo.publish_lens("to-gray", source_schema=rgb_uri, target_schema=gray_uri,
            ...     getter=CodeRef(repo_url, commit, "vision.py:to_gray"),
            ...     putter=CodeRef(repo_url, commit, "vision.py:from_gray"),
            ... )                                                             # doctest: +SKIP
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
        for existing in self.transport.list_records(me, rec.LENS):
            if rec.same_content(existing.value) == same:
                return existing
        return self.transport.create_record(rec.LENS, record)

    # -- discovery ---------------------------------------------------------------------------

    def _repo(self, repo: str | None) -> str:
        return self.resolve_did(repo) if repo else self._me("list your own records")

    def list_schemas(self, repo: str | None = None) -> list[Record]:
        """The schema records of a repository (a handle or DID; default: yours)."""
        return list(self.transport.list_records(self._repo(repo), rec.SCHEMA))

    def list_datasets(self, repo: str | None = None) -> list[Record]:
        """The dataset entry records of a repository (default: yours)."""
        return list(self.transport.list_records(self._repo(repo), rec.ENTRY))

    def list_labels(self, repo: str | None = None) -> list[Record]:
        """The label records of a repository (default: yours)."""
        return list(self.transport.list_records(self._repo(repo), rec.LABEL))

    def list_lenses(self, repo: str | None = None) -> list[Record]:
        """The lens records of a repository (default: yours). Lenses are never run
        from a record: import the referenced code yourself to use one."""
        return list(self.transport.list_records(self._repo(repo), rec.LENS))

    def get_record(self, uri: str) -> Record:
        """Any record by ``at://`` URI (the authority may be a handle)."""
        return self._get(uri, None)

    def _get(self, uri: str, collection: str | None) -> Record:
        at = AtUri.parse(uri)
        if collection and at.collection != collection:
            raise InvalidRecordError(f"{uri} is not a {collection} record.")
        if not at.collection or not at.rkey:
            raise InvalidRecordError(f"{uri} names a repository, not a record.")
        did = self.resolve_did(at.authority)
        try:
            return self.transport.get_record(did, at.collection, at.rkey)
        except RecordNotFoundError:
            raise RecordNotFoundError(
                f"No record {uri} (asked the PDS of {did}).", ref=uri
            ) from None

    # -- resolving -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ResolvedDataset:
        """Resolve ``@handle/name[@version]`` or an ``at://`` entry or label URI.

        A name is looked up among the owner's labels (the newest with that name
        and version), then among their entries by name.

        Raises:
            RecordNotFoundError: no such account, label or dataset (one line).

        Example:
            >>> r = atmo.resolve("@alice.bsky.social/mnist")         # doctest: +SKIP
            >>> r.urls[:1], r.schema.field_names                      # doctest: +SKIP
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
            parsed = parse_dataset_ref(ref)
            entry, label_uri = self._entry_by_name(parsed)
        value = entry.value
        schema_uri = str(value.get("schemaRef", ""))
        schema = self.get_schema(schema_uri)
        return ResolvedDataset(
            uri=entry.uri,
            cid=entry.cid,
            name=str(value.get("name", "")),
            urls=self.storage_urls(entry),
            schema=schema,
            schema_uri=schema_uri,
            entry=value,
            label_uri=label_uri,
        )

    def _entry_by_name(self, ref: DatasetRef) -> tuple[Record, str | None]:
        did = self.resolve_did(ref.authority)
        labels = [
            r
            for r in self.transport.list_records(did, rec.LABEL)
            if r.value.get("name") == ref.name
            and (ref.version is None or r.value.get("version") == ref.version)
        ]
        if labels:
            newest = max(labels, key=lambda r: str(r.value.get("createdAt", "")))
            return self._get(str(newest.value["datasetUri"]), rec.ENTRY), newest.uri
        entries = [
            r
            for r in self.transport.list_records(did, rec.ENTRY)
            if r.value.get("name") == ref.name
        ]
        if entries and ref.version is None:
            return max(entries, key=lambda r: str(r.value.get("createdAt", ""))), None
        known = sorted(
            {str(r.value.get("name")) for r in self.transport.list_records(did, rec.LABEL)}
        )
        hint = f" Published names: {', '.join(known)}." if known else ""
        raise RecordNotFoundError(
            f"{ref.authority} has published no dataset named {ref.name!r}"
            f"{' version ' + ref.version if ref.version else ''}.{hint}",
            ref=str(ref),
        )

    def storage_urls(self, entry: Record) -> list[str]:
        """The shard URLs of an entry record, whatever its storage kind."""
        storage = entry.value.get("storage") or {}
        kind = storage.get("$type")
        if kind == rec.STORAGE_HTTP:
            return [str(s["url"]) for s in storage.get("shards", [])]
        if kind == rec.STORAGE_S3:
            bucket = storage.get("bucket", "")
            return [f"s3://{bucket}/{s['key']}" for s in storage.get("shards", [])]
        if kind == rec.STORAGE_BLOBS:
            urls = []
            for item in storage.get("blobs", []):
                blob = item.get("blob") or {}
                cid = (blob.get("ref") or {}).get("$link") or blob.get("cid")
                urls.append(self.transport.blob_url(entry.did, str(cid)))
            return urls
        if kind == rec.STORAGE_EXTERNAL:
            return [str(u) for u in storage.get("urls", [])]
        raise InvalidRecordError(f"{entry.uri} has storage of unknown type {kind!r}.")

    def load_dataset(
        self,
        ref: str,
        T: type | None = None,  # noqa: N803 - as atdata.load_dataset
        *,
        split: str | None = None,
    ) -> Any:
        """Resolve a published dataset and open it as a :class:`~atdata.Dataset`.

        Args:
            ref: ``@handle/name[@version]`` or an ``at://`` URI.
            T: the sample type; default: built from the published schema.
            split: keep only the shards of this split (``train``, ``test``...).

        Example:
            >>> ds = atmo.load_dataset("@alice.bsky.social/mnist")   # doctest: +SKIP
            >>> next(iter(ds))                                        # doctest: +SKIP
        """
        from atdata.dataset import load_dataset

        with use(self):
            return load_dataset(ref, T, split=split)


# -- the current client ----------------------------------------------------------------------


@contextlib.contextmanager
def use(client: Atmosphere) -> Iterator[Atmosphere]:
    """Make ``client`` the one that ``@handle/name`` and ``at://`` names resolve through.

    Example:
        >>> with atdata.atmosphere.use(Atmosphere.login(handle, pw)):     # doctest: +SKIP
        ...     ds = atdata.load_dataset("@alice.bsky.social/mnist")
    """
    token = _CURRENT.set(client)
    try:
        yield client
    finally:
        _CURRENT.reset(token)


def current() -> Atmosphere:
    """The client names resolve through: the one in :func:`use`, else from the
    environment (``ATDATA_SESSION`` or ``ATDATA_HANDLE``/``ATDATA_APP_PASSWORD``),
    else an anonymous client on ``ATDATA_PDS`` (default ``https://bsky.social``)."""
    client = _CURRENT.get()
    if client is not None:
        return client
    if os.environ.get(ENV_SESSION) or (os.environ.get(ENV_HANDLE) and os.environ.get(ENV_PASSWORD)):
        return Atmosphere.from_env()
    return Atmosphere.anonymous()


def resolve(ref: str) -> ResolvedDataset:
    """Resolve ``@handle/name`` or ``at://...`` with the current client.

    The hook ``load_dataset``, ``Dataset`` and the CLI call for names that are
    not ``@local/``: ``resolved.urls`` are the shards, ``resolved.schema`` the
    sample schema.

    Example:
        >>> r = atdata.atmosphere.resolve("@alice.bsky.social/mnist")   # doctest: +SKIP
        >>> Dataset[r.sample_type()](r.urls)                            # doctest: +SKIP
    """
    chosen = _CURRENT.get()
    if chosen is not None:
        return chosen.resolve(ref)
    with current() as made:  # made for this call: close its connections after
        return made.resolve(ref)


def resolve_shard_set(ref: str, handler: ErrorHandler = "raise") -> ShardSet:
    """The shards of a published dataset, with its schema, through the current client.

    The resolver ``ShardSet.resolve`` (and so ``Dataset``, ``load_dataset``)
    uses for ``@handle/name`` and ``at://`` references. The URLs are final:
    blob URLs carry a query string that must not be taken for a glob.

    Example:
        >>> resolve_shard_set("@alice.bsky.social/mnist").shards   # doctest: +SKIP
    """
    from atdata.shards import ShardSet

    published = resolve(ref)
    return ShardSet(published.urls, handler=handler, literal=True, schema=published.schema)


def is_atmosphere_ref(text: str) -> bool:
    """True for ``at://`` URIs and ``@handle/name`` references other than ``@local/``.

    Example:
        >>> is_atmosphere_ref("@alice.bsky.social/mnist"), is_atmosphere_ref("@local/x")
        (True, False)
    """
    return is_published_ref(text)


# -- helpers ----------------------------------------------------------------------------------


def _storage_kind(storage: str, shards: Sequence[str]) -> str:
    if storage not in ("auto", "http", "s3", "blobs"):
        raise InvalidRecordError(
            f"storage must be 'auto', 'http', 's3' or 'blobs', got {storage!r}."
        )
    if storage != "auto":
        if storage == "http" and not all(s.startswith(("http://", "https://")) for s in shards):
            raise InvalidRecordError(
                "storage='http' needs http(s):// shard URLs; "
                "upload local shards with storage='blobs'."
            )
        if storage == "s3" and not all(s.startswith("s3://") for s in shards):
            raise InvalidRecordError("storage='s3' needs s3:// shard URLs.")
        return storage
    if all(s.startswith(("http://", "https://")) for s in shards):
        return "http"
    if all(s.startswith("s3://") for s in shards):
        return "s3"
    return "blobs"


def _schema_for(sample_type: type | Schema | None, shards: Sequence[str]) -> Schema:
    if isinstance(sample_type, Schema):
        return sample_type
    if sample_type is not None:
        return schema_of(sample_type)
    from atdata.manifest.loader import dataset_schema

    try:
        return dataset_schema(list(shards))
    except Exception as exc:  # noqa: BLE001 - any failure means: we need the type
        raise InvalidRecordError(
            f"Cannot tell the sample schema of {shards[0]} ({exc}); pass sample_type=."
        ) from None


def _open(url: str) -> Any:
    if url.startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=60)
    from atdata.storage import store_for

    store, path = store_for(url)
    return store.open(path)


def _sha256(url: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with _open(url) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _read_all(url: str) -> bytes:
    with _open(url) as stream:
        return bytes(stream.read())


def _count_samples(shards: Sequence[str]) -> int | None:
    try:
        from atdata.manifest.loader import count_samples

        return int(count_samples(list(shards)))
    except Exception:  # noqa: BLE001 - no manifests: leave the count out
        return None


def _manifest_urls(shards: Sequence[str]) -> list[str]:
    from atdata.storage import sibling

    out = []
    for url in shards:
        manifest = sibling(url, ".manifest.json")
        try:
            with _open(manifest):
                out.append(manifest)
        except Exception:  # noqa: BLE001 - absent manifests are fine
            return []
    return out


def _s3_storage(digests: Sequence[tuple[str, tuple[str, int]]]) -> dict[str, Any]:
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
    storage = value.get("storage") or {}
    items = storage.get("shards") or storage.get("blobs") or []
    return [str((i.get("checksum") or {}).get("digest", "")) for i in items]


def _entry_source_digests(value: Mapping[str, Any]) -> list[str]:
    storage = value.get("storage") or {}
    return [str(c.get("digest", "")) for c in storage.get("sourceChecksums") or []]


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
        raise AtmosphereError(
            f"A sample of {url} is larger than the PDS blob limit ({limit} bytes); "
            "store this dataset over HTTP or S3 instead (storage='http' or 's3')."
        )
    return parts
