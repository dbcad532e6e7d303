"""The small interface between :class:`Atmosphere` and a PDS, and its ``atproto`` implementation.

A :class:`Transport` has the few XRPC verbs atdata needs (records, blobs, handle
resolution). :class:`SdkTransport` speaks to a real PDS through the ``atproto``
SDK; :mod:`atdata.atmosphere._mock` has an in-process fake with the same verbs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import quote

from atdata.atmosphere._records import check_record, check_rkey
from atdata.errors import (
    AtmosphereAuthError,
    AtmosphereConnectionError,
    AtmosphereError,
    MissingDependencyError,
    RecordNotFoundError,
)

__all__ = ["DEFAULT_PDS", "DEFAULT_PLC", "Record", "SdkTransport", "Transport"]

DEFAULT_PDS = "https://bsky.social"
DEFAULT_PLC = "https://plc.directory"
DEFAULT_BLOB_LIMIT = 5 * 1024 * 1024  # what PDSes allow when they do not say


@dataclasses.dataclass(frozen=True)
class Record:
    """One record of a repository: its ``at://`` URI, CID and value (a plain dict).

    Example:
        >>> record = atmo.publish_schema(ImageSample)
        >>> record.did == atmo.did, record.rkey, record.value["name"]
        (True, 'test.alice.ImageSample:1.0.0', 'ImageSample')
    """

    uri: str
    cid: str
    value: dict[str, Any]

    @property
    def did(self) -> str:
        """The DID of the repository that holds it."""
        return self.uri[len("at://") :].split("/")[0]

    @property
    def rkey(self) -> str:
        """Its record key."""
        return self.uri.rsplit("/", 1)[-1]


class Transport(Protocol):
    """The verbs every transport has (real PDS or in-process fake).

    Example:
        >>> transport = atmo.transport           # here the fake's; a PDS's after login
        >>> rkey = atmo.publish_schema(ImageSample).rkey
        >>> transport.get_record(atmo.did, "science.alt.dataset.schema", rkey).value["version"]
        '1.0.0'
    """

    service: str

    @property
    def did(self) -> str | None:
        """The logged-in account's DID, or None when anonymous."""

    @property
    def handle(self) -> str | None:
        """The logged-in account's handle, or None when anonymous."""

    def export_session(self) -> str:
        """A string that :meth:`restore` turns back into a logged-in transport."""

    def put_record(self, collection: str, rkey: str, record: Mapping[str, Any]) -> Record:
        """Create or replace the record at ``rkey`` in our repository."""

    def create_record(self, collection: str, record: Mapping[str, Any]) -> Record:
        """Create a record with a fresh TID key in our repository."""

    def get_record(self, repo: str, collection: str, rkey: str) -> Record:
        """One record of any repository (``repo`` is a DID)."""

    def list_records(self, repo: str, collection: str) -> Iterator[Record]:
        """Every record of a collection in a repository, newest first."""

    def delete_record(self, collection: str, rkey: str) -> None:
        """Delete a record of our repository."""

    def upload_blob(self, data: bytes, mime_type: str) -> dict[str, Any]:
        """Upload a blob; returns its blob reference (JSON form)."""

    def blob_url(self, did: str, cid: str) -> str:
        """A URL any reader can fetch the blob from."""

    def blob_limit(self) -> int:
        """The largest blob the PDS accepts, in bytes."""

    def resolve_handle(self, handle: str) -> str:
        """The DID of a handle."""


def _import_sdk() -> Any:
    try:
        import atproto
    except ImportError:
        raise MissingDependencyError(
            "atproto", "atmosphere", "Publishing to the AT Protocol"
        ) from None
    return atproto


