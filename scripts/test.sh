#!/usr/bin/env bash
# Set up everything, then run the whole test suite: unit/integration tests and every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MEDSAM_LITE_QUICK=1   # notebooks run on a few slices in CI; unset it for full runs
# Two test processes (a test file stays in one), one torch thread each: the 2 cores never run more
# than two torch threads, and the suite takes about two thirds of the time one process takes.
MEDSAM_LITE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/ -v -n 2 --dist loadfile --durations=15
.venv/bin/python -m pytest --nbmake --nbmake-timeout=900 tutorials/ -v
