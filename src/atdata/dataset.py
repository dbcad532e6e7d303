"""``Dataset[T]``: typed iteration, batching and shuffling over tar shards.

Example:
    >>> ds = atdata.Dataset[ImageSample]("data/shard-{000000..000009}.tar")
    >>> for batch in ds.shuffled(seed=0, batch_size=32):
    ...     train_step(batch.image)      # (32, H, W, C): array fields are stacked
    >>> [s.label for s in ds.head(3)]    # the first three samples
    ['cat', 'dog', 'bird']
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from atdata._refs import group_by_split, select_split
from atdata.errors import UnreadableURLError
from atdata.loader import DatasetView, SampleBatch
from atdata.loader._index import ShardIndex
from atdata.loader._view import register_with_torch
from atdata.sample import DictSample, Schema, is_packable
from atdata.shards import ShardSet
from atdata.shards.reader import (
    ErrorHandler,
    SampleLocation,
    decoder_for,
    iter_shard,
    read_samples,
)
from atdata.storage import expand_urls

if TYPE_CHECKING:
    from atdata.manifest.query import QueryResult

__all__ = ["Dataset", "DatasetDict", "SampleBatch", "load_dataset"]

T = TypeVar("T")
V = TypeVar("V")
Stage = Callable[[Iterator[Any]], Iterator[Any]]


def _key_of(sample: Any) -> str | None:
    return getattr(sample, "__key__", None)


# -- stages: plain iterator transforms ------------------------------------------


def _apply_stage(fn: Callable[[Any], Any], samples: Iterator[Any]) -> Iterator[Any]:
    for sample in samples:
        out = fn(sample)
        key = _key_of(sample)
        if key is not None and _key_of(out) is None and hasattr(out, "__dict__"):
            out.__dict__["__key__"] = key
        yield out


def _select_stage(predicate: Callable[[Any], bool], samples: Iterator[Any]) -> Iterator[Any]:
    return (s for s in samples if predicate(s))


# -- the dataset ------------------------------------------------------------------


class Dataset(Generic[T]):
    """A typed dataset over WebDataset tar shards.

    ``Dataset[T](urls)`` reads samples as ``T`` (a ``@packable`` type);
    ``Dataset(urls)`` reads them as :class:`~atdata.DictSample`. ``urls`` is a
    path or URL, a brace pattern (``data-{000000..000099}.tar``), a glob, a
    folder (every ``.tar`` under it, subfolders included; a remote prefix ends
    in ``/``, e.g. ``s3://bucket/train/``), or a list of those; ``s3://``,
    ``r2://``, ``http(s)://`` and ``memory://`` work like local paths. A folder
    is listed when the shards are first needed; one without shards raises
    :class:`~atdata.errors.UnreadableURLError` then.

    When torch is installed the dataset is a ``torch.utils.data.IterableDataset``:
    with ``DataLoader(ds, num_workers=k)`` and across ranks (``rank``,
    ``world_size``, or the ``RANK``/``WORLD_SIZE`` environment, or an
    initialised ``torch.distributed``) shards are split so every sample is seen
    exactly once per epoch.

    Args:
        urls: the shards.
        handler: what to do with corrupt samples: ``"raise"``, ``"skip"``,
            ``"warn"``, or a callable.
        rank: this process's rank for distributed reading.
        world_size: the number of ranks.

    Example:
        >>> ds = atdata.Dataset[ImageSample]("data/shard-{000000..000009}.tar")
        >>> ds.head(1)[0].label
        'cat'
        >>> import torch
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=4)
    """

    sample_type: type = DictSample
    _filtered = False  # a view with a filter stage: its length and positions are unknown

    def __class_getitem__(cls, item: Any) -> Any:
        if isinstance(item, TypeVar) or item is Any:
            return super().__class_getitem__(item)  # type: ignore[misc]
        if not is_packable(item):
            from atdata.errors import SchemaError

            raise SchemaError(
                f"Dataset[{getattr(item, '__name__', item)}]: the sample type must be a "
                "@atdata.packable class (or DictSample)"
            )
        return _typed_dataset_class(cls, item)  # type: ignore[arg-type]

    def __init__(
        self,
        urls: str | Sequence[str] | ShardSet,
        *,
        handler: ErrorHandler = "raise",
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int | str | None = None,
    ) -> None:
        source = urls if isinstance(urls, ShardSet) else ShardSet.resolve(urls, handler=handler)
        self._source = source.replace(stored_type=self.sample_type, handler=handler)
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.cache_limit = cache_limit
        self._stages: tuple[Stage, ...] = ()
        register_with_torch(Dataset, DatasetView)

    @classmethod
    def from_shard_set(cls, source: ShardSet) -> Dataset[Any]:
        """A dataset over a :class:`~atdata.shards.ShardSet`, read as its stored type.

        ``Dataset[T].from_shard_set(s)`` reads the stored samples through a lens to ``T``
        when ``T`` is not the stored type.

        Example:
            >>> Dataset.from_shard_set(ds.shard_set).sample_type.__name__
            'ImageSample'
        """
        ds: Dataset[Any] = Dataset.__new__(_typed_dataset_class(Dataset, source.stored_type))
        ds._source, ds.rank, ds.world_size, ds._stages = source, None, None, ()
        ds.prefetch, ds.cache_dir, ds.cache_limit = 2, None, None
        register_with_torch(Dataset, DatasetView)
        if cls.sample_type is DictSample or cls.sample_type is source.stored_type:
            return ds
        return ds.as_type(cls.sample_type)

    @property
    def urls(self) -> str | Sequence[str]:
        """The shard URLs as given (patterns, globs, folders, or a list).

        Example:
            >>> ds.urls
            'data/shard-{000000..000009}.tar'
        """
        return self._source.urls

    @property
    def handler(self) -> ErrorHandler:
        """The corrupt-sample policy.

        Example:
            >>> atdata.Dataset[ImageSample]("data/", handler="skip").handler
            'skip'
        """
        return self._source.handler

    @property
    def shard_set(self) -> ShardSet:
        """The shards and their stored type, as the layers below the dataset take them.

        Example:
            >>> ds.shard_set.stored_type.__name__
            'ImageSample'
        """
        return self._source

    # -- views ----------------------------------------------------------------------

    def _view(
        self, sample_type: type, stage: Stage | None, *, filters: bool = False
    ) -> Dataset[Any]:
        view: Dataset[Any] = Dataset.__new__(_typed_dataset_class(Dataset, sample_type))
        view.__dict__.update(self.__dict__)
        view._stages = self._stages + ((stage,) if stage is not None else ())
        view._filtered = self._filtered or filters
        return view

    def as_type(self, view: type[V]) -> Dataset[V]:
        """Read this dataset as another type, through the registered lenses.

        Raises:
            LensNotFoundError: when no lens (or chain of lenses) leads to ``view``.

        Example:
            >>> names = ds.as_type(LabelOnly)      # uses @atdata.lens image_to_label
            >>> names.head(1)
            [LabelOnly(label='cat')]
        """
        from atdata.lens import find_lens

        if view is self.sample_type:
            return self  # type: ignore[return-value]
        if not self._stages and DictSample in (self.sample_type, view):
            # untyped <-> typed: decode as the new type directly, no lens needed
            retyped = self._view(view, None)
            retyped._source = self._source.replace(stored_type=view)
            return retyped
        getter = find_lens(self.sample_type, view).get
        return self._view(view, functools.partial(_apply_stage, getter))

    def filter(self, predicate: Callable[[T], bool]) -> Dataset[T]:
        """A view that yields only the samples for which ``predicate`` is true.

        This filters while iterating; to filter by manifest fields without
        reading the data, use :meth:`query`.

        Example:
            >>> confident = ds.filter(lambda s: s.confidence > 0.9)
        """
        stage = functools.partial(_select_stage, predicate)
        return self._view(self.sample_type, stage, filters=True)

    # -- shards -----------------------------------------------------------------------

    @property
    def shards(self) -> list[str]:
        """The shard URLs, expanded from patterns, globs and folders (once).

        Example:
            >>> ds.shards[:2]
            ['data/shard-000000.tar', 'data/shard-000001.tar']
        """
        return self._source.shards

    def _read(self, shards: Iterable[str]) -> Iterator[Any]:
        decode = decoder_for(self._source.stored_type)
        for url in shards:
            for sample, _offset, _span in iter_shard(url, decode, handler=self.handler):
                yield sample

    def _samples(self, shards: Iterable[str]) -> Iterator[Any]:
        return self.transform(self._read(shards))

    # -- iteration ------------------------------------------------------------------

    def ordered(self, batch_size: int | None = None, *, drop_last: bool = True) -> DatasetView:
        """A view that reads the samples in shard order (split across ranks and workers).

        Args:
            batch_size: yield :class:`SampleBatch` es of this many samples.
            drop_last: with several ranks, drop the few samples (fewer than the
                number of ranks) that would make ranks unequal; False repeats
                samples from the start instead, so every sample is read.

        Example:
            >>> for batch in ds.ordered(batch_size=64):
            ...     train_step(batch.image)
        """
        return self._view_of(
            shuffle=False, seed=0, buffer_size=1, batch_size=batch_size, drop_last=drop_last
        )

    def shuffled(
        self,
        buffer_size: int | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        *,
        drop_last: bool = True,
    ) -> DatasetView:
        """A view that reads the samples in a random order, a new one each epoch.

        The shards are put in a random order, then the samples in each window
        of ``buffer_size`` are permuted. The order depends only on ``seed``,
        the epoch (:meth:`DatasetView.set_epoch`) and the number of ranks — not
        on the number of DataLoader workers — and resumes exactly from a
        :meth:`DatasetView.state_dict`.

        Args:
            buffer_size: samples permuted together (how far apart in the shards
                two neighbours in the order can come from). Default: as many as
                make 256 MiB at the manifests' mean sample size, at most 10,000
                (see ``docs/loader.md``).
            seed: for a repeatable order; None draws one (not allowed across
                several ranks, which must agree).
            batch_size: yield :class:`SampleBatch` es of this size.
            drop_last: as for :meth:`ordered`.

        Example:
            >>> import torch
            >>> view = ds.shuffled(seed=0, batch_size=64)
            >>> loader = torch.utils.data.DataLoader(view, batch_size=None, num_workers=4)
            >>> view.set_epoch(1)
        """
        return self._view_of(
            shuffle=True,
            seed=seed,
            buffer_size=buffer_size,
            batch_size=batch_size,
            drop_last=drop_last,
        )

    def _shard_index(self) -> ShardIndex:
        # one index per dataset: its views (and their copies in DataLoader
        # workers) read the manifests' counts once, not once per view
        index = self.__dict__.get("_index")
        if index is None or index.shards is not self._source.shards:
            index = self.__dict__["_index"] = ShardIndex(self._source.shards)
        return index

    def _view_of(self, **order: Any) -> DatasetView:
        return DatasetView(
            self._source,
            self.transform_one if self._stages else None,
            rank=self.rank,
            world_size=self.world_size,
            prefetch=self.prefetch,
            cache_dir=self.cache_dir,
            cache_limit=self.cache_limit,
            index=self._shard_index(),
            **order,
        )

    def __iter__(self) -> Iterator[T]:
        return iter(self.ordered())

    def head(self, n: int = 5) -> list[T]:
        """The first ``n`` samples, in order.

        Example:
            >>> samples = ds.head(10)
        """
        return list(itertools.islice(self._samples(self.shards), n))

    # -- manifest-backed -------------------------------------------------------------

    @property
    def schema(self) -> Schema:
        """The sample schema: the type's own, else the one recorded in the manifests.

        Example:
            >>> ds.schema.field_names, ds.schema.version
            (['image', 'label', 'confidence'], '1.0.0')
        """
        if self.sample_type is not DictSample:
            return self.sample_type.__schema__  # type: ignore[attr-defined,no-any-return]
        from atdata.manifest.loader import dataset_schema

        return dataset_schema(self.shards)

    def __len__(self) -> int:
        """The number of samples, summed from the manifests (no data is read).

        Raises:
            TypeError: when a shard has no manifest, or the view is
                :meth:`filter` ed (how many pass is known only by reading them);
                ``list(ds)`` still works, as Python treats this as "length unknown".

        Example:
            >>> len(ds), len(ds.query(where=lambda m: m.label == "cat"))
            (40, 10)
        """
        from atdata.errors import ManifestError
        from atdata.manifest.loader import count_samples

        if self._filtered:
            raise TypeError(
                "a filtered dataset's length is unknown until its samples are read: count "
                "them with sum(1 for _ in ds), or filter on manifest fields with "
                "len(ds.query(where=...))"
            )
        try:
            return count_samples(self.shards)
        except ManifestError as exc:
            raise TypeError(str(exc)) from exc

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        """The sample at a position in shard order (as iteration yields them), or a list.

        Random access through the manifests' offsets: one range read per
        sample (neighbours in a slice share one); a shard without a manifest
        is scanned for its offsets once. Positions count the whole dataset,
        whatever this process's ``rank``.

        Raises:
            IndexError: the position is out of range.
            TypeError: the view is :meth:`filter` ed (positions are unknown
                until read; use :meth:`query` for random access by field).

        Example:
            >>> ds[0].label, ds[-1].label
            ('cat', 'fish')
            >>> [s.label for s in ds[1:3]]
            ['dog', 'bird']
        """
        if self._filtered:
            raise TypeError(
                "a filtered dataset has no positions until its samples are read: index "
                "the dataset before filtering, or select with ds.query(where=...)"
            )
        shard_index = self._shard_index()
        total = shard_index.total()
        if isinstance(index, slice):
            positions: Sequence[int] = range(*index.indices(total))
        else:
            position = operator.index(index)
            if not -total <= position < total:
                raise IndexError(f"sample {position} is out of range: the dataset has {total}")
            positions = [position % total]
        locations = [
            SampleLocation(self.shards[shard], "", offset, span)
            for shard, offset, span in shard_index.locate(positions)
        ]
        decode = decoder_for(self._source.stored_type)
        samples = [self.transform_one(s) for _, s in read_samples(locations, decode)]
        return samples if isinstance(index, slice) else samples[0]

    def query(
        self, where: Callable[[Any], Any] | None = None, *, sql: str | None = None
    ) -> QueryResult:
        """Locations of the samples that match, found from the manifests alone.

        Shards whose aggregates rule the predicate out are never opened; the
        rest are filtered vectorised.

        Args:
            where: a predicate over manifest fields, e.g.
                ``lambda m: m.confidence > 0.9 and m.label in ['dog', 'cat']``.
            sql: or a SQL ``WHERE`` clause run by DuckDB.

        Raises:
            QueryError: a field is unknown (the message suggests the closest).

        Example:
            >>> for loc in ds.query(where=lambda m: m.confidence > 0.9):
            ...     sample = ds.get_sample(loc)
        """
        from atdata.manifest.query import run_query

        return run_query(self._source, where=where, sql=sql, wrap=self._wrap_query)

    def _wrap_query(self, source: ShardSet) -> Dataset[Any]:
        """Materialized query results, read as this dataset's type."""
        return type(self).from_shard_set(source)

    def get_sample(self, location: SampleLocation) -> T:
        """The sample at a location from :meth:`query`, with one range read.

        Raises:
            ShardCorruptError: the bytes there are not that sample (a stale manifest).

        Example:
            >>> hits = ds.query(where=lambda m: m.label == "dog")
            >>> sample = ds.get_sample(hits[0])
        """
        ((_, sample),) = read_samples([location], decoder_for(self._source.stored_type))
        return self.transform_one(sample)

    def transform_one(self, sample: Any) -> T:
        """Apply this view's lenses and filters to one stored sample (None if filtered out).

        Example:
            >>> ds.as_type(LabelOnly).transform_one(sample)
            LabelOnly(label='cat')
        """
        for stage in self._stages:
            sample = next(stage(iter([sample])), None)
            if sample is None:
                break
        return sample  # type: ignore[no-any-return]

    def transform(self, samples: Iterator[Any]) -> Iterator[T]:
        """Apply this view's lenses and filters to a stream of stored samples.

        Example:
            >>> view = ds.as_type(LabelOnly)
            >>> [s.label for s in view.transform(iter(samples[:2]))]
            ['cat', 'dog']
        """
        for stage in self._stages:
            samples = stage(samples)
        return samples

    def get(self, key: str) -> T:
        """The sample with this key, found through the manifests.

        Raises:
            SampleNotFoundError: no sample has this key.

        Example:
            >>> ds.get("sample_00000005").label
            'dog'
        """
        from atdata.manifest.query import locate_key

        return self.get_sample(locate_key(self._source, key))

    def describe(self) -> dict[str, Any]:
        """Counts, per-field statistics, shard count and bytes, from the manifests.

        Example:
            >>> ds.describe()["fields"]["label"]["counts"]
            {'bird': 10, 'cat': 10, 'dog': 10, 'fish': 10}
        """
        from atdata.manifest.query import describe_dataset

        return describe_dataset(self._source)

    # -- processing -------------------------------------------------------------------

    def map(
        self,
        fn: Callable[[T], Any] | Callable[[SampleBatch[T]], Any],
        output_prefix: str | None = None,
        **options: Any,
    ) -> Dataset[Any]:
        """Run ``fn`` over every sample, one task per shard, writing a new dataset.

        ``fn`` is a :func:`~atdata.processor` or a plain annotated function; one
        taking a ``SampleBatch[T]`` is called on batches of samples. See
        :func:`atdata.processing.map_dataset` for the options (``executor``,
        ``workers_per_shard``, ``shards``, ``retry``, ``on_error``...).

        Example:
            >>> out = ds.map(embed, output_prefix="embedded/v1")
            >>> out.head(1)[0].embedding.shape
            (3,)
        """
        from atdata.processing import map_dataset

        return map_dataset(self, fn, output_prefix=output_prefix, **options)

    # -- plumbing ---------------------------------------------------------------------

    def __repr__(self) -> str:
        shown = self.urls if isinstance(self.urls, str) else f"{len(self.urls)} URLs"
        return f"Dataset[{self.sample_type.__name__}]({shown!r})"

    def __reduce__(self) -> Any:
        return (_rebuild_dataset, (self.sample_type, self.__dict__))


