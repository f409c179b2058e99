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
# Segment a target through a 3D scan from **one box on one slice**: slice-by-slice propagation
# with cached embeddings, 3D Dice and NSD, a label map of several targets, a box from a RECIST
# line, and the mask saved as NIfTI aligned with the scan.
#
# **Time:** about 3 minutes on a 2-core CPU for the sample scan (the encoder runs once per slice
# it visits, ~1–2 s each); seconds on a GPU. Quick mode (`MEDSAM_LITE_QUICK=1`) crops the scan to
# a few slices around the target: the same steps on less data.

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
# ## Settings: the only cell to change for your own data
# Everything below is derived from these settings: point `data` at your folder of scans + label
# maps (the layouts are in notebook 02), say whether it is CT, which cases to hold out and which
# labels to use. Outputs go to `work`. (Environment variables such as `MEDSAM_LITE_DATA` override
# this cell — that is how the tests run these notebooks on a CT dataset; see `medsam_lite.tutorial`.)

# %%
from medsam_lite import samples, tutorial

S = tutorial.settings(
    data=samples.brain_mri_dir(),      # your folder of scans + label maps
    modality="MR",                     # "CT" for scans in Hounsfield units
    test_cases=["sub-07", "sub-08"],   # held-out cases; None = a seeded 20 % of the cases
    labels=None,                       # None = every label; or e.g. {1: "liver", 2: "tumour"}
    work="work",                       # output folder: dataset, embeddings, checkpoints, masks
)

# %% [markdown]
# ## 1. A scan, its label map and the model
# `io.read_volume` reads NIfTI, NRRD, MHA and DICOM (a file or a series folder) with SimpleITK and
# keeps the scan's **geometry** (spacing, origin, direction) beside the array. Arrays are `(z, y, x)`;
# spacing/origin stay in SimpleITK's `(x, y, z)` order.
#
# The scan is the first test case of the settings (`tutorial.case_paths`), and the target the
# label with the fewest targets in notebook 02's dataset (on the samples: the lateral ventricles).
# The model is the decoder you fine-tuned in notebook 04 if its `S.checkpoint` exists, else the
# bundled LiteMedSAM (the cell says so). The label map is only used to place the starting box and
# to score the result.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.interactive import prompts
from medsam_lite.interactive.volume import VolumePredictor

checkpoint = tutorial.ensure_checkpoint(S, train=False)      # None: notebook 04 has not run
model = ml.load_model(checkpoint=checkpoint)
print("model:", model.checkpoint)

case, image_path, label_path = tutorial.case_paths(S)
scan, label_volume = tutorial.read_case(S, case)             # quick mode: a few slices around the target
label = label_volume.array
ds = tutorial.ensure_dataset(S)                              # notebook 02's dataset: label names, focus label
target, names = tutorial.focus_label(ds), ds.meta["labels"]
print(f"{case}: array (z, y, x) {scan.array.shape} {scan.array.dtype}; target {target} = {names[str(target)]}")
print("spacing (x, y, z) mm", scan.spacing, " origin", np.round(scan.origin, 2))

# %% [markdown]
# ## 2. One box on one slice
# Pick the slice where the target is largest (`prompts.key_slice`) and draw a box on it (here: the
# tight box around the target from the label map; in your own data you read it off a viewer, or
# draw it with the widget of notebook 06). Boxes are **XYXY in the slice's pixels**,
# `[x0, y0, x1, y1]` = column, row of the top-left and bottom-right pixels.

# %%
truth = label == target
slices_with_target = prompts.slices_with(truth)
key = prompts.key_slice(truth)
box = ml.box_from_mask(truth[key])
print(f"target on slices {slices_with_target.min()}–{slices_with_target.max()}; key slice {key}, box {box}")
plotting.show_masks(scan.array[key], boxes=[box], title=f"slice {key} + box");

# %% [markdown]
# ## 3. From one box to the whole target
# `VolumePredictor` normalizes the volume **once** (the same MR/CT presets as training, from
# `S.modality`) and encodes a slice the first time it is needed, keeping the embedding: every later
# target, box or call on that slice only runs the small mask decoder.
#
# `predict` segments the key slice from your box, then walks slice by slice up and down: each new
# box is the previous slice's mask box plus a margin (1 px + 5 % of its side). It stops where the
# target vanishes: the mask falls under `min_pixels`, or its mean intensity drifts more than
# `max_intensity_change` grey levels from the mask on your slice (the model has slid onto another
# tissue). The one-call form is `ml.predict_volume(scan, box, slice_index=key)`.

