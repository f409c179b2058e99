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
# # 07 · A whole organ in 3D from one box
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/07_3d_volume_segmentation.ipynb)
#
# Segment a target through a real CT volume from **one box on one slice**: LiteMedSAM is a 2D model,
# so the mask is propagated slice by slice, each slice encoded at most once. Then several organs at
# once into a label map, a box from a RECIST measurement, and the result saved as NIfTI that
# overlays the scan in any viewer.
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
# ## 1. A scan, its label map and the model
# `io.read_volume` reads NIfTI, NRRD, MHA and DICOM (a file or a series folder) with SimpleITK and
# keeps the scan's **geometry** (spacing, origin, direction) beside the array. Arrays are `(z, y, x)`;
# spacing/origin stay in SimpleITK's `(x, y, z)` order.
#
# The scan is the first test case of the settings (`tutorial.case_paths`), and the target the
# label with the fewest targets in notebook 02's dataset (`tutorial.focus_label`). The model is the
# decoder you fine-tuned in notebook 04 if its `S.checkpoint` exists, else the pretrained model (the
# cell says so). The label map is only used to place the starting box and to score the result.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.io.display import radiological_flips
from medsam_lite.interactive import prompts
from medsam_lite.interactive.volume import VolumePredictor

checkpoint = tutorial.ensure_checkpoint(S, train=False)      # None: notebook 04 has not run
model = tutorial.load_model(S, checkpoint=checkpoint)
print("model:", model.name, "+ fine-tuned decoder" if checkpoint else "(pretrained)", checkpoint or "")

case, image_path, label_path = tutorial.case_paths(S)
scan, label_volume = tutorial.read_case(S, case)             # quick mode: a few slices around the target
label = label_volume.array
ds = tutorial.ensure_dataset(S)                              # notebook 02's dataset: label names, focus label
names = S.label_names(ds)                                    # the chosen labels only, in colour order
target = tutorial.focus_label(ds)
print(f"{case}: array (z, y, x) {scan.array.shape} {scan.array.dtype}; target {target} = {names[target]}")
print("spacing (x, y, z) mm", scan.spacing, " origin", np.round(scan.origin, 2))

# %% [markdown]
# ## 2. One box on one slice
# Pick the slice where the target is largest (`prompts.key_slice`) and draw a box on it (here: the
# tight box around the target from the label map; in your own data you read it off a viewer, or
# draw it with the widget of notebook 06). Boxes are **XYXY in the slice's array pixels**,
# `[x0, y0, x1, y1]` = column, row of the top-left and bottom-right pixels. Every figure is in
# radiological orientation and the CT soft-tissue display window (display only; the arrays and
# boxes are not flipped).

# %%
truth = label == target
slices_with_target = prompts.slices_with(truth)
key = prompts.key_slice(truth)
box = ml.box_from_mask(truth[key])
vp = VolumePredictor(scan, model, modality=S.modality)
print(f"target on slices {slices_with_target.min()}–{slices_with_target.max()}; key slice {key}, box {box}")
plotting.show_masks(scan.array[key], [truth[key]], boxes=[box], direction=scan.direction, modality=S.modality, colors=[names[target]],
                    legend=[f"{names[target]} (label)"], title=f"slice {key} + box");

# %% [markdown]
# ## 3. From one box to the whole target
# `VolumePredictor` normalizes the volume **once** (the same CT/MR presets as training, from
# `S.modality`) and encodes a slice the first time it is needed, keeping the embedding: every later
# target, box or call on that slice only runs the small mask decoder.
#
# `predict` segments the key slice from your box, then walks slice by slice up and down: each new
# box is the previous slice's mask box plus a margin. It stops where the target vanishes: the mask
# falls under `min_pixels`, or its mean intensity drifts more than `max_intensity_change` grey
# levels from the mask on your slice (the model has slid onto another tissue). The one-call form is
# `ml.predict_volume(scan, box, slice_index=key)`.