def _rebuild_dataset(sample_type: type, state: dict[str, Any]) -> Dataset[Any]:
    ds: Dataset[Any] = Dataset.__new__(_typed_dataset_class(Dataset, sample_type))
    ds.__dict__.update(state)
    register_with_torch(Dataset, DatasetView)
    return ds


@functools.cache
def _typed_dataset_class(base: type, sample_type: type) -> type:
    return type(
        f"Dataset[{sample_type.__name__}]",
        (base,),
        {"sample_type": sample_type, "__module__": __name__},
    )


# -- Hugging Face-style loading -------------------------------------------------------


class DatasetDict(dict[str, Dataset[Any]]):
    """Named splits, as ``load_dataset`` returns them: ``dd["train"]``, ``dd["test"]``.

    Example:
        >>> splits = {"train": "data/shard-00000[0-7].tar", "test": "data/shard-00000[89].tar"}
        >>> dd = atdata.load_dataset("data/", ImageSample, data_files=splits)

        >>> dd
        DatasetDict({train: 8 shards, test: 2 shards})
    """

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {len(v.shards)} shards" for k, v in self.items())
        return f"DatasetDict({{{inner}}})"


def load_dataset(
    path: str | Sequence[str],
    T: type | None = None,  # noqa: N803 - the documented spelling, load_dataset(url, T=Type)
    split: str | None = None,
    *,
    data_files: dict[str, str | Sequence[str]] | None = None,
    handler: ErrorHandler = "raise",
) -> Dataset[Any] | DatasetDict:
    """Load a dataset the Hugging Face way.

    Args:
        path: a folder of shards, a pattern, a list of URLs, or ``@local/name``
            (a dataset registered in the local index).
        T: the sample type; None uses the schema recorded with the dataset
            (``@local`` names and manifests) or reads ``DictSample`` s.
        split: return only this split as a :class:`Dataset`.
        data_files: explicit ``{split: pattern}``.
        handler: corrupt-sample policy, as for :class:`Dataset`.

    Returns:
        A :class:`Dataset` when ``split`` is given or there is one split, else a
        :class:`DatasetDict`. Splits come from ``data_files``, or from ``train``,
        ``test``, ``validation`` (``valid``, ``val``, ``dev``) in file or
        folder names; shards named otherwise are ``train``.

    Example:
        >>> train = atdata.load_dataset("data/", ImageSample, split="train")
        >>> len(train.shards)
        10
        >>> atdata.load_dataset("@local/my-dataset").head(1)[0].label
        'cat'
    """
    if data_files is not None:
        sources = {
            name: ShardSet(expand_urls(files), handler=handler, literal=True)
            for name, files in data_files.items()
        }
        if split is not None and split not in sources:
            raise UnreadableURLError(
                f"No split {split!r} in data_files; available splits: {', '.join(sources)}",
                url=str(path),
            )
    else:
        source = ShardSet.resolve(path, handler=handler)
        groups = (
            {split: select_split(source.shards, split, str(path))}
            if split is not None
            else group_by_split(source.shards)
        )
        sources = {name: source.replace(urls=urls, literal=True) for name, urls in groups.items()}
    if split is not None:
        sources = {split: sources[split]}
    splits = DatasetDict(
        {
            name: _typed_dataset_class(Dataset, T or s.recorded_type())(s, handler=handler)
            for name, s in sources.items()
        }
    )
    return next(iter(splits.values())) if len(splits) == 1 else splits