# %%
vp = VolumePredictor(scan, model, modality=S.modality)
t0 = time.perf_counter()
mask = vp.predict(box, slice_index=key)
seconds = time.perf_counter() - t0
segmented = prompts.slices_with(mask)
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
# ground-truth box on **every** slice (what `evaluate()` measures). Same model, same embeddings, so
# only slices propagation did not visit are encoded. The bundled, not fine-tuned LiteMedSAM is poor
# on the sample's ventricles (Dice ≈ 0.2 either way, so the ratio says little, and its masks wander
# past the ventricles). With the decoder fine-tuned in notebook 04 the same code gives per-slice
# boxes ≈ 0.7–0.8 and one box ≈ 90 % of that (`bench/bench_volume.py --checkpoint …`).

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
show = np.unique(np.linspace(slices_with_target.min(), slices_with_target.max(), 5).round().astype(int))
fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3.6), squeeze=False)
for ax, z in zip(axes[0], show):
    plotting.show_masks(vp.slice_image(int(z)), [truth[z], mask[z]], ax=ax,
                        boxes=[box] if z == key else None, title=f"z={z}  Dice {ml.dice(mask[z], truth[z]):.2f}")
fig.tight_layout()

# %% [markdown]
# ## 6. Several targets → one label map, and the LiteMedSAM challenge's 3D boxes
# A 3D box `[x0, y0, z0, x1, y1, z1]` (the LiteMedSAM challenge's format, all inclusive) fixes the
# key slice (its middle) and the slices propagation may visit; `prompts.box3d_from_mask` gives the
# tight one of a 3D mask. A `{label: prompt}` dict returns a label map; each prompt is a 3D box or a
# `(box, slice_index)` pair. Here: every other label of the case as a 3D box, and the target from
# its box on the key slice. Slices already encoded are reused.

# %%
others = [int(v) for v in np.unique(label) if v not in (0, target)]
targets = {v: prompts.box3d_from_mask(label == v) for v in others}
targets[target] = (box, key)
calls = vp.encoder_calls
labels_pred = vp.predict(targets)
print("label map", labels_pred.dtype, np.unique(labels_pred), "new encoder calls:", vp.encoder_calls - calls)
print("3D Dice per label:", {names[str(v)]: round(ml.dice(labels_pred == v, label == v), 3) for v in targets})
plotting.show_masks(vp.slice_image(key), [labels_pred[key] == v for v in targets],
                    labels=[names[str(v)] for v in targets], title=f"label map, slice {key}");

# %% [markdown]
# ## 7. A box from a RECIST measurement
# Radiology reports often hold a RECIST **long axis**: a line across a target's longest diameter on
# one slice. `box_from_recist(p1, p2)` turns it into a box: along the line it spans the two end
# points; across it the width is `ratio` × the length (default 0.8, a typical short/long ratio erring
# on the large side), or the measured short axis if you pass `short_axis=(q1, q2)`. RECIST is meant
# for compact targets (a lesion, an organ), not for a pair like the two ventricles, so here the line
# is measured on the whole foreground (every label) of the key slice: `prompts.recist_from_mask`
# gives the longest diameter and the longest chord across it — what a reader would draw.

# %%
foreground = label > 0
(p1, p2), (q1, q2) = prompts.recist_from_mask(foreground[key])
print("long axis", np.round(p1, 1), "→", np.round(p2, 1), "| short axis", np.round(q1, 1), "→", np.round(q2, 1))
print("long axis only (ratio 0.8):", ml.box_from_recist(p1, p2, image_shape=foreground[key].shape))
recist_box = ml.box_from_recist(p1, p2, short_axis=(q1, q2), image_shape=foreground[key].shape)
print("long + short axis:         ", recist_box, "  tight box:", ml.box_from_mask(foreground[key]))
fg_mask = ml.predict_volume(vp, recist_box, slice_index=key)
print(f"foreground from a RECIST line: 3D Dice {ml.dice(fg_mask, foreground):.3f}; {vp.encoder_calls} slices encoded so far")
ax = plotting.show_masks(vp.slice_image(key), [fg_mask[key]], boxes=[recist_box], title="RECIST line → box → mask")
ax.plot([p1[0], p2[0]], [p1[1], p2[1]], "w-", [q1[0], q2[0]], [q1[1], q2[1]], "w--", lw=2);

# %% [markdown]
# ## 8. Save the mask as NIfTI, aligned with the scan
# `io.write_volume(mask, path, like=scan)` copies the scan's spacing, origin and direction, so the
# file overlays on the scan in 3D Slicer or ITK-SNAP. Read it back to check.

# %%
out = io.write_volume(mask, S.outputs / "07" / f"{case}_label{target}.nii.gz", like=scan)
back = io.read_volume(out)
print(out, back.array.shape, back.array.dtype)
print("same size, spacing, origin and direction as the scan:", back.same_geometry(scan))
print("same voxels:", np.array_equal(back.array.astype(bool), mask))
assert back.same_geometry(scan) and np.array_equal(back.array.astype(bool), mask)

# %% [markdown]
# ## Next
# * Fine-tune the decoder on your targets (notebooks 02–04), then run this notebook again: it
#   picks up `S.checkpoint`.
# * `06_interactive_box_prompting` — draw the key-slice box with the mouse.