# %%
t0 = time.perf_counter()
mask = vp.predict(box, slice_index=key, progress=False)
seconds = time.perf_counter() - t0
segmented = prompts.slices_with(mask)
print(f"propagation: {seconds:.1f} s; {vp.encoder_calls} slices encoded; mask on slices "
      f"{segmented.min()}–{segmented.max()}, {int(mask.sum())} voxels ({mask.sum() * np.prod(scan.spacing) / 1000:.1f} ml)")

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
# only slices propagation did not visit are encoded. The ratio says how much of that one box and
# propagation keep.

# %%
per_slice = np.zeros_like(truth)
calls = vp.encoder_calls
for z in np.flatnonzero(truth.sum(axis=(1, 2)) >= 10):
    per_slice[z] = vp.predict_slice(int(z), ml.box_from_mask(truth[z]))[0][0]
d_prop, d_gt = ml.dice(mask, truth), ml.dice(per_slice, truth)
print(f"one box + propagation: {d_prop:.3f}   a GT box on every slice: {d_gt:.3f}   ratio {d_prop / d_gt:.2f}")
print("new encoder calls:", vp.encoder_calls - calls)

# %% [markdown]
# ## 5. Slice by slice: good, poor, leaked or stopped
# Every slice with target or mask is sorted into one of four kinds: *good* (Dice at least `0.7`),
# *poor* (some overlap, less), *leaked* (a mask where the label has none: the model slid onto a
# neighbour) and *stopped* (the label goes on, the mask does not); the cell says when no slice
# leaked or stopped. The figure shows the key slice, any leaked and stopped slice and the worst and best of the others — label on top, propagated
# mask below, in the label's colour; the box (dashed) on the key slice.

# %%
union = np.union1d(slices_with_target, segmented)
kind = {}
for z in union:
    d = ml.dice(mask[z], truth[z])
    kind[int(z)] = ("leaked" if not truth[z].any() else "stopped" if not mask[z].any()
                    else "good" if d >= 0.7 else "poor")
print({k: [z for z in kind if kind[z] == k] for k in ("good", "poor", "leaked", "stopped")})
if not any(k in ("leaked", "stopped") for k in kind.values()):
    print(f"no slice leaked and none stopped early: the mask covers slices {segmented.min()}–{segmented.max()}, "
          f"the label {slices_with_target.min()}–{slices_with_target.max()}")
others = [z for z in kind if kind[z] in ("good", "poor")]
others = [others[i] for i in np.argsort([ml.dice(mask[z], truth[z]) for z in others])]   # worst first
show = sorted({key, *[z for z in kind if kind[z] in ("leaked", "stopped")], *others[:2], *others[-2:]})[:8]
fig, axes = plt.subplots(2, len(show), figsize=(2.6 * len(show) + 1.5, 5.4), squeeze=False)
for col, z in enumerate(show):
    plotting.show_masks(scan.array[z], [truth[z]], ax=axes[0, col], direction=scan.direction, modality=S.modality, colors=[names[target]],
                        boxes=[box] if z == key else None,
                        title=f"z={z} label" + (" (key)" if z == key else ""))
    plotting.show_masks(scan.array[z], [mask[z]], ax=axes[1, col], direction=scan.direction, modality=S.modality, colors=[names[target]],
                        title=f"{kind[z]}, Dice {ml.dice(mask[z], truth[z]):.2f}")
fig.tight_layout()

# %% [markdown]
# ## 6. Several targets → one label map, and the LiteMedSAM challenge's 3D boxes
# A 3D box `[x0, y0, z0, x1, y1, z1]` (the LiteMedSAM challenge's format, all inclusive) fixes the
# key slice (its middle) and the slices propagation may visit; `prompts.box3d_from_mask` gives the
# tight one of a 3D mask. A `{label: prompt}` dict returns a label map; each prompt is a 3D box or a
# `(box, slice_index)` pair. Here: every **chosen** label of the settings present in the scan as a
# 3D box (a label map may hold many more classes: they are ignored), and the target from its box
# on the key slice. Slices already encoded are reused.

