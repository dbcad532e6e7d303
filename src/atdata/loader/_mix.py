"""``atdata.mix``: several datasets interleaved by weight, deterministic and resumable.

Which source each position of the mixed stream comes from is drawn in blocks
of :data:`BLOCK` positions from ``(seed, epoch, block)``, so any position's
source — and how many samples each source has given before it — is
arithmetic: resuming at position ``t`` recomputes the draws, reads nothing
before ``t``, and each DataLoader worker reads only its own positions, as in
a single view (the order does not depend on the number of workers).

Stopping rules:

- ``"first_exhausted"`` (default): the mix ends when a source it draws has no
  sample left; no sample is repeated.
- ``"all_exhausted"``: a source that runs out starts over (the same order
  again) until every source has given each of its samples at least once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from atdata.loader._batch import SampleBatch
from atdata.loader._view import DatasetView, register_with_torch, worker_and_workers

__all__ = ["MixedView", "mix"]

BLOCK = 4096
STATE_VERSION = 1
Stop = Literal["first_exhausted", "all_exhausted"]


class MixedView:
    """Several dataset views interleaved by weight (see :func:`mix`).

    Iterable, picklable, a ``torch.utils.data.IterableDataset`` once torch is
    imported, with ``set_epoch``, ``state_dict`` and ``load_state_dict`` like a
    :class:`~atdata.loader.DatasetView`.

    Example:
        >>> mixed = atdata.mix([web_text, books], weights=[0.7, 0.3], seed=0)
        >>> type(mixed).__name__, sorted({s.__key__[:8] for s in mixed})
        ('MixedView', ['sample_0'])
    """

    def __init__(
        self,
        sources: Sequence[DatasetView],
        weights: Sequence[float],
        *,
        seed: int,
        stop: Stop,
        batch_size: int | None,
    ) -> None:
        self.sources = list(sources)
        total = float(sum(weights))
        self.weights = np.asarray(weights, float) / total
        self.seed = seed
        self.stop = stop
        self.batch_size = batch_size
        self.epoch = 0
        self._resume_at = 0
        self._next = 0
        register_with_torch(MixedView)

    # -- the draws ----------------------------------------------------------------------

    def _draws(self, block: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, block, 0x313D])
        return rng.choice(len(self.sources), size=BLOCK, p=self.weights)

    def _schedule(self) -> tuple[int, list[int]]:
        """The mixed stream's length, and each source's sample count this epoch."""
        sizes = [s.num_samples for s in self.sources]
        drawn = self.weights > 0  # a source of weight 0 is never drawn, so never exhausted
        if not any(size for size, d in zip(sizes, drawn, strict=True) if d):
            return 0, sizes
        limit = np.asarray(sizes)[drawn][:, None]
        used = np.zeros(int(drawn.sum()), np.int64)
        for block in itertools.count():
            draws = self._draws(block)
            counts = np.stack([np.cumsum(draws == j) for j in np.flatnonzero(drawn)])
            counts += used[:, None]
            if self.stop == "first_exhausted":
                ends = np.flatnonzero((counts > limit).any(axis=0))
                if len(ends):
                    return block * BLOCK + int(ends[0]), sizes
            else:
                ends = np.flatnonzero((counts >= limit).all(axis=0))
                if len(ends):
                    return block * BLOCK + int(ends[0]) + 1, sizes
            used = counts[:, -1]
        raise AssertionError("unreachable")

    # -- the view protocol --------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s draws and each source's epoch ``epoch`` order.

        Example:
            >>> mixed.set_epoch(1)
        """
        self.epoch = int(epoch)
        for source in self.sources:
            source.set_epoch(epoch)
        self._resume_at = self._next = 0

    @property
    def num_samples(self) -> int:
        """Samples in the mixed stream per epoch (on this rank).

        Example:
            >>> mixed.num_samples
            29
        """
        return self._schedule()[0]

    def __len__(self) -> int:
        n = self.num_samples
        return -(-n // self.batch_size) if self.batch_size else n

    def state_dict(self) -> dict[str, Any]:
        """Where this iteration is (the mixed position; the sources' follow from it).

        Example:
            >>> state = mixed.state_dict()
            >>> state["position"], state["sources"]
            (0, 2)
        """
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": self._next,
            "seed": self.seed,
            "stop": self.stop,
            "batch_size": self.batch_size,
            "sources": len(self.sources),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly from a :meth:`state_dict`.

        Raises:
            ValueError: the state comes from a mix with other sources or settings.

        Example:
            >>> state = mixed.state_dict()
            >>> again = atdata.mix([web_text, books], weights=[0.7, 0.3], seed=0)
            >>> again.load_state_dict(state)
        """
        for name, mine in (
            ("seed", self.seed),
            ("stop", self.stop),
            ("batch_size", self.batch_size),
            ("sources", len(self.sources)),
        ):
            if state.get(name) != mine or state.get("version") != STATE_VERSION:
                raise ValueError(
                    f"this state_dict comes from a different mix ({name}: {state.get(name)!r} "
                    f"vs {mine!r}); create the mix with the same arguments to resume it"
                )
        self.set_epoch(int(state["epoch"]))
        self._resume_at = self._next = int(state["position"])

    def __iter__(self) -> Iterator[Any]:
        worker, workers = worker_and_workers()
        length, sizes = self._schedule()
        start, self._resume_at = self._resume_at, 0
        self._next = start
        unit = self.batch_size or 1
        mine = np.arange(start, length)
        if workers > 1:
            mine = mine[(mine // unit) % workers == worker]
        picks, uses = self._picks(mine, length)
        streams = [
            self._source_stream(j, uses[picks == j], sizes[j]) for j in range(len(self.sources))
        ]
        heads: list[tuple[int, Any] | None] = [next(s, None) for s in streams]
        batch: list[Any] = []
        current = -1
        for position, j, use in zip(mine.tolist(), picks.tolist(), uses.tolist(), strict=True):
            head = heads[j]
            while head is not None and head[0] < use:  # a sample the source dropped
                head = next(streams[j], None)
            if head is None or head[0] != use:
                heads[j] = head
                continue
            heads[j] = next(streams[j], None)
            if self.batch_size is None:
                self._next = position + 1
                yield head[1]
                continue
            number = position // unit
            if number != current and batch:
                self._next = (current + 1) * unit
                yield SampleBatch(batch)
                batch = []
            current = number
            batch.append(head[1])
        if batch:
            yield SampleBatch(batch)
        self._next = length

    def _picks(self, positions: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """For each position: its source, and how many draws of that source came before."""
        if not len(positions):
            return positions, positions
        last_block = int(positions[-1]) // BLOCK
        draws = np.concatenate([self._draws(b) for b in range(last_block + 1)])
        before = np.zeros((len(self.sources), len(draws)), np.int64)
        for j in range(len(self.sources)):
            hits = draws == j
            before[j] = np.cumsum(hits) - hits
        picks = draws[positions]
        return picks, before[picks, positions]

    def _source_stream(self, j: int, uses: np.ndarray, size: int) -> Iterator[tuple[int, Any]]:
        """``(use, sample)`` for source ``j``'s wanted uses, in order (passes repeat it)."""
        view = self.sources[j]
        if not len(uses) or not size:
            return
        plan = view.plan()
        for lap in range(int(uses[-1]) // size + 1):
            wanted = uses[(uses // size) == lap] - lap * size
            if not len(wanted):
                continue

            def select(lo: int, hi: int, wanted: np.ndarray = wanted) -> np.ndarray:
                return wanted[np.searchsorted(wanted, lo) : np.searchsorted(wanted, hi)]

            for position, sample in view.samples_at(plan, int(wanted[0]), select):
                yield lap * size + position, sample

    def __repr__(self) -> str:
        weights = ", ".join(f"{w:.3g}" for w in self.weights)
        return f"MixedView({len(self.sources)} sources, weights=[{weights}], stop={self.stop!r})"


def mix(
    datasets: Sequence[Any],
    weights: Sequence[float] | None = None,
    *,
    seed: int = 0,
    stop: Stop = "first_exhausted",
    batch_size: int | None = None,
) -> MixedView:
    """Interleave several datasets by weight, deterministically and resumably.

    Args:
        datasets: ``Dataset`` s (read shuffled, each with a seed derived from
            ``seed``) or views (``ds.ordered()``, ``ds.shuffled(...)``, without
            ``batch_size``). Samples of different types mix through a common
            lens view: ``ds_b.as_type(Common)``.
        weights: the share of each source in the mix (normalised); default equal.
        seed: the draws' seed (and the Datasets' shuffles').
        stop: ``"first_exhausted"`` or ``"all_exhausted"`` (see the module docs).
        batch_size: yield :class:`~atdata.SampleBatch` es of the mixed samples.

    Raises:
        ValueError: weights do not match the sources, or a view is batched.

    Example:
        >>> mixed = atdata.mix([web_text, books], weights=[0.7, 0.3], seed=0)
        >>> from torch.utils.data import DataLoader
        >>> loader = DataLoader(mixed, batch_size=None, num_workers=4)
        >>> state = mixed.state_dict()
    """
    if not datasets:
        raise ValueError("mix() needs at least one dataset")
    weights = [1.0] * len(datasets) if weights is None else list(weights)
    if len(weights) != len(datasets) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"mix() needs one non-negative weight per dataset, not all zero; got {weights} "
            f"for {len(datasets)} datasets"
        )
    if stop not in ("first_exhausted", "all_exhausted"):
        raise ValueError(f"stop must be 'first_exhausted' or 'all_exhausted', not {stop!r}")
    views = []
    for i, ds in enumerate(datasets):
        view = ds if isinstance(ds, DatasetView) else ds.shuffled(seed=seed * 1_000_003 + i)
        if view.batch_size is not None:
            raise ValueError(
                "mix() takes unbatched views; pass batch_size= to mix() instead of the view"
            )
        views.append(view)
    return MixedView(views, weights, seed=seed, stop=stop, batch_size=batch_size)
