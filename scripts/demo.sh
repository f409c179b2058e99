#!/usr/bin/env bash
# Set up everything, then run the main job on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m medsam_lite.app.demo "$@"
