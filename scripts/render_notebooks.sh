#!/usr/bin/env bash
# Execute the tutorials fully (not quick) in place and store their outputs, so that GitHub shows
# every figure, table and number without running anything.
#
#   bash scripts/render_notebooks.sh          # all notebooks, in order (work/ is shared: 02 → 07)
#   bash scripts/render_notebooks.sh 01 06    # only these ("demo": only the README's demo figure + printout)
#
# Each notebook's jupytext source (tutorials/NN_name.py) is executed into its paired .ipynb
# (`jupytext --to ipynb --execute`, nbclient, one fresh kernel per notebook, working directory
# tutorials/). Figures are PNG at 72 dpi. The widget screenshot of notebook 06
# (tutorials/images/06_widget.png) is refreshed from tests/test_browser.py when Chromium is
# present. Wall times go to tutorials/render_times.txt. The notebooks read tutorials/settings.toml
# (every MEDSAM_LITE_* override is dropped here). Fails if tutorials/ grows over 10 MB, if a stored
# output holds an absolute path, a progress bar short of its final state or a line repeated as noise
# (scripts/check_notebook_outputs.py), or if a number in a notebook's prose is not printed by one of
# its cells (tests/test_notebook_numbers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
# full runs with the notebooks' own settings: drop every override a test or CI may have set
for v in $(env | grep -o '^MEDSAM_LITE_[A-Z_]*' || true); do unset "$v"; done

IPY=$(mktemp -d)
trap 'rm -rf "$IPY"' EXIT
mkdir -p "$IPY/profile_default"
cat > "$IPY/profile_default/ipython_kernel_config.py" <<'CFG'
c.InlineBackend.figure_formats = {"png"}
c.InlineBackend.rc = {"figure.dpi": 72, "savefig.dpi": 72}
CFG
export IPYTHONDIR="$IPY"
export PYTHONWARNINGS="ignore::FutureWarning"   # timm's deprecation notices are noise in stored outputs

wanted=("$@")
times="$ROOT/tutorials/render_times.txt"
[ ${#wanted[@]} -eq 0 ] && : > "$times"
echo "# wall time of a full run per notebook ($(getconf _NPROCESSORS_ONLN) CPUs, $(date -u +%Y-%m-%d), torch threads: all)" >> "$times"
for src in tutorials/[0-9][0-9]_*.py; do
  name=$(basename "$src" .py)
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " ${name:0:2} " ]]; then continue; fi
  if [ "${name:0:2}" = "06" ] && [ -x /usr/bin/chromium ]; then
    echo "== widget screenshot (tests/test_browser.py)"
    "$PY" -m pytest tests/test_browser.py -q -p no:cacheprovider
    mkdir -p tutorials/images
    cp artifacts/browser_box_prompt.png tutorials/images/06_widget.png
  fi
  echo "== $name"
  start=$(date +%s)
  "$PY" -m jupytext --to ipynb --execute "$src"
  echo "$name $(( $(date +%s) - start )) s" | tee -a "$times"
done

if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " =~ " demo " ]]; then
  # the README's first figure and the printout its numbers are checked against (tests/test_notebook_numbers.py)
  echo "== demo (python -m medsam_lite.app.demo → tutorials/images/demo_overlay.png, demo_printout.txt)"
  rm -rf runs/demo_render
  "$PY" -m medsam_lite.app.demo --out runs/demo_render
  cp runs/demo_render/overlay.png tutorials/images/demo_overlay.png
  cp runs/demo_render/printout.txt tutorials/images/demo_printout.txt
fi

size=$(du -sk --exclude=work --exclude=runs tutorials | cut -f1)
echo "tutorials/ holds ${size} kB (without work/ and runs/)"
[ "$size" -le 10240 ] || { echo "tutorials/ is over 10 MB: lower the figures' dpi or their number" >&2; exit 1; }

echo "== stored outputs: relative paths, final progress bars, no repeated noise"
"$PY" scripts/check_notebook_outputs.py
echo "== numbers in the prose are printed by the notebooks"
"$PY" -m pytest -q -p no:cacheprovider tests/test_notebook_numbers.py
