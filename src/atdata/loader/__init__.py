"""The training loader: dataset views with epochs, exact resume, balanced ranks,
remote prefetch, a shared shard cache, and mixing of several datasets.

Example:
    >>> import torch
    >>> view = ds.shuffled(seed=0, batch_size=64)          # a DatasetView
    >>> loader = torch.utils.data.DataLoader(view, batch_size=None, num_workers=4)
    >>> state = view.state_dict()                           # resume exactly later
"""

from __future__ import annotations

from atdata.loader._batch import SampleBatch
from atdata.loader._fetch import ShardCache
from atdata.loader._mix import MixedView, mix
from atdata.loader._view import DatasetView

__all__ = ["DatasetView", "MixedView", "SampleBatch", "ShardCache", "mix"]
