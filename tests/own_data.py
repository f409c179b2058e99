"""What the two own-data notebook tests share (test_notebook_own_data.py: a 40-class folder of mixed
formats; test_notebook_own_rtstruct.py: two DICOM scans with RTSTRUCTs): the real CT they build from,
the notebooks they run, and running them from a settings file alone.

The two tests live in two files so that ``pytest -n 2 --dist loadfile`` (scripts/test.sh) can run them
in its two processes at the same time (each runs seven notebooks: the two slowest tests of the suite).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CT_DIR = Path(os.environ.get("MEDSAM_LITE_TEST_CT", ROOT / "data_samples" / "ct_abdomen"))
NOTEBOOKS = ["02_prepare_custom_dataset", "03_precompute_embeddings", "04_finetune_mask_decoder", "05_evaluate",
             "06_interactive_box_prompting", "07_3d_volume_segmentation", "08_annotate_without_labels"]
#: The test process only waits while a kernel runs: each kernel gets the session's cores (2 in CI).
THREADS = os.environ.get("MEDSAM_LITE_THREADS", "2")
UID = "1.2.826.0.1.3680043.2.1125.23"
OVERRIDES = ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES", "MEDSAM_LITE_LABELS",
             "MEDSAM_LITE_WORK", "MEDSAM_LITE_THREADS", "MEDSAM_LITE_SETTINGS")

#: Both files: slow (seven notebooks), and skipped without the real CT sample.
PYTESTMARK = [pytest.mark.slow,
              pytest.mark.skipif(not (CT_DIR / "case-03.nii.gz").is_file(),
                                 reason=f"no real CT sample at {CT_DIR} (case-01…03 with organ label maps)")]


def run_notebooks(settings: Path, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """Run :data:`NOTEBOOKS` in order, each in a fresh kernel whose working folder (``tmp_path/notebooks``)
    has no settings.toml, with only ``MEDSAM_LITE_SETTINGS`` (plus quick mode, threads and the plot
    backend) pointing them at ``settings``; no data, label or work override. A cell that raises fails
    the test. Returns each notebook's printed text (stream outputs and plain-text results)."""
    import jupytext
    from nbclient import NotebookClient

    for key in OVERRIDES:                       # the settings file alone (the cache and backend stay as set)
        monkeypatch.delenv(key, raising=False)
    env = {"MEDSAM_LITE_SETTINGS": str(settings), "MEDSAM_LITE_QUICK": "1", "OMP_NUM_THREADS": THREADS,
           "MPLBACKEND": "agg"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "notebooks"          # the kernels' working folder: no settings.toml there
    run_dir.mkdir()
    printed = {}
    for name in NOTEBOOKS:
        nb = jupytext.read(ROOT / "tutorials" / f"{name}.py")
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(run_dir)}}).execute()
        printed[name] = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                                  for c in nb.cells for o in c.get("outputs", []))
    return printed
