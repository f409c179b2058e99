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
# # 08 · No labels yet: from a bare scan to a label map and a training set
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/08_annotate_without_labels.ipynb)
#
# Most projects start with scans and **no** label maps. This notebook starts there: a box per organ
# on one slice, clicks where a mask is wrong, propagation through the volume, a label map saved
# with the scan's geometry for your viewer, read back — and annotated scans turned into the
# dataset notebooks 02–05 fine-tune on.
#
# **Time:** the propagation cell prints how long it took.

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
# ## Settings
# Every choice lives in one file, `tutorials/settings.toml` (notebook 02 walks through it): the
# data folder, modality, labels, held-out cases, work folder, model and fine-tuning settings.
# Edit the file, not this notebook; environment variables such as `MEDSAM_LITE_DATA` override it
# (that is how the tests run these notebooks on other data). The line below shows the settings in effect.

# %%
from medsam_lite.app import tutorial

S = tutorial.settings()

# %% [markdown]
# ## 1. Your scan and your boxes
# Any scan `io.read_volume` reads: NIfTI, NRRD, MHA, or a DICOM series folder: `scan` in the
# settings file (here the held-out slab of the sample CT as a **DICOM series**, read without its
# labels). The boxes, its `[boxes]` table, are what you would read off a figure or a viewer (or draw
# with the widget of notebook 06): one per organ, `name = [slice, x0, y0, x1, y1]`, XYXY in the
# pixels of the slice **as displayed** (radiological: the patient's right on the viewer's left,
# anterior at the top), with the label names of the settings. `tutorial.boxes_on(S.boxes, scan)` turns them into the
# array's pixels with the scan's direction, so the same numbers fit a DICOM series and a NIfTI of it.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.interactive.session import AnnotationSession
from medsam_lite.interactive.volume import VolumePredictor
from medsam_lite.io.formats import dicom_series_of, label_writer

SCAN = S.scan                  # your scan (a file, or a DICOM series folder): `scan` in the settings
names = S.annotation_labels()  # {value: name} of the boxes' labels, from the settings' labels
scan = io.read_volume(SCAN)
BOXES = tutorial.boxes_on(S.boxes, scan)  # name: (slice, XYXY array pixels): the settings' [boxes], displayed → array
model = tutorial.load_model(S)
print(f"{tutorial.short_path(SCAN).name}: (z, y, x) {scan.array.shape}, spacing (x, y, z) {scan.spacing} mm; "
      f"classes {names}")

# %% [markdown]
# ## 2. Boxes → masks on the key slice
# `AnnotationSession` is the headless core of the annotation widget: it normalizes the scan once
# (`S.modality`), encodes a slice the first time a box lands on it, and keeps every object's box,
# clicks and mask, with `undo`. `add_box` decodes at once.

# %%
session = AnnotationSession(scan, model, labels=names, modality=S.modality)
t0 = time.perf_counter()
objects = {name: session.add_box(box, name, slice=z) for name, (z, box) in BOXES.items()}
print(f"{len(objects)} boxes → masks in {time.perf_counter() - t0:.1f} s (one slice encoded: {session.encoder_calls})")
for name, obj in objects.items():
    print(f"{name:20s} slice {obj.slice}: {int(obj.mask.sum())} px, predicted IoU {obj.score:.2f}")
z = next(iter(BOXES.values()))[0]
plotting.show_masks(scan.array[z], [objects[n].mask for n in names.values()],
                    boxes=[objects[n].box for n in names.values()], direction=scan.direction, modality=S.modality,
                    legend=list(names.values()), title=f"slice {z}: masks from your boxes");

# %% [markdown]
# ## 3. Correct with clicks (when a mask is wrong)
# A foreground click adds a missed part, a background click removes a leak:
# `session.add_click(obj, x, y, positive=True)` decodes the box, every click so far and the
# previous mask once more; `session.undo()` takes the last prompt back. Clicks go to the click
# decoder shipped in the package (LiteMedSAM's own decoder was trained on boxes only; a checkpoint of
# `finetune(..., clicks=K)` answers clicks with its own decoder). As a demonstration (when the
# settings' `clicks` is above 0), one click goes to the object with the lowest predicted IoU, at
# the centre of its box: the figure shows its mask before and after, the click as a star; then
# the click is taken back (undo).

# %%
scores = {name: obj.score for name, obj in objects.items()}
worst = objects[min(scores, key=scores.get)] if S.clicks else None
if worst is None:
    print("clicks: none asked for (clicks = 0 in the settings)")
else:
    x, y = (worst.box[0] + worst.box[2]) / 2, (worst.box[1] + worst.box[3]) / 2
    area, mask_before = int(worst.mask.sum()), worst.mask.copy()
    session.add_click(worst, x, y, positive=True)
    print(f"{worst.label}: one click at ({x:.0f}, {y:.0f}): {area} → {int(worst.mask.sum())} px")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, m, title in ((axes[0], mask_before, f"box: {area} px"), (axes[1], worst.mask, f"box + click: {int(worst.mask.sum())} px")):
        plotting.show_masks(scan.array[worst.slice], [m], boxes=[worst.box], points=[(x, y)], ax=ax,
                            direction=scan.direction, modality=S.modality, colors=[worst.label], title=title)
    fig.tight_layout()
    session.undo()
    print(f"undo: {int(worst.mask.sum())} px again")

