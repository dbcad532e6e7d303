"""Reading shards: the one loop over a shard's samples, and coalesced range reads.

Everything that reads samples goes through here: the dataset's iteration, the
manifest builder, the query's row fallback and the map task all stream with
:func:`iter_raw` / :func:`iter_shard`; ``get_sample`` and query results fetch
with :func:`read_samples`, which merges nearby samples into one range request.
"""

from __future__ import annotations

import dataclasses
import io
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Literal, NamedTuple, TypeVar

import msgspec

from atdata import observability as obs
from atdata.errors import SchemaError, SchemaMismatchError, ShardCorruptError, ShardError
from atdata.shards._tar import BLOCK, Member, TarFormatError, iter_members, member_spans
from atdata.storage import is_local, store_for

__all__ = [
    "ErrorHandler",
    "RawSample",
    "SampleLocation",
    "decode_raw",
    "decoder_for",
    "iter_raw",
    "iter_shard",
    "read_sample",
    "read_samples",
    "sample_spans",
    "split_key",
]

T = TypeVar("T")
Decoder = Callable[[memoryview, str], T]
ErrorT = TypeVar("ErrorT", bound=Exception)
ErrorPolicy = Literal["raise", "skip", "warn"] | Callable[[ErrorT], None]
"""What to do with a bad sample: the one error policy of reading (``handler=``,
as :data:`ErrorHandler`) and of ``Dataset.map`` (``on_error=``, as
:data:`atdata.processing.OnError`).

- ``"raise"`` (the default): reading raises the :class:`~atdata.errors.ShardCorruptError`;
  a map task fails its shard with a :class:`~atdata.errors.ProcessingError`
  naming the sample.
- ``"skip"``: drop the sample and count it
  (``atdata.observability.metrics.samples_skipped``); a map job also records
  the keys in its ledger (``atdata.job_status(prefix).shards[i].skipped_keys``).
- ``"warn"``: as ``"skip"``, and warn: when reading, for each bad sample; in a
  map, once per job, in the calling process.
- a callable: called with the error, for each bad sample. If it raises, that is
  ``"raise"`` with its exception (a map task wraps it in the ``ProcessingError``);
  if it returns, as ``"skip"``. A map calls it in the worker, on a copy that
  travels by value (cloudpickle) like the map function, even with
  ``executor="inline"``: what it changes stays in the copy, so log or write out.

The error (``ErrorT``) is a :class:`~atdata.errors.ShardCorruptError` when
reading; in a map, whatever the sample raised: the function's own exception,
a ``ShardCorruptError`` for corrupt input, a ``ProcessingError`` or
:class:`~atdata.errors.SchemaError` for an output its type refuses. A bad tar
header cannot be skipped past: the rest of the shard (or of the map task's
range) is one bad sample. A :class:`~atdata.errors.SchemaMismatchError` is
never a bad sample (every sample would fail alike): it always raises.

Example:
    >>> ds = atdata.Dataset[ImageSample](url, handler="skip")            # doctest: +SKIP
    >>> out = ds.map(embed, output_prefix=prefix, on_error=log_and_skip)  # doctest: +SKIP
"""
ErrorHandler = ErrorPolicy[ShardCorruptError]
"""The reading error policy (``handler=``): :data:`ErrorPolicy` for corrupt samples."""

COALESCE_GAP = 1 << 20
"""Samples this close together in a shard are fetched with one range request."""
MAX_RUN = 64 << 20
"""The most bytes one coalesced range request fetches."""


@dataclasses.dataclass(frozen=True)
class SampleLocation:
    """Where a sample lives: its shard, key, and the byte range of its tar member.

    ``offset`` is the byte offset of the sample's tar header, ``size`` the
    bytes of its member (header and padding included), so one range read
    fetches it: ``ds.get_sample(loc)``.

    Example:
        >>> loc = SampleLocation("data/shard-000000.tar", "sample_000042", 43008, 1024)
        >>> loc.offset + loc.size
        44032
    """

    shard: str
    key: str
    offset: int
    size: int


class RawSample(NamedTuple):
    """One sample's undecoded msgpack bytes, with its key and byte range in the shard.

    Example:
        >>> raw = next(iter_raw("data/shard-000000.tar"))
        >>> raw.key, raw.offset, raw.span
        ('sample_00000000', 0, 1024)
    """

    key: str
    data: memoryview
    offset: int  # of its first tar header
    span: int  # bytes from ``offset`` to the end of its padded data


