"""The event ledger: each (pipeline, bucket, key, ETag) is processed once.

Delivery is at least once (queues redeliver, the poller re-lists), so before a
pipeline runs for an event it *claims* the event in a ledger that lives with
the pipeline's output, under ``<output>/_atdata_pipeline/``:

- on object stores (``s3://``, ``r2://``) one small JSON object per event,
  created with ``If-None-Match: *`` and updated with ``If-Match: <etag>``, so
  two dispatcher replicas racing for one event agree on a single winner;
- on local disk one SQLite file (``events.sqlite``), whose single-statement
  ``INSERT OR IGNORE`` / compare-and-set ``UPDATE`` are atomic across processes;
- on ``memory://`` (tests) an in-process table.

A record is ``running`` (claimed), ``done`` (outputs committed), ``failed``,
or ``superseded`` (its object was overwritten before the run began, so it never
ran). A duplicate of a done, running or superseded event is a no-op; a failed
event is claimed again (up to ``max_attempts``), and a running claim older than
the lease (its replica died) is taken over. Outputs go to a prefix derived from the
event, so a retry resumes in place rather than writing a second copy.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from atdata.errors import LedgerError
from atdata.storage import is_local, store_for

__all__ = [
    "LEDGER_DIR",
    "Claim",
    "EventLedger",
    "EventRecord",
    "MemoryLedger",
    "ObjectStoreLedger",
    "SQLiteLedger",
    "ledger_for",
]

LEDGER_DIR = "_atdata_pipeline"
FORMAT_VERSION = 1
_FINAL_STATES = ("done", "superseded")


@dataclasses.dataclass
class EventRecord:
    """What the ledger knows about one event for one pipeline.

    Example:
        >>> record = EventRecord(
        ...     id="e1", pipeline="process", bucket="bucket", key="incoming/a.tar",
        ...     etag="etag1", shard_url="s3://bucket/incoming/a.tar",
        ...     output_prefix="out/processed/a/etag1",
        ... )
        >>> record.state, record.attempts
        ('running', 1)
    """

    id: str
    pipeline: str
    bucket: str
    key: str
    etag: str
    shard_url: str
    output_prefix: str
    state: str = "running"
    attempts: int = 1
    owner: str = ""
    claimed_at: float = 0.0
    updated_at: float = 0.0
    outputs: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    size: int | None = None
    event_time: str | None = None
    pipeline_version: str | None = None
    superseded_by: str | None = None  # the object's ETag when a newer version replaced it

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (with ``format_version``).

        Example:
            >>> record = EventRecord("e1", "process", "bucket", "incoming/a.tar", "etag1",
            ...                      "s3://bucket/incoming/a.tar", "out/processed/a/etag1")
            >>> record.to_json()["format_version"], record.to_json()["key"]
            (1, 'incoming/a.tar')
        """
        out: dict[str, Any] = {"format_version": FORMAT_VERSION}
        for name in _FIELDS:
            out[name] = getattr(self, name)
        out["outputs"] = list(self.outputs)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRecord:
        """Rebuild a record from :meth:`to_json` output, ignoring unknown keys.

        Example:
            >>> record = EventRecord("e1", "process", "bucket", "incoming/a.tar", "etag1",
            ...                      "s3://bucket/incoming/a.tar", "out/processed/a/etag1")
            >>> EventRecord.from_json(record.to_json()) == record
            True
        """
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})

    def dumps(self) -> bytes:
        """The record as compact JSON bytes (keys sorted, so equal records are equal bytes).

        Example:
            >>> record = EventRecord("e1", "process", "bucket", "incoming/a.tar", "etag1",
            ...                      "s3://bucket/incoming/a.tar", "out/processed/a/etag1")
            >>> record.dumps()[:15]
            b'{"attempts":1,"'
        """
        return _ENCODER.encode(dict(sorted(self.to_json().items())))


_FIELDS = tuple(f.name for f in dataclasses.fields(EventRecord))
_FIELD_SET = frozenset(_FIELDS)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


@dataclasses.dataclass(frozen=True)
class Claim:
    """The answer to :meth:`EventLedger.claim`.

    Attributes:
        acquired: True when the caller now owns the event and must run it.
        record: the event's record as it now stands.
        reason: ``new``, ``retry`` (it had failed) or ``takeover`` (a stale
            claim) when acquired; ``done``, ``running``, ``superseded`` or
            ``exhausted`` (failed ``max_attempts`` times) when not.

    Example:
        >>> ledger = ledger_for("out/processed")
        >>> record = EventRecord("e1", "process", "bucket", "incoming/a.tar", "etag1",
        ...                      "s3://bucket/incoming/a.tar", "out/processed/a/etag1")
        >>> claim = ledger.claim(record)
        >>> claim.acquired, claim.reason
        (True, 'new')
        >>> ledger.claim(record).reason          # a second delivery while it runs
        'running'
    """

    acquired: bool
    record: EventRecord
    reason: str