def _plain(value: Any) -> Any:
    """SDK response values (DotDict, pydantic models) as plain JSON-able data."""
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(by_alias=True, exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SdkTransport:
    """A :class:`Transport` over the ``atproto`` SDK's synchronous client.

    Reads of other repositories go to the PDS named in their DID document
    (looked up on the PLC directory, or ``did:web``), cached per DID.
    """

    def __init__(
        self, client: Any, *, service: str, plc_url: str = DEFAULT_PLC, timeout: float = 30.0
    ) -> None:
        self._client = client
        self._timeout = timeout
        self.service = service.rstrip("/")
        self.plc_url = plc_url.rstrip("/")
        self._pds_of: dict[str, str] = {}
        self._readers: dict[str, Any] = {}
        self._blob_limit: int | None = None

    # -- sessions ------------------------------------------------------------------

    @classmethod
    def login(
        cls, handle: str, password: str, *, service: str, plc_url: str, timeout: float
    ) -> SdkTransport:
        """Log in with a handle (or DID or email) and an app password."""
        sdk = _import_sdk()
        client = sdk.Client(base_url=service, request=_request(timeout))
        try:
            with _Translate(service, f"log in as {handle}"):
                client.login(handle, password, fetch_bsky_profile=False)
        except BaseException:
            client.request.close()
            raise
        return cls(client, service=service, plc_url=plc_url, timeout=timeout)

    @classmethod
    def restore(
        cls, session: str, *, service: str | None, plc_url: str, timeout: float
    ) -> SdkTransport:
        """Resume an exported session (refreshing its tokens when they are stale)."""
        sdk = _import_sdk()
        stored = sdk.Session.decode(session)
        service = service or stored.pds_endpoint or DEFAULT_PDS
        client = sdk.Client(base_url=service, request=_request(timeout))
        try:
            with _Translate(service, f"restore the session of {stored.handle}"):
                client.login(session_string=session, fetch_bsky_profile=False)
        except BaseException:
            client.request.close()
            raise
        return cls(client, service=service, plc_url=plc_url, timeout=timeout)

    @classmethod
    def anonymous(cls, *, service: str, plc_url: str, timeout: float) -> SdkTransport:
        """A read-only transport: no account, public records only."""
        sdk = _import_sdk()
        client = sdk.Client(base_url=service, request=_request(timeout))
        return cls(client, service=service, plc_url=plc_url, timeout=timeout)

    @property
    def _session(self) -> Any:
        return getattr(self._client, "_session", None)

    @property
    def did(self) -> str | None:
        session = self._session
        return session.did if session else None

    @property
    def handle(self) -> str | None:
        session = self._session
        return session.handle if session else None

    def export_session(self) -> str:
        if self._session is None:
            raise AtmosphereAuthError(
                "No session to export: log in first with Atmosphere.login(handle, app_password).",
                service=self.service,
            )
        return str(self._client.export_session_string())

    def _require_login(self, action: str) -> str:
        did = self.did
        if did is None:
            raise AtmosphereAuthError(
                f"Cannot {action} without logging in: use Atmosphere.login(handle, app_password) "
                "or set ATDATA_HANDLE and ATDATA_APP_PASSWORD.",
                service=self.service,
            )
        return did

    # -- records ---------------------------------------------------------------------

    def put_record(self, collection: str, rkey: str, record: Mapping[str, Any]) -> Record:
        did = self._require_login("write records")
        check_record(record)
        data = {
            "repo": did,
            "collection": collection,
            "rkey": check_rkey(rkey),
            "record": dict(record),
        }
        with _Translate(self.service, f"write {collection}/{rkey}"):
            out = self._client.com.atproto.repo.put_record(data)
        return Record(out.uri, out.cid, dict(record))

    def create_record(self, collection: str, record: Mapping[str, Any]) -> Record:
        did = self._require_login("write records")
        check_record(record)
        data = {"repo": did, "collection": collection, "record": dict(record)}
        with _Translate(self.service, f"write a {collection} record"):
            out = self._client.com.atproto.repo.create_record(data)
        return Record(out.uri, out.cid, dict(record))

    def get_record(self, repo: str, collection: str, rkey: str) -> Record:
        reader, pds = self._reader(repo)
        uri = f"at://{repo}/{collection}/{rkey}"
        params = {"repo": repo, "collection": collection, "rkey": rkey}
        with _Translate(pds, f"read {uri}", ref=uri):
            out = reader.com.atproto.repo.get_record(params)
        return Record(out.uri, out.cid or "", _plain(out.value))

    def list_records(self, repo: str, collection: str) -> Iterator[Record]:
        reader, pds = self._reader(repo)
        cursor = None
        while True:
            params: dict[str, Any] = {"repo": repo, "collection": collection, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            with _Translate(pds, f"list {collection} of {repo}", ref=repo):
                page = reader.com.atproto.repo.list_records(params)
            for item in page.records:
                yield Record(item.uri, item.cid, _plain(item.value))
            cursor = page.cursor
            if not cursor or not page.records:
                return

    def delete_record(self, collection: str, rkey: str) -> None:
        did = self._require_login("delete records")
        data = {"repo": did, "collection": collection, "rkey": rkey}
        with _Translate(self.service, f"delete {collection}/{rkey}"):
            self._client.com.atproto.repo.delete_record(data)

    # -- blobs -------------------------------------------------------------------------

    def upload_blob(self, data: bytes, mime_type: str) -> dict[str, Any]:
        self._require_login("upload blobs")
        with _Translate(self.service, f"upload a blob of {len(data)} bytes"):
            out = self._client.com.atproto.repo.upload_blob(
                data, headers={"Content-Type": mime_type}
            )
        blob = out.blob
        return {
            "$type": "blob",
            "ref": {"$link": str(blob.ref.link)},
            "mimeType": blob.mime_type,
            "size": int(blob.size),
        }

    def blob_url(self, did: str, cid: str) -> str:
        pds = self._pds_for(did)
        return f"{pds}/xrpc/com.atproto.sync.getBlob?did={quote(did, safe=':')}&cid={cid}"

    def blob_limit(self) -> int:
        if self._blob_limit is None:
            with _Translate(self.service, "describe the server"):
                info = self._client.com.atproto.server.describe_server()
            self._blob_limit = int(getattr(info, "blob_upload_limit", None) or DEFAULT_BLOB_LIMIT)
        return self._blob_limit

    # -- identity ------------------------------------------------------------------------

    def resolve_handle(self, handle: str) -> str:
        handle = handle.lower().lstrip("@")
        if handle == (self.handle or "").lower():
            return self.did or ""
        with _Translate(self.service, f"resolve the handle {handle}", ref=handle):
            out = self._client.com.atproto.identity.resolve_handle({"handle": handle})
        return str(out.did)

    def _pds_for(self, did: str) -> str:
        if did == self.did:
            return self.service
        if did not in self._pds_of:
            self._pds_of[did] = self._lookup_pds(did) or self.service
        return self._pds_of[did]

    def _lookup_pds(self, did: str) -> str | None:
        """The PDS URL in a DID document (PLC directory or did:web), or None."""
        import httpx

        if did.startswith("did:plc:"):
            url = f"{self.plc_url}/{did}"
        elif did.startswith("did:web:"):
            url = f"https://{did[len('did:web:') :]}/.well-known/did.json"
        else:
            return None
        try:
            with httpx.Client(timeout=self._timeout) as client:
                doc = client.get(url).raise_for_status().json()
        except (httpx.HTTPError, ValueError):
            return None  # fall back to our own PDS, which serves most reads anyway
        for service in doc.get("service") or []:
            if str(service.get("id", "")).endswith("#atproto_pds"):
                return str(service.get("serviceEndpoint", "")).rstrip("/") or None
        return None

    def _reader(self, repo: str) -> tuple[Any, str]:
        """The client to read ``repo`` with (ours, or an anonymous one on its PDS) and its URL."""
        pds = self._pds_for(repo) if repo.startswith("did:") else self.service
        if pds == self.service:
            return self._client, pds
        if pds not in self._readers:
            sdk = _import_sdk()
            self._readers[pds] = sdk.Client(base_url=pds, request=_request(self._timeout))
        return self._readers[pds], pds

    def close(self) -> None:
        """Close the HTTP connections."""
        for client in (self._client, *self._readers.values()):
            client.request.close()
        self._readers.clear()


def _request(timeout: float) -> Any:
    from atproto_client.request import Request

    return Request(timeout=timeout)


class _Translate:
    """Turn SDK and HTTP errors into one-line atdata errors."""

    def __init__(self, service: str, action: str, ref: str | None = None) -> None:
        self.service = service
        self.action = action
        self.ref = ref

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, AtmosphereError) or not isinstance(exc, Exception):
            return False
        from atproto_client import exceptions as sdk_errors

        where = f" at {self.service}"
        if isinstance(
            exc, (sdk_errors.InvokeTimeoutError, sdk_errors.NetworkError)
        ) and not _has_response(exc):
            raise AtmosphereConnectionError(
                f"Cannot {self.action}: the PDS{where} is unreachable ({_reason(exc)}). "
                "Check the URL (base_url / ATDATA_PDS) and your network.",
                service=self.service,
            ) from None
        status, error, message = _response_error(exc)
        if status == 401 or error in ("AuthenticationRequired", "ExpiredToken", "InvalidToken"):
            raise AtmosphereAuthError(
                f"Cannot {self.action}: the PDS{where} refused the credentials "
                f"({message or error}). "
                "Check the handle and app password (create one in your account settings).",
                service=self.service,
            ) from None
        not_found = error in (
            "RecordNotFound",
            "RepoNotFound",
            "BlobNotFound",
            "HandleNotFound",
        ) or (
            status == 400
            and message
            and (
                "not find" in message.lower()
                or "not resolve" in message.lower()
                or "not found" in message.lower()
            )
        )
        if not_found:
            raise RecordNotFoundError(
                f"Cannot {self.action}: not found{where} ({message or error}).",
                ref=self.ref or "",
                service=self.service,
            ) from None
        if status == 413:
            raise AtmosphereError(
                f"Cannot {self.action}: the PDS{where} refused it as too large "
                f"({message or error}).",
                service=self.service,
            ) from None
        if isinstance(exc, sdk_errors.AtProtocolError):
            raise AtmosphereError(
                f"Cannot {self.action}: the PDS{where} answered {status or ''} {error or ''} "
                f"({message or _reason(exc)}).",
                service=self.service,
            ) from None
        return False


def _has_response(exc: BaseException) -> bool:
    return getattr(exc, "response", None) is not None


def _response_error(exc: BaseException) -> tuple[int | None, str, str]:
    response = getattr(exc, "response", None)
    if response is None:
        return None, "", ""
    content = getattr(response, "content", None)
    error = getattr(content, "error", "") or ""
    message = getattr(content, "message", "") or ""
    return getattr(response, "status_code", None), str(error), str(message)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc) or type(cause or exc).__name__
    return text.splitlines()[0][:200]
