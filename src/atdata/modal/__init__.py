"""atdata on Modal: :class:`Dispatcher` serves the pipeline dispatcher as a Modal web endpoint.

This package is ``atdata.modal``; it imports the real ``modal`` package
absolutely, and only when a name here is first used.

Example:
    >>> import modal, atdata.modal
    >>> app = modal.App("atdata-pipelines")
    >>> dispatcher = atdata.modal.Dispatcher(app, pipelines=["my_pipelines"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Dispatcher": "atdata.modal._dispatcher",
    "ModalRunner": "atdata.modal._dispatcher",
}

__all__ = [
    "Dispatcher",
    "ModalRunner",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'atdata.modal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from atdata.modal._dispatcher import Dispatcher, ModalRunner
