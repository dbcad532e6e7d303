"""``atdata manifest build``: write manifests for shards that lack them."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

from atdata.cli._output import console
from atdata.cli._resolve import resolve
from atdata.errors import SchemaError

__all__ = ["build", "import_type", "render"]


def build(target: str, *, force: bool = False, sample_type: str | None = None) -> dict[str, Any]:
    """Build the missing manifests (all of them with ``force``).

    Args:
        target: the dataset.
        force: rebuild manifests that exist.
        sample_type: ``"module:Class"`` of the ``@packable`` type; default: the
            registered schema for ``@local/`` names, else inferred from the data.

    Returns:
        ``{"url", "built": [shard URLs], "skipped": [shard URLs that had one], "type"}``.
    """
    from atdata.manifest.builder import build as build_manifests

    resolved = resolve(target)
    if sample_type is not None:
        tp: type | None = import_type(sample_type)
    elif resolved.record is not None:
        from atdata.sample import Schema

        tp = Schema.from_json(resolved.record.schema).to_type()
    else:
        tp = None
    built = build_manifests(resolved.shards, tp, overwrite=force)
    done = set(built)
    return {
        "url": target,
        "type": None if tp is None else f"{tp.__schema__.name}@{tp.__schema__.version}",  # type: ignore[attr-defined]
        "built": built,
        "skipped": [s for s in resolved.shards if s not in done],
    }


def import_type(spec: str) -> type:
    """Import ``"package.module:ClassName"`` (the working directory is importable).

    Raises:
        SchemaError: the spec is malformed, the module or class is missing, or the
            class is not ``@atdata.packable``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SchemaError(f"--type must look like 'package.module:ClassName', got {spec!r}.")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchemaError(
            f"Cannot import {module_name!r} for --type {spec}: {exc}. Run from the folder "
            "that holds the package, or install it."
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        tp = getattr(module, attr)
    except AttributeError:
        from atdata.errors import closest

        hint = closest(attr, [n for n in dir(module) if not n.startswith("_")])
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise SchemaError(f"Module {module_name!r} has no {attr!r}.{did_you_mean}") from None
    from atdata.sample import schema_of

    schema_of(tp)  # raises for a class that is not @packable
    return tp  # type: ignore[no-any-return]


def render(result: Mapping[str, Any]) -> None:
    """Print what was built and what was left alone."""
    from rich.text import Text

    out = console()
    built, skipped = result["built"], result["skipped"]
    for shard in built:
        out.print(Text.assemble(("built ", "green"), shard))
    summary = f"Built manifests for {len(built):,} shard{'s' if len(built) != 1 else ''}"
    if skipped:
        summary += f"; {len(skipped):,} already had one (--force rebuilds them)"
    out.print(Text(summary + ".", style="bold"))
