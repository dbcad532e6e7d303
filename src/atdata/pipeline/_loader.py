"""Load the user's pipelines: import a file or module that defines ``@atdata.pipeline`` s."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from atdata.errors import PipelineError
from atdata.pipeline._registry import PipelineRegistry, default_registry

__all__ = ["load_pipelines"]


def load_pipelines(
    specs: Iterable[str], registry: PipelineRegistry | None = None
) -> list[ModuleType]:
    """Import each spec (``path/to/file.py`` or ``package.module``) and register its processors.

    Importing runs the module's ``@atdata.pipeline`` decorators, which register
    into the default registry. Processors (``@atdata.processor`` functions) found
    at the top level of each module are registered by name in ``registry`` so
    ``POST /jobs`` can start them. A file's folder is put on ``sys.path`` so the
    module imports by name in worker processes too.

    Raises:
        PipelineError: a file does not exist or a module cannot be imported.

    Example:
        >>> load_pipelines(["pipelines.py"])     # doctest: +SKIP
        [<module 'pipelines' from '/srv/pipelines.py'>]
    """
    target = registry if registry is not None else default_registry
    modules = []
    for spec in specs:
        module = _import(spec)
        modules.append(module)
        for name, value in vars(module).items():
            if not name.startswith("_") and is_processor(value):
                target.add_processor(value, getattr(value, "name", None) or name)
    return modules


def _import(spec: str) -> ModuleType:
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise PipelineError(f"pipelines file {spec!r} does not exist")
        folder, name = os.path.split(path)
        name = name[: -len(".py")] if name.endswith(".py") else name
        if not name.isidentifier():
            raise PipelineError(
                f"pipelines file {spec!r}: {name!r} is not a valid module name; rename the file"
            )
        existing = sys.modules.get(name)
        if (
            existing is not None
            and os.path.abspath(getattr(existing, "__file__", "") or "") == path
        ):
            return existing
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:  # pragma: no cover
            raise PipelineError(f"cannot import {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            raise PipelineError(f"importing {spec!r} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise PipelineError(
            f"cannot import pipelines module {spec!r}: {exc}. Pass a file path "
            "(pipelines.py) or a module importable from here."
        ) from exc


def is_processor(value: Any) -> bool:
    """True for objects ``@atdata.processor`` made."""
    from atdata.processing import Processor

    return isinstance(value, Processor)
