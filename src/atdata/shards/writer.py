"""``ShardWriter``: samples in, atomically committed tar shards (and manifests) out."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import queue
import re
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from atdata import observability as obs
from atdata._interrupt import Interruptible
from atdata._progress import Progress
from atdata.errors import SchemaError, ShardError
from atdata.sample import DictSample, PackableSample, Schema, WdsRecord, encode_mapping
from atdata.shards._tar import BLOCK, end_of_archive, member_header, padding
from atdata.storage import LiteralURL, Store, is_local, sibling, store_for, temporary_spool

__all__ = ["ShardWriter", "check_key"]

_MAX_KEY_BYTES = 100 - len(".msgpack")


def check_key(key: Any) -> str:
    """Validate a sample key by WebDataset's rules; return it.

    Keys are relative names: folders are allowed (``train/sample_0001``), but
    not an absolute path, ``..`` or ``.`` parts, empty parts or control characters,
    which a tar extractor would turn into files outside its folder.

    Raises:
        ShardError: for an empty key, a dot in it, a key that is not a relative
            name, or one too long for a tar name.

    Example:
        >>> check_key("train/sample_0001")
        'train/sample_0001'
    """
    if not isinstance(key, str) or not key:
        raise ShardError(f"sample key must be a non-empty string, got {key!r}")
    parts = key.split("/")
    if (
        key.startswith("/")
        or "\\" in key
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(c) < 32 for c in key)
    ):
        raise ShardError(
            f"sample key {key!r} is not a relative name: keys may hold folders "
            "('train/sample_0001') but no leading '/', '..' or '.' parts, empty parts, "
            "backslashes or control characters"
        )
    if "." in key.rpartition("/")[2] or "\x00" in key:
        raise ShardError(
            f"sample key {key!r} contains a dot; WebDataset keys end at the first dot, "
            "so use '_' or '-' instead"
        )
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise ShardError(f"sample key {key!r} is longer than {_MAX_KEY_BYTES} bytes; shorten it")
    return key


def remove_leftovers(path: str) -> list[str]:
    """Delete the temporary files that killed writers of ``path`` left beside it.

    Only this writer's own pattern (``.<name>.tmp-<pid>-<ns>``) is touched, and
    only files whose writing process no longer runs on this machine.

    Example:
        >>> remove_leftovers("data/shard-000000.tar")   # doctest: +SKIP
        ['data/.shard-000000.tar.tmp-4242-1733170000000000000']
        >>> remove_leftovers("data/shard-000001.tar")   # no writer was killed here
        []
    """
    parent, name = os.path.split(path)
    removed = []
    pattern = os.path.join(glob.escape(parent or "."), f".{glob.escape(name)}.tmp-*")
    for leftover in glob.glob(pattern):
        pid = leftover.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _running(int(pid)):
            continue
        _remove_quietly(leftover)
        removed.append(leftover)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


_FLUSH_BYTES = 1 << 20  # hand the background thread blocks of about this size
_DIRECT_BYTES = 64 << 10  # samples at least this big are handed over at once
_PADDING = [padding(n) for n in range(BLOCK)]  # by data size modulo the block size


class _OpenShard:
    """The shard being written: a temporary file, its hash, and its manifest builder.

    Bytes are staged in memory and handed in ~1 MiB blocks to a background
    thread that writes and hashes them; both release the GIL, so this
    overlaps with encoding the next samples. Once the shard is sealed the same
    thread commits it (fsync, rename or upload, manifest), while the writer
    fills the next shard.
    """

    def __init__(self, url: str, builder: Any) -> None:
        self.url = url
        self.store, self.path = store_for(url)
        if is_local(url):
            parent = os.path.dirname(self.path) or "."
            os.makedirs(parent, exist_ok=True)
            remove_leftovers(self.path)
            self.tmp = os.path.join(
                parent, f".{os.path.basename(self.path)}.tmp-{os.getpid()}-{time.monotonic_ns()}"
            )
            self.file: IO[bytes] = open(self.tmp, "wb", buffering=0)  # noqa: SIM115
        else:
            fd, self.tmp = temporary_spool()
            self.file = os.fdopen(fd, "wb", buffering=0)
        self.hash = hashlib.sha256()  # only the manifest records it: unused without one
        self.position = 0
        self.count = 0
        self.builder = builder
        self.started = time.perf_counter()
        # staged pieces, joined into one block by the I/O thread (no growing buffer)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._blocks: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None  # from writing the bytes
        self._commit_error: BaseException | None = None  # from committing them
        self._sealed = False
        # the span context of the code that sealed the shard, so that the commit
        # (manifest_commit span) done by the I/O thread nests under it
        self._trace_headers: dict[str, str] = {}
        self._done = threading.Event()  # set when the I/O thread ends
        self._thread = threading.Thread(target=self._run_io, name="atdata-shard-io", daemon=True)
        self._thread.start()

    def _run_io(self) -> None:
        try:
            self._drain()
        finally:
            self._done.set()

    def _drain(self) -> None:
        write = self.file.write
        update = self.hash.update if self.builder is not None else None
        while (pieces := self._blocks.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks forever
            try:
                # many small pieces: one join, one write; a few (a big sample): as they are
                for block in pieces if len(pieces) <= 3 else (b"".join(pieces),):
                    view = memoryview(block)
                    while view:  # an unbuffered write may be partial
                        view = view[write(view) :]
                    if update is not None:
                        update(block)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the writing thread
                self._error = exc
        if self._sealed and self._error is None:
            try:
                with obs.attach_trace_context(self._trace_headers):
                    self._commit_now()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait_commit()
                self._commit_error = exc

    def _commit_now(self) -> None:
        """Make the shard durable and visible under its name, then its manifest."""
        os.fsync(self.file.fileno())
        self.file.close()
        if self.builder is not None:
            # A rerun over an existing shard: its old manifest must not describe the new
            # tar, so the shard is invisible (no JSON) until the new manifest lands.
            json_store, json_path = store_for(sibling(self.url, ".manifest.json"))
            json_store.delete(json_path)
        try:
            self.store.put(self.tmp, self.path)
        finally:
            _remove_quietly(self.tmp)
        if self.builder is not None:
            self.builder.commit(size_bytes=self.position, checksum_sha256=self.hash.hexdigest())

    def _send(self) -> None:
        """Hand the staged pieces to the I/O thread."""
        if self._error is not None:
            raise ShardError(f"cannot write shard {self.url}: {self._error}") from self._error
        self._blocks.put(self._pending)
        self._pending = []
        self._pending_bytes = 0

    def append(self, chunk: bytes) -> None:
        self._pending.append(bytes(chunk))
        self.position += len(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= _FLUSH_BYTES:
            self._send()

    def add_member(self, header: bytes, packed: bytes) -> None:
        """Append one member: header, data, padding to a whole block."""
        size = len(packed)
        pad = _PADDING[size & (BLOCK - 1)]
        span = BLOCK + size + len(pad)
        self.position += span
        if size >= _DIRECT_BYTES:
            # a big sample goes on its own, written piece by piece: never copied
            if self._pending:
                self._send()
            self._pending += (header, packed, pad)
            self._send()
            return
        self._pending += (header, packed, pad)
        self._pending_bytes += span
        if self._pending_bytes >= _FLUSH_BYTES:
            self._send()

    def start_commit(self) -> None:
        """Seal the archive; the I/O thread writes the rest and commits it."""
        self.append(end_of_archive(self.position))
        if self._error is not None:
            raise ShardError(f"cannot write shard {self.url}: {self._error}") from self._error
        self._sealed = True
        self._trace_headers = obs.inject_trace_context()
        if self._pending:
            self._blocks.put(self._pending)
            self._pending = []
        self._blocks.put(None)

    def wait_commit(self) -> None:
        """Wait for :meth:`start_commit`'s work; re-raise what went wrong.

        A Ctrl-C (or a worker's SIGTERM) while waiting lets the commit finish
        first, so the shard is either all there, with its manifest, or absent.
        (It waits on an event: a ``join()`` interrupted by a signal marks the
        thread as ended, so joining again would not wait.)
        """
        try:
            self._done.wait()
        except BaseException:
            self._done.wait()
            raise
        if self._error is not None:
            raise ShardError(f"cannot write shard {self.url}: {self._error}") from self._error
        if self._commit_error is not None:
            raise self._commit_error

    def commit(self) -> None:
        """Seal and commit the shard, waiting until it is done."""
        self.start_commit()
        self.wait_commit()

    def abort(self) -> None:
        """Stop writing and delete the temporary file (a finished commit stays)."""
        self._pending = []
        if not self._sealed and self._thread.is_alive():
            self._blocks.put(None)
        self._thread.join()
        if not self.file.closed:
            self.file.close()
        _remove_quietly(self.tmp)


def _duplicate(key: str) -> ShardError:
    return ShardError(f"duplicate sample key {key!r}: keys must be unique within a dataset")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


_NUMBER_FIELD = re.compile(r"%\d*d")


def _number_field(pattern: str) -> re.Match[str] | None:
    """The ``%06d``-style field a shard pattern numbers its shards with, if it has one.

    Only that field is formatted, so other ``%`` signs (``a%20b.tar``) stay as they
    are; a :class:`~atdata.storage.LiteralURL` never has one.
    """
    if isinstance(pattern, LiteralURL):
        return None
    return _NUMBER_FIELD.search(pattern)


class ShardWriter:
    """Write samples into numbered tar shards, each committed atomically.

    A shard is written under a temporary name and renamed (on object stores,
    put whole) only when it is complete, then its manifest is written (parquet,
    then JSON last). A process killed mid-shard leaves no file at a shard's
    final name; leaving the ``with`` block on an exception discards the shard in
    progress and keeps the committed ones. A full shard commits in the
    background while the next one fills (so ``shards`` lags by one until
    :meth:`close`, which waits for every commit and raises their errors).

    Ctrl-C inside the ``with`` block does the same and says so in one line on
    stderr, e.g. ``Interrupted: 2 shards (20,000 samples) committed to
    out/shard-%06d.tar; the shard being written (1,234 samples) was
    discarded.``; a script then exits with status 130, without a traceback (see
    ``Dataset.map``). Writing again starts over: the writer does not resume.

    Args:
        pattern: shard URL with a ``%d``-style field, e.g. ``"out/shard-%06d.tar"``
            or ``"s3://bucket/train-%06d.tar"``.
        maxcount: most samples per shard.
        maxsize: most bytes per shard (a shard always holds at least one sample).
        manifest: write ``.manifest.parquet`` and ``.manifest.json`` beside each shard.
        start_shard: number of the first shard.
        key_prefix: prefix of the keys given to samples that carry none; keys are
            ``f"{key_prefix}{index:08d}"``, so equal input gives equal keys.
        provenance: ``source_job_id``, ``parent_shards``, ``pipeline_version``...
            recorded in every manifest.
        progress: draw a progress bar on stderr (samples, bytes, committed
            shards). Off by default, since a writer is often one step of a
            loop that has its own; None: only when stderr is a terminal.
        progress_total: the samples you are going to write, if known: the
            bar's total.

    Example:
        >>> with atdata.ShardWriter("out/shard-%06d.tar", maxcount=1000) as sink:
        ...     for sample in samples:
        ...         key = sink.write(sample)    # or sink.write(sample.as_wds)

        >>> sink.shards
        ['out/shard-000000.tar']
        >>> with atdata.ShardWriter("big/shard-%06d.tar", progress=None,  # a bar on a terminal
        ...                         progress_total=len(samples)) as sink:
        ...     for sample in samples:
        ...         _ = sink.write(sample)
    """

    def __init__(
        self,
        pattern: str,
        maxcount: int = 100_000,
        maxsize: float = 3e9,
        *,
        manifest: bool = True,
        start_shard: int = 0,
        key_prefix: str = "sample_",
        provenance: Mapping[str, Any] | None = None,
        progress: bool | None = False,
        progress_total: int | None = None,
    ) -> None:
        if maxcount < 1 or maxsize < 1:
            raise ValueError("maxcount and maxsize must be positive")
        if isinstance(pattern, os.PathLike):
            pattern = os.fspath(pattern)
        if _number_field(pattern) is None and not pattern.endswith(".tar"):
            raise ShardError(
                f"shard pattern {pattern!r} needs a number field such as %06d "
                "(e.g. 'out/shard-%06d.tar')"
            )
        self.pattern = pattern
        self.maxcount = maxcount
        self.maxsize = maxsize
        self.manifest = manifest
        self.key_prefix = key_prefix
        self.provenance = dict(provenance or {})
        self.shards: list[str] = []
        self.count = 0
        self._next_shard = start_shard
        self._current: _OpenShard | None = None
        self._committing: _OpenShard | None = None  # sealed, committing in the background
        self._keys: set[str] = set()  # keys that samples brought
        self._own_key_at: set[int] = set()  # indices of those samples
        self._schema: Schema | None = None
        self._committed_samples = 0
        self._discarded_samples = 0  # in the shard in progress, when it was aborted
        bar = Progress(f"writing {pattern}", enabled=progress, total=progress_total)
        self._bar = bar if bar.enabled else None  # the hot path checks only this
        self._interruptible = Interruptible(self._interrupted)

    # -- writing ------------------------------------------------------------------

    def write(self, sample: Any) -> str:
        """Append one sample; returns its key.

        Accepts a ``@packable`` instance, its ``as_wds`` record, a WebDataset
        dict ``{"__key__": ..., "msgpack": bytes}``, a ``DictSample``, or a plain
        dict of field values (with an optional ``"__key__"``).

        Example:
            >>> with atdata.ShardWriter("out/shard-%06d.tar") as sink:
            ...     sink.write(sample)
            ...     sink.write({"__key__": "extra_0001", "label": "dog", "score": 0.5})
            'sample_00000000'
            'extra_0001'
        """
        key: str | None
        codec = getattr(type(sample), "__atdata_codec__", None)
        if codec is not None:  # a @packable sample: the common case, kept short
            if self._schema is None:
                self._schema = codec.schema
            key, packed, fields = sample.__dict__.get("__key__"), codec.encode(sample), sample
        else:
            key, packed, fields = self._encode(sample)
        # Generated keys are unique by construction, so only the keys samples
        # bring are remembered: memory stays flat for datasets of any size.
        if key is None:
            key = f"{self.key_prefix}{self.count:08d}"
            if self._keys and key in self._keys:
                raise _duplicate(key)
        else:
            check_key(key)
            if key in self._keys or self._generated_earlier(key):
                raise _duplicate(key)
            self._keys.add(key)
            self._own_key_at.add(self.count)
        name = key.encode("utf-8") + b".msgpack"
        span = BLOCK + len(packed) + (-len(packed) % BLOCK)
        shard = self._current
        if shard is not None and (
            shard.count >= self.maxcount or shard.position + span > self.maxsize
        ):
            self._commit()
            shard = None
        if shard is None:
            shard = self._current = self._open()
        offset = shard.position
        shard.add_member(member_header(name, len(packed)), packed)
        shard.count += 1
        self.count += 1
        if shard.builder is not None:
            shard.builder.add(key, offset, span, fields, packed)
        if self._bar is not None:
            self._bar.advance(bytes=span)
        return key

    def _generated_earlier(self, key: str) -> bool:
        """True when ``key`` is a key this writer generated for an earlier sample."""
        digits = key[len(self.key_prefix) :]
        if not key.startswith(self.key_prefix) or not (digits.isascii() and digits.isdigit()):
            return False
        index = int(digits)
        return f"{index:08d}" == digits and index < self.count and index not in self._own_key_at

    def _encode(self, sample: Any) -> tuple[str | None, bytes, Any]:
        """(key, msgpack bytes, object the manifest can read fields from)."""
        if isinstance(sample, PackableSample):
            if self._schema is None:
                self._schema = type(sample).__schema__
            return sample.__dict__.get("__key__"), sample.packed, sample
        if isinstance(sample, WdsRecord):
            if self._schema is None and isinstance(sample.sample, PackableSample):
                self._schema = type(sample.sample).__schema__
            return sample["__key__"], sample["msgpack"], sample.sample
        if isinstance(sample, DictSample):
            return sample.__key__, sample.packed, sample
        if isinstance(sample, Mapping):
            if "msgpack" in sample:
                packed = sample["msgpack"]
                if not isinstance(packed, (bytes, bytearray, memoryview)):
                    raise SchemaError("a WebDataset record's 'msgpack' entry must be bytes")
                return sample.get("__key__"), bytes(packed), None
            fields = {k: v for k, v in sample.items() if k != "__key__"}
            return sample.get("__key__"), encode_mapping(fields), fields
        raise SchemaError(
            f"cannot write a {type(sample).__name__}: pass a @packable sample, its "
            ".as_wds record, or a dict of field values"
        )

    # -- shard lifecycle -----------------------------------------------------------

    def _open(self) -> _OpenShard:
        field = _number_field(self.pattern)
        if field is not None:
            url = f"{self.pattern[: field.start()]}{field[0] % self._next_shard}"
            url += self.pattern[field.end() :]
        elif not self.shards and self._committing is None:
            url = self.pattern
        else:
            raise ShardError(
                f"shard {self.pattern!r} is full ({self.maxcount} samples or "
                f"{self.maxsize:.0f} bytes); use a pattern with %06d to write several shards"
            )
        self._next_shard += 1
        builder = None
        if self.manifest:
            from atdata.manifest.builder import ManifestBuilder

            builder = ManifestBuilder(url, schema=self._schema, provenance=self.provenance)
        return _OpenShard(url, builder)

    def _commit(self) -> None:
        """Seal the open shard and let it commit in the background (one at a time)."""
        shard, self._current = self._current, None
        if shard is None:
            return
        try:
            self._wait_committing()
        except BaseException:
            shard.abort()
            raise
        try:
            shard.start_commit()
        except BaseException:
            shard.abort()
            raise
        self._committing = shard

    def _wait_committing(self) -> None:
        """Wait for the shard committing in the background; record it or raise."""
        shard, self._committing = self._committing, None
        if shard is None:
            return
        try:
            shard.wait_commit()
        except BaseException:
            shard.abort()
            raise
        self.shards.append(shard.url)
        self._committed_samples += shard.count
        if self._bar is not None:
            self._bar.advance(0, shards=1)
        duration = time.perf_counter() - shard.started
        obs.metrics.shards_written.inc()
        obs.metrics.samples_written.inc(shard.count)
        obs.metrics.shard_write_time.observe(duration)
        obs.log_event(
            "shard committed",
            shard=shard.url,
            samples=shard.count,
            size_bytes=shard.position,
            duration_s=round(duration, 6),
        )

    def close(self) -> list[str]:
        """Commit the shard in progress; returns the URLs of all committed shards.

        Raises:
            ShardError: a shard's bytes could not be written.
            StorageError: a shard could not be committed (e.g. uploaded).

        Example:
            >>> sink = atdata.ShardWriter("out/shard-%06d.tar", maxcount=4)
            >>> for s in samples:
            ...     _ = sink.write(s)
            >>> sink.close()
            ['out/shard-000000.tar', 'out/shard-000001.tar']
        """
        self._commit()
        self._wait_committing()
        if self._bar is not None:
            self._bar.close()
        return self.shards

    def abort(self) -> None:
        """Discard the shard in progress (committed shards stay, as does a full
        shard that was already committing).

        Example:
            >>> sink = atdata.ShardWriter("out/shard-%06d.tar")
            >>> _ = sink.write(sample)
            >>> sink.abort()
            >>> sink.shards
            []
        """
        shard, self._current = self._current, None
        if shard is not None:
            self._discarded_samples = shard.count
            shard.abort()
        try:
            self._wait_committing()
        except Exception as exc:  # noqa: BLE001 - abort runs while another error unwinds
            obs.log_event("shard commit failed", level="warning", error=str(exc))
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ShardWriter:
        self._interruptible.__enter__()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                self.close()
            else:
                self.abort()
        except BaseException as error:
            self._interruptible.__exit__(type(error), error, error.__traceback__)
            raise
        self._interruptible.__exit__(exc_type, exc, tb)

    def _interrupted(self) -> str:
        """What a Ctrl-C in the ``with`` block left: the committed shards, the discarded samples."""
        shards = len(self.shards)
        done = (
            f"{shards:,} shard{'s' if shards != 1 else ''} "
            f"({self._committed_samples:,} samples) committed to {self.pattern}"
        )
        discarded = self._discarded_samples
        if not discarded:
            return done
        plural = "s" if discarded != 1 else ""
        return f"{done}; the shard being written ({discarded:,} sample{plural}) was discarded"

    @property
    def store(self) -> Store:
        """The store shards are written to.

        Example:
            >>> type(atdata.ShardWriter("out/shard-%06d.tar").store).__name__
            'LocalStore'
        """
        return store_for(self.pattern)[0]
