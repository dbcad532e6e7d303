"""An in-process AT Protocol network for tests: ``mock_atmosphere()``.

It keeps accounts, records and blobs in memory and applies the rules a real
PDS applies to atdata (no floats in records, valid record keys, a blob size
limit, 401 for a wrong password, not-found for unknown handles and records), so
code tested against it behaves the same against a real PDS. Blobs are served
from fsspec's ``memory://`` filesystem, so datasets stored as blobs load too.

Example:
    >>> from atdata.atmosphere import mock_atmosphere
    >>> with mock_atmosphere() as net:
    ...     alice = net.create_account("alice.test")
    ...     _ = alice.publish_dataset("data/shard-000000.tar", name="my-data",
    ...                               sample_type=ImageSample)
    ...     ds = atdata.load_dataset("@alice.test/my-data")
    >>> len(ds.shards)
    1
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from atdata.atmosphere._client import Atmosphere, use
from atdata.atmosphere._records import check_record, check_rkey, new_tid
from atdata.atmosphere._transport import DEFAULT_BLOB_LIMIT, Record
from atdata.errors import (
    AtmosphereAuthError,
    AtmosphereError,
    RecordNotFoundError,
)

__all__ = ["MockNetwork", "MockTransport", "mock_atmosphere"]

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _cid(data: bytes, prefix: str) -> str:
    digest = hashlib.sha256(data).digest()
    bits = int.from_bytes(digest, "big")
    text = "".join(_B32[(bits >> (5 * i)) & 31] for i in range(51))
    return prefix + text


class MockNetwork:
    """Accounts, repositories and blobs of a fake AT Protocol network.

    Args:
        blob_limit: the largest blob accepted, in bytes (5 MiB, as on most PDSes).

    Example:
        >>> with MockNetwork() as net:
        ...     alice = net.create_account("alice.test", password="secret")
        ...     net.login("alice.test", "secret").did == alice.did
        True
    """

    def __init__(self, *, blob_limit: int = DEFAULT_BLOB_LIMIT) -> None:
        self.url = f"mock://pds-{uuid.uuid4().hex[:8]}"
        self.blob_limit = blob_limit
        self.accounts: dict[str, tuple[str, str]] = {}  # handle -> (password, did)
        self.repos: dict[str, dict[str, dict[str, tuple[str, dict[str, Any]]]]] = {}
        self.blobs: dict[str, str] = {}  # cid -> memory:// path
        self._sessions: dict[str, str] = {}  # session token -> did
        self._clock = itertools.count()
        self._stack: contextlib.ExitStack | None = None

    # -- accounts -------------------------------------------------------------------

    def create_account(self, handle: str, password: str | None = None) -> Atmosphere:
        """Create an account (handles end in ``.test`` here too) and log it in."""
        handle = handle.lower()
        if handle in self.accounts:
            raise AtmosphereError(f"Handle already taken: {handle}", service=self.url)
        password = password or f"{handle}-password"
        did = "did:plc:" + _cid(handle.encode() + self.url.encode(), "")[:24]
        self.accounts[handle] = (password, did)
        self.repos[did] = {}
        return self.login(handle, password)

    def login(self, handle: str, password: str) -> Atmosphere:
        """Log in like ``Atmosphere.login`` (a wrong password is ``AtmosphereAuthError``)."""
        account = self.accounts.get(handle.lower())
        if account is None or account[0] != password:
            raise AtmosphereAuthError(
                f"Cannot log in as {handle}: the PDS at {self.url} refused the credentials "
                "(Invalid identifier or password). Check the handle and app password.",
                service=self.url,
            )
        token = uuid.uuid4().hex
        self._sessions[token] = account[1]
        return Atmosphere(MockTransport(self, handle.lower(), account[1], token))

    def restore(self, session: str) -> Atmosphere:
        """Resume a session string from ``export_session()``."""
        did = self._sessions.get(session.rsplit(":", 1)[-1])
        handle = next((h for h, (_, d) in self.accounts.items() if d == did), None)
        if did is None or handle is None:
            raise AtmosphereAuthError(
                "The session expired or is unknown; log in again.", service=self.url
            )
        return Atmosphere(MockTransport(self, handle, did, session.rsplit(":", 1)[-1]))

    def anonymous(self) -> Atmosphere:
        """A read-only client of this network."""
        return Atmosphere(MockTransport(self, None, None, None))

    # -- as the current network --------------------------------------------------------

    def __enter__(self) -> MockNetwork:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(use(self.anonymous()))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self.close()

    def close(self) -> None:
        """Forget the blobs kept in ``memory://``."""
        import fsspec

        fs = fsspec.filesystem("memory")
        for path in self.blobs.values():
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
        self.blobs.clear()

    def _next_tid(self) -> str:
        return new_tid(next(self._clock) & 0x3FF)


