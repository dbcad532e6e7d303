"""Getting a piece of a shard to the decoder: streamed, prefetched, or cached.

- Local shards are streamed straight from disk (the page cache and the OS's
  read-ahead do the prefetching).
- Remote shards are fetched ``prefetch`` pieces ahead on background threads,
  each piece with one range request, while the current one is decoded.
- Through a :class:`ShardCache` remote shards are downloaded whole, once, into
  the cache (safe across DataLoader workers and ranks sharing it: a lock file
  per shard, a temporary name, then an atomic rename) and read from there; the
  least recently used shards are evicted beyond the cache's limit. A pass over
  the data reads its copies through :class:`LocalCopies`, which checks each
  shard's version once and downloads the shards it is told it will need next
  on background threads, while the current ones are read.

Transient storage errors are retried with exponential backoff; then a
:class:`~atdata.errors.StorageError` names the shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TypeVar

from atdata import observability as obs
from atdata.errors import CredentialsError, StorageError, UnreadableURLError
from atdata.shards.reader import RawSample, iter_raw
from atdata.storage import is_local, store_for

__all__ = ["Fetch", "LocalCopies", "ShardCache", "parse_size", "prefetched", "with_retries"]

T = TypeVar("T")

Fetch = tuple[str, int, int | None]
"""A shard URL and the byte range of a piece of it (``None``: to the end)."""

RETRIES = 4
BACKOFF_S = 0.1


def with_retries(url: str, action: Callable[[], T], *, retries: int = RETRIES) -> T:
    """``action()``, retried with exponential backoff on transient storage errors.

    A missing object or refused credentials are not transient and fail at once.

    Raises:
        StorageError: still failing after ``retries`` retries; names the shard.
    """
    for attempt in range(retries + 1):
        try:
            return action()
        except (UnreadableURLError, CredentialsError):
            raise
        except Exception as exc:
            if attempt == retries:
                raise StorageError(
                    f"Cannot read shard {url} after {retries + 1} attempts: "
                    f"{type(exc).__name__}: {exc}. Check the connection to the store; "
                    "a rerun resumes from a state_dict",
                    url=url,
                ) from exc
            obs.log_event(
                "storage retry",
                level="warning",
                shard=url,
                attempt=attempt + 1,
                error=f"{type(exc).__name__}: {exc}",
            )
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def parse_size(size: int | str | None) -> int | None:
    """``"50GB"``, ``"512MiB"``, ``10**9`` -> bytes.

    Example:
        >>> parse_size("50GB"), parse_size("1.5 KiB"), parse_size(None)
        (50000000000, 1536, None)
    """
    if size is None or isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?)B?\s*", size.upper().replace("IB", "iB"))
    if not match:
        raise ValueError(f"cache_limit {size!r} is not a size such as '50GB' or '512MiB'")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " KMGT".index(unit or " "))


class ShardCache:
    """Whole remote shards on local disk, shared by processes, evicted least recently used.

    Args:
        root: the cache folder (created if missing).
        limit: the most bytes to keep (``"50GB"``, ``"512MiB"`` or a number);
            None: no limit.
        max_shards: the most shards to keep; None: no limit.

    Example:
        >>> cache = ShardCache("tmp/atdata-cache", limit="50GB")
        >>> local_path = cache.fetch("s3://bucket/incoming/a.tar")
        >>> local_path.endswith("-a.tar"), cache.fetch("s3://bucket/incoming/a.tar") == local_path
        (True, True)
    """

    def __init__(
        self, root: str, limit: int | str | None = None, *, max_shards: int | None = None
    ) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.limit = parse_size(limit)
        self.max_shards = max_shards
        os.makedirs(self.root, exist_ok=True)

    def path_for(self, url: str, version: str | None = None) -> str:
        """Where the copy of ``url`` (as of ``version``, its ETag) is kept."""
        digest = hashlib.sha256(f"{url}\0{version or ''}".encode()).hexdigest()[:20]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1])[-80:]
        return os.path.join(self.root, f"{digest}-{name}")

    def fetch(self, url: str) -> str:
        """The local path of ``url``'s cached copy, downloading it first if needed.

        Copies are keyed by the object's ETag where the store gives one, so an
        overwritten shard is downloaded again rather than read stale (the old
        copy ages out of the cache).
        """
        store, remote = store_for(url)
        path = self.path_for(url, with_retries(url, lambda: store.etag(remote)))
        if self._touch(path):
            return path
        with _locked(path + ".lock"):
            if not self._touch(path):  # another process may have finished it meanwhile
                self._download(url, path)
        self._evict(keep=path)
        return path

    def _touch(self, path: str) -> bool:
        try:
            os.utime(path)  # the mtime orders eviction
        except FileNotFoundError:
            return False
        return True

    def _download(self, url: str, path: str) -> None:
        partial = f"{path}.partial"  # only the lock holder writes it: a leftover is dead
        store, remote = store_for(url)
        with obs.trace("cache download", shard=url):
            try:
                with_retries(url, lambda: store.get(remote, partial))
                os.replace(partial, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
        obs.log_event("shard cached", shard=url, path=path, bytes=os.path.getsize(path))

    def _evict(self, keep: str) -> None:
        if self.limit is None and self.max_shards is None:
            return
        entries = []
        for entry in os.scandir(self.root):
            if entry.name.endswith((".lock", ".partial")) or not entry.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = entry.stat()
                entries.append((stat.st_mtime, stat.st_size, entry.path))
        total, count = sum(size for _, size, _ in entries), len(entries)
        limit, most = self.limit, self.max_shards
        for _, size, path in sorted(entries):
            if (limit is None or total <= limit) and (most is None or count <= most):
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):  # readers keep an open file valid
                os.unlink(path)
                total, count = total - size, count - 1


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LocalCopies:
    """One pass's local copies of remote shards, made through a :class:`ShardCache`.

    Each shard's version (ETag) is checked and its copy made once per pass, not
    once per piece read from it. :meth:`stage` starts downloading shards, in the
    order given, on ``threads`` background threads (0: each is downloaded when
    first opened).

    Example:
        >>> copies = LocalCopies(ShardCache("tmp/atdata-cache"), threads=2)
        >>> copies.stage(["s3://bucket/incoming/a.tar"])      # downloads in the background
        >>> with copies.open("s3://bucket/incoming/a.tar") as copy:
        ...     copy.read(3) != b""
        True
        >>> copies.close()
    """

    def __init__(self, cache: ShardCache, *, threads: int) -> None:
        self.cache = cache
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="atdata-stage") if threads else None
        )
        self._paths: dict[str, Future[str]] = {}

    def stage(self, urls: Iterable[str]) -> None:
        """Start making the copies of these shards that are not made or started yet."""
        if self._pool is None:
            return
        for url in urls:
            if url not in self._paths:
                self._paths[url] = self._pool.submit(self.cache.fetch, url)

    def open(self, url: str) -> IO[bytes]:
        """The local copy of ``url``, open (waiting for its download if it is under way).

        Raises:
            StorageError: the shard could not be downloaded.
        """
        future = self._paths.get(url)
        if future is None:
            path = self.cache.fetch(url)
            future = self._paths[url] = _done(path)
        try:
            return open(future.result(), "rb")
        except FileNotFoundError:  # evicted meanwhile by another reader of the cache
            path = self.cache.fetch(url)
            self._paths[url] = _done(path)
            return open(path, "rb")

    def close(self) -> None:
        """Cancel the downloads not started yet (a running one finishes in the cache)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _done(path: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(path)
    return future


# -- pieces -----------------------------------------------------------------------------


def _fetch(piece: Fetch) -> bytes:
    """A remote piece's bytes (one range request, or one GET for a whole shard)."""
    url, start, stop = piece
    store, path = store_for(url)
    if stop is None:
        return with_retries(url, lambda: store.read(path)[start:])
    return with_retries(url, lambda: store.range(path, start, stop - start))


def _raw(piece: Fetch, got: bytes | IO[bytes] | None) -> Iterator[RawSample]:
    url, start, stop = piece
    if got is None:  # a local shard: stream it
        return iter_raw(url, byte_range=(start, stop))
    if isinstance(got, bytes):
        return _shifted(iter_raw(url, stream=io.BytesIO(got)), start)
    return _cached(got, url, start, stop)


def _cached(copy: IO[bytes], url: str, start: int, stop: int | None) -> Iterator[RawSample]:
    from atdata.errors import ShardCorruptError

    with copy:
        try:
            yield from iter_raw(url, byte_range=(start, stop), stream=copy)
        except ShardCorruptError as exc:
            reason = f"{exc.reason} (cached copy {copy.name})"
            raise ShardCorruptError(url, exc.offset, reason) from None


def _shifted(samples: Iterator[RawSample], base: int) -> Iterator[RawSample]:
    for raw in samples:
        yield raw._replace(offset=raw.offset + base)


def prefetched(
    items: Iterable[tuple[Fetch | None, T]], *, prefetch: int, copies: LocalCopies | None
) -> Iterator[tuple[T, Iterator[RawSample] | None]]:
    """Each item's tag with an iterator over its piece's raw samples, fetched ahead.

    ``items`` are ``(piece, tag)`` pairs; a ``None`` piece passes its tag through
    (with ``None``) in order. Local pieces, and remote ones read from their
    ``copies``, are streamed as they are reached (the copies download ahead by
    themselves, see :meth:`LocalCopies.stage`); other remote ones are fetched on
    ``prefetch`` background threads, that many pieces ahead (0: in the caller,
    when reached).
    """
    pending: deque[tuple[Fetch | None, T, Future[bytes] | None]] = deque()
    pool = ThreadPoolExecutor(max(prefetch, 1), thread_name_prefix="atdata-prefetch")
    try:
        source = iter(items)
        ahead = 0  # pieces in ``pending``
        exhausted = False
        while True:
            while not exhausted and ahead <= prefetch:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                piece, tag = item
                future = None
                if piece is not None:
                    ahead += 1
                    if prefetch and copies is None and not is_local(piece[0]):
                        future = pool.submit(_fetch, piece)
                pending.append((piece, tag, future))
            if not pending:
                return
            piece, tag, future = pending.popleft()
            if piece is None:
                yield tag, None
                continue
            ahead -= 1
            got: bytes | IO[bytes] | None = None
            if future is not None:
                got = future.result()
            elif is_local(piece[0]):
                got = None
            elif copies is not None:
                got = copies.open(piece[0])
            else:
                got = _fetch(piece)
            yield tag, _raw(piece, got)
    finally:
        for _, _, future in pending:
            if future is not None:
                future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
