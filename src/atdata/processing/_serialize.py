"""Serialising user functions by value, the way Dask and Modal do (cloudpickle).

A function defined in a script's ``__main__`` or in a notebook cannot be
imported by a worker, so it travels by value. Sample types defined there travel
by value too, and their codec holds compiled msgspec decoders that cannot be
pickled; :func:`dumps` sends the codec's schema instead and the worker rebuilds
the codec on first use.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict
from typing import Any

import cloudpickle

from atdata.sample import PackableSample, Schema, _Codec

__all__ = ["dumps", "loads", "loads_cached"]


class _PendingCodec:
    """Stands in for a packable class's codec until the class is fully rebuilt.

    A descriptor: the first ``cls.__atdata_codec__`` lookup builds the real codec
    (the class's fields are in place by then), installs it on the class, and
    registers the class as a :class:`~atdata.PackableSample`.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def __get__(self, obj: Any, owner: type) -> _Codec:
        codec = _Codec(owner, self.schema)
        type.__setattr__(owner, "__atdata_codec__", codec)
        PackableSample.register(owner)
        return codec


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is _Codec:
            return _PendingCodec, (obj.schema,)
        return super().reducer_override(obj)


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with cloudpickle; packable classes defined in ``__main__`` included."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Unpickle bytes from :func:`dumps`."""
    return pickle.loads(data)


_CACHE: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
_CACHE_SIZE = 4


def loads_cached(data: bytes, job_id: str) -> Any:
    """Like :func:`loads`, but a worker unpickles each job's payload once.

    A worker runs many shards of one job; keeping the unpickled function lets
    state it builds lazily (a model loaded on first call) survive across the
    job's shards. The copy belongs to the job: a later job (a warm worker runs
    many) gets its own, even for the same bytes, so no state a function left
    behind in one job leaks into the next. Only the last few jobs' copies are
    kept.

    Example:
        >>> payload = loads_cached(task.payload, task.job_id)
        >>> loads_cached(task.payload, task.job_id) is payload
        True
        >>> loads_cached(task.payload, "another-job") is payload
        False
    """
    key = (job_id, hashlib.sha256(data).digest())
    try:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    except KeyError:
        pass
    value = loads(data)
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value
