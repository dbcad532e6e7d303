"""What a dataset reference or a shard URL says, by string rules alone.

Stdlib only: the CLI's fast path, the dataset layer and the atmosphere all
ask the same questions ("is this a published name?", "which split is this
shard?") and must get the same answers without importing each other.

Example:
    >>> ref_kind("@local/mnist"), ref_kind("@alice.bsky.social/mnist"), ref_kind("data/*.tar")
    ('local', 'atmosphere', 'urls')
    >>> split_of("data/mnist-test-000001.tar")
    'test'
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from atdata.errors import UnreadableURLError

__all__ = [
    "LOCAL_PREFIX",
    "group_by_split",
    "is_local_ref",
    "is_published_ref",
    "ref_kind",
    "select_split",
    "split_of",
]

LOCAL_PREFIX = "@local/"


def is_local_ref(ref: str) -> bool:
    """``@local/name``: a dataset registered in the local index.

    Example:
        >>> is_local_ref("@local/mnist"), is_local_ref("data/")
        (True, False)
    """
    return ref.startswith(LOCAL_PREFIX)


def is_published_ref(ref: str) -> bool:
    """``at://...`` or ``@handle/name``: a dataset published on the AT Protocol network.

    Example:
        >>> is_published_ref("at://did:plc:abc/ac.foundation.dataset.record/x")
        True
        >>> is_published_ref("@local/mnist")
        False
    """
    return ref.startswith("at://") or (ref.startswith("@") and not is_local_ref(ref) and "/" in ref)


def ref_kind(ref: str) -> str:
    """Which resolver reads ``ref``: ``"local"``, ``"atmosphere"`` or ``"urls"``.

    Example:
        >>> ref_kind("s3://bucket/train-{000..009}.tar")
        'urls'
    """
    if is_local_ref(ref):
        return "local"
    if is_published_ref(ref):
        return "atmosphere"
    return "urls"


# -- splits -----------------------------------------------------------------------------

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
}
_SPLIT_WORD = re.compile(r"(?:^|[/_.\-])(" + "|".join(_SPLIT_ALIASES) + r")(?=$|[/_.\-\d])")


def split_of(url: str) -> str:
    """The split a shard's name says (``train`` when it says none).

    The last split word wins: a file name says more than its folders.

    Example:
        >>> split_of("val/shard-000.tar"), split_of("shard-000.tar")
        ('validation', 'train')
    """
    words = _SPLIT_WORD.findall(url.lower())
    return _SPLIT_ALIASES[words[-1]] if words else "train"


def group_by_split(urls: Sequence[str]) -> dict[str, list[str]]:
    """Shard URLs grouped by the split their names say, read below their common folder.

    Only the part below the folder the URLs share counts, so a split word in
    the path leading there (``/home/me/test-data/...``) is ignored.

    Example:
        >>> group_by_split(["d/train-0.tar", "d/test-0.tar"])
        {'train': ['d/train-0.tar'], 'test': ['d/test-0.tar']}
    """
    prefix = os.path.commonprefix(list(urls))  # noqa: RUF071 - URLs, cut at a "/" next
    prefix = prefix[: prefix.rfind("/") + 1]
    groups: dict[str, list[str]] = {}
    for url in urls:
        groups.setdefault(split_of(url[len(prefix) :]), []).append(url)
    return groups


def select_split(urls: Sequence[str], split: str, source: str) -> list[str]:
    """The shards of one split of ``source`` (a name or path, for the error).

    Raises:
        UnreadableURLError: no shard belongs to ``split``; the message lists those that do.

    Example:
        >>> select_split(["d/train-0.tar", "d/test-0.tar"], "test", "d/")
        ['d/test-0.tar']
    """
    groups = group_by_split(urls)
    if split not in groups:
        raise UnreadableURLError(
            f"No split {split!r} in {source}; available splits: {', '.join(groups)}",
            url=source,
        )
    return groups[split]
