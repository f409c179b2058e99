# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · From a folder of scans to a training set
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/02_prepare_custom_dataset.ipynb)
#
# Turn your own scans and label maps into a training set with the **MedSAM recipe**: per-volume
# normalization, slices along the thick axis, one box per target, a split by case. No
# preprocessing code to write: say where your data are in `tutorials/settings.toml` and run.
#
# **Time:** the preparing cell prints how long it took (no model involved).

# %%
# Colab only (does nothing elsewhere): install medsam_lite from its repository in this kernel.
# Faster: Runtime → Change runtime type → T4 GPU (before running); the notebooks use it when present.
import os, subprocess, sys  # noqa: E401
if "google.colab" in sys.modules:
    REPO = os.environ.get("MEDSAM_LITE_REPO", "https://github.com/medsam-lite/medsam_lite")
    CLONE = os.environ.get("MEDSAM_LITE_CLONE", "/content/medsam_lite")
    USE_DRIVE = False  # True: keep work/ (datasets, embeddings, checkpoints) on your Google Drive
    if os.path.isdir(os.path.join(CLONE, ".git")):  # re-run: update the clone, never clone inside it
        subprocess.run(["git", "-C", CLONE, "pull", "-q", "--ff-only"], check=False)
    else:
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, CLONE], check=True)
    # A regular install (not -e) is importable at once, no restart; Colab's torch is kept as it is.
    from importlib.metadata import version
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", CLONE, f"torch=={version('torch')}"], check=True)
    os.environ["MEDSAM_LITE_SAMPLES"] = os.path.join(CLONE, "data_samples")
    os.chdir(os.path.join(CLONE, "tutorials"))
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        os.environ["MEDSAM_LITE_WORK"] = "/content/drive/MyDrive/medsam_lite_work"
    from google.colab import output
    output.enable_custom_widget_manager()
    import importlib
    importlib.invalidate_caches()
# %% [markdown]
# ## Settings: one file for notebooks 02–08
# `tutorial.settings()` reads `tutorials/settings.toml`. It is the only place to change for your
# own data: every notebook from here on reads the same file and defines no settings of its own.
# Paths in it are relative to the file; `samples:ct_abdomen` is the bundled real CT. Environment
# variables override it (`MEDSAM_LITE_DATA`, `MEDSAM_LITE_MODALITY`, `MEDSAM_LITE_TEST_CASES`,
# `MEDSAM_LITE_LABELS`, `MEDSAM_LITE_WORK`, `MEDSAM_LITE_THREADS`, `MEDSAM_LITE_QUICK`): that is how
# the tests run these notebooks on other data. The line the call prints is the settings in effect;
# here is the file itself:

# %%
from medsam_lite.app import tutorial

S = tutorial.settings()

# %%
print(S.source.read_text(encoding="utf-8"))

# %% [markdown]
# The sample is a **real** abdominal CT (TotalSegmentator's example scan, licence `CC-BY-4.0`) cut into three
# slabs of 10 axial slices: three "cases", but **one patient**. That is enough to learn the
# mechanics and to see what fine-tuning does on data like yours — and too little to fine-tune a
# model for other patients (notebooks 04–05 show both).

# %% [markdown]
# ## 1. The folder you need
# `preprocess` finds image/label pairs in the layouts you probably already have. A label map is an
# integer image on the **same grid** as its scan (same shape, spacing, origin, direction), with
# 0 = background and one value per structure.
#
# | layout | images | label maps |
# |---|---|---|
# | nnU-Net / Medical Segmentation Decathlon | `imagesTr/<case>_0000.nii.gz` (only channel `_0000` is used; MSD's `<case>.nii.gz` works too) | `labelsTr/<case>.nii.gz` |
# | flat folder (NIfTI, NRRD, MHA) | `<case>.nii.gz` | `<case>_label.nii.gz` (or `_mask`, `_seg`; or `label_suffix="…"`) |
# | 2D images | `<name>.png` / `.jpg` | `<name>_mask.png` or `<name>_label.png` (0/255 masks count as label 1) |
# | DICOM | one folder per series: `<case>/…` | `<case>_label.nii.gz` beside the folder, or an RTSTRUCT / DICOM-SEG: `<case>_label.dcm` beside it or inside `<case>/` |
# | any | a list of `(image_path, label_path)` pairs, or `{case: (image, label)}` | |
#
# Label names come from a `labels.json` (`{"1": "liver", "2": "tumour"}`) in or above the folder,
# from an MSD / nnU-Net `dataset.json`, from the ROI / segment names of an RTSTRUCT / DICOM-SEG, or
# from `labels` in the settings file. The settings (and the CLI, and `preprocess`) choose labels by
# value or by name: `labels = [1, 5]` or `labels = ["spleen", "liver"]`. A label map may hold
# many classes (TotalSegmentator's has over a hundred): only the settings' `labels` are used.
# No label maps yet? Notebook 08 makes them from boxes.

