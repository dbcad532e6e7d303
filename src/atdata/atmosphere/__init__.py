"""atdata on the AT Protocol network: publish, discover and load typed datasets.

Schemas, datasets, labels and lenses are published as ``science.alt.dataset.*``
records in your repository, readable by every atdata client. Anyone can then
load a dataset by name without your code::

    from atdata.atmosphere import Atmosphere

    atmo = Atmosphere.login("alice.bsky.social", "app-password")
    atmo.publish_dataset("data/shard-{000000..000009}.tar", name="mnist",
                         sample_type=Digit, storage="blobs")

    ds = Atmosphere.anonymous().load_dataset("@alice.bsky.social/mnist")

Needs the optional extra: ``pip install 'atdata[atmosphere]'``. For tests,
:func:`mock_atmosphere` is an in-process fake network with the same behaviour.
"""

from __future__ import annotations

from atdata.atmosphere._client import (
    Atmosphere,
    PublishedDataset,
    ResolvedDataset,
    current,
    is_atmosphere_ref,
    resolve,
    resolve_shard_set,
    use,
)
from atdata.atmosphere._mock import MockNetwork, mock_atmosphere
from atdata.atmosphere._records import (
    ENTRY,
    LABEL,
    LENS,
    SCHEMA,
    AtUri,
    CodeRef,
    DatasetRef,
    parse_dataset_ref,
    schema_from_record,
    schema_record,
)
from atdata.atmosphere._transport import Record, Transport
from atdata.errors import (
    AtmosphereAuthError,
    AtmosphereConnectionError,
    AtmosphereError,
    InvalidRecordError,
    RecordConflictError,
    RecordNotFoundError,
)

__all__ = [
    "ENTRY",
    "LABEL",
    "LENS",
    "SCHEMA",
    "AtUri",
    "Atmosphere",
    "AtmosphereAuthError",
    "AtmosphereConnectionError",
    "AtmosphereError",
    "CodeRef",
    "DatasetRef",
    "InvalidRecordError",
    "MockNetwork",
    "PublishedDataset",
    "Record",
    "RecordConflictError",
    "RecordNotFoundError",
    "ResolvedDataset",
    "Transport",
    "current",
    "is_atmosphere_ref",
    "mock_atmosphere",
    "parse_dataset_ref",
    "resolve",
    "resolve_shard_set",
    "schema_from_record",
    "schema_record",
    "use",
]