def split_key(name: str) -> tuple[str, str]:
    """Split a member name into (key, extension) by WebDataset's rule.

    Example:
        >>> split_key("train/sample_000001.msgpack")
        ('train/sample_000001', 'msgpack')
    """
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


# -- streaming -------------------------------------------------------------------------


def iter_raw(
    url: str,
    *,
    byte_range: tuple[int, int | None] | None = None,
    stream: IO[bytes] | None = None,
) -> Iterator[RawSample]:
    """Yield every sample of a shard undecoded, in order.

    Args:
        url: the shard (named in errors; opened unless ``stream`` is given).
        byte_range: ``(start, end)`` byte offsets: read only the samples whose
            headers start in that range (``end`` None: to the end). ``start``
            must be a sample's offset (``__offset__`` in the manifest).
        stream: an already open stream of the shard, positioned at its start.

    Raises:
        ShardCorruptError: a bad tar header or a truncated shard (iteration ends there).
        ShardError: a member that is not an atdata sample (``.msgpack``).

    Example:
        >>> [raw.key for raw in iter_raw("data/shard-000000.tar")][:2]
        ['sample_00000000', 'sample_00000001']
    """
    start, end = byte_range if byte_range is not None else (0, None)
    if end is not None and end <= start:
        return
    if stream is None:
        store, path = store_for(url)
        with store.open(path) as opened:
            yield from _raw_members(url, opened, start, end)
    else:
        yield from _raw_members(url, stream, start, end)


def sample_spans(url: str) -> list[tuple[int, int]]:
    """``(offset, span)`` in bytes of every sample of a shard, from its tar headers
    alone (what a manifest's ``__offset__`` and ``__size__`` record, for a shard
    without one). The samples' data is skipped, not read.

    Raises:
        ShardCorruptError: a bad tar header or a truncated shard.

    Example:
        >>> sample_spans("data/shard-000000.tar")[:2]
        [(0, 1024), (1024, 1024)]
    """
    store, path = store_for(url)
    with store.open(path) as raw:
        # headers of small samples sit close together: seek inside a buffer, not the file
        local = is_local(url)
        stream: IO[bytes] = raw
        if local:
            stream = io.BufferedReader(typing.cast(Any, raw), buffer_size=1 << 20)
        try:
            return list(member_spans(stream, seek=local))  # a remote stream may not seek
        except TarFormatError as exc:
            raise ShardCorruptError(url, exc.offset, exc.reason) from None


def _raw_members(url: str, raw: IO[bytes], start: int, end: int | None) -> Iterator[RawSample]:
    stream: IO[bytes] | _Window = raw
    if start:
        raw.seek(start)
    if end is not None:
        stream = _Window(raw, end - start)
    try:
        for member in iter_members(stream):  # type: ignore[arg-type]
            name = member.name
            if name.endswith(".msgpack") and name.find(".") == len(name) - 8:
                key = name[:-8]  # the usual case, without split_key
            else:
                key, ext = split_key(name)
                if ext != "msgpack":
                    raise ShardError(
                        f"{url}: member {name!r} at byte {start + member.offset} is not an "
                        "atdata sample (.msgpack); read this shard with the webdataset package"
                    )
            yield RawSample(key, member.data, start + member.offset, member.span)
    except TarFormatError as exc:
        raise ShardCorruptError(url, start + exc.offset, exc.reason) from None


class _Window:
    """A read-only view of ``length`` bytes of a stream, ending like a tar archive."""

    def __init__(self, raw: IO[bytes], length: int) -> None:
        self.raw = raw
        self.remaining = length
        self.tail = True

    def read(self, size: int = -1) -> bytes:
        if self.remaining > 0:
            want = self.remaining if size is None or size < 0 else min(size, self.remaining)
            data = self.raw.read(want)
            if not data:  # the shard is shorter than its manifest says
                self.remaining = 0
                self.tail = False
                return b""
            self.remaining -= len(data)
            return data
        if self.tail:
            self.tail = False
            return bytes(2 * BLOCK)
        return b""


def decode_raw(decode: Decoder[T], raw: RawSample, url: str) -> T:
    """Decode one raw sample; errors name the shard, the key and the offset.

    Raises:
        ShardCorruptError: the bytes are not a sample.
        SchemaMismatchError: the sample does not fit the type (never skippable:
            every sample would fail alike).
    """
    try:
        return decode(raw.data, raw.key)
    except (msgspec.DecodeError, ValueError) as exc:
        raise ShardCorruptError(url, raw.offset, f"bad sample: {exc}", raw.key) from None
    except RecursionError:
        raise ShardCorruptError(
            url, raw.offset, "bad sample: values nested too deeply to decode", raw.key
        ) from None
    except SchemaMismatchError as exc:
        raise SchemaMismatchError(
            exc.type_name,
            missing=exc.missing,
            unexpected=exc.unexpected,
            retyped=exc.retyped,
            url=url,
            key=raw.key,
        ) from None
    except SchemaError as exc:  # not a sample at all (e.g. not a msgpack map)
        raise ShardCorruptError(url, raw.offset, f"bad sample: {exc}", raw.key) from None