def owner_id() -> str:
    """A name for this process, recorded with its claims: ``host:pid:random``."""
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class EventLedger(abc.ABC):
    """Claims, completions and failures of events; subclasses supply atomic primitives.

    The primitives are ``_create`` (only if absent), ``_read`` (record and an
    opaque version), ``_replace`` (only if the version is unchanged) and
    ``_list``. Every state change is a compare-and-set on those, so the
    semantics are the same on every back end.

    Example:
        >>> ledger = ledger_for("out/processed")       # an EventLedger
        >>> record = EventRecord("e1", "process", "bucket", "incoming/a.tar", "etag1",
        ...                      "s3://bucket/incoming/a.tar", "out/processed/a/etag1")
        >>> owner = ledger.claim(record).record.owner
        >>> ledger.finish("e1", owner=owner, outputs=["out/processed/a/etag1/a.tar"]).state
        'done'
        >>> [(r.key, r.state) for r in ledger.records()]
        [('incoming/a.tar', 'done')]
    """

    def __init__(self, url: str) -> None:
        self.url = url
        # Claims on one event from threads of this process queue up here; the
        # store's conditional writes arbitrate between processes and machines.
        self._locks = [threading.Lock() for _ in range(64)]

    # -- primitives ---------------------------------------------------------------

    @abc.abstractmethod
    def _create(self, record: EventRecord) -> bool:
        """Write ``record`` only if no record with its id exists; False if one does."""

    @abc.abstractmethod
    def _read(self, event_id: str) -> tuple[EventRecord, Any] | None:
        """The record and its version, or None."""

    @abc.abstractmethod
    def _replace(self, record: EventRecord, version: Any) -> bool:
        """Overwrite the record only if its version is still ``version``."""

    @abc.abstractmethod
    def _list(self) -> list[EventRecord]:
        """Every record."""

    # -- verbs ----------------------------------------------------------------------

    def claim(
        self,
        record: EventRecord,
        *,
        lease_seconds: float = 3600.0,
        max_attempts: int | None = 3,
    ) -> Claim:
        """Claim the event ``record`` describes, atomically.

        Args:
            record: the new ``running`` record (its ``owner`` is the claimant).
            lease_seconds: a ``running`` claim older than this is taken over.
            max_attempts: a failed event is not claimed again after this many
                attempts; None retries without limit.

        Raises:
            LedgerError: the ledger cannot be read or written.
        """
        now = time.time()
        record = dataclasses.replace(
            record,
            state="running",
            claimed_at=now,
            updated_at=now,
            attempts=1,
            outputs=[],
            error=None,
        )
        with self._lock(record.id):
            for _ in range(8):
                if self._create(record):
                    return Claim(True, record, "new")
                found = self._read(record.id)
                if found is None:
                    continue  # deleted between the two calls: try to create again
                existing, version = found
                reason = _takeover(existing, now, lease_seconds, max_attempts)
                if reason not in ("retry", "takeover"):
                    return Claim(False, existing, reason)
                taken = dataclasses.replace(
                    record,
                    attempts=existing.attempts + 1,
                    output_prefix=existing.output_prefix or record.output_prefix,
                )
                if self._replace(taken, version):
                    return Claim(True, taken, reason)
                # another claimant changed it first: read again and decide again
            found = self._read(record.id)
            return Claim(False, found[0] if found else record, "running")

    def finish(self, event_id: str, *, owner: str, outputs: list[str]) -> EventRecord | None:
        """Mark the event done with its output URLs."""

        def done(rec: EventRecord) -> EventRecord | None:
            return dataclasses.replace(
                rec,
                state="done",
                outputs=list(outputs),
                error=None,
                owner=owner,
                updated_at=time.time(),
            )

        return self._update(event_id, done)

    def fail(self, event_id: str, *, owner: str, error: str) -> EventRecord | None:
        """Mark the event failed (a later delivery or poll retries it); a done event stays done."""

        def failed(rec: EventRecord) -> EventRecord | None:
            if rec.state in _FINAL_STATES:
                return None
            return dataclasses.replace(
                rec, state="failed", error=error, owner=owner, updated_at=time.time()
            )

        return self._update(event_id, failed)

    def supersede(self, event_id: str, *, owner: str, current_etag: str) -> EventRecord | None:
        """Mark the event superseded: its object's ETag is now ``current_etag``, so it never runs.

        A done event stays done (its output is of the version it was for).
        """

        def superseded(rec: EventRecord) -> EventRecord | None:
            if rec.state in _FINAL_STATES:
                return None
            return dataclasses.replace(
                rec,
                state="superseded",
                superseded_by=current_etag,
                error=None,
                owner=owner,
                updated_at=time.time(),
            )

        return self._update(event_id, superseded)

    def get(self, event_id: str) -> EventRecord | None:
        """The record of one event, or None."""
        found = self._read(event_id)
        return None if found is None else found[0]

    def records(self) -> list[EventRecord]:
        """Every record, oldest claim first."""
        return sorted(self._list(), key=lambda r: (r.claimed_at, r.id))

    # -- helpers ---------------------------------------------------------------------

    def _update(
        self, event_id: str, change: Callable[[EventRecord], EventRecord | None]
    ) -> EventRecord | None:
        with self._lock(event_id):
            for _ in range(8):
                found = self._read(event_id)
                if found is None:
                    return None
                record, version = found
                new = change(record)
                if new is None:
                    return record
                if self._replace(new, version):
                    return new
        raise LedgerError(
            f"could not update event {event_id} in {self.url}: it kept changing under us",
            url=self.url,
        )

    def _lock(self, event_id: str) -> threading.Lock:
        return self._locks[int(event_id[:8], 16) % len(self._locks)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _takeover(existing: EventRecord, now: float, lease: float, max_attempts: int | None) -> str:
    if existing.state in _FINAL_STATES:
        return existing.state
    exhausted = max_attempts is not None and existing.attempts >= max_attempts
    if existing.state == "failed":
        return "exhausted" if exhausted else "retry"
    if now - existing.claimed_at > lease:
        return "exhausted" if exhausted else "takeover"
    return "running"


# -- object stores ---------------------------------------------------------------------


class ObjectStoreLedger(EventLedger):
    """A ledger on S3 or R2: one JSON object per event, written with conditional PUTs.

    ``If-None-Match: *`` creates a claim only if none exists; ``If-Match:
    <etag>`` changes a record only if nobody changed it since it was read. Both
    are atomic on S3 and R2 (a concurrent loser gets 412 or 409).

    Example:
        >>> ledger = ledger_for("s3://bucket/processed")
        >>> type(ledger).__name__, ledger.url
        ('ObjectStoreLedger', 's3://bucket/processed/_atdata_pipeline')
        >>> ledger.get("no-such-event") is None
        True
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        store, path = store_for(url)
        fs = getattr(store, "fs", None)
        if fs is None or not hasattr(fs, "call_s3"):
            raise LedgerError(
                f"{url}: conditional writes need an S3 API store (s3:// or r2://)", url=url
            )
        self._fs = fs
        self._bucket, _, prefix = path.partition("/")
        self._prefix = f"{prefix.strip('/')}/events/".lstrip("/")

    def _key(self, event_id: str) -> str:
        return f"{self._prefix}{event_id}.json"

    def _put(self, record: EventRecord, **conditions: str) -> bool:
        try:
            self._fs.call_s3(
                "put_object",
                Bucket=self._bucket,
                Key=self._key(record.id),
                Body=record.dumps(),
                ContentType="application/json",
                **conditions,
            )
        except Exception as exc:
            if _s3_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            if conditions.get("IfMatch") and _s3_code(exc) in ("NoSuchKey", "404"):
                return False
            raise self._error("write", record.id, exc) from exc
        return True

    def _create(self, record: EventRecord) -> bool:
        return self._put(record, IfNoneMatch="*")

    def _replace(self, record: EventRecord, version: Any) -> bool:
        return self._put(record, IfMatch=str(version))

    def _read(self, event_id: str) -> tuple[EventRecord, Any] | None:
        from fsspec.asyn import sync

        fs, bucket, key = self._fs, self._bucket, self._key(event_id)

        async def get() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            async with response["Body"] as body:
                data = await body.read()
            return data, response["ETag"]

        try:
            data, etag = sync(fs.loop, get)
        except FileNotFoundError:
            return None
        except Exception as exc:
            if _s3_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", event_id, exc) from exc
        return _parse(data, f"s3://{bucket}/{key}"), etag

    def _list(self) -> list[EventRecord]:
        root = f"{self._bucket}/{self._prefix}"
        try:
            self._fs.invalidate_cache(root)
            paths = [p for p in self._fs.find(root) if p.endswith(".json")]
            blobs = self._fs.cat(paths) if paths else {}
        except Exception as exc:
            raise self._error("list", "*", exc) from exc
        return [_parse(blobs[p], p) for p in sorted(blobs)]

    def _error(self, verb: str, event_id: str, exc: BaseException) -> LedgerError:
        return LedgerError(
            f"cannot {verb} ledger record {event_id} in {self.url}: {type(exc).__name__}: {exc}. "
            "Check the credentials and that the bucket exists.",
            url=self.url,
        )


def _s3_code(exc: BaseException) -> str:
    """The S3 error code (or HTTP status) behind an exception s3fs translated."""
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code or str(status or "")
    text = str(exc)
    for code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
        if code in text:
            return code
    return ""


# -- local disk -------------------------------------------------------------------------


def _set_up(db: sqlite3.Connection, *, patience_s: float = 30.0) -> None:
    """WAL mode and the table. Switching a new file to WAL is not covered by SQLite's busy
    timeout, so processes opening the same new ledger at once retry it."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
                " state TEXT NOT NULL, record TEXT NOT NULL)"
            )
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SQLiteLedger(EventLedger):
    """A ledger in one SQLite file; each state change is one atomic statement.

    Example:
        >>> ledger = SQLiteLedger("out/processed/_atdata_pipeline")
        >>> ledger.path
        'out/processed/_atdata_pipeline/events.sqlite'
        >>> ledger.close()
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        path = url[len("file://") :] if url.startswith("file://") else url
        self.path = os.path.join(path, "events.sqlite")
        try:
            os.makedirs(path, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            _set_up(self._db)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the event ledger {self.path}: {exc}", url=url) from exc
        self._db_lock = threading.Lock()

    def _run(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            with self._db_lock:
                return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise LedgerError(f"event ledger {self.path}: {exc}", url=self.url) from exc

    def _create(self, record: EventRecord) -> bool:
        cur = self._run(
            "INSERT OR IGNORE INTO events (id, version, state, record) VALUES (?, 1, ?, ?)",
            (record.id, record.state, record.dumps().decode()),
        )
        return cur.rowcount == 1

    def _read(self, event_id: str) -> tuple[EventRecord, Any] | None:
        row = self._run("SELECT record, version FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else (_parse(row[0], self.path), row[1])

    def _replace(self, record: EventRecord, version: Any) -> bool:
        cur = self._run(
            "UPDATE events SET record = ?, state = ?, version = version + 1"
            " WHERE id = ? AND version = ?",
            (record.dumps().decode(), record.state, record.id, version),
        )
        return cur.rowcount == 1

    def _list(self) -> list[EventRecord]:
        rows = self._run("SELECT record FROM events", ()).fetchall()
        return [_parse(r[0], self.path) for r in rows]

    def close(self) -> None:
        """Close the database connection."""
        with self._db_lock:
            self._db.close()


# -- memory (tests) ------------------------------------------------------------------------

_MEMORY_LOCK = threading.Lock()


class MemoryLedger(EventLedger):
    """A ledger on fsspec's ``memory://`` filesystem: one process only (for tests).

    Example:
        >>> ledger = ledger_for("memory://bucket/processed")
        >>> type(ledger).__name__, ledger.records()
        ('MemoryLedger', [])
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._store, path = store_for(url)
        self._root = path.rstrip("/") + "/events/"

    def _path(self, event_id: str) -> str:
        return f"{self._root}{event_id}.json"

    def _create(self, record: EventRecord) -> bool:
        with _MEMORY_LOCK:
            if self._store.exists(self._path(record.id)):
                return False
            self._store.write(self._path(record.id), record.dumps())
            return True

    def _read(self, event_id: str) -> tuple[EventRecord, Any] | None:
        with _MEMORY_LOCK:
            if not self._store.exists(self._path(event_id)):
                return None
            data = self._store.read(self._path(event_id))
        return _parse(data, self._path(event_id)), data

    def _replace(self, record: EventRecord, version: Any) -> bool:
        with _MEMORY_LOCK:
            path = self._path(record.id)
            if not self._store.exists(path) or self._store.read(path) != version:
                return False
            self._store.write(path, record.dumps())
            return True

    def _list(self) -> list[EventRecord]:
        return [_parse(self._store.read(p), p) for p in self._store.list(f"{self._root}*.json")]


def _parse(data: bytes | str, where: str) -> EventRecord:
    try:
        return EventRecord.from_json(_DECODER.decode(data))
    except (ValueError, TypeError) as exc:
        raise LedgerError(
            f"ledger record {where} is not valid JSON ({exc}); delete it to "
            "let the event run again",
            url=where,
        ) from exc


def ledger_for(output: str) -> EventLedger:
    """The ledger for a pipeline whose output is ``output``: under ``<output>/_atdata_pipeline``.

    Raises:
        LedgerError: the output's store offers no conditional writes.

    Example:
        >>> ledger = ledger_for("s3://bucket/processed")
        >>> [r.key for r in ledger.records() if r.state == "failed"]
        []
    """
    url = f"{output.rstrip('/')}/{LEDGER_DIR}"
    if is_local(output):
        return SQLiteLedger(url)
    scheme = output.partition("://")[0]
    if scheme in ("s3", "s3a", "r2"):
        return ObjectStoreLedger(url)
    if scheme == "memory":
        return MemoryLedger(url)
    raise LedgerError(
        f"pipeline output {output!r}: the event ledger needs a local path, s3:// or r2:// "
        "(stores with atomic create-if-absent writes)",
        url=output,
    )
