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
# --no-compile: no .pyc for the ~17,000 installed modules up front (about 47 s of CPU); Python writes
# them on first import for the ones that are used. The same packages and versions are installed.
.venv/bin/python -m pip install -q --no-compile "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q --no-compile -e ".[test]"
if [ "${MEDSAM_LITE_SKIP_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
echo "medsam_lite is set up in $(pwd)/.venv"
