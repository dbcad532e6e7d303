"""Where bytes live: one small store interface over local disk and fsspec.

Every store has the same verbs: ``open`` (stream), ``read``, ``range``,
``write`` (atomic: all or nothing), ``put`` (a local file, atomically),
``exists``, ``list`` and ``delete``. :func:`store_for` picks the store for a URL:

- plain paths and ``file://`` use :class:`LocalStore` (``os.pread``, temp file + rename);
- ``s3://`` uses s3fs; the endpoint comes from ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL`` when set (MinIO, moto, R2 through the S3 API);
- ``r2://bucket/key`` is Cloudflare R2: s3fs pointed at ``R2_ENDPOINT_URL``, or
  ``https://$R2_ACCOUNT_ID.r2.cloudflarestorage.com``, with ``R2_ACCESS_KEY_ID``
  and ``R2_SECRET_ACCESS_KEY`` (falling back to the AWS variables);
- anything else fsspec knows (``http(s)://``, ``memory://``, ``gs://``...).

Example:
    >>> store, path = store_for("memory://bucket/a.bin")
    >>> store.write(path, b"hello")
    >>> store.range(path, 1, 3)
    b'ell'
"""

from __future__ import annotations

import contextlib
import functools
import glob as _glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import IO, Any

from atdata.errors import CredentialsError, StorageError, UnreadableURLError

__all__ = [
    "FsspecStore",
    "LiteralURL",
    "LocalStore",
    "Store",
    "expand_urls",
    "is_local",
    "shards_under",
    "sibling",
    "store_for",
    "temporary_spool",
]


class LiteralURL(str):
    """A URL that names exactly one object, read and written as it is spelled.

    Object keys may legally hold ``*``, ``?``, ``[``, ``{`` or ``%``; a plain
    string with those is a pattern to atdata (a glob, a brace range, a shard
    number). Wrap it to say it is not: ``Dataset``, ``load_dataset``,
    ``ShardWriter`` and ``expand_urls`` then use it literally. URLs that come
    from an event or a listing (the pipeline's ``shard_url``, map outputs) are
    already ``LiteralURL`` s. It is a ``str``; string operations on it return
    plain strings.

    Example:
        >>> expand_urls(LiteralURL("s3://bucket/raw/shard[1]*.tar"))
        ['s3://bucket/raw/shard[1]*.tar']
    """

    __slots__ = ()


def is_local(url: str) -> bool:
    """True for plain paths and ``file://`` URLs.

    Example:
        >>> is_local("data/shard-000000.tar"), is_local("file:///data/a.tar")
        (True, True)
        >>> is_local("s3://bucket/a.tar")
        False
    """
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def sibling(url: str, suffix: str) -> str:
    """The URL beside a shard with its ``.tar`` suffix replaced.

    Example:
        >>> sibling("s3://b/shard-000042.tar", ".manifest.json")
        's3://b/shard-000042.manifest.json'
    """
    base = url[: -len(".tar")] if url.endswith(".tar") else url
    return base + suffix


