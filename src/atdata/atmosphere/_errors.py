"""Errors of the AT Protocol layer: one branch of atdata's error tree.

::

    AtdataError
    └── AtmosphereError                 the AT Protocol network refused or failed a request
        ├── AtmosphereAuthError         wrong handle or password, or no session
        ├── AtmosphereConnectionError   the PDS (or PLC) cannot be reached
        ├── RecordNotFoundError         no such handle, DID, record or label
        ├── RecordConflictError         a record exists with other content (e.g. a schema version)
        └── InvalidRecordError          a record breaks a lexicon rule (floats, sizes, keys)

Every message is one line saying what failed, where, and what to do. The
branch's root, :class:`AtmosphereError`, is defined in :mod:`atdata.errors` (one
tree, drawn there too) and re-exported here.
"""

from __future__ import annotations

from atdata.errors import (
    AtmosphereAuthError,
    AtmosphereConnectionError,
    AtmosphereError,
    InvalidRecordError,
    RecordConflictError,
    RecordNotFoundError,
)

__all__ = [
    "AtmosphereAuthError",
    "AtmosphereConnectionError",
    "AtmosphereError",
    "InvalidRecordError",
    "RecordConflictError",
    "RecordNotFoundError",
]
