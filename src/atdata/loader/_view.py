"""``DatasetView``: one way of iterating a dataset — order, epoch, batching, resume point.

A view is what ``ds.ordered()`` and ``ds.shuffled()`` return. It is an
iterable (iterate it as often as you like; each pass is one epoch), it pickles
(DataLoader workers get a copy), and it is a ``torch.utils.data.IterableDataset``
once torch is imported.

How workers keep the order: the epoch's order on a rank (see ``_plan``) is a
sequence of positions; with ``k`` DataLoader workers, worker ``w`` produces the
items (samples, or batches of ``batch_size`` positions) whose number is ``w``
modulo ``k``, and the DataLoader takes one item from each worker in turn — so
the sequence that comes out is the same for any number of workers. Each worker
decodes only its own samples.

How a window is read (see ``_assemble``): a reader's positions of a window are
read a group of about 64 MiB of samples at a time, in the order the permutation
needs them, and each sample is yielded as soon as it is present, so memory does
not grow with ``buffer_size`` and the first sample waits for one read.

Remote shards: a permuted window needs samples from all of its shards in
random order, and the rank's workers together need every one of them, so the
window's shards are downloaded whole, once, into a local cache (``cache_dir``,
or a scratch cache in the temporary folder shared by the workers and removed
with the view), the next groups' shards on background threads while the
current ones are read; each worker reads only its own samples' byte ranges
from the copies.

How resume works: ``state_dict()`` records the epoch and the position of the
next item. The order is arithmetic on ``(seed, epoch, rank, window)``, so
``load_state_dict`` regenerates the shuffle window that holds that position
(rather than pickling a buffer) and reads only that window's samples still to
come, found through the manifests' byte offsets: the cost is at most one
window, wherever the position is in the epoch.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import sys
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from atdata import observability as obs
from atdata.errors import SchemaMismatchError, ShardCorruptError
from atdata.loader._assemble import Group, assemble, window_groups
from atdata.loader._batch import SampleBatch
from atdata.loader._fetch import LocalCopies, ShardCache
from atdata.loader._index import ShardIndex
from atdata.loader._plan import RankPlan, default_buffer_size, plan_rank
from atdata.shards import ShardSet
from atdata.shards.reader import (
    RawSample,
    decode_raw,
    decoder_for,
    handle_error,
    handle_mismatch,
)
from atdata.storage import is_local

__all__ = ["DatasetView", "rank_and_world", "register_with_torch", "worker_and_workers"]

STATE_VERSION = 1
_COUNT_EVERY = 4096
_WINDOWS_AHEAD = 4  # windows whose shards' offsets are read in one concurrent round
_GROUPS_AHEAD = 4  # groups whose remote shards are copied locally before they are read


class DatasetView:
    """An iteration of a dataset: order, epoch, batching, and where to resume.

    Made by :meth:`Dataset.ordered` and :meth:`Dataset.shuffled`; see those for
    the arguments.

    Example:
        >>> import torch
        >>> view = ds.shuffled(seed=0, batch_size=64)
        >>> loader = torch.utils.data.DataLoader(view, batch_size=None, num_workers=2)
        >>> for epoch in range(3):
        ...     view.set_epoch(epoch)
        ...     for batch in loader:
        ...         train_step(batch)
    """

    def __init__(
        self,
        source: ShardSet,
        transform: Callable[[Any], Any] | None = None,
        *,
        shuffle: bool,
        seed: int | None = None,
        buffer_size: int | None = None,
        batch_size: int | None = None,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        cache_dir: str | None = None,
        cache_limit: int | str | None = None,
        index: ShardIndex | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if shuffle and buffer_size is not None and buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, got {prefetch}")
        self.source = source
        self.transform = transform
        self.shuffle = shuffle
        self.rank, self.world_size = rank_and_world(rank, world_size)
        if seed is None:
            if shuffle and self.world_size > 1:
                raise ValueError(
                    "shuffled() across several ranks needs a seed every rank shares: "
                    "pass seed=... (each epoch still gets its own order, see set_epoch)"
                )
            seed = random.SystemRandom().randrange(2**63) if shuffle else 0
        self.seed = seed
        self._buffer_size = buffer_size  # None: from the samples' size, on first use
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.cache_dir = cache_dir
        self.cache_limit = cache_limit
        self.epoch = 0
        self._index = index if index is not None else ShardIndex(source.shards)
        self._resume_at = 0  # position the next iteration starts at
        self._next = 0  # position after the last item this process yielded
        self._active: Iterator[Any] | None = None  # the pass ``next(view)`` takes from
        self._scratch: str | None = None  # the workers' shared cache, when they need one
        if cache_dir is None and not all(is_local(url) for url in source.shards):
            self._scratch = os.path.join(
                tempfile.gettempdir(), f"atdata-scratch-{uuid.uuid4().hex[:16]}"
            )
            weakref.finalize(self, _remove_scratch, self._scratch, os.getpid())
        register_with_torch()

    # -- epochs and lengths -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (a new permutation per epoch) from its start.

        Call it before each epoch, in the process that creates the DataLoader's
        iterator (workers get the view when the iterator starts; with
        ``persistent_workers=True`` they keep the epoch they started with).

        Example:
            >>> view.set_epoch(3)
        """
        self.epoch = int(epoch)
        self._resume_at = self._next = 0

    @property
    def buffer_size(self) -> int:
        """Samples per shuffle window: the ``buffer_size`` given, or by default as many
        as make :data:`~atdata.loader._plan.WINDOW_BYTES` (256 MiB) at the manifests'
        mean sample size, at most 10,000 (read from the manifests on first use; the
        same on every rank and worker).

        Example:
            >>> view.buffer_size         # 40 small samples: the 10,000 cap
            10000
        """
        if self._buffer_size is None:
            self._buffer_size = default_buffer_size(self._index.sample_bytes())
        return self._buffer_size

    def plan(self) -> RankPlan:
        """This rank's plan of the current epoch (the order, as arithmetic).

        Example:
            >>> view.plan().length
            40
        """
        return self._plan()

    def _plan(self) -> RankPlan:
        return plan_rank(
            self._index.counts(),
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=self.shuffle,
            window=self.buffer_size,
            drop_last=self.drop_last,
        )

    @property
    def num_samples(self) -> int:
        """Samples this rank reads per epoch (the same on every rank).

        Example:
            >>> view.num_samples
            40
        """
        return self._plan().length

    def __len__(self) -> int:
        """Items per epoch on this rank: samples, or batches (the last may be short)."""
        n = self.num_samples
        return -(-n // self.batch_size) if self.batch_size else n

    # -- resume ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this iteration is: enough to continue it exactly, in a new process.

        Example:
            >>> state = view.state_dict()     # save it with the model checkpoint
            >>> state["epoch"], state["position"]
            (0, 0)
        """
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": self._next,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "world_size": self.world_size,
            "buffer_size": self.buffer_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration yields exactly what
        the interrupted one had left, in the same order.

        Raises:
            ValueError: the state comes from a view with another order (seed,
                shuffle, world size, buffer or batch size).

        Example:
            >>> view.load_state_dict(checkpoint["data"])
        """
        mismatched = [
            name
            for name in ("seed", "shuffle", "world_size", "buffer_size", "batch_size")
            if name in state and state[name] != getattr(self, name)
        ]
        if state.get("version") != STATE_VERSION or mismatched:
            details = ", ".join(f"{n}: {state[n]!r} vs {getattr(self, n)!r}" for n in mismatched)
            raise ValueError(
                "this state_dict comes from a view with a different order "
                f"({details or 'unknown version'}); create the view with the same "
                "arguments to resume it"
            )
        self.epoch = int(state["epoch"])
        self._resume_at = self._next = int(state["position"])

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        worker, workers = worker_and_workers()
        plan = self._plan()
        start, self._resume_at = self._resume_at, 0
        self._next = start
        unit = self.batch_size or 1
        samples = self.samples_at(plan, start, _worker_share(start, worker, workers, unit))
        if self.batch_size is None:
            for position, sample in samples:
                self._next = position + 1
                yield sample
            self._next = plan.length
            return
        batch: list[Any] = []
        current = -1
        for position, sample in samples:
            number = position // unit
            if number != current and batch:
                self._next = (current + 1) * unit
                yield SampleBatch(batch)
                batch = []
            current = number
            batch.append(sample)
        if batch:
            self._next = min((current + 1) * unit, plan.length)
            yield SampleBatch(batch)
        self._next = plan.length

    def __next__(self) -> Any:
        """The next item of the view's current pass (started on first use), so
        ``next(ds.shuffled(seed=0))`` works as it did when views were generators."""
        if self._active is None:
            self._active = iter(self)
        return next(self._active)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_active": None}

    def samples_at(
        self, plan: RankPlan, start: int, select: Selection
    ) -> Iterator[tuple[int, Any]]:
        """``(position, sample)`` for the positions ``select`` picks, from ``start`` on,
        decoded and passed through the dataset's lenses and filters (a sample they
        drop, or a corrupt one skipped by the error policy, is missing from the output).

        Args:
            plan: the epoch's plan on this rank (:meth:`plan`).
            start: no position before this one is wanted.
            select: ``(lo, hi) -> sorted positions wanted in [lo, hi)``.

        Example:
            >>> first_three = lambda lo, hi: np.arange(lo, min(hi, 3))
            >>> [(i, s.label) for i, s in view.samples_at(view.plan(), 0, first_three)]
            [(0, 'fish'), (1, 'dog'), (2, 'cat')]
        """
        decode = decoder_for(self.source.stored_type)
        handler, transform = self.source.handler, self.transform
        read = 0
        mismatch: SchemaMismatchError | None = None
        try:
            for position, url, raw in self._raw(plan, start, select):
                try:
                    sample = decode(raw.data, raw.key)
                except Exception:  # noqa: BLE001 - decode_raw names the error, or re-raises
                    try:
                        sample = decode_raw(decode, raw, url)
                    except ShardCorruptError as exc:
                        handle_error(handler, exc)
                        continue
                    except SchemaMismatchError as exc:
                        mismatch = mismatch or exc
                        handle_mismatch(handler, exc, raw, url)
                        continue
                read += 1
                if read == _COUNT_EVERY:  # the metric is updated in bulk, not per sample
                    obs.metrics.samples_read.inc(read)
                    read = 0
                if transform is not None:
                    sample = transform(sample)
                    if sample is None:  # filtered out
                        continue
                yield position, sample
        finally:
            obs.metrics.samples_read.inc(read)
        if mismatch is not None and not read:
            raise mismatch  # not one sample fits: the type is wrong, not the data

    def _raw(
        self, plan: RankPlan, start: int, select: Selection
    ) -> Iterator[tuple[int, str, RawSample]]:
        """``(position, shard URL, raw sample)`` of the selected positions, in order
        (each as soon as it is read: see ``_assemble``)."""
        first = start // plan.window if plan.window else 0
        copies = self._copies(plan)
        worker = worker_and_workers()[0]

        def groups() -> Iterator[Group]:
            count = plan.window_count()
            for ahead in range(first, count, _WINDOWS_AHEAD):
                windows = range(ahead, min(ahead + _WINDOWS_AHEAD, count))
                # one concurrent round of offset reads for the next windows' shards
                self._index.load_offsets(self._entered(plan, windows, select))
                for w in windows:
                    yield from window_groups(plan, w, select(*plan.window_bounds(w)), self._index)

        try:
            yield from assemble(
                _staged(groups(), copies, self._index.shards, first=worker * self.prefetch),
                self._index.shards,
                prefetch=self.prefetch,
                copies=copies,
                on_corrupt=lambda exc: handle_error(self.source.handler, exc),
            )
        finally:
            if copies is not None:
                copies.close()

    def _entered(self, plan: RankPlan, windows: range, select: Selection) -> list[int]:
        """The shards whose sample offsets these windows need: all of a permuted
        window's (its samples are read a group at a time), else the ones read in
        part, or of which this reader takes a share."""
        shards = []
        for w in windows:
            lo, hi = plan.window_bounds(w)
            shared = len(select(lo, hi)) < hi - lo
            for piece in plan.pieces_between(lo, hi):
                partial = self._index.needs_offsets(piece.shard, piece.start, piece.stop)
                if plan.window or shared or partial:
                    shards.append(piece.shard)
        return shards

    def _copies(self, plan: RankPlan) -> LocalCopies | None:
        """Where remote shards are read from: the cache, when there is one; the
        workers' scratch cache when several workers read the same shards, or when
        a window is permuted (its samples are read out of order from a local copy)."""
        if self.cache_dir:
            cache = ShardCache(self.cache_dir, self.cache_limit)
        elif self._scratch is not None and (plan.window or worker_and_workers()[1] > 1):
            cache = ShardCache(self._scratch, max_shards=self._scratch_shards(plan))
        else:
            return None
        return LocalCopies(cache, threads=self.prefetch)

    def _scratch_shards(self, plan: RankPlan) -> int:
        """Enough shards for every worker's current and staged reads: the shards of
        three windows, and a few per worker."""
        workers = worker_and_workers()[1]
        counts = self._index.counts()
        per_window = min(len(counts), plan.window // max(min(counts), 1) + 2) if plan.window else 0
        return 3 * per_window + 2 * workers * (self.prefetch + 2) + 8

    def __repr__(self) -> str:
        kind = "shuffled" if self.shuffle else "ordered"
        return (
            f"DatasetView({kind}, shards={len(self.source.shards)}, epoch={self.epoch}, "
            f"rank={self.rank}/{self.world_size}, batch_size={self.batch_size})"
        )


def _remove_scratch(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked worker that inherited the view
        shutil.rmtree(path, ignore_errors=True)


Selection = Callable[[int, int], np.ndarray]
"""``(lo, hi) -> the sorted positions in [lo, hi) a reader wants``."""


def _worker_share(start: int, worker: int, workers: int, unit: int) -> Selection:
    """A DataLoader worker's positions: items (of ``unit`` positions) ``worker`` mod ``workers``."""

    def select(lo: int, hi: int) -> np.ndarray:
        positions = np.arange(max(lo, start), hi)
        if workers == 1:
            return positions
        mine: np.ndarray = positions[(positions // unit) % workers == worker]
        return mine

    return select


def _staged(
    groups: Iterator[Group], copies: LocalCopies | None, urls: list[str], first: int
) -> Iterator[Group]:
    """The groups, with the remote shards of the next few being copied locally (see
    :meth:`LocalCopies.stage`) while the current one is read.

    A group's shards are staged from its ``first``-th on (modulo their number):
    DataLoader workers pass different ones, so that they download different
    shards at the same time instead of waiting for each other's downloads.
    """
    if copies is None:
        yield from groups
        return
    coming: collections.deque[Group] = collections.deque()
    for group in groups:
        shards = group.shards
        turn = first % len(shards)
        copies.stage(urls[i] for i in shards[turn:] + shards[:turn])
        coming.append(group)
        if len(coming) > _GROUPS_AHEAD:
            yield coming.popleft()
    yield from coming


# -- where this process is -------------------------------------------------------------


def rank_and_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """This process's rank and the number of ranks.

    Explicit values win; then an initialised ``torch.distributed``; then the
    ``RANK`` / ``WORLD_SIZE`` environment variables that ``torchrun`` sets.

    Raises:
        ValueError: the rank is outside ``0 .. world - 1``.
    """
    if rank is None and world is None:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        else:
            rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    rank, world = rank or 0, world or 1
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside 0..{world - 1} (world_size={world})")
    return rank, world


def worker_and_workers() -> tuple[int, int]:
    """This DataLoader worker's id and the number of workers (``(0, 1)`` outside one)."""
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None:
        info = torch_data.get_worker_info()
        if info is not None:
            return info.id, info.num_workers
    return 0, 1


def register_with_torch(*classes: type) -> None:
    """Make the dataset classes virtual ``IterableDataset`` s once torch has been imported.

    Registering lazily keeps ``import atdata`` free of a torch import; a user
    who builds a DataLoader has imported torch before creating the dataset.
    """
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is None:
        return
    for cls in classes or (DatasetView,):
        if not issubclass(cls, torch_data.IterableDataset):
            torch_data.IterableDataset.register(cls)
