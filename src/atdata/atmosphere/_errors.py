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

from atdata.errors import AtmosphereError

__all__ = [
    "AtmosphereAuthError",
    "AtmosphereConnectionError",
    "AtmosphereError",
    "InvalidRecordError",
    "RecordConflictError",
    "RecordNotFoundError",
]


class AtmosphereAuthError(AtmosphereError):
    """The PDS refused the handle and password (or the session expired)."""


class AtmosphereConnectionError(AtmosphereError):
    """The PDS or PLC could not be reached."""


class RecordNotFoundError(AtmosphereError, LookupError):
    """A handle, DID, record or label does not exist.

    Attributes:
        ref: what was looked up (``@handle/name``, an ``at://`` URI, a handle).
    """

    def __init__(self, message: str, *, ref: str, service: str | None = None) -> None:
        self.ref = ref
        super().__init__(message, service=service)

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class RecordConflictError(AtmosphereError):
    """A record with the same key exists with other content."""


class InvalidRecordError(AtmosphereError, ValueError):
    """A record would break a lexicon rule (a float, a too-long string, a bad key).

    Attributes:
        path: where in the record, e.g. ``$.size.bytes``.
    """

    def __init__(self, message: str, *, path: str = "$") -> None:
        self.path = path
        super().__init__(message)
