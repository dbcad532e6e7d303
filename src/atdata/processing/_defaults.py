"""Defaults that the code around a ``map`` call can set for it (standard library only).

A layer above processing (a pipeline run) says where ``map`` writes when the
caller gives no ``output_prefix``, without processing knowing about that layer.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["default_output_prefix", "output_prefix_default"]

_OUTPUT_PREFIX: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "atdata_default_output_prefix", default=None
)


def output_prefix_default() -> str | None:
    """Where ``map`` writes when not told, in this context; None means a temporary folder."""
    return _OUTPUT_PREFIX.get()


@contextlib.contextmanager
def default_output_prefix(prefix: str) -> Iterator[None]:
    """Inside the block, ``map`` calls without an ``output_prefix`` write under ``prefix``.

    Example:
        >>> with default_output_prefix("out/processed/run-1"):     # or s3://...
        ...     out = ds.map(embed)
        >>> out.shards[0]
        'out/processed/run-1/shard-000000.tar'
    """
    token = _OUTPUT_PREFIX.set(prefix)
    try:
        yield
    finally:
        _OUTPUT_PREFIX.reset(token)
