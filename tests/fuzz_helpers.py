"""What the fuzz tests share: hypothesis settings, a per-case time bound, bit flips."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings

CASE_SECONDS = 10


def fuzz_settings(max_examples: int) -> Any:
    """Deterministic, no deadline (the time bound fails hangs), fixtures allowed."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@contextlib.contextmanager
def time_bound(seconds: int = CASE_SECONDS) -> Iterator[None]:
    """Fail (not hang) a case that takes too long."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"one fuzz case took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def each_byte_flipped(data: bytes, stop: int | None = None) -> Iterator[bytes]:
    """``data`` with one bit of byte ``i`` flipped (bit ``i % 8``), for each ``i < stop``."""
    for i in range(len(data) if stop is None else stop):
        damaged = bytearray(data)
        damaged[i] ^= 1 << (i % 8)
        yield bytes(damaged)
