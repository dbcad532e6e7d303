"""Reading a rank's positions in their order, one group of samples at a time.

The positions a reader wants (see ``_plan``) are cut into *groups*; a group is
read as a few byte ranges and yielded in order, each sample as soon as it and
the ones before it are present:

- a permuted window's positions are grouped so that a group's samples add up
  to about :data:`HOLD_BYTES`: that is what a reader holds, whatever the window's
  size. A group's samples are scattered over the window's shards; its reads are
  the runs of neighbouring samples it needs (merged over gaps shorter than
  :data:`GAP_BYTES`), issued in the order the permutation needs them, so the
  first sample waits for one read, not for the window;
- without a permutation a group is one piece (a shard's part of the rank):
  positions follow storage order and stream straight through.

A reader that takes only some of the positions (a DataLoader worker) reads only
the runs holding its own samples.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from atdata.errors import ShardCorruptError
from atdata.loader._fetch import Fetch, LocalCopies, prefetched
from atdata.loader._index import ShardIndex
from atdata.loader._plan import Piece, RankPlan
from atdata.shards.reader import RawSample

__all__ = ["GAP_BYTES", "HOLD_BYTES", "Group", "assemble", "window_groups"]

HOLD_BYTES = 64 << 20
"""Bytes of samples a reader gathers per group of a permuted window (one sample more at most)."""
GAP_BYTES = 64 << 10
"""Needed samples closer than this in a shard are read together, with what lies between."""


@dataclasses.dataclass
class Group:
    """Positions yielded together: their samples, and the reads that bring them."""

    lo: int  # the rank position of storage index 0 (the window's or the piece's start)
    positions: list[int]  # in the order they are yielded
    storage: list[int]  # each position's storage index, from ``lo``
    reads: list[tuple[Fetch, Piece]]  # in the order the positions need them

    @property
    def shards(self) -> list[int]:
        """The shards the group reads, in the order of its reads."""
        return list(dict.fromkeys(piece.shard for _, piece in self.reads))


def window_groups(plan: RankPlan, w: int, wanted: np.ndarray, index: ShardIndex) -> Iterator[Group]:
    """The groups that read ``wanted`` (sorted rank positions) out of window ``w``."""
    if not len(wanted):
        return
    lo, hi = plan.window_bounds(w)
    pieces = plan.pieces_between(lo, hi)
    if not plan.window:  # storage order: a group per piece
        for piece in pieces:
            a, b = np.searchsorted(wanted, [piece.position, piece.position + len(piece)])
            if a < b:
                storage = wanted[a:b] - piece.position
                runs = [read for read, _ in _reads(index, piece, storage)]
                yield Group(piece.position, wanted[a:b].tolist(), storage.tolist(), runs)
        return
    storage = plan.permutation(w)[wanted - lo]
    spans = np.concatenate([index.offsets(p.shard)[1][p.start : p.stop] for p in pieces])
    sizes = spans[storage]
    starts = np.cumsum(sizes) - sizes  # where each sample starts in the reader's stream
    cuts = np.flatnonzero(np.diff(starts // max(HOLD_BYTES, 1))) + 1
    edges = [p.position - lo for p in pieces] + [hi - lo]
    for chunk in np.split(np.arange(len(storage)), cuts):
        mine = storage[chunk]
        by_storage = np.argsort(mine)  # the group's samples in storage order
        stored = mine[by_storage]
        bounds = np.searchsorted(stored, edges)
        reads: list[tuple[Fetch, Piece]] = []
        firsts: list[int] = []  # each read's earliest place in the group's order
        for piece, a, b in zip(pieces, bounds[:-1], bounds[1:], strict=True):
            for read, held in _reads(index, piece, stored[a:b] - (piece.position - lo)):
                reads.append(read)
                firsts.append(int(by_storage[a:b][held].min()))
        order = np.argsort(firsts, kind="stable")
        yield Group(lo, wanted[chunk].tolist(), mine.tolist(), [reads[i] for i in order])


def _reads(
    index: ShardIndex, piece: Piece, wanted: np.ndarray
) -> list[tuple[tuple[Fetch, Piece], slice]]:
    """The byte ranges holding a piece's samples ``wanted`` (sorted, from the piece's
    start), each with the slice of ``wanted`` it holds: one range for a contiguous
    run, else the runs of wanted samples, merged over gaps under :data:`GAP_BYTES`."""
    if not len(wanted):
        return []
    cuts = [0, len(wanted)]
    if wanted[-1] - wanted[0] + 1 > len(wanted):  # not contiguous: where are the gaps?
        offsets, spans = index.offsets(piece.shard)
        at = piece.start + wanted
        gaps = offsets[at[1:]] - (offsets[at[:-1]] + spans[at[:-1]])
        cuts = [0, *(np.flatnonzero(gaps >= GAP_BYTES) + 1).tolist(), len(wanted)]
    url = index.shards[piece.shard]
    out = []
    for i, j in itertools.pairwise(cuts):
        a, b = int(wanted[i]), int(wanted[j - 1]) + 1
        run = Piece(piece.shard, piece.start + a, piece.start + b, piece.position + a)
        fetch = (url, *index.byte_range(run.shard, run.start, run.stop))
        out.append(((fetch, run), slice(i, j)))
    return out


def assemble(
    groups: Iterable[Group],
    shards: list[str],
    *,
    prefetch: int,
    copies: LocalCopies | None,
    on_corrupt: Callable[[ShardCorruptError], Any],
) -> Iterator[tuple[int, str, RawSample]]:
    """``(position, shard URL, raw sample)`` of the groups' positions, in order.

    A sample is yielded as soon as it and every position before it in its group
    are present; a sample that never comes (the rest of a corrupt piece, passed
    to ``on_corrupt``) is left out when its group is complete.
    """

    def items() -> Iterator[tuple[Fetch | None, tuple[Group, Piece | None]]]:
        for group in groups:
            for fetch, run in group.reads:
                yield fetch, (group, run)
            yield None, (group, None)  # the group is complete

    held: dict[int, tuple[str, RawSample]] = {}  # storage index -> sample, until its turn
    current: Group | None = None
    needed: set[int] = set()
    cursor = 0  # the group's next position to yield
    for (group, run), raws in prefetched(items(), prefetch=prefetch, copies=copies):
        if group is not current:
            current, needed, cursor = group, set(group.storage), 0
        storage, positions = group.storage, group.positions
        if run is None or raws is None:  # complete: what is left, in order
            for position, k in zip(positions[cursor:], storage[cursor:], strict=True):
                hit = held.pop(k, None)
                if hit is not None:
                    yield position, *hit
            continue
        url, end = shards[run.shard], len(storage)
        k = run.position - group.lo
        stop = k + len(run)
        try:
            for raw in raws:
                if k in needed:
                    held[k] = (url, raw)
                    while cursor < end and storage[cursor] in held:
                        yield positions[cursor], *held.pop(storage[cursor])
                        cursor += 1
                k += 1
                if k == stop:
                    break
        except ShardCorruptError as exc:  # the rest of this run is unreadable
            on_corrupt(exc)
