"""Helpers shared by the benchmark scripts: timing, sample data and report lines."""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "Result",
    "Timer",
    "best_interleaved",
    "best_of",
    "make_rows",
    "npy_bytes",
    "ratio",
    "report",
    "tree_size",
]


@dataclasses.dataclass
class Result:
    """One measured run: what, how many samples, how many bytes, how long."""

    name: str
    samples: int
    nbytes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds else float("inf")

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds else float("inf")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``; the GC is paused meanwhile."""

    def __enter__(self) -> Timer:
        gc.collect()
        gc.disable()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        gc.enable()


def best_of(repeat: int, fn: Callable[[], tuple[int, int]], name: str) -> Result:
    """Run ``fn`` (returning samples, bytes) ``repeat`` times; keep the fastest."""
    best: Result | None = None
    for _ in range(repeat):
        with Timer() as t:
            samples, nbytes = fn()
        run = Result(name, samples, nbytes, t.seconds)
        if best is None or run.seconds < best.seconds:
            best = run
    assert best is not None
    return best


def best_interleaved(
    repeat: int, runs: dict[str, Callable[[], tuple[int, int]]]
) -> dict[str, Result]:
    """Like :func:`best_of` for several contenders, taking turns each round.

    On a shared machine a burst of load then hits every contender alike,
    which keeps the ratios between them honest.
    """
    best: dict[str, Result] = {}
    for _ in range(repeat):
        for name, fn in runs.items():
            with Timer() as t:
                samples, nbytes = fn()
            run = Result(name, samples, nbytes, t.seconds)
            if name not in best or run.seconds < best[name].seconds:
                best[name] = run
    return best


def npy_bytes(array: np.ndarray) -> bytes:
    """What a webdataset user writes for an array: ``numpy.save`` into a buffer."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


_LABELS = ["cat", "dog", "bird", "fish", "horse", "frog", "ship", "truck"]
_TAGS = ["outdoor", "indoor", "day", "night", "blurry", "sharp", "crowd", "single"]


def make_rows(n: int, shape: tuple[int, ...], seed: int = 0) -> Iterator[tuple[Any, ...]]:
    """``n`` rows (image, label, confidence, tags) drawn from a small pool of images."""
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(32)]
    labels = [_LABELS[i] for i in rng.integers(0, len(_LABELS), size=n)]
    conf = rng.random(n).tolist()
    ntags = rng.integers(0, 4, size=n).tolist()
    for i in range(n):
        yield pool[i % 32], labels[i], conf[i], _TAGS[i % 5 : i % 5 + ntags[i]]


def tree_size(paths: list[str]) -> int:
    """Total bytes of ``paths``."""
    return sum(os.path.getsize(p) for p in paths)


def ratio(a: Result, b: Result) -> str:
    """``a``'s sample rate over ``b``'s, as ``"12.3x"``."""
    return f"{a.rate / b.rate:.2f}x"


def report(results: list[Result]) -> None:
    """Print results as an aligned table."""
    width = max(len(r.name) for r in results)
    for r in results:
        print(
            f"  {r.name:<{width}}  {r.rate:>12,.0f} samples/s  {r.mbps:>9,.1f} MB/s"
            f"  ({r.samples:,} samples in {r.seconds:.3f} s)"
        )
