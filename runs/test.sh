#!/usr/bin/env bash
# The test suite (CPU only, seeded, no network), after setting up what it needs (runs/setup.sh):
#   bash runs/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source runs/setup.sh
python -m pytest -q "$@"
