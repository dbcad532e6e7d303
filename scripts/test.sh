#!/usr/bin/env bash
# The whole test suite: Python tests (slow ones included) and the Cloudflare Worker's tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
ruff check src tests benchmarks
# the local AT Protocol server (PDS) the atmosphere tests run against; cached after the first run
bash scripts/install_pds.sh
python -m pytest "$@"
if command -v npm >/dev/null; then
    (cd workers/r2-to-atdata && npm ci --no-audit --no-fund --loglevel=error && npm test)
else
    echo "npm not found: skipping the Worker's tests (install Node.js >= 20.18)" >&2
    exit 1
fi
