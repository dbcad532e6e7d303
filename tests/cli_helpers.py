"""Running CLI commands through typer's runner, shared by the CLI test modules."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from atdata.cli._app import app


def cli(*args: str) -> Any:
    """Run ``atdata ARGS``; a success must print nothing on stderr."""
    result = CliRunner().invoke(app, list(args))
    if result.exit_code == 0:
        assert result.stderr == "", result.stderr
    return result


def ok(*args: str) -> str:
    """Run a command that must succeed; returns its stdout."""
    result = cli(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def ok_json(*args: str) -> Any:
    """Run a command with ``--json`` and parse what it prints."""
    return json.loads(ok(*args, "--json"))


def user_error(*args: str) -> str:
    """Run a command that must fail as a user error: exit 1, one red line, no traceback."""
    result = cli(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]
