"""How many samples each shard holds, and where each sample starts.

Counts come from the manifests' JSON headers (one small read per shard,
concurrent on object stores); byte offsets from their parquet rows, read only
for shards the loader enters in the middle. A shard without a manifest is
scanned once (its tar headers only: the data is skipped) and logged, so every
loader feature still works; ``atdata manifest build`` makes it free.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from atdata import observability as obs
from atdata.shards.reader import sample_spans
from atdata.storage import is_local

if TYPE_CHECKING:
    from atdata.manifest._format import ShardManifest

__all__ = ["ShardIndex"]


class ShardIndex:
    """Sample counts and offsets of a list of shards, loaded on first use.

    Example:
        >>> index = ShardIndex(["data/shard-000000.tar", "data/shard-000001.tar"])
        >>> index.counts()
        [4, 4]
    """

    def __init__(self, shards: list[str]) -> None:
        self.shards = shards
        self._counts: list[int] | None = None
        self._ends_at: list[int] | None = None
        self._manifests: list[ShardManifest | None] = []
        self._offsets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def counts(self) -> list[int]:
        """Samples per shard, in shard order."""
        if self._counts is None:
            from atdata.manifest.loader import load_all

            manifests = load_all(self.shards)
            self._manifests = manifests
            missing = [s for s, m in zip(self.shards, manifests, strict=True) if m is None]
            if missing:
                obs.log_event(
                    "shards without manifest scanned",
                    level="warning",
                    shards=len(missing),
                    first=missing[0],
                    hint="run `atdata manifest build` to skip this scan",
                )
            self._counts = [
                m.num_samples if m is not None else len(self.offsets(i)[0])
                for i, m in enumerate(manifests)
            ]
        return self._counts

    def sample_bytes(self) -> float:
        """The mean bytes of a sample over all the shards (from the manifests' shard
        sizes, or the scanned spans of a shard without one); 0 for no samples."""
        counts = self.counts()
        sizes = [
            m.size_bytes if m is not None else int(self.offsets(i)[1].sum())
            for i, m in enumerate(self._manifests)
        ]
        total = sum(counts)
        return sum(sizes) / total if total else 0.0

    def offsets(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, spans)`` of shard number ``shard``'s samples, in bytes."""
        with self._lock:
            found = self._offsets.get(shard)
        if found is not None:
            return found
        found = self._read_offsets(shard)
        with self._lock:
            self._offsets[shard] = found
        return found

    def load_offsets(self, shards: Iterable[int]) -> None:
        """Read the offsets of several shards at once (concurrently on object stores),
        so that entering them later costs no round trip."""
        from atdata.manifest.loader import concurrent_map

        with self._lock:
            wanted = [i for i in dict.fromkeys(shards) if i not in self._offsets]
        if not wanted:
            return
        remote = any(not is_local(self.shards[i]) for i in wanted)
        found = concurrent_map(self._read_offsets, wanted, remote=remote)
        with self._lock:
            self._offsets.update(zip(wanted, found, strict=True))

    def _read_offsets(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        manifest = self._manifests[shard] if self._manifests else None
        if manifest is not None:
            from atdata.manifest._format import OFFSET, SIZE

            table = manifest.read_table([OFFSET, SIZE])
            pairs = np.stack(
                [table.column(OFFSET).to_numpy(), table.column(SIZE).to_numpy()]
            ).astype(np.int64)
            order = np.argsort(pairs[0], kind="stable")
            return pairs[0][order], pairs[1][order]
        spans = np.array(sample_spans(self.shards[shard]), np.int64).reshape(-1, 2)
        return spans[:, 0].copy(), spans[:, 1].copy()

    def total(self) -> int:
        """Samples in all the shards.

        Example:
            >>> ShardIndex(["data/shard-000000.tar", "data/shard-000001.tar"]).total()
            8
        """
        ends = self._ends()
        return ends[-1] if ends else 0

    def locate(self, positions: Sequence[int]) -> list[tuple[int, int, int]]:
        """``(shard, offset, span)`` of the samples at these positions in shard order.

        Positions are in ``0 .. total() - 1``; the offsets of the shards they
        fall in are read at once (concurrently on object stores).

        Example:
            >>> ShardIndex(["data/shard-000000.tar", "data/shard-000001.tar"]).locate([0, 5])
            [(0, 0, 1024), (1, 1024, 1024)]
        """
        ends = self._ends()
        shards = [bisect.bisect_right(ends, position) for position in positions]
        if len(set(shards)) > 1:
            self.load_offsets(shards)  # (rows are checked against the manifest's count)
        located = []
        for position, shard in zip(positions, shards, strict=True):
            offsets, spans = self.offsets(shard)
            row = position - (ends[shard - 1] if shard else 0)
            located.append((shard, int(offsets[row]), int(spans[row])))
        return located

    def _ends(self) -> list[int]:
        """Where each shard's samples end, counted from the first shard's start."""
        if self._ends_at is None:
            self._ends_at = list(itertools.accumulate(self.counts()))
        return self._ends_at

    def needs_offsets(self, shard: int, start: int, stop: int) -> bool:
        """Whether :meth:`byte_range` of these samples has to read the shard's offsets."""
        whole = start == 0 and self._counts is not None and stop >= self._counts[shard]
        return not whole and shard not in self._offsets

    def byte_range(self, shard: int, start: int, stop: int) -> tuple[int, int | None]:
        """The bytes holding samples ``start`` to ``stop`` of a shard (``None``: to its end)."""
        if start == 0 and self._counts is not None and stop >= self._counts[shard]:
            return 0, None
        offsets, spans = self.offsets(shard)
        return int(offsets[start]), int(offsets[stop - 1] + spans[stop - 1])
