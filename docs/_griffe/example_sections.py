"""A griffe extension for the API reference: ``Example:`` sections are examples.

atdata's docstrings head their doctest snippets ``Example:`` (Google style
allows both spellings); griffe reads only ``Examples:`` as an examples section
and would render ``Example:`` as an admonition of plain Markdown, where the
doctest output's brackets turn into broken links.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headers to ``Examples:`` before docstrings are parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _SINGULAR.sub(r"\1Examples:", docstring.value)
