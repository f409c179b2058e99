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
# # 07 · A whole 3D scan from one box
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/07_3d_volume_segmentation.ipynb)
#
# Segment the lateral ventricles through a brain MRI volume from **one box on one slice**: slice-by-slice propagation with cached embeddings, 3D Dice and NSD, a label map of several targets, a box from a RECIST line, and the mask saved as NIfTI aligned with the scan.

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
# ## 1. A scan, its label map and the model
# `io.read_volume` reads NIfTI, NRRD, MHA and DICOM (a file or a series folder) with SimpleITK and
# keeps the scan's **geometry** (spacing, origin, direction) beside the array. Arrays are `(z, y, x)`;
# spacing/origin stay in SimpleITK's `(x, y, z)` order.
#
# The model is the bundled LiteMedSAM, or the decoder you fine-tuned in notebook 04 if its
# `work/finetune/best.pt` exists (any `load_model(checkpoint=...)` model works the same way).
#
# The sample is an axial brain MRI (a synthetic variant of the MNI ICBM152 template, 1 × 1 × 4 mm)
# with a label map: 1 = white matter, 2 = grey matter, 3 = lateral ventricles. Subject `sub-08` is
# the one no default was tuned on. The label map is only used to place the starting box and to score
# the result.

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, plotting, samples
from medsam_lite.volume import VolumePredictor

torch.set_num_threads(int(os.environ.get("MEDSAM_LITE_THREADS", "2")))  # this CPU's cores
QUICK = os.environ.get("MEDSAM_LITE_QUICK") == "1"   # CI: the label map stays on slices already encoded
TUNED = Path("work/finetune/best.pt")                # written by notebook 04 (full run)
model = ml.load_model(checkpoint=TUNED) if TUNED.exists() else ml.load_model()
print("model:", model.checkpoint)

scan = io.read_volume(samples.brain_mri_dir() / "sub-08.nii.gz")
label = io.read_volume(samples.brain_mri_dir() / "sub-08_label.nii.gz").array
print("array (z, y, x)", scan.array.shape, scan.array.dtype)
print("spacing (x, y, z) mm", scan.spacing, " origin", np.round(scan.origin, 2))

# %% [markdown]
# ## 2. One box on one slice
# Pick the slice in the middle of the target and draw a box on it (here: the tight box around the
# ventricles from the label map; in your own data you read it off a viewer, or draw it with the widget
# of notebook 06). Boxes are **XYXY in the slice's pixels**, `[x0, y0, x1, y1]` = column, row of the
# top-left and bottom-right pixels.

# %%
truth = label == 3                                 # lateral ventricles
slices_with_target = np.flatnonzero(truth.any(axis=(1, 2)))
key = int(slices_with_target.min() + (slices_with_target.max() - slices_with_target.min()) // 2)
box = ml.box_from_mask(truth[key])
print(f"ventricles on slices {slices_with_target.min()}–{slices_with_target.max()}; key slice {key}, box {box}")
plotting.show_masks(scan.array[key], boxes=[box], title=f"slice {key} + box");

# %% [markdown]
# ## 3. From one box to the whole target
# `VolumePredictor` normalizes the volume **once** (the same MR/CT presets as training) and encodes a
# slice the first time it is needed, keeping the embedding: every later target, box or call on that
# slice only runs the small mask decoder.
#
# `predict` segments the key slice from your box, then walks slice by slice up and down: each new
# box is the previous slice's mask box plus a margin (1 px + 5 % of its side). It stops where the
# target vanishes: the mask falls under `min_pixels`, or its mean intensity drifts more than
# `max_intensity_change` grey levels from the mask on your slice (the model has slid onto another
# tissue). The one-call form is `ml.predict_volume(scan, box, slice_index=key)`.

# %%
vp = VolumePredictor(scan, model)
t0 = time.perf_counter()
mask = vp.predict(box, slice_index=key)
seconds = time.perf_counter() - t0
segmented = np.flatnonzero(mask.any(axis=(1, 2)))
print(f"{seconds:.0f} s; {vp.encoder_calls} slices encoded; mask on slices {segmented.min()}–{segmented.max()}, "
      f"{int(mask.sum())} voxels ({mask.sum() * np.prod(scan.spacing) / 1000:.1f} ml)")

# %% [markdown]
# ## 4. 3D Dice and NSD against the label
# Both are computed on the whole volume. NSD (normalized surface distance, the MedSAM paper's
# second metric) counts the share of both surfaces within a tolerance of the other; it needs the
# voxel size in **array order** `(z, y, x)`: `scan.spacing_zyx`.

# %%
print(f"3D Dice {ml.dice(mask, truth):.3f}   NSD@2mm {ml.nsd(mask, truth, scan.spacing_zyx, tolerance_mm=2.0):.3f}")
print("per slice:", {int(z): round(ml.dice(mask[z], truth[z]), 2) for z in slices_with_target})

# %% [markdown]
# How good is that *for this model*? Compare with the best a 2D model can do with help: a tight
# ground-truth box on **every** slice (what `evaluate()` measures). Same model, same embeddings, so no
# slice is encoded again. The bundled, not fine-tuned LiteMedSAM is poor on the ventricles (Dice
# ≈ 0.2 either way, so the ratio says little, and its masks wander past the ventricles). With the
# decoder fine-tuned in notebook 04, or one fine-tuned on two subjects' ventricles only, the same
# code gives per-slice boxes ≈ 0.7–0.8 and one box ≈ 90 % of that
# (`bench/bench_volume.py --checkpoint …`).

# %%
per_slice = np.zeros_like(truth)
calls = vp.encoder_calls
for z in np.flatnonzero(truth.sum(axis=(1, 2)) >= 10):
    per_slice[z] = vp.predict_slice(int(z), ml.box_from_mask(truth[z]))[0][0]
d_prop, d_gt = ml.dice(mask, truth), ml.dice(per_slice, truth)
print(f"one box + propagation: {d_prop:.3f}   a GT box on every slice: {d_gt:.3f}   ratio {d_prop / d_gt:.2f}")
print("new encoder calls:", vp.encoder_calls - calls)

# %% [markdown]
# ## 5. Overlays on a few slices
# Ground truth in blue, the propagated mask in orange; the box is drawn on the key slice.

# %%
show = np.linspace(slices_with_target.min(), slices_with_target.max(), 5).round().astype(int)
fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3.6))
for ax, z in zip(axes, show):
    plotting.show_masks(vp.slice_image(int(z)), [truth[z], mask[z]], ax=ax,
                        boxes=[box] if z == key else None, title=f"z={z}  Dice {ml.dice(mask[z], truth[z]):.2f}")
