"""The documentation's code runs: the tutorial end to end, the how-to pages' examples.

``docs/tutorial.md`` and the pages in :data:`RUN_PAGES` are read as programs:
every ```` ```python ```` block runs, in order, in one namespace, in a fresh
temporary directory, and every ```` ```console ```` block's ``$ command`` lines
run there too (with this virtualenv's ``atdata`` first on ``PATH``), so a page
that stops working fails the suite. Each block is registered with
:mod:`linecache` under its page's name and line numbers, so a traceback points
at the page, and ``ds.query(where=lambda m: ...)`` can read the lambda's source
as it does in a script (to prune shards and vectorise).

Every other page's Python blocks must at least parse.
"""

from __future__ import annotations

import dataclasses
import linecache
import os
import re
import shlex
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# page -> seconds its blocks may take together: a guard against slow examples, generous
# because test machines are often busy (idle, the tutorial takes about 25 s)
RUN_PAGES = {
    "tutorial.md": 120.0,
    "query.md": 60.0,
    "observability.md": 60.0,
    "errors.md": 60.0,
}

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\n]*)$")


@dataclasses.dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    lang: str
    line: int  # 1-based line of the first line of code
    code: str


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order (nested fences are not used)."""
    out: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        lang = (match["info"].split() or [""])[0].strip("{}.")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        out.append(Block(page.name, lang, i + 2, "\n".join(body) + "\n"))
        i = j + 1
    return out


def _register(block: Block, filename: str) -> str:
    """The block's code, padded so line numbers are the page's, known to linecache."""
    source = "\n" * (block.line - 1) + block.code
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return source


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Path]:
    """A temporary working directory; cwd, environment and sys.path restored after."""
    before_cwd, before_env, before_path = os.getcwd(), dict(os.environ), list(sys.path)
    env_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    for name in ("ATDATA_HANDLE", "ATDATA_APP_PASSWORD", "ATDATA_SESSION"):
        os.environ.pop(name, None)  # the pages never reach a real network
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before_cwd)
        os.environ.clear()
        os.environ.update(before_env)
        sys.path[:] = before_path


def _run_console(block: Block, cwd: Path) -> None:
    for offset, raw in enumerate(block.code.splitlines()):
        if not raw.startswith("$ "):
            continue  # output shown on the page
        command = raw[2:].strip()
        done = subprocess.run(
            shlex.split(command),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
        )
        assert done.returncode == 0, (
            f"{block.page}:{block.line + offset}: `{command}` exited {done.returncode}\n"
            f"{done.stdout}\n{done.stderr}"
        )


def run_page(name: str, cwd: Path) -> float:
    """Run every python and console block of ``docs/<name>`` in order; the seconds taken."""
    page = DOCS / name
    namespace = types.ModuleType(f"atdata_docs_{page.stem}").__dict__
    namespace["__file__"] = str(page)
    started = time.perf_counter()
    for n, block in enumerate(blocks(page)):
        if block.lang in ("python", "py"):
            filename = f"<docs/{name}, block {n}>"
            code = compile(_register(block, filename), filename, "exec", dont_inherit=True)
            exec(code, namespace)
        elif block.lang == "console":
            _run_console(block, cwd)
    return time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(RUN_PAGES))
def test_page_runs(name: str, isolated: Path) -> None:
    seconds = run_page(name, isolated)
    budget = RUN_PAGES[name]
    assert seconds < budget, f"docs/{name} took {seconds:.1f} s to run (budget {budget:.0f} s)"


def _all_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", _all_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_parse(page: Path) -> None:
    for block in blocks(page):
        if block.lang in ("python", "py"):
            try:
                compile(block.code, f"docs/{page.name}:{block.line}", "exec", dont_inherit=True)
            except SyntaxError as exc:
                line = block.line + (exc.lineno or 1) - 1
                pytest.fail(f"docs/{page.relative_to(DOCS)}:{line}: {exc.msg}")


REFERENCE_MODULES = [
    "atmosphere",
    "errors",
    "index",
    "lens",
    "loader",
    "manifest",
    "observability",
    "pipeline",
    "processing",
    "shards",
    "storage",
    "testing",
    "torch",
]


def test_the_reference_covers_every_public_name() -> None:
    import atdata

    top = (DOCS / "reference" / "atdata.md").read_text(encoding="utf-8")
    missing = [
        name
        for name in atdata.__all__
        if f"::: atdata.{name}\n" not in top and f"`atdata.{name}`" not in top
    ]
    assert not missing, f"docs/reference/atdata.md lacks {missing}"
    for module in REFERENCE_MODULES:
        page = DOCS / "reference" / f"atdata.{module}.md"
        assert f"::: atdata.{module}" in page.read_text(encoding="utf-8"), page
