"""Triggers: which objects (bucket, prefix, optional suffix or glob) start a pipeline."""

from __future__ import annotations

import dataclasses
import functools
import re

from atdata.errors import PipelineError
from atdata.storage import LiteralURL

__all__ = ["Trigger"]

SCHEMES = ("s3", "r2")
_GLOB_CHARS = "*?["


@dataclasses.dataclass(frozen=True)
class Trigger:
    """A bucket and key prefix, optionally narrowed by a suffix or a glob.

    ``r2://bucket/incoming`` matches every key under ``incoming/`` (the prefix is
    a folder); ``r2://bucket/incoming/**/*-train.tar`` matches keys by glob
    (``*`` and ``?`` stay within one path segment, ``**`` spans folders);
    ``suffix=".tar"`` keeps only keys ending that way. The scheme says how the
    shard is read (``s3://`` through ``AWS_ENDPOINT_URL``, ``r2://`` through
    ``R2_ENDPOINT_URL``/``R2_ACCOUNT_ID``); events themselves carry only a bucket.

    Example:
        >>> t = Trigger.parse("r2://bucket/incoming")
        >>> t.matches("bucket", "incoming/a/train-000001.tar"), t.matches("bucket", "other/x.tar")
        (True, False)
        >>> t.shard_url("incoming/a/train-000001.tar")
        'r2://bucket/incoming/a/train-000001.tar'
    """

    scheme: str
    bucket: str
    prefix: str = ""
    glob: str | None = None
    suffix: str | None = None

    @classmethod
    def parse(cls, url: str, *, suffix: str | None = None) -> Trigger:
        """Read a trigger URL such as ``r2://bucket/incoming`` or ``s3://b/in/*.tar``.

        Raises:
            PipelineError: the URL is not ``s3://`` or ``r2://`` with a bucket.
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise PipelineError(
                f"trigger {url!r}: expected an s3:// or r2:// URL with a bucket and an optional "
                "prefix, e.g. 'r2://my-bucket/incoming'"
            )
        bucket, _, path = rest.partition("/")
        if not bucket:
            raise PipelineError(f"trigger {url!r}: the URL names no bucket")
        glob = None
        first = min((path.find(c) for c in _GLOB_CHARS if c in path), default=-1)
        if first >= 0:
            glob = path
            prefix = path[: path.rfind("/", 0, first) + 1]
        else:
            prefix = path.strip("/")
            prefix = prefix + "/" if prefix else ""
        return cls(scheme=scheme, bucket=bucket, prefix=prefix, glob=glob, suffix=suffix)

    @property
    def url(self) -> str:
        """The trigger as a URL (with its glob, if any)."""
        return f"{self.scheme}://{self.bucket}/{self.glob if self.glob else self.prefix}"

    @property
    def prefix_url(self) -> str:
        """The folder the poller lists: ``scheme://bucket/prefix``."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def matches(self, bucket: str, key: str) -> bool:
        """True when an object at ``bucket``/``key`` is one this trigger fires for."""
        if bucket != self.bucket or not key.startswith(self.prefix):
            return False
        if self.suffix is not None and not key.endswith(self.suffix):
            return False
        return self.glob is None or _glob_regex(self.glob).fullmatch(key) is not None

    def shard_url(self, key: str) -> LiteralURL:
        """The URL the pipeline function is given for an object key: a
        :class:`~atdata.storage.LiteralURL`, so a key holding ``*``, ``[`` or ``%``
        names that one object, never a pattern."""
        return LiteralURL(f"{self.scheme}://{self.bucket}/{key}")

    def relative(self, key: str) -> str:
        """``key`` relative to the trigger's prefix."""
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key


@functools.lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and glob.find("]", i + 1) > 0:
            end = glob.find("]", i + 1)
            body = glob[i + 1 : end]
            body = body.replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))