fig.tight_layout()

# %% [markdown]
# ## 6. Several targets → one label map, and the LiteMedSAM challenge's 3D boxes
# A 3D box `[x0, y0, z0, x1, y1, z1]` (the LiteMedSAM challenge's format, all inclusive) fixes the
# key slice (its middle) and the slices propagation may visit. A `{label: prompt}` dict returns a label
# map; each prompt is a 3D box or a `(box, slice_index)` pair. Slices already encoded are reused
# (in CI — `MEDSAM_LITE_QUICK=1` — the white-matter box is cut to them; the full run encodes the rest).

# %%
wm = label == 1
wm_slices = np.flatnonzero(wm.any(axis=(1, 2)))
z0, z1 = (min(vp.embeddings), max(vp.embeddings)) if QUICK else (int(wm_slices.min()), int(wm_slices.max()))
wm_box = ml.box_from_mask(wm[key])
targets = {1: [wm_box[0], wm_box[1], z0, wm_box[2], wm_box[3], z1],   # white matter: a 3D box
           3: (box, key)}                                              # ventricles: box on the key slice
calls = vp.encoder_calls
labels_pred = vp.predict(targets)
print("label map", labels_pred.dtype, np.unique(labels_pred), "new encoder calls:", vp.encoder_calls - calls)
wm_truth = wm.copy()
wm_truth[:z0] = wm_truth[z1 + 1:] = False
print(f"white matter 3D Dice (slices {z0}–{z1}): {ml.dice(labels_pred == 1, wm_truth):.3f}")
plotting.show_masks(vp.slice_image(key), [labels_pred[key] == 1, labels_pred[key] == 3],
                    labels=["WM", "ventricles"], title=f"label map, slice {key}");

# %% [markdown]
# ## 7. A box from a RECIST measurement
# Radiology reports often hold a RECIST **long axis**: a line across a target's longest diameter on
# one slice. `box_from_recist(p1, p2)` turns it into a box: along the line it spans the two end
# points; across it the width is `ratio` × the length (default 0.8, a typical short/long ratio erring
# on the large side), or the measured short axis if you pass `short_axis=(q1, q2)`. RECIST is meant
# for compact targets (a lesion, an organ), not for a pair like the two ventricles; here the long
# axis is the longest front-to-back line over the whole brain on the key slice, the short axis the
# line across it halfway.

# %%
brain = label > 0
top = brain[key].argmax(axis=0)                                   # first brain row of each column
bottom = brain[key].shape[0] - 1 - brain[key][::-1].argmax(axis=0)  # last one
column = int(np.argmax(np.where(brain[key].any(axis=0), bottom - top, -1)))
p1, p2 = (column, top[column]), (column, bottom[column])       # long axis: front to back, (x, y)
row = (top[column] + bottom[column]) // 2                       # short axis: across, halfway
cols = np.flatnonzero(brain[key][row])
q1, q2 = (cols.min(), row), (cols.max(), row)
print("long axis only (ratio 0.8):", ml.box_from_recist(p1, p2, image_shape=brain[key].shape))
recist_box = ml.box_from_recist(p1, p2, short_axis=(q1, q2), image_shape=brain[key].shape)
print("long + short axis:         ", recist_box, "  tight box:", ml.box_from_mask(brain[key]))
brain_mask = ml.predict_volume(vp, recist_box, slice_index=key)
print(f"whole brain from a RECIST line: 3D Dice {ml.dice(brain_mask, brain):.3f}; {vp.encoder_calls} slices encoded so far")
ax = plotting.show_masks(vp.slice_image(key), [brain_mask[key]], boxes=[recist_box], title="RECIST line → box → mask")
ax.plot([p1[0], p2[0]], [p1[1], p2[1]], "w-", [q1[0], q2[0]], [q1[1], q2[1]], "w--", lw=2);

# %% [markdown]
# ## 8. Save the mask as NIfTI, aligned with the scan
# `io.write_volume(mask, path, like=scan)` copies the scan's spacing, origin and direction, so the
# file overlays on the scan in 3D Slicer or ITK-SNAP. Read it back to check.

# %%
out = io.write_volume(mask, Path("runs") / "07" / "sub-08_ventricles.nii.gz", like=scan)
back = io.read_volume(out)
print(out, back.array.shape, back.array.dtype)
print("same size, spacing, origin and direction as the scan:", back.same_geometry(scan))
print("same voxels:", np.array_equal(back.array.astype(bool), mask))
assert back.same_geometry(scan) and np.array_equal(back.array.astype(bool), mask)

# %% [markdown]
# ## Next
# * Fine-tune the decoder on your targets (`ml.finetune`), then `load_model(checkpoint=...)` here.
# * `06_interactive_box_prompting` — draw the key-slice box with the mouse.
