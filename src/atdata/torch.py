"""PyTorch helpers: turn atdata samples and batches into tensors.

``torch`` is an optional extra (``pip install 'atdata[torch]'``); this module
imports it, nothing else in atdata does until you use it.

Example:
    >>> import torch, atdata.torch
    >>> view = ds.shuffled(seed=0)
    >>> loader = torch.utils.data.DataLoader(
    ...     view, batch_size=64, num_workers=2, collate_fn=atdata.torch.collate)
    >>> batch = next(iter(loader))        # worker 0's half of the 40 samples
    >>> batch["image"].shape, batch["confidence"].dtype
    (torch.Size([20, 4, 4, 3]), torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from atdata.errors import MissingDependencyError
from atdata.loader import SampleBatch

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised without torch only
    raise MissingDependencyError("torch", "torch", "atdata.torch") from exc

__all__ = ["collate", "to_tensors"]


def collate(batch: SampleBatch[Any] | Sequence[Any] | Any) -> dict[str, Any]:
    """A ``collate_fn`` for DataLoaders over atdata datasets and views.

    Takes what the DataLoader hands over — a list of samples (``batch_size=64``),
    a :class:`~atdata.SampleBatch` (a view with ``batch_size=``, DataLoader
    ``batch_size=None``), or one sample — and returns a dict of columns:
    arrays stacked into tensors, numbers as tensors, strings and other values
    as lists, and ``"__key__"`` the samples' keys.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> loader = DataLoader(ds.shuffled(seed=0), batch_size=64, collate_fn=collate)
        >>> loader = DataLoader(ds.shuffled(seed=0, batch_size=64), batch_size=None,
        ...                     collate_fn=collate)
        >>> sorted(next(iter(loader)))
        ['__key__', 'confidence', 'image', 'label']
    """
    if isinstance(batch, SampleBatch):
        samples = batch
    elif isinstance(batch, list | tuple):
        samples = SampleBatch(batch)
    else:
        return to_tensors(batch)
    columns: dict[str, Any] = {name: _tensor(samples.column(name)) for name in samples.fields()}
    columns["__key__"] = samples.keys
    return columns


def to_tensors(sample: Any) -> dict[str, Any]:
    """One sample's fields as a dict, arrays and numbers as tensors.

    Example:
        >>> to_tensors(ds.head(1)[0])["image"].shape
        torch.Size([4, 4, 3])
    """
    names = getattr(type(sample), "__dataclass_fields__", None) or vars(sample)
    out = {n: _tensor(getattr(sample, n)) for n in names if not n.startswith("__")}
    out["__key__"] = getattr(sample, "__key__", None)
    return out


def _tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return torch.from_numpy(value if value.flags.writeable else value.copy())
        return value.tolist()
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return torch.as_tensor(value)
    return value
