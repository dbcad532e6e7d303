"""Sample types: the schema model and the packable codec.

:mod:`atdata.sample._schema` holds :class:`Schema` and :class:`FieldSpec` (JSON
form, versions, differences); :mod:`atdata.sample._codec` holds ``@packable``,
:class:`PackableSample`, :class:`DictSample` and the msgpack encoding;
:mod:`atdata.sample._infer` holds :class:`SchemaInference`, the schema of
untyped samples told from their values;
:class:`Encoding` (from :mod:`atdata._encodings`) stores an array field as PNG,
JPEG or zstd, and :func:`decode_array` decodes a field read by other tools.

Two private names are reached from here as well: ``_Codec`` (the processing
layer pickles a codec by its schema) and ``_rebuild_dict_sample`` (named by
``DictSample`` pickles written while this package was one module).
"""

from __future__ import annotations

from numpy.typing import NDArray

from atdata._encodings import Encoding, decode_array
from atdata._types import ManifestField
from atdata.sample._codec import (
    DictSample,
    PackableSample,
    WdsRecord,
    encode_mapping,
    is_packable,
    packable,
)
from atdata.sample._codec import _Codec as _Codec
from atdata.sample._codec import _rebuild_dict_sample as _rebuild_dict_sample
from atdata.sample._infer import InferredSchema, SchemaInference
from atdata.sample._schema import FieldChange, FieldSpec, Schema, SchemaDiff, schema_of

__all__ = [
    "DictSample",
    "Encoding",
    "FieldChange",
    "FieldSpec",
    "InferredSchema",
    "ManifestField",
    "NDArray",
    "PackableSample",
    "Schema",
    "SchemaDiff",
    "SchemaInference",
    "WdsRecord",
    "decode_array",
    "encode_mapping",
    "is_packable",
    "packable",
    "schema_of",
]
