"""atdata on Modal: :class:`Dispatcher` serves the pipeline dispatcher as a Modal web endpoint.

This package is ``atdata.modal``; it imports the real ``modal`` package
absolutely, and only when a name here is first used.

Example:
    >>> import modal, atdata.modal
    >>> app = modal.App("atdata-pipelines")
    >>> dispatcher = atdata.modal.Dispatcher(app, pipelines=["my_pipelines"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atdata import _lazy

_EXPORTS: dict[str, str] = {
    "Dispatcher": "atdata.modal._dispatcher",
    "ModalRunner": "atdata.modal._dispatcher",
}

__all__ = [
    "Dispatcher",
    "ModalRunner",
]

__getattr__, __dir__ = _lazy.lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from atdata.modal._dispatcher import Dispatcher, ModalRunner