def iter_shard(
    url: str,
    decode: Decoder[T],
    *,
    handler: ErrorHandler = "raise",
    byte_range: tuple[int, int | None] | None = None,
) -> Iterator[tuple[T, int, int]]:
    """Yield ``(sample, offset, span)`` for every sample of the shard at ``url``.

    Args:
        url: a local path or any supported URL.
        decode: turns a sample's msgpack bytes and key into a sample.
        handler: what to do with corrupt data (see :data:`ErrorHandler`). A bad
            tar header cannot be skipped past, so the rest of that shard is
            dropped (and counted once) under ``"skip"``/``"warn"``.
        byte_range: read only part of the shard, as for :func:`iter_raw`.

    Raises:
        ShardCorruptError: on truncated or garbage data, with ``handler="raise"``.
        SchemaMismatchError: when samples do not fit the sample type.

    Example:
        >>> url = "data/shard-000000.tar"
        >>> for sample, offset, span in iter_shard(url, decoder_for(ImageSample)):
        ...     print(sample.__key__, offset)
        sample_00000000 0
        sample_00000001 1024
        sample_00000002 2048
        sample_00000003 3072
    """
    count = 0
    mismatch: SchemaMismatchError | None = None
    try:
        for raw in iter_raw(url, byte_range=byte_range):
            try:
                sample = decode_raw(decode, raw, url)
            except ShardCorruptError as exc:
                handle_error(handler, exc)
                continue
            except SchemaMismatchError as exc:
                mismatch = mismatch or exc
                handle_mismatch(handler, exc, raw, url)
                continue
            count += 1
            yield sample, raw.offset, raw.span
    except ShardCorruptError as exc:  # the tar itself: the rest of the shard is lost
        handle_error(handler, exc)
    finally:
        obs.metrics.samples_read.inc(count)  # once per shard: nothing per sample
    if mismatch is not None and not count:
        raise mismatch  # not one sample fits: the type is wrong, not the data


def handle_mismatch(
    handler: ErrorHandler, error: SchemaMismatchError, raw: RawSample, url: str
) -> None:
    """A sample that does not fit the type: raise it under ``"raise"``; otherwise skip
    it as a corrupt sample (the caller raises ``error`` if no sample of the read fits)."""
    if handler == "raise":
        raise error
    handle_error(handler, ShardCorruptError(url, raw.offset, f"does not fit: {error}", raw.key))


def handle_error(handler: ErrorHandler, error: ShardCorruptError) -> None:
    """Apply a reading error policy (:data:`ErrorPolicy`) to one corrupt sample
    (or the rest of a shard): raise, or count it as skipped."""
    if handler == "raise":
        raise error
    if callable(handler):
        handler(error)  # raising: the sample is not skipped, reading stops
    obs.metrics.samples_skipped.inc()
    obs.log_event(
        "corrupt data skipped",
        level="warning",
        shard=error.url,
        key=error.key,
        offset=error.offset,
        error=error.reason,
    )
    if handler == "warn":
        warnings.warn(str(error), RuntimeWarning, stacklevel=4)


# -- range reads -----------------------------------------------------------------------


def read_samples(
    locations: Iterable[SampleLocation], decode: Decoder[T]
) -> Iterator[tuple[SampleLocation, T]]:
    """Fetch samples by location, merging neighbours into one range request.

    Locations are read in the order given; consecutive ones in the same shard
    that lie within :data:`COALESCE_GAP` of each other (and, together, within
    :data:`MAX_RUN` bytes) share a request. Each sample's key is checked
    against its location's, so a stale manifest is caught, not misread.

    Raises:
        ShardCorruptError: the bytes at a location are not that sample.

    Example:
        >>> hits = ds.query(where=lambda m: m.label == "cat")
        >>> cats = [s for _, s in read_samples(hits, decoder_for(ImageSample))]
        >>> len(cats), {s.label for s in cats}
        (10, {'cat'})
    """
    run: list[SampleLocation] = []
    for loc in locations:
        if run and not _extends(run, loc):
            yield from _read_run(run, decode)
            run = []
        run.append(loc)
    if run:
        yield from _read_run(run, decode)


