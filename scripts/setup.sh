#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with torch, medsam_lite
# (editable) and the test stack. Safe to run again (pip skips what is installed).
# Chromium (for the browser test) is installed from Debian when running as root with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: PyPI's torchvision only imports beside a matching torch build.
# --no-compile, then one compileall on every core: pip compiles the ~17,000 modules' bytecode one at a
# time (about 47 s of CPU). The .pyc files must exist before any test: where PYTHONDONTWRITEBYTECODE is
# set (it is on this CI machine) Python never writes them, and every fresh process (each notebook kernel,
# torchrun rank, CLI call) would compile torch from source again. Same packages, same versions. The
# packages' own test suites (*/tests/, ~20 % of the source, never imported here) are left uncompiled.
.venv/bin/python -m pip install -q --no-compile "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q --no-compile -e ".[test]"
# compileall exits 1 where a package ships files that are not Python 3; those stay as they are
.venv/bin/python -m compileall -q -j 0 -x '/tests/' .venv/lib/python*/site-packages medsam_lite >/dev/null 2>&1 || true
if [ "${MEDSAM_LITE_SKIP_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
echo "medsam_lite is set up in $(pwd)/.venv"
