"""Object-storage events: the R2 event-notification JSON, parsed and checked.

An R2 notification (the body the Cloudflare Worker forwards unchanged) is::

    {"account": "3f4b...", "bucket": "my-bucket",
     "object": {"key": "incoming/train-000001.tar", "size": 1048576, "eTag": "c846ff..."},
     "action": "PutObject", "eventTime": "2026-04-01T12:00:00.000Z"}

Only object creations (``PutObject``, ``CopyObject``, ``CompleteMultipartUpload``)
of ``.tar`` keys are processed; deletions, manifests and other files are ignored.
The poller builds the same events from a bucket listing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from atdata.errors import InvalidEventError

__all__ = ["CREATE_ACTIONS", "ObjectEvent"]

CREATE_ACTIONS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
"""R2 actions meaning "an object now exists at this key"."""

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_MAX_KEY = 1024


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    """One object-storage event: which object, which version (ETag), what happened.

    Attributes:
        bucket: the bucket name.
        key: the object key.
        etag: the object's ETag without quotes ("" for deletions).
        action: ``PutObject``, ``CopyObject``, ``CompleteMultipartUpload``,
            ``DeleteObject``, ``LifecycleDeletion``...
        size: the object's size in bytes, when known.
        event_time: when it happened (ISO 8601 text), when known.
        account: the Cloudflare account id, when known.

    Example:
        >>> ev = ObjectEvent.from_json({"bucket": "bucket", "action": "PutObject",
        ...     "object": {"key": "incoming/a.tar", "size": 10, "eTag": "abc"}})
        >>> ev.is_create, ev.is_shard, ev.etag
        (True, True, 'abc')
    """

    bucket: str
    key: str
    etag: str
    action: str = "PutObject"
    size: int | None = None
    event_time: str | None = None
    account: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ObjectEvent:
        """Parse and check an R2 event-notification body.

        Raises:
            InvalidEventError: a field is missing or of the wrong type; the
                message is one line naming the field, what was expected and what came.
        """
        if not isinstance(data, Mapping):
            raise InvalidEventError(
                f"expected a JSON object (an R2 event notification), got {_kind(data)}"
            )
        bucket = data.get("bucket")
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            raise InvalidEventError(f"'bucket': expected a bucket name, got {_show(bucket)}")
        action = data.get("action")
        if not isinstance(action, str) or not action:
            raise InvalidEventError(
                f"'action': expected a string such as 'PutObject', got {_show(action)}"
            )
        obj = data.get("object")
        if not isinstance(obj, Mapping):
            raise InvalidEventError(f"'object': expected an object with 'key', got {_show(obj)}")
        key = obj.get("key")
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY or "\x00" in key:
            raise InvalidEventError(
                f"'object.key': expected a non-empty object key, got {_show(key)}"
            )
        etag = obj.get("eTag", obj.get("etag"))
        if etag is None and action not in CREATE_ACTIONS:
            etag = ""  # deletions carry no ETag
        if not isinstance(etag, str) or (action in CREATE_ACTIONS and not etag.strip('" ')):
            raise InvalidEventError(
                f"'object.eTag': expected the object's ETag for a {action} event, got {_show(etag)}"
            )
        size = obj.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise InvalidEventError(f"'object.size': expected a byte count, got {_show(size)}")
        event_time = data.get("eventTime")
        if event_time is not None and not isinstance(event_time, str):
            raise InvalidEventError(f"'eventTime': expected ISO 8601 text, got {_show(event_time)}")
        account = data.get("account")
        if account is not None and not isinstance(account, str):
            raise InvalidEventError(f"'account': expected a string, got {_show(account)}")
        return cls(
            bucket=bucket,
            key=key,
            etag=normalize_etag(etag),
            action=action,
            size=size,
            event_time=event_time,
            account=account,
        )

    def to_json(self) -> dict[str, Any]:
        """The event in the R2 notification format (what :meth:`from_json` reads)."""
        obj: dict[str, Any] = {"key": self.key, "eTag": self.etag}
        if self.size is not None:
            obj["size"] = self.size
        out: dict[str, Any] = {"bucket": self.bucket, "object": obj, "action": self.action}
        if self.event_time is not None:
            out["eventTime"] = self.event_time
        if self.account is not None:
            out["account"] = self.account
        return out

    @property
    def is_create(self) -> bool:
        """True for object-creation actions (the only ones that trigger pipelines)."""
        return self.action in CREATE_ACTIONS

    @property
    def is_shard(self) -> bool:
        """True when the key names a ``.tar`` shard (not a manifest, not atdata's own files)."""
        return self.key.endswith(".tar") and not _is_internal(self.key)

    def ignore_reason(self) -> str | None:
        """Why this event triggers nothing, or None when it may trigger a pipeline."""
        if not self.is_create:
            return f"{self.action} is not an object-create action"
        if not self.key.endswith(".tar"):
            return f"{self.key} is not a .tar shard"
        if _is_internal(self.key):
            return f"{self.key} is one of atdata's own bookkeeping files"
        if any(part in ("", ".", "..") for part in self.key.split("/")):
            return f"{self.key} has an empty, '.' or '..' path segment"
        return None


def normalize_etag(etag: str) -> str:
    """An ETag without the quotes S3 listings put around it (R2 events have none)."""
    return etag.strip().strip('"')


def _is_internal(key: str) -> bool:
    # ledgers and job records live under _atdata_* folders next to outputs
    return any(part.startswith("_atdata_") for part in key.split("/")[:-1])


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
