"""Tar shards: the atomic writer, the streaming / range reader, and ``ShardSet``."""

from __future__ import annotations

from atdata.shards._shardset import ShardSet, register_resolver, shards_under
from atdata.shards.reader import (
    ErrorHandler,
    RawSample,
    SampleLocation,
    decoder_for,
    iter_raw,
    iter_shard,
    read_sample,
    read_samples,
    sample_spans,
    split_key,
)
from atdata.shards.writer import ShardWriter, check_key

__all__ = [
    "ErrorHandler",
    "RawSample",
    "SampleLocation",
    "ShardSet",
    "ShardWriter",
    "check_key",
    "decoder_for",
    "iter_raw",
    "iter_shard",
    "read_sample",
    "read_samples",
    "register_resolver",
    "sample_spans",
    "shards_under",
    "split_key",
]