# %%
import time

import pandas as pd
from IPython.display import display

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.data.dataset import open_dataset
from medsam_lite.io.cases import find_cases, labels_from_files
from medsam_lite.io.scans import thick_axis

cases = find_cases(S.data, exclude=S.work)
for case in cases:
    print(f"{case.name}: {case.image.name} + {case.label.name}")

scan = io.read_volume(cases[0].image)
print("array (z, y, x):", scan.array.shape, scan.array.dtype, "| spacing (z, y, x) mm:", scan.spacing_zyx)
print("value range:", scan.array.min(), "…", scan.array.max(), "| thick axis (array order):",
      thick_axis(scan.spacing_zyx, scan.array.shape))
first = io.read_label(cases[0].label, reference=cases[0].image)
known = {**labels_from_files([S.data, S.data.parent]), **(first.names or {})}
print("label values in", cases[0].label.name, "(value name):",
      ", ".join(f"{v} {known.get(v, '?')}" for v in sorted(int(v) for v in pd.unique(first.array.ravel())) if v))
print("chosen by the settings:", S.label_names() if S.labels else "every label")

# %% [markdown]
# **DICOM in, with an RTSTRUCT.** A DICOM series is a folder of slice files; its labels may be an
# RTSTRUCT (contours, one ROI per structure) or a DICOM-SEG. `io.read_volume` reads the series in
# Hounsfield units with its geometry, `io.read_label(..., reference=series)` rasterises the RTSTRUCT
# onto it, and `names=` maps ROI names to your label values. Notebook 08's scan in the settings is
# such a series (the sample: the held-out slab written as DICOM by `data_samples/make_dicom_sample.py`).

# %%
if S.scan is not None and S.scan.is_dir():
    series = io.read_volume(S.scan)
    print(f"DICOM series {tutorial.short_path(S.scan)}: (z, y, x) {series.array.shape}, spacing (x, y, z) {series.spacing} mm, "
          f"HU {series.array.min()} … {series.array.max()}")
    if S.reference is not None:
        rt = io.read_label(S.reference, reference=S.scan, names=S.label_names() if isinstance(S.labels, dict) else None)
        print(f"{S.reference.name}: labels (value name)", rt.names,
              "| voxels per label:", {int(v): int((rt.array == v).sum()) for v in rt.names})
else:
    print("notebook 08's scan in the settings is not a DICOM series folder: nothing DICOM to show here")

# %% [markdown]
# ## 2. The recipe
# For each case `preprocess`:
#
# 1. reads image and label map with SimpleITK and checks they share one geometry;
# 2. normalizes the **whole volume** to `uint8` (CT: `modality="CT"` and a window in HU,
#    `[-500, 1000]` by default; MR and other modalities: the `0.5–99.5` percentiles of the voxels
#    above 0 — the settings warn when a scan looks like a CT but `modality` says otherwise);
# 3. cuts it into slices along the axis of **largest spacing** (ties → z), or `axis=…`;
# 4. keeps one binary target per label per slice (or per connected component with
#    `split_components=True`), dropping targets too small to prompt: the paper's rule is
#    `min_pixels=100` on pixels of about `0.8 mm`; on coarser scans that drops whole organs, so the
#    settings' `min_mm2` states the rule as an area (`64` mm² here);
# 5. stores each kept slice **once** as a `uint8` PNG at model resolution (longest side `256`, aspect
#    kept), each target as a 0/255 mask PNG, and one manifest row per target.
#
# Cases are split into train/test **by case** (never a case in both): the settings' `test_cases`,
# or a seeded 80/20 shuffle. Everything is checked before anything is written, and a re-run skips
# finished cases (an interrupted case is redone). The later notebooks read the same folder,
# `S.dataset`.