# %%
chosen = [v for v in names if v != target and (label == v).any()]
targets = {v: prompts.box3d_from_mask(label == v) for v in chosen}
targets[target] = (box, key)
calls = vp.encoder_calls
labels_pred = vp.predict(targets, progress=False)
print("label map", labels_pred.dtype, np.unique(labels_pred), "new encoder calls:", vp.encoder_calls - calls)
print("3D Dice per label:", {names[v]: round(ml.dice(labels_pred == v, label == v), 3) for v in targets})
shown = [v for v in names if v in targets]
plotting.show_masks(scan.array[key], [labels_pred[key] == v for v in shown], direction=scan.direction, modality=S.modality,
                    legend=[names[v] for v in shown],
                    title=f"label map, slice {key}");

# %% [markdown]
# ## 7. A box from a RECIST measurement
# Radiology reports often hold a RECIST **long axis**: a line across a target's longest diameter on
# one axial slice. `box_from_recist(p1, p2)` turns it into a box: along the line it spans the two
# end points; across it the width is `ratio` × the length (default `0.8`, a typical short/long
# ratio erring on the large side), or the measured short axis if you pass `short_axis=(q1, q2)`.
# Here the line is measured on the settings' first label (a compact organ on the sample: the
# spleen) on the slice where it is largest: `prompts.recist_from_mask` gives its longest diameter
# and the longest chord across it — what a reader would draw. The cell prints the diameter in mm.

# %%
organ = next(v for v in names if (label == v).any())
organ_mask = label == organ
z_r = prompts.key_slice(organ_mask)
(p1, p2), (q1, q2) = prompts.recist_from_mask(organ_mask[z_r])
long_mm = float(np.hypot(*((np.asarray(p2) - p1) * scan.spacing[:2])))
short_mm = float(np.hypot(*((np.asarray(q2) - q1) * scan.spacing[:2])))
print(f"{names[organ]} on slice {z_r}: long axis {long_mm:.0f} mm, short axis {short_mm:.0f} mm")
print("long axis only (ratio 0.8):", ml.box_from_recist(p1, p2, image_shape=organ_mask[z_r].shape))
recist_box = ml.box_from_recist(p1, p2, short_axis=(q1, q2), image_shape=organ_mask[z_r].shape)
print("long + short axis:         ", recist_box, "  tight box:", ml.box_from_mask(organ_mask[z_r]))
organ_pred = ml.predict_volume(vp, recist_box, slice_index=z_r, progress=False)
print(f"{names[organ]} from a RECIST line: 3D Dice {ml.dice(organ_pred, organ_mask):.3f}; "
      f"{vp.encoder_calls} slices encoded so far")
ax = plotting.show_masks(scan.array[z_r], [organ_pred[z_r]], boxes=[recist_box], direction=scan.direction, modality=S.modality,
                         legend=[names[organ]], title="RECIST line → box → mask")
flip_rows, flip_cols = radiological_flips(scan.direction)   # draw the measured lines where the display put them
h, w = organ_mask[z_r].shape
xs = [w - 1 - p[0] if flip_cols else p[0] for p in (p1, p2, q1, q2)]
ys = [h - 1 - p[1] if flip_rows else p[1] for p in (p1, p2, q1, q2)]
ax.plot(xs[:2], ys[:2], "w-", xs[2:], ys[2:], "w:", lw=2);

# %% [markdown]
# ## 8. Save the mask as NIfTI, aligned with the scan
# `io.write_volume(mask, path, like=scan)` copies the scan's spacing, origin and direction, so the
# file overlays on the scan in 3D Slicer or ITK-SNAP. Read it back to check.

# %%
out = io.write_volume(labels_pred, S.outputs / "07" / f"{case}_labels.nii.gz", like=scan)
back = io.read_volume(out)
print(out, back.array.shape, back.array.dtype)
print("same size, spacing, origin and direction as the scan:", back.same_geometry(scan))
print("same voxels:", np.array_equal(back.array, labels_pred))
assert back.same_geometry(scan) and np.array_equal(back.array, labels_pred)

# %% [markdown]
# ## Next
# * Fine-tune the decoder on your targets (notebooks 02–04), then run this notebook again: it
#   picks up `S.checkpoint`.
# * `06_interactive_box_prompting` — draw the key-slice box with the mouse.
# * `08_annotate_without_labels` — the same from a scan with no label map, saved for your viewer.
