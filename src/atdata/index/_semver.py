"""Semantic versions for schema records: parse, normalise and order them."""

from __future__ import annotations

import re

from atdata.errors import SchemaError

__all__ = ["normalize_version", "version_key"]

# semver.org 2.0.0, plus an optional leading "v" as in git tags ("v1.1.0").
_SEMVER = re.compile(
    r"""
    [vV]?
    (?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)
    (?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?
    (?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?
    """,
    re.VERBOSE,
)

# An identifier of a pre-release compares as (0, number) or (1, text), so that
# numeric identifiers sort below alphanumeric ones, as semver requires.
_PreId = tuple[int, int | str]
VersionKey = tuple[int, int, int, tuple[int, tuple[_PreId, ...]], str]


def _match(version: str, schema_name: str | None) -> re.Match[str]:
    match = _SEMVER.fullmatch(version.strip()) if isinstance(version, str) else None
    if match is None:
        of = f" of schema {schema_name!r}" if schema_name else ""
        raise SchemaError(
            f"Version {version!r}{of} is not a semantic version. "
            "Expected MAJOR.MINOR.PATCH such as '1.0.0' or 'v1.2.0' "
            "(optionally with a pre-release such as '2.0.0-rc.1')."
        )
    return match


def normalize_version(version: str, schema_name: str | None = None) -> str:
    """Return ``version`` in canonical form: no leading ``v``, no surrounding blanks.

    Args:
        version: a semantic version such as ``"1.1.0"`` or ``"v1.1.0"``.
        schema_name: named in the error message, if given.

    Returns:
        The version as stored in the index, e.g. ``"1.1.0"``.

    Raises:
        SchemaError: ``version`` is not a semantic version.
    """
    text = version.strip()
    _match(text, schema_name)
    return text[1:] if text[:1] in ("v", "V") else text


def version_key(version: str) -> VersionKey:
    """Return a sort key ordering versions by semantic-version precedence.

    ``1.10.0`` sorts after ``1.9.0``; ``1.0.0-rc.1`` sorts before ``1.0.0``.
    Build metadata does not affect precedence; it only breaks ties so that
    sorting is deterministic.
    """
    match = _match(version, None)
    pre = match["pre"]
    if pre is None:
        pre_key: tuple[int, tuple[_PreId, ...]] = (1, ())
    else:
        ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
        pre_key = (0, ids)
    return (
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        pre_key,
        match["build"] or "",
    )
