#!/usr/bin/env bash
# Create .venv and install atdata with its development extras (idempotent and quick
# when nothing changed). Sourced by scripts/tour.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.atdata-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    # torch 2.13.0 is the CPU build these machines keep on disk; any other spec downloads CUDA.
    "$venv/bin/python" -m pip install -q -e "$root[dev]" "torch==2.13.0"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
