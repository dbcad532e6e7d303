"""The local index: named datasets (``@local/name``) and versioned schemas.

One SQLite file, ``$ATDATA_HOME/index.db`` (``~/.atdata/index.db`` by
default), safe to use from several processes at once.

Example:
    >>> from atdata.index import Catalog
    >>> with Catalog(":memory:") as cat:
    ...     schema = {"name": "Digit", "version": "1.0.0", "fields": []}
    ...     _ = cat.register_dataset("mnist", ["mnist-{000..009}.tar"], schema)
    ...     cat.get_dataset("@local/mnist").urls
    ['mnist-{000..009}.tar']
"""

from __future__ import annotations

from atdata._semver import normalize_version, version_key

from ._catalog import (
    BUSY_TIMEOUT_S,
    DB_FORMAT_VERSION,
    LOCAL_PREFIX,
    Catalog,
    DatasetRecord,
    SchemaRecord,
    default_index_path,
    resolve_local,
    resolve_shard_set,
)

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_FORMAT_VERSION",
    "LOCAL_PREFIX",
    "Catalog",
    "DatasetRecord",
    "SchemaRecord",
    "default_index_path",
    "normalize_version",
    "resolve_local",
    "resolve_shard_set",
    "version_key",
]
