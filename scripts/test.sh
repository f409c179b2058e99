#!/usr/bin/env bash
# Set up everything, then run the whole test suite: unit/integration tests and every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MEDSAM_LITE_QUICK=1   # notebooks run on a few slices in CI; unset it for full runs
# Two test processes (a test file or a notebook stays in one), one torch thread each: the 2 cores never
# run more than two torch threads. The notebooks run in the same two processes as the tests (nbmake),
# so neither waits for the other. tests/browser/ holds the browser test's own notebook, not a tutorial.
# Files are handed out in collection order, which tests/conftest.py sets (the longest first, RUN_FIRST);
# --no-loadscope-reorder keeps xdist from re-sorting them by their number of tests (which started the
# slowest files, few tests each, last). --durations=0: every test's time (the per-process sums).
MEDSAM_LITE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/ tutorials/ \
    --nbmake --nbmake-timeout=900 --ignore-glob='tests/browser/*.ipynb' \
    -v -n 2 --dist loadfile --no-loadscope-reorder --durations=0 --durations-min=0.05