# %%
t0 = time.perf_counter()
manifest = ml.preprocess(S.data, S.dataset, progress=False, **S.preprocess_kwargs())
print(f"prepared {manifest['case'].nunique()} cases into {S.dataset} in {time.perf_counter() - t0:.1f} s: "
      f"{manifest[['case', 'slice']].drop_duplicates().shape[0]} slices, {len(manifest)} targets")
manifest.head()

# %% [markdown]
# ## 3. What is in the folder
# `dataset.json` holds the settings, label names, split and per-case status; `manifest.csv` one
# row per target. The box `x0, y0, x1, y1` is **XYXY in original slice pixels** (`height × width`,
# before resizing), inclusive of the target's extreme pixels; `spacing_row` / `spacing_col` /
# `slice_spacing` are in mm; `image` and `mask` are paths relative to the folder.

# %%
ds = open_dataset(S.dataset)
print({k: ds.meta[k] for k in ("format", "image_size", "modality", "window", "min_pixels", "min_mm2", "labels")})
print("split:", ds.meta["split"])
print(sorted(str(p.relative_to(S.dataset)) for p in S.dataset.iterdir()))
row = manifest.iloc[0]
print("stored image", ds.image(row["image"]).shape, ds.image(row["image"]).dtype,
      "from an original slice of", (int(row["height"]), int(row["width"])))

# %% [markdown]
# ## 4. Statistics
# How many targets of each label each split holds, and how big they are. A label with few
# targets gets few training samples; a label with **no** target in the test split cannot be
# evaluated there (check this table before trusting a per-label score); a label with no target at
# all was dropped by the size rule on every slice (lower `min_mm2` then).

# %%
print("targets per label and split")
display(pd.crosstab(manifest["label_name"], manifest["split"], margins=True))
print("slices per split:", manifest.drop_duplicates(["case", "slice"])["split"].value_counts().to_dict())
print("target size (original pixels):")
display(manifest.groupby("label_name")["pixels"].describe()[["count", "min", "50%", "max"]])
plotting.plot_target_sizes(manifest, min_pixels=ds.meta["min_pixels"], min_mm2=ds.meta["min_mm2"]);

# %% [markdown]
# ## 5. Look at the data
# Always look before you train: each panel is a stored slice with one target's mask and its box
# (drawn in the stored image's pixels), shown like every figure of the tutorials: radiological
# orientation (the patient's right on the viewer's left, anterior at the top; `source=` gives the
# scans' geometry), the CT soft-tissue display window (W400 / L40, not the model's wide input
# window), one colour per label name.

# %%
plotting.plot_dataset_grid(ds, n=8, ncols=4, source=S.data);

# %% [markdown]
# ## 6. Re-running, and mistakes
# Running the same call again skips every finished case. A mistake — a label map from another
# scan, a probability map instead of labels, a missing label file — stops `preprocess` with an
# `InputError` that says what to fix, **before** anything is written.

# %%
t0 = time.perf_counter()
again = ml.preprocess(S.data, S.dataset, progress=False, **S.preprocess_kwargs())
print(f"re-run: {time.perf_counter() - t0:.2f} s, same manifest: {again.equals(manifest)}")

mismatched = S.work / "mismatched"
try:
    ml.preprocess([(cases[0].image, cases[-1].label)], mismatched, modality=S.modality, progress=False)
except ml.InputError as err:
    print("InputError:", err)
else:
    print(f"{cases[0].name} and {cases[-1].name} share one grid, so this pair was accepted")
print(f"{mismatched} exists:", mismatched.exists())

# %% [markdown]
# ## 7. More options
# ```python
# # nnU-Net layout, soft-tissue window, only labels 1 and 2:
# ml.preprocess("Dataset001_Liver/", "work/liver", modality="CT", window="soft_tissue",
#               labels={1: "liver", 2: "tumour"}, min_mm2=64)
# # DICOM series folders patient1/, patient2/ … with patient1_label.nii.gz (or an RTSTRUCT
# # patient1_label.dcm) beside them; labels chosen by ROI name:
# ml.preprocess("dicom_export/", "work/ct", modality="CT", labels=["liver", "spleen"])
# # 2D images: photo.png + photo_mask.png; one target per connected component:
# ml.preprocess("png_folder/", "work/cells", split_components=True, min_pixels=30)
# ```
#
# ## Next
# * `03` — compute the image embeddings of `S.dataset` once.
# * `04` — fine-tune the mask decoder on the training cases.
