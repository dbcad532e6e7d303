"""The sample order of one epoch on one rank, as pure arithmetic on sample counts.

An epoch's order is derived from ``(seed, epoch)``, the shards' sample counts
and ``(rank, world_size)`` alone:

1. the shards are put in a random order (``seed``, ``epoch``) — ``ordered``
   views keep their order;
2. their samples, concatenated in that order, are cut into ``world_size``
   equal, contiguous parts; rank ``r`` takes part ``r``, so most ranks read
   whole shards and at most two shards are shared with a neighbour. With
   ``drop_last`` the remainder (fewer than ``world_size`` samples) is dropped;
   without, the parts are rounded up and filled from the start of the order;
3. the rank's samples are cut into windows of ``buffer_size`` samples and each
   window is permuted (``seed``, ``epoch``, ``rank``, window number). A view
   given no ``buffer_size`` takes :func:`default_buffer_size` of the manifests'
   mean sample size: the samples of :data:`WINDOW_BYTES`, at most
   :data:`MAX_WINDOW`.

Position ``p`` of the result is therefore computable without reading anything
before it: resuming at ``p`` reads only ``p``'s window, and each DataLoader
worker can pick its own positions out of the same order (see ``_view``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_WINDOW", "WINDOW_BYTES", "Piece", "RankPlan", "default_buffer_size", "plan_rank"]

WINDOW_BYTES = 256 << 20
"""The bytes of samples a default shuffle window spans (see :func:`default_buffer_size`)."""
MAX_WINDOW = 10_000
"""The most samples in a default shuffle window."""


@dataclasses.dataclass(frozen=True)
class Piece:
    """Samples ``start`` to ``stop`` of shard number ``shard``, at ``position`` in the rank."""

    shard: int
    start: int
    stop: int
    position: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class RankPlan:
    """A rank's epoch: its pieces in storage order, and the window permutations."""

    pieces: tuple[Piece, ...]
    length: int
    window: int  # samples per permuted window; 0: no permutation
    seed: int
    epoch: int
    rank: int

    def window_count(self) -> int:
        step = self.window or max(self.length, 1)
        return -(-self.length // step)

    def window_bounds(self, w: int) -> tuple[int, int]:
        step = self.window or max(self.length, 1)
        return w * step, min((w + 1) * step, self.length)

    def permutation(self, w: int) -> np.ndarray:
        """Window ``w``'s order: ``perm[i]`` is the storage index of its ``i``-th sample."""
        start, stop = self.window_bounds(w)
        n = stop - start
        if not self.window:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, w, 0x5A3D])
        return rng.permutation(n)

    def pieces_between(self, start: int, stop: int) -> list[Piece]:
        """The parts of the pieces that cover storage positions ``start`` to ``stop``."""
        out = []
        for piece in self.pieces:
            lo = max(start, piece.position)
            hi = min(stop, piece.position + len(piece))
            if lo < hi:
                offset = lo - piece.position
                out.append(
                    Piece(piece.shard, piece.start + offset, piece.start + offset + hi - lo, lo)
                )
        return out


def default_buffer_size(sample_bytes: float) -> int:
    """The window, in samples, when a view is given no ``buffer_size``: as many
    samples of ``sample_bytes`` as make :data:`WINDOW_BYTES`, between 1 and
    :data:`MAX_WINDOW`.

    Example:
        >>> default_buffer_size(3_200), default_buffer_size(196_000), default_buffer_size(0)
        (10000, 1369, 10000)
    """
    if sample_bytes <= 0:
        return MAX_WINDOW
    return max(1, min(MAX_WINDOW, int(WINDOW_BYTES // sample_bytes)))


def plan_rank(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    shuffle: bool,
    window: int,
    drop_last: bool,
) -> RankPlan:
    """The plan of one rank's epoch over shards holding ``counts`` samples.

    Example:
        >>> plan = plan_rank([10, 10, 5], seed=0, epoch=0, rank=1, world_size=2,
        ...                  shuffle=False, window=0, drop_last=True)
        >>> plan.length, [(p.shard, p.start, p.stop) for p in plan.pieces]
        (12, [(1, 2, 10), (2, 0, 4)])
    """
    order = list(range(len(counts)))
    if shuffle:
        random.Random(f"atdata:{seed}:{epoch}").shuffle(order)
    total = sum(counts[i] for i in order)
    per_rank = total // world_size if drop_last else -(-total // world_size)
    start = rank * per_rank
    pieces: list[Piece] = []
    position = 0
    want = per_rank
    cursor = start % total if total else 0
    while want > 0 and total:
        taken = _take(counts, order, cursor, want, position)
        pieces.extend(taken)
        got = sum(len(p) for p in taken)
        want -= got
        position += got
        cursor = 0  # padding wraps to the start of the epoch's order
    return RankPlan(
        tuple(pieces), per_rank if total else 0, window if shuffle else 0, seed, epoch, rank
    )


def _take(
    counts: Sequence[int], order: list[int], cursor: int, want: int, position: int
) -> list[Piece]:
    """Pieces for ``want`` samples from global position ``cursor`` on (to the end at most)."""
    pieces = []
    seen = 0
    for shard in order:
        n = counts[shard]
        if seen + n <= cursor:
            seen += n
            continue
        lo = max(cursor - seen, 0)
        hi = min(n, lo + want)
        if hi > lo:
            pieces.append(Piece(shard, lo, hi, position))
            position += hi - lo
            want -= hi - lo
        seen += n
        if want == 0:
            break
    return pieces
