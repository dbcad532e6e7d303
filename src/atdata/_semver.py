"""Semantic versions of schemas: parse, normalise, order and bump them (stdlib only).

The one parser of versions in atdata: the index validates and orders the
versions it registers with it, and manifests written with several versions
of a type are merged in its order. :func:`next_version` is the one rule for
the version a change needs (``Schema.diff`` says which part a change bumps).

Example:
    >>> from atdata._semver import next_version, normalize_version, version_key
    >>> normalize_version("v1.1.0")
    '1.1.0'
    >>> sorted(["1.10.0", "1.9.0", "1.10.0-rc.1"], key=version_key)
    ['1.9.0', '1.10.0-rc.1', '1.10.0']
    >>> next_version("1.2.3", "major")
    '2.0.0'
"""

from __future__ import annotations

import re
from typing import Literal

from atdata.errors import SchemaError

__all__ = [
    "Bump",
    "Precedence",
    "VersionKey",
    "next_version",
    "normalize_version",
    "precedence",
    "version_key",
]

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
Precedence = tuple[int, int, int, tuple[int, tuple[_PreId, ...]]]
"""``(major, minor, patch, pre-release)``: what semver orders versions by."""
VersionKey = tuple[int, int, int, tuple[int, tuple[_PreId, ...]], str]
"""A :data:`Precedence` followed by the build metadata, which only breaks ties."""

Bump = Literal["major", "minor", "patch"]
"""The part of a version a change increments."""

_LOWEST: Precedence = (-1, -1, -1, (0, ()))


def _match(version: str) -> re.Match[str] | None:
    return _SEMVER.fullmatch(version.strip()) if isinstance(version, str) else None


def _strict_match(version: str, schema_name: str | None) -> re.Match[str]:
    match = _match(version)
    if match is None:
        of = f" of schema {schema_name!r}" if schema_name else ""
        raise SchemaError(
            f"Version {version!r}{of} is not a semantic version. "
            "Expected MAJOR.MINOR.PATCH such as '1.0.0' or 'v1.2.0' "
            "(optionally with a pre-release such as '2.0.0-rc.1')."
        )
    return match


def _precedence(match: re.Match[str]) -> Precedence:
    pre = match["pre"]
    if pre is None:
        pre_key: tuple[int, tuple[_PreId, ...]] = (1, ())
    else:
        ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
        pre_key = (0, ids)
    return (int(match["major"]), int(match["minor"]), int(match["patch"]), pre_key)


def normalize_version(version: str, schema_name: str | None = None) -> str:
    """Return ``version`` in canonical form: no leading ``v``, no surrounding blanks.

    Args:
        version: a semantic version such as ``"1.1.0"`` or ``"v1.1.0"``.
        schema_name: named in the error message, if given.

    Returns:
        The version as stored in the index, e.g. ``"1.1.0"``.

    Raises:
        SchemaError: ``version`` is not a semantic version.

    Example:
        >>> normalize_version(" v2.0.0 ")
        '2.0.0'
    """
    text = version.strip()
    _strict_match(text, schema_name)
    return text[1:] if text[:1] in ("v", "V") else text


def version_key(version: str) -> VersionKey:
    """Return a sort key ordering versions by semantic-version precedence.

    ``1.10.0`` sorts after ``1.9.0``; ``1.0.0-rc.1`` sorts before ``1.0.0``.
    Build metadata does not affect precedence; it only breaks ties so that
    sorting is deterministic.

    Raises:
        SchemaError: ``version`` is not a semantic version.

    Example:
        >>> version_key("1.10.0") > version_key("1.9.0")
        True
    """
    match = _strict_match(version, None)
    return (*_precedence(match), match["build"] or "")


def precedence(version: str) -> Precedence:
    """The semantic-version precedence of ``version``, for versions recorded by others.

    Unlike :func:`version_key` this never raises: a string that is not a
    semantic version ranks below every version that is. Build metadata is
    ignored, so versions that differ only in it rank alike.

    Example:
        >>> precedence("1.0.0-rc.1") < precedence("1.0.0") == precedence("v1.0.0+build.7")
        True
        >>> precedence("latest") < precedence("0.0.0")
        True
    """
    match = _match(version)
    return _LOWEST if match is None else _precedence(match)


def next_version(version: str, part: Bump) -> str:
    """The first version after ``version`` with ``part`` incremented.

    A major bump resets minor and patch, a minor bump resets patch; a
    pre-release ends in its own release (``2.0.0-rc.1`` bumped a major is
    ``2.0.0``, as semver orders them); build metadata is dropped.

    Raises:
        SchemaError: ``version`` is not a semantic version.

    Example:
        >>> next_version("1.2.3", "minor"), next_version("v1.2.3", "patch")
        ('1.3.0', '1.2.4')
        >>> next_version("2.0.0-rc.1", "major")
        '2.0.0'
    """
    match = _strict_match(version, None)
    major, minor, patch = int(match["major"]), int(match["minor"]), int(match["patch"])
    if match["pre"] is not None and (
        part == "patch"
        or (part == "minor" and patch == 0)
        or (part == "major" and minor == patch == 0)
    ):
        return f"{major}.{minor}.{patch}"
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
