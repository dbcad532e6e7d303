#!/usr/bin/env bash
# The whole test suite: Python tests (slow ones included) and the Cloudflare Worker's tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
# the documentation site, warnings as errors (built outside the repository)
mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
command -v npm >/dev/null || { echo "test.sh: npm not found; install Node.js >= 20.18 and npm" >&2; exit 1; }
# the Worker's runtime (miniflare): its own tests and the Python end-to-end tests use it
(cd workers/r2-to-atdata && npm ci --no-audit --no-fund --loglevel=error)
# the local AT Protocol server (PDS) the atmosphere tests run against; cached after the first run
bash scripts/install_pds.sh >/dev/null
python -m pytest "$@"
(cd workers/r2-to-atdata && npm test)
