#!/usr/bin/env bash
# The tour: write, query, process and inspect a dataset on the embedded defaults.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
# keep the tour's catalog out of the user's ~/.atdata unless they chose one
export ATDATA_HOME="${ATDATA_HOME:-$root/tour-output/.atdata}"
python examples/tour.py tour-output