def _extends(run: list[SampleLocation], loc: SampleLocation) -> bool:
    first, last = run[0], run[-1]
    end = last.offset + last.size
    return (
        loc.shard == first.shard
        and 0 <= loc.offset - end <= COALESCE_GAP
        and loc.offset + loc.size - first.offset <= MAX_RUN
    )


def _read_run(run: list[SampleLocation], decode: Decoder[T]) -> Iterator[tuple[SampleLocation, T]]:
    first, last = run[0], run[-1]
    store, path = store_for(first.shard)
    size = last.offset + last.size - first.offset
    if first.offset < 0 or min(loc.size for loc in run) <= 0 or size > MAX_RUN:
        # a location a manifest cannot mean: check it against the shard before reading
        available = store.size(path)
        if first.offset < 0 or first.offset + size > available or size <= 0:
            raise ShardCorruptError(
                first.shard,
                first.offset,
                f"the manifest places sample {first.key!r} at bytes {first.offset}.."
                f"{first.offset + size} of a {available}-byte shard (corrupt or stale "
                "manifest: rebuild it with `atdata manifest build --force`)",
                first.key or None,
            )
    data = store.range(path, first.offset, size)
    if len(data) < size:
        raise ShardCorruptError(
            first.shard,
            first.offset,
            f"range read returned {len(data)} of {size} bytes (file truncated, or a stale "
            "manifest: rebuild it with `atdata manifest build --force`)",
        )
    for loc, member in zip(run, _members_at(data, run), strict=True):
        yield loc, decode_raw(decode, member, loc.shard)


def _members_at(data: bytes, run: list[SampleLocation]) -> Iterator[RawSample]:
    """The run's samples, from one pass over the tar members in its bytes."""
    padded = data + bytes(2 * BLOCK)  # end-of-archive blocks; read ahead just this much
    members = iter_members(io.BytesIO(padded), chunk_size=len(padded))
    base = run[0].offset
    for loc in run:
        try:
            member = next(members)
            while member.offset < loc.offset - base:  # a sample in a gap between two wanted
                member = next(members)
            if member.offset != loc.offset - base:
                raise TarFormatError(base + member.offset, "no tar member starts here")
        except (TarFormatError, StopIteration) as exc:
            reason = exc.reason if isinstance(exc, TarFormatError) else "no tar member here"
            raise ShardCorruptError(
                loc.shard, loc.offset, f"{reason} (stale manifest offset?)", loc.key or None
            ) from None
        yield _checked(member, loc)


def _checked(member: Member, loc: SampleLocation) -> RawSample:
    key, _ = split_key(member.name)
    if loc.key and key != loc.key:
        raise ShardCorruptError(
            loc.shard,
            loc.offset,
            f"expected sample {loc.key!r}, found {key!r} (stale manifest? rebuild it with "
            "`atdata manifest build --force`)",
            loc.key,
        )
    return RawSample(key, member.data, loc.offset, member.span)


def read_sample(url: str, offset: int, size: int, decode: Decoder[T], key: str = "") -> T:
    """Read one sample with a single range request.

    Args:
        url: the shard.
        offset: byte offset of the sample's first tar header (``__offset__``).
        size: bytes from there to the end of its data (``__size__``).
        decode: as for :func:`iter_shard`.
        key: the key expected there; empty: not checked.

    Raises:
        ShardCorruptError: when the bytes there are not a sample (or not that one).

    Example:
        >>> url = "data/shard-000000.tar"
        >>> read_sample(url, 1024, 1024, decoder_for(ImageSample), key="sample_00000001").label
        'dog'
    """
    ((_, sample),) = read_samples([SampleLocation(url, key, offset, size)], decode)
    return sample


def decoder_for(sample_type: Any) -> Decoder[Any]:
    """The decode function for a sample type (``DictSample`` for untyped reading).

    For the reader's own buffers: big arrays are views of them, not copies
    (``T.from_bytes`` copies, since its caller may reuse the bytes).

    Example:
        >>> decode = decoder_for(atdata.DictSample)
        >>> raw = next(iter_raw("data/shard-000000.tar"))
        >>> decode(raw.data, raw.key).label
        'cat'
    """
    codec = getattr(sample_type, "__atdata_codec__", None)
    if codec is not None:
        return codec.decode_borrowed  # type: ignore[no-any-return]
    return sample_type.from_bytes  # type: ignore[no-any-return]
