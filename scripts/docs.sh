#!/usr/bin/env bash
# Serve the documentation site at http://127.0.0.1:8000, rebuilding on every change.
# Extra arguments go to `mkdocs serve` (e.g. --dev-addr 127.0.0.1:8001).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec mkdocs serve --dev-addr 127.0.0.1:8000 "$@"