class Store:
    """The verbs every store has; paths are the store's own (no scheme).

    Example:
        >>> store, path = store_for("data/shard-000000.tar")
        >>> store.exists(path), store.size(path) > 0, store.url(path)
        (True, True, 'data/shard-000000.tar')
    """

    protocol: str = ""

    def url(self, path: str) -> str:
        """The full URL of ``path`` in this store."""
        return path if not self.protocol else f"{self.protocol}://{path}"

    def open(self, path: str) -> IO[bytes]:
        """Open ``path`` for streaming reads."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """All bytes of ``path``."""
        raise NotImplementedError

    def range(self, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes of ``path`` starting at ``offset``, in one request."""
        raise NotImplementedError

    def write(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically: readers see all of it or nothing."""
        raise NotImplementedError

    def put(self, local_path: str, path: str) -> None:
        """Copy a local file to ``path`` atomically."""
        raise NotImplementedError

    def get(self, path: str, local_path: str) -> None:
        """Copy ``path`` to a local file, streamed (one request on object stores)."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """True when ``path`` exists."""
        raise NotImplementedError

    def size(self, path: str) -> int:
        """Size of ``path`` in bytes."""
        raise NotImplementedError

    def etag(self, path: str) -> str | None:
        """The object's current ETag (its version), or None where the store has none."""
        return None

    def list(self, pattern: str) -> list[str]:
        """Paths matching a glob pattern, sorted."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Remove ``path`` if it exists."""
        raise NotImplementedError


class LocalStore(Store):
    """Local disk: positional reads and rename-based atomic writes.

    Example:
        >>> store = LocalStore()
        >>> store.write("tmp/hello.txt", b"hello")
        >>> store.read("tmp/hello.txt"), store.list("tmp/*.txt")
        (b'hello', ['tmp/hello.txt'])
    """

    def open(self, path: str) -> IO[bytes]:
        with _errors(path):
            return open(path, "rb", buffering=0)

    def read(self, path: str) -> bytes:
        with _errors(path), open(path, "rb") as f:
            return f.read()

    def range(self, path: str, offset: int, size: int) -> bytes:
        with _errors(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, size, offset)
            finally:
                os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        with _atomic_local_file(path) as f:
            f.write(data)

    def put(self, local_path: str, path: str) -> None:
        if os.path.abspath(local_path) == os.path.abspath(path):
            return
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        if _same_device(local_path, parent or "."):
            os.replace(local_path, path)
        else:
            self.write(path, self.read(local_path))

    def get(self, path: str, local_path: str) -> None:
        with _errors(path):
            shutil.copyfile(path, local_path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        with _errors(path):
            return os.path.getsize(path)

    def list(self, pattern: str) -> list[str]:
        # recursive, so ``**`` spans any depth of folders, as in fsspec
        return sorted(_glob.glob(pattern, recursive=True))

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _same_device(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


@contextlib.contextmanager
def _atomic_local_file(path: str) -> Iterator[IO[bytes]]:
    """Write to a hidden temporary file beside ``path``, renamed over it on success.

    A crash (even SIGKILL) leaves at most a ``.name.tmp-*`` file, never a
    half-written file at ``path``.
    """
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


_S3_PROTOCOLS = frozenset({"s3", "s3a", "r2"})


class FsspecStore(Store):
    """Any fsspec filesystem; writes are single puts, which object stores apply whole.

    Example:
        >>> store, path = store_for("memory://bucket/notes.txt")
        >>> type(store).__name__, path
        ('FsspecStore', 'bucket/notes.txt')
        >>> store.write(path, b"hi")
        >>> store.read(path), store.url(path)
        (b'hi', 'memory://bucket/notes.txt')
    """

    def __init__(self, fs: Any, protocol: str) -> None:
        self.fs = fs
        self.protocol = protocol

    def url(self, path: str) -> str:
        return path if "://" in path else super().url(path)

    def open(self, path: str) -> IO[bytes]:
        with _errors(self.url(path)):
            if self.protocol in ("http", "https"):
                # One streaming GET: works with servers that ignore Range headers
                # (python -m http.server) and is what sequential reading wants.
                return self.fs.open(path, "rb", block_size=0)  # type: ignore[no-any-return]
            return self.fs.open(path, "rb", block_size=8 << 20, cache_type="readahead")  # type: ignore[no-any-return]

    def read(self, path: str) -> bytes:
        with _errors(self.url(path)):
            if self.protocol in _S3_PROTOCOLS:
                # One GET; s3fs's default asks for the size first (a HEAD round trip).
                return self.fs.cat_file(path, max_concurrency=1)  # type: ignore[no-any-return]
            return self.fs.cat_file(path)  # type: ignore[no-any-return]

    def range(self, path: str, offset: int, size: int) -> bytes:
        with _errors(self.url(path)):
            data: bytes = self.fs.cat_file(path, start=offset, end=offset + size)
        if len(data) > size:
            # An HTTP server that ignores Range sends the whole object.
            data = data[offset : offset + size]
        return data

    def write(self, path: str, data: bytes) -> None:
        with _errors(self.url(path)):
            self.fs.pipe_file(path, data)

    def put(self, local_path: str, path: str) -> None:
        with _errors(self.url(path)):
            self.fs.put_file(local_path, path)

    def get(self, path: str, local_path: str) -> None:
        with _errors(self.url(path)):
            if self.protocol in _S3_PROTOCOLS:
                # One streamed GET; s3fs's default splits a big object into ranges.
                self.fs.get_file(path, local_path, max_concurrency=1)
            else:
                self.fs.get_file(path, local_path)

    def exists(self, path: str) -> bool:
        with _errors(self.url(path)):
            return bool(self.fs.exists(path))

    def size(self, path: str) -> int:
        with _errors(self.url(path)):
            return int(self.fs.size(path))

    def etag(self, path: str) -> str | None:
        with _errors(self.url(path)):
            self.fs.invalidate_cache(path)  # the version now, not a cached listing's
            info = self.fs.info(path)
        tag = info.get("ETag") or info.get("etag")
        return str(tag).strip('"') if tag else None

    def list(self, pattern: str) -> list[str]:
        with _errors(self.url(pattern)):
            # Other processes write here too: never answer from a stale listing cache.
            self.fs.invalidate_cache()
            return sorted(self.fs.glob(pattern))

    def delete(self, path: str) -> None:
        with _errors(self.url(path)), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """Translate storage exceptions into atdata errors that say what to do."""
    try:
        yield
    except FileNotFoundError:
        raise UnreadableURLError(
            f"No such file or object: {url}. Check the path, or list what exists "
            "with `atdata inspect` on its folder.",
            url=url,
        ) from None
    except PermissionError as exc:
        raise CredentialsError(
            f"Access denied to {url} ({exc}). For s3:// set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); for r2:// set R2_ACCESS_KEY_ID, "
            "R2_SECRET_ACCESS_KEY and R2_ACCOUNT_ID.",
            url=url,
        ) from None
    except (StorageError, KeyboardInterrupt):
        raise
    except Exception as exc:
        status = getattr(exc, "status", None)  # aiohttp.ClientResponseError (http(s)://)
        if type(exc).__name__ == "ClientResponseError" and status in (400, 404, 410):
            raise UnreadableURLError(
                f"No such file or object: {url} (HTTP {status}).", url=url
            ) from None
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            raise CredentialsError(
                f"No credentials to read {url}. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY "
                "for r2://).",
                url=url,
            ) from None
        if isinstance(exc, OSError):
            raise StorageError(f"Cannot access {url}: {exc}", url=url) from exc
        raise


_LOCAL = LocalStore()


def store_for(url: str) -> tuple[Store, str]:
    """The store that holds ``url`` and the path inside it.

    Raises:
        UnreadableURLError: the scheme is unknown or its back end is not installed.

    Example:
        >>> store, path = store_for("memory://bucket/a.bin")
        >>> type(store).__name__, path
        ('FsspecStore', 'bucket/a.bin')
        >>> type(store_for("data/shard-000000.tar")[0]).__name__
        'LocalStore'
    """
    if is_local(url):
        return _LOCAL, _local_path(url)
    protocol, _, rest = url.partition("://")
    # fsspec's HTTP file system takes whole URLs as its paths
    path = url if protocol in ("http", "https") else rest
    return _fsspec_store(protocol, _env_fingerprint(protocol), os.getpid()), path


def _env_fingerprint(protocol: str) -> tuple[str | None, ...]:
    # Part of the cache key, so a changed endpoint or key (tests, notebooks) takes effect.
    names = _ENV_VARS.get(protocol, ())
    return tuple(os.environ.get(n) for n in names)


_ENV_VARS = {
    "s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"),
    "r2": (
        "R2_ENDPOINT_URL",
        "R2_ACCOUNT_ID",
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
    ),
}


@functools.lru_cache(maxsize=32)
def _fsspec_store(protocol: str, _env: tuple[str | None, ...], _pid: int) -> Store:
    # Keyed by process too: fsspec's async file systems refuse to be used after a fork
    # (a DataLoader worker), so a forked worker opens its own.
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise UnreadableURLError(
            f"Reading {protocol}:// needs fsspec: pip install atdata"
        ) from None
    options: dict[str, Any] = {}
    fs_protocol = protocol
    if protocol in ("s3", "s3a"):
        fs_protocol = "s3"
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
    elif protocol == "r2":
        fs_protocol = "s3"
        options.update(_r2_options())
    try:
        fs = fsspec.filesystem(fs_protocol, **options)
    except (ImportError, ValueError) as exc:
        hint = (
            "pip install 'atdata[s3]'"
            if fs_protocol == "s3"
            else f"install the fsspec back end for {protocol}://"
        )
        raise UnreadableURLError(
            f"Cannot open {protocol}:// URLs: {exc}. Run: {hint}", url=f"{protocol}://"
        ) from None
    return FsspecStore(fs, protocol)


def _r2_options() -> dict[str, Any]:
    endpoint = os.environ.get("R2_ENDPOINT_URL")
    account = os.environ.get("R2_ACCOUNT_ID")
    if not endpoint and not account:
        raise CredentialsError(
            "r2:// URLs need the R2 endpoint: set R2_ACCOUNT_ID (or R2_ENDPOINT_URL), "
            "R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY.",
            url="r2://",
        )
    options: dict[str, Any] = {
        "endpoint_url": endpoint or f"https://{account}.r2.cloudflarestorage.com"
    }
    key = os.environ.get("R2_ACCESS_KEY_ID")
    secret = os.environ.get("R2_SECRET_ACCESS_KEY")
    if key and secret:
        options.update(key=key, secret=secret)
    return options


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Expand brace patterns and globs into a list of shard URLs, in order.

    ``data-{000000..000099}.tar`` expands like bash; a pattern with ``*``, ``?``
    or ``[`` is globbed against its store (sorted); lists are expanded item by
    item; a :class:`LiteralURL` is kept as it is. Order is preserved and
    duplicates dropped.

    Raises:
        UnreadableURLError: when a glob matches nothing.

    Example:
        >>> expand_urls("s3://b/train-{000..002}.tar")
        ['s3://b/train-000.tar', 's3://b/train-001.tar', 's3://b/train-002.tar']
    """
    from braceexpand import braceexpand

    items = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        if isinstance(item, LiteralURL):
            out.append(item)
            continue
        for url in braceexpand(str(item)) if "{" in str(item) else [str(item)]:
            if _is_pattern(url):
                store, pattern = store_for(url)
                matches = [store.url(p) if not is_local(url) else p for p in store.list(pattern)]
                if not matches:
                    raise UnreadableURLError(
                        f"No files match {url}. Check the pattern and the folder it points at.",
                        url=url,
                    )
                out.extend(matches)
            else:
                out.append(url)
    return list(dict.fromkeys(out))


def shards_under(folder: str) -> list[str]:
    """The ``.tar`` files under ``folder`` (recursively; hidden ones skipped), sorted.

    The one listing of a folder of shards: ``Dataset``, ``load_dataset`` and
    the CLI read a folder (a local path, or a remote prefix) through it.

    Raises:
        UnreadableURLError: there is no such (local) folder, or no ``.tar`` under it.

    Example:
        >>> shards_under("data/")[:2]
        ['data/shard-000000.tar', 'data/shard-000001.tar']
    """
    store, path = store_for(folder)
    path = path.rstrip("/")
    found = store.list(f"{path}/**/*.tar") or store.list(f"{path}/*.tar")
    if not found:
        what = f"No .tar shards under {folder}"
        if is_local(folder) and not os.path.isdir(path):
            what = f"No such folder: {folder}"
        raise UnreadableURLError(
            f"{what}. Give the folder that holds the shards, or a pattern such as "
            f"'{folder.rstrip('/')}/shard-{{000000..000009}}.tar'.",
            url=folder,
        )
    return [p if is_local(folder) else store.url(p) for p in found]


def _is_pattern(url: str) -> bool:
    """True when ``url`` holds glob characters (an http(s) query string is not a glob)."""
    if url.startswith(("http://", "https://")):
        url = url.split("?", 1)[0]
    return any(ch in url for ch in "*?[")


def temporary_spool(suffix: str = ".tar") -> tuple[int, str]:
    """A local temporary file for building an object before one atomic put.

    Returns:
        ``(file descriptor, path)``, as :func:`tempfile.mkstemp`; the caller
        closes and removes it.

    Example:
        >>> import os
        >>> fd, spool = temporary_spool()
        >>> os.write(fd, b"shard bytes"), spool.endswith(".tar")
        (11, True)
        >>> os.close(fd); os.remove(spool)
    """
    return tempfile.mkstemp(prefix="atdata-", suffix=suffix)
