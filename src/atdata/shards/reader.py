"""Reading shards: stream every sample, or fetch one by (offset, size) with one range read."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import msgspec

from atdata import observability as obs
from atdata.errors import SchemaMismatchError, ShardCorruptError, ShardError
from atdata.shards._tar import BLOCK, TarFormatError, iter_members
from atdata.storage import store_for

__all__ = ["ErrorHandler", "iter_shard", "read_sample", "split_key"]

T = TypeVar("T")
Decoder = Callable[[memoryview, str], T]
ErrorHandler = Literal["raise", "skip", "warn"] | Callable[[ShardCorruptError], None]
"""What to do with a corrupt sample: ``"raise"`` (default), ``"skip"`` it and
count it (``atdata.observability.metrics.samples_skipped``), ``"warn"`` (skip with
a warning), or a callable that receives the error and may re-raise it."""


def split_key(name: str) -> tuple[str, str]:
    """Split a member name into (key, extension) by WebDataset's rule.

    Example:
        >>> split_key("train/sample_000001.msgpack")
        ('train/sample_000001', 'msgpack')
    """
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _handle(handler: ErrorHandler, error: ShardCorruptError) -> None:
    if handler == "raise":
        raise error
    obs.metrics.samples_skipped.inc()
    obs.log_event("corrupt data skipped", level="warning", shard=error.url,
                  key=error.key, offset=error.offset, error=error.reason)
    if handler == "warn":
        warnings.warn(str(error), RuntimeWarning, stacklevel=4)
    elif callable(handler):
        handler(error)


def iter_shard(
    url: str, decode: Decoder[T], *, handler: ErrorHandler = "raise"
) -> Iterator[tuple[T, int, int]]:
    """Yield ``(sample, offset, span)`` for every sample of the shard at ``url``.

    Args:
        url: a local path or any supported URL.
        decode: turns a sample's msgpack bytes and key into a sample.
        handler: what to do with corrupt data (see :data:`ErrorHandler`). A bad
            tar header cannot be skipped past, so the rest of that shard is
            dropped (and counted once) under ``"skip"``/``"warn"``.

    Raises:
        ShardCorruptError: on truncated or garbage data, with ``handler="raise"``.
        SchemaMismatchError: when samples do not fit the sample type.
    """
    store, path = store_for(url)
    count = 0
    with store.open(path) as stream:
        try:
            # TarFormatError only comes from iter_members: decode errors are
            # handled inside the loop
            for member in iter_members(stream):
                name = member.name
                if name.endswith(".msgpack") and name.find(".") == len(name) - 8:
                    key = name[:-8]  # the usual case, without split_key
                else:
                    key, ext = split_key(name)
                    if ext != "msgpack":
                        raise ShardError(
                            f"{url}: member {name!r} at byte {member.offset} is not an "
                            "atdata sample (.msgpack); read this shard with the webdataset "
                            "package"
                        )
                try:
                    sample = decode(member.data, key)
                except (msgspec.DecodeError, ValueError) as exc:
                    _handle(
                        handler, ShardCorruptError(url, member.offset, f"bad sample: {exc}", key)
                    )
                    continue
                except SchemaMismatchError as exc:
                    raise SchemaMismatchError(
                        exc.type_name, missing=exc.missing, unexpected=exc.unexpected,
                        retyped=exc.retyped, url=url, key=key,
                    ) from None
                count += 1
                yield sample, member.offset, member.span
        except TarFormatError as exc:
            _handle(handler, ShardCorruptError(url, exc.offset, exc.reason))
        finally:
            obs.metrics.samples_read.inc(count)  # once per shard: nothing per sample


def read_sample(url: str, offset: int, size: int, decode: Decoder[T]) -> T:
    """Read one sample with a single range request.

    Args:
        url: the shard.
        offset: byte offset of the sample's first tar header (``__offset__``).
        size: bytes from there to the end of its data (``__size__``).
        decode: as for :func:`iter_shard`.

    Raises:
        ShardCorruptError: when the bytes there are not a sample.
    """
    store, path = store_for(url)
    data = store.range(path, offset, size)
    if len(data) < size:
        raise ShardCorruptError(
            url, offset, f"range read returned {len(data)} of {size} bytes (file truncated?)"
        )
    try:
        member = next(iter_members(io.BytesIO(data + bytes(2 * BLOCK))))
    except (TarFormatError, StopIteration) as exc:
        reason = exc.reason if isinstance(exc, TarFormatError) else "no tar member here"
        raise ShardCorruptError(url, offset, f"{reason} (stale manifest offset?)") from None
    key, _ = split_key(member.name)
    try:
        return decode(member.data, key)
    except (msgspec.DecodeError, ValueError) as exc:
        raise ShardCorruptError(url, offset, f"bad sample: {exc}", key) from None


def decoder_for(sample_type: Any) -> Decoder[Any]:
    """The decode function for a sample type (``DictSample`` for untyped reading).

    For the reader's own buffers: big arrays are views of them, not copies
    (``T.from_bytes`` copies, since its caller may reuse the bytes).
    """
    codec = getattr(sample_type, "__atdata_codec__", None)
    if codec is not None:
        return codec.decode_borrowed  # type: ignore[no-any-return]
    return sample_type.from_bytes  # type: ignore[no-any-return]
