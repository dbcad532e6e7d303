"""Tar shards: the atomic writer and the streaming / range reader."""

from __future__ import annotations

from atdata.shards.reader import ErrorHandler, iter_shard, read_sample, split_key
from atdata.shards.writer import ShardWriter, check_key

__all__ = ["ErrorHandler", "ShardWriter", "check_key", "iter_shard", "read_sample", "split_key"]
