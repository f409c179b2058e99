#!/usr/bin/env bash
# Set up everything, then run the whole test suite: unit/integration tests and every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MEDSAM_LITE_QUICK=1   # notebooks run on a few slices in CI; unset it for full runs
.venv/bin/python -m pytest tests/ -v --durations=15
.venv/bin/python -m pytest --nbmake --nbmake-timeout=900 tutorials/ -v