class MockTransport:
    """A :class:`~atdata.atmosphere._transport.Transport` over a :class:`MockNetwork`."""

    def __init__(
        self, net: MockNetwork, handle: str | None, did: str | None, token: str | None
    ) -> None:
        self.net = net
        self.service = net.url
        self._handle = handle
        self._did = did
        self._token = token

    @property
    def did(self) -> str | None:
        return self._did

    @property
    def handle(self) -> str | None:
        return self._handle

    def export_session(self) -> str:
        if self._token is None:
            raise AtmosphereAuthError("No session to export: log in first.", service=self.service)
        return f"{self._handle}:{self._token}"

    def close(self) -> None:
        return None

    def _me(self) -> str:
        if self._did is None:
            raise AtmosphereAuthError(
                "Cannot write records without logging in: "
                "use Atmosphere.login(handle, app_password).",
                service=self.service,
            )
        return self._did

    def _collection(self, repo: str, collection: str) -> dict[str, tuple[str, dict[str, Any]]]:
        if repo not in self.net.repos:
            raise RecordNotFoundError(
                f"Cannot read {collection} of {repo}: not found at {self.service} "
                "(Could not find repo).",
                ref=repo,
                service=self.service,
            )
        return self.net.repos[repo].setdefault(collection, {})

    def put_record(self, collection: str, rkey: str, record: Mapping[str, Any]) -> Record:
        me = self._me()
        check_rkey(rkey)
        check_record(record)
        value = json.loads(json.dumps(record))
        cid = _cid(json.dumps(value, sort_keys=True).encode(), "bafyrei")
        self._collection(me, collection)[rkey] = (cid, value)
        return Record(f"at://{me}/{collection}/{rkey}", cid, value)

    def create_record(self, collection: str, record: Mapping[str, Any]) -> Record:
        return self.put_record(collection, self.net._next_tid(), record)

    def get_record(self, repo: str, collection: str, rkey: str) -> Record:
        found = self._collection(repo, collection).get(rkey)
        uri = f"at://{repo}/{collection}/{rkey}"
        if found is None:
            raise RecordNotFoundError(
                f"Cannot read {uri}: not found at {self.service} (Could not locate record).",
                ref=uri,
                service=self.service,
            )
        cid, value = found
        return Record(uri, cid, json.loads(json.dumps(value)))

    def list_records(self, repo: str, collection: str) -> Iterator[Record]:
        items = sorted(self._collection(repo, collection).items(), reverse=True)
        for rkey, (cid, value) in items:
            yield Record(f"at://{repo}/{collection}/{rkey}", cid, json.loads(json.dumps(value)))

    def delete_record(self, collection: str, rkey: str) -> None:
        self._collection(self._me(), collection).pop(rkey, None)

    def upload_blob(self, data: bytes, mime_type: str) -> dict[str, Any]:
        self._me()
        if len(data) > self.net.blob_limit:
            raise AtmosphereError(
                f"Cannot upload a blob of {len(data)} bytes: the PDS at {self.service} refused it "
                f"as too large (limit {self.net.blob_limit}).",
                service=self.service,
            )
        import fsspec

        cid = _cid(data, "bafkrei")
        path = f"/atdata-mock-blobs/{self.net.url.rsplit('/', 1)[-1]}/{cid}"
        fsspec.filesystem("memory").pipe_file(path, bytes(data))
        self.net.blobs[cid] = path
        return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime_type, "size": len(data)}

    def blob_url(self, did: str, cid: str) -> str:
        path = self.net.blobs.get(cid)
        if path is None:
            raise RecordNotFoundError(
                f"No blob {cid} at {self.service}.", ref=cid, service=self.service
            )
        return "memory:/" + path

    def blob_limit(self) -> int:
        return self.net.blob_limit

    def resolve_handle(self, handle: str) -> str:
        account = self.net.accounts.get(handle.lower().lstrip("@"))
        if account is None:
            raise RecordNotFoundError(
                f"Cannot resolve the handle {handle}: not found at {self.service} "
                "(Unable to resolve handle).",
                ref=handle,
                service=self.service,
            )
        return account[1]


def mock_atmosphere(*, blob_limit: int = DEFAULT_BLOB_LIMIT) -> MockNetwork:
    """A fake AT Protocol network for tests; use it as a context manager.

    Inside ``with mock_atmosphere() as net:``, ``@handle/name`` and ``at://``
    names resolve through ``net`` (``atdata.atmosphere.resolve``).

    Example:
        >>> with mock_atmosphere() as net:
        ...     alice = net.create_account("alice.test")
        ...     alice.handle
        'alice.test'
    """
    return MockNetwork(blob_limit=blob_limit)