# %% [markdown]
# ## 4. Propagate through the volume
# `VolumePredictor` takes each object's box and slice and walks up and down the volume (notebook 07
# explains how it stops). It reuses the session's embeddings, so the key slice is not encoded again.
# The result is one label map with the settings' label values.

# %%
vp = VolumePredictor(scan, model, modality=S.modality)
vp.embeddings.update(session.embeddings)
t0 = time.perf_counter()
label_map = vp.predict({session.label_values[o.label]: (o.box, o.slice) for o in session.objects}, progress=False)
print(f"propagation: {time.perf_counter() - t0:.1f} s, {vp.encoder_calls} more slices encoded")
for v, name in names.items():
    print(f"{name:20s} on slices {np.flatnonzero((label_map == v).any(axis=(1, 2))).tolist()}, "
          f"{(label_map == v).sum() * np.prod(scan.spacing) / 1000:.1f} ml")

# %% [markdown]
# ## 5. Save for your viewer, and read it back
# `io.write_volume(label_map, path, like=scan)` writes the label map with the scan's spacing, origin
# and direction (NIfTI here; NRRD and MHA by their suffix), so it overlays the scan in 3D Slicer or
# ITK-SNAP. For a DICOM series, a DICOM-SEG that PACS viewers read is the other export (the writer
# comes with the package's DICOM-SEG support; the NIfTI works in every research viewer). The figure
# is the file read back, on three slices, in radiological orientation.

# %%
out = io.write_volume(label_map, S.outputs / "08" / f"{tutorial.short_path(SCAN).name.split('.')[0]}_label.nii.gz",
                      like=scan)
back = io.read_volume(out)
print(out, back.array.shape, back.array.dtype, "| same geometry as the scan:", back.same_geometry(scan),
      "| same voxels:", np.array_equal(back.array, label_map))
if dicom_series_of(scan) is not None:             # a DICOM series: also a DICOM-SEG for PACS viewers
    seg = label_writer(out.with_name(out.name.replace("_label.nii.gz", "_seg.dcm")), "dicom-seg", scan, names)(label_map)
    seg_back = io.read_label(seg, reference=SCAN, names=names)   # segment names → the label values
    print(seg, "| segments:", seg_back.names, "| same voxels:", np.array_equal(seg_back.array, label_map))
present = np.flatnonzero((back.array > 0).any(axis=(1, 2)))
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, zz in zip(axes, np.unique(np.linspace(present.min(), present.max(), 3).round().astype(int))):
    plotting.show_masks(scan.array[zz], [back.array[zz] == v for v in names], ax=ax, direction=back.direction,
                        modality=S.modality, colors=list(names.values()),
                        legend=list(names.values()) if ax is axes[-1] else None, title=f"label map read back, slice {zz}")
fig.tight_layout()

# %% [markdown]
# **How good is it?** With your own scan you would check it by eye, slice by slice, and fix it
# with more boxes or clicks. When the settings name a `reference` label map (the sample has one: an
# RTSTRUCT of the series, read by ROI name; its contours come from TotalSegmentator's model output,
# see `data_samples/NOTICE.md`), the printed Dice per organ says how far boxes on one slice went.

# %%
if S.reference:
    reference = io.read_label(S.reference, reference=SCAN, names=names).array   # NIfTI, or RTSTRUCT / SEG by name
    for v, name in names.items():
        print(f"{name:20s} 3D Dice against the reference {ml.dice(label_map == v, reference == v):.3f}")
else:
    print("no reference label map in the settings (reference = \"\"): check the slices by eye")

# %% [markdown]
# ## 6. From annotated scans to a training set
# A folder of `<case>.nii.gz` + `<case>_label.nii.gz` pairs with a `labels.json` is one of the
# layouts `preprocess` reads (notebook 02). Save each scan you annotate into it; once it holds
# scans of **several patients**, point `data` in `settings.toml` at it and run notebooks 02–05 —
# fine-tuning on more patients is what makes it help on new ones (notebook 05).

# %%
import json

folder = S.work / "annotated"
case = tutorial.short_path(SCAN).name.split(".")[0]
io.write_volume(scan.array, folder / f"{case}.nii.gz", like=scan)
io.write_volume(label_map, folder / f"{case}_label.nii.gz", like=scan)
(folder / "labels.json").write_text(json.dumps({str(v): n for v, n in names.items()}), encoding="utf-8")
manifest = ml.preprocess(folder, S.work / "annotated_dataset", modality=S.modality, min_mm2=S.min_mm2, progress=False)
print(sorted(p.name for p in folder.iterdir()))
print(f"{manifest['case'].nunique()} case, {len(manifest)} targets:", manifest.groupby("label_name").size().to_dict())

# %% [markdown]
# ## Next
# * `06_interactive_box_prompting` — draw the boxes and clicks with the mouse instead of typing them.
# * `02_prepare_custom_dataset` — your annotated folder as the settings' `data`.
