"""Notebooks 02–05 and 07 on a second, real dataset by changing only the settings (quick mode).

The settings cell reads environment overrides (``medsam_lite.tutorial.settings``), so the very
notebooks users get run here on a CT dataset with organ labels: ``MEDSAM_LITE_DATA``,
``MEDSAM_LITE_MODALITY=CT``, ``MEDSAM_LITE_TEST_CASES``, ``MEDSAM_LITE_LABELS``, ``MEDSAM_LITE_WORK``.

The data come from ``data_samples/ct_abdomen`` (real CT scans with organ label maps; or the folder
in ``$MEDSAM_LITE_TEST_CT``). With fewer than 3 scans each scan is cut into 4 slabs along its thick
axis, each slab a case (so train, validation and test cases exist even for one scan); the 3 labels
with the most voxels are used to keep the run short — so the label maps hold many more classes
than the settings choose (notebook 07 once failed on that with ``KeyError: '8'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CT_DIR = Path(os.environ.get("MEDSAM_LITE_TEST_CT", ROOT / "data_samples" / "ct_abdomen"))
NOTEBOOKS = ["02_prepare_custom_dataset", "03_precompute_embeddings", "04_finetune_mask_decoder", "05_evaluate",
             "07_3d_volume_segmentation"]
SLABS = 4
#: The test process only waits while a kernel runs: each kernel gets the session's cores (2 in CI).
THREADS = os.environ.get("MEDSAM_LITE_THREADS", "2")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CT_DIR.is_dir(), reason=f"no real CT sample at {CT_DIR} yet "
                                 "(data_samples/ct_abdomen: CT scans with organ labels)")]


def _build_dataset(out: Path) -> tuple[dict, list[str]]:
    """Write slabs of every case of CT_DIR into ``out`` (flat layout); return (labels, case names)."""
    import SimpleITK as sitk

    from medsam_lite import io
    from medsam_lite.data.preprocess import find_cases, thick_axis

    out.mkdir(parents=True)
    voxels: dict[int, int] = {}
    names = []
    found = find_cases(CT_DIR)
    slabs = 1 if len(found) >= 3 else SLABS
    for case in found:
        scan, label = io.read_volume(case.image), io.read_volume(case.label)
        axis = thick_axis(scan.spacing_zyx, scan.array.shape)
        dim = 2 - axis  # SimpleITK index order is the array's reversed
        n = scan.array.shape[axis]
        edges = np.linspace(0, n, slabs + 1).round().astype(int)
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            index, size = [0, 0, 0], list(scan.to_sitk().GetSize())
            index[dim], size[dim] = int(lo), int(hi - lo)
            name = f"{case.name}-slab{k}" if slabs > 1 else case.name
            sitk.WriteImage(sitk.RegionOfInterest(scan.to_sitk(), size, index), str(out / f"{name}.nii.gz"))
            sitk.WriteImage(sitk.RegionOfInterest(label.to_sitk(), size, index), str(out / f"{name}_label.nii.gz"))
            names.append(name)
        values, counts = np.unique(label.array, return_counts=True)
        for v, c in zip(values, counts):
            if v:
                voxels[int(v)] = voxels.get(int(v), 0) + int(c)
    known = {}
    for where in (CT_DIR, CT_DIR.parent):
        if (where / "labels.json").exists():
            known = {int(k): v for k, v in json.loads((where / "labels.json").read_text()).items()}
            break
    top = sorted(voxels, key=voxels.get, reverse=True)[:3]
    return {v: known.get(v, f"label_{v}") for v in sorted(top)}, names


def test_notebooks_02_to_05_run_on_a_ct_dataset_from_the_settings_alone(tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    labels, cases = _build_dataset(tmp_path / "my_ct")
    work = tmp_path / "work"
    env = {"MEDSAM_LITE_DATA": str(tmp_path / "my_ct"), "MEDSAM_LITE_MODALITY": "CT",
           "MEDSAM_LITE_TEST_CASES": cases[-1], "MEDSAM_LITE_LABELS": json.dumps(labels),
           "MEDSAM_LITE_WORK": str(work), "MEDSAM_LITE_QUICK": "1", "MEDSAM_LITE_THREADS": THREADS,
           "OMP_NUM_THREADS": THREADS, "MPLBACKEND": "agg"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    printed = {}
    for name in NOTEBOOKS:
        nb = jupytext.read(ROOT / "tutorials" / f"{name}.py")
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        printed[name] = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                                  for c in nb.cells for o in c.get("outputs", []))
    assert "modality CT" in printed["02_prepare_custom_dataset"]
    assert "MEDSAM_LITE_DATA" in printed["02_prepare_custom_dataset"]
    dataset = work / "my_ct_dataset"
    from medsam_lite.data.dataset import open_dataset

    ds = open_dataset(dataset)
    assert ds.meta["modality"] == "CT" and ds.meta["split"][cases[-1]] == "test"
    assert sorted(int(k) for k in ds.meta["labels"]) == sorted(labels)
    assert (work / "my_ct_finetune_quick" / "best.pt").exists()
    for label_name in labels.values():   # 05's table names the CT's own labels
        assert label_name in printed["05_evaluate"]
    assert not (ROOT / "tutorials" / "work" / "my_ct_dataset").exists()
    label_map_line = next(line for line in printed["07_3d_volume_segmentation"].splitlines()
                          if line.startswith("3D Dice per label:"))
    chosen = json.loads(label_map_line.split(":", 1)[1].replace("'", '"'))
    assert chosen and set(chosen) <= set(labels.values())   # the chosen labels only, not every class of the map
