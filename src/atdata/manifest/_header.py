"""The manifest JSON header's version rules and parser, on the standard library alone.

Kept free of pyarrow and numpy so fast paths (``atdata inspect``) can read
headers without loading the rest of the manifest layer.
"""

from __future__ import annotations

import json
from typing import Any

from atdata.errors import ManifestError

__all__ = ["BUILD_HINT", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "parse_header"]

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
BUILD_HINT = "atdata manifest build URL"


def parse_header(url: str, data: bytes) -> dict[str, Any]:
    """Decode a ``.manifest.json`` and check its ``format_version``.

    Raises:
        ManifestError: unreadable JSON or a format version this atdata cannot read.
    """
    try:
        header = json.loads(data)
    except ValueError as exc:
        raise ManifestError(
            f"Manifest {url} is not valid JSON ({exc}). Delete it and rebuild it with "
            f"`{BUILD_HINT}`.",
            url=url,
        ) from None
    version = header.get("format_version") if isinstance(header, dict) else None
    if version not in SUPPORTED_VERSIONS:
        raise ManifestError(
            f"Manifest {url} has format_version {version!r}; this atdata reads "
            f"{sorted(SUPPORTED_VERSIONS)}. Upgrade atdata (pip install -U atdata).",
            url=url,
        )
    return header  # type: ignore[no-any-return]
