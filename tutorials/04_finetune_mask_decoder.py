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
# # 04 · Fine-tune the mask decoder on a CPU
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/04_finetune_mask_decoder.ipynb)
#
# Train LiteMedSAM's **mask decoder** on the stored embeddings of the training cases, with
# MedSAM's loss and box jitter, and watch the validation Dice.
#
# **Time:** 5 epochs on all 8 sample subjects took 15.6 minutes for this notebook's full run on a
# 2-core Intel Xeon (5.5 minutes on an earlier, idle AMD machine; `tutorials/render_times.txt`, `bench/RESULTS.md`), plus the embeddings of notebook 03 if they
# are missing. Quick mode (`MEDSAM_LITE_QUICK=1`): 3 central slices per case, 2 epochs.

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
# ## The recipe
# MedSAM keeps the image encoder frozen and trains the decoder on box prompts. `finetune` does the
# same on the embeddings stored by notebook 03 (it computes any that are missing, and the dataset
# of notebook 02 is prepared here if it is not):
#
# * prompts: the ground-truth box of each target, each side enlarged by a random 0–20 px at 1024
#   scale (0–5 px for LiteMedSAM's 256 input) so the model tolerates loose boxes;
# * loss: soft Dice + binary cross-entropy; optimizer: Adam; only the **mask decoder** learns
#   (`train_prompt_encoder=True` adds the prompt encoder);
# * validation Dice after every epoch on held-out **training** cases (the test cases are never
#   seen); `best.pt` and `last.pt` are written atomically with the optimizer state, so
#   `resume=True` continues an interrupted run; a `seed` makes a CPU run repeatable.
#
# **Learning rate.** The MedSAM paper (and `finetune`'s default) uses `lr=1e-5`. On a CPU budget
# of a few minutes we use `lr=1e-4` (`S.lr`): on these data it reaches the same Dice in far fewer
# epochs. `max_minutes=` caps a run on a slow machine.

# %%
import time

import torch

import medsam_lite as ml
from medsam_lite import plotting
from medsam_lite.interactive import prompts

ds = tutorial.ensure_dataset(S)
model = ml.load_model()
print("fine-tuning settings:", tutorial.finetune_kwargs(S), "→", S.finetune_dir)

# %% [markdown]
# ## 1. Train
# `resume=True` makes re-running this cell safe: a finished run is simply read back, an interrupted
# one continues from `last.pt`.

# %%
t0 = time.perf_counter()
result = ml.finetune(ds, S.finetune_dir, model, **tutorial.finetune_kwargs(S))
print(f"finetune: {time.perf_counter() - t0:.0f} s (this call; a finished run is only read back)")
print("train cases:", result.train_cases, "| validation cases:", result.val_cases)
result.history.round(3)

# %% [markdown]
# ## 2. Loss and validation Dice
# `val_dice` is the mean Dice over the validation case's targets (2D, from tight boxes); the
# `val_dice_<label>` columns above split it by label.

# %%
plotting.plot_history(result.history);

# %% [markdown]
# ## 3. The checkpoint
# `best.pt` holds only the trained decoder weights (plus the optimizer state and the history) and
# loads with `torch.load(..., weights_only=True)`. `load_model(checkpoint=...)` applies it on top of
# the pretrained LiteMedSAM, and the result is an ordinary model for `Predictor`, `evaluate`, …

# %%
ckpt = torch.load(result.best, map_location="cpu", weights_only=True)
print("best epoch:", ckpt["epoch"], "| keys:", sorted(ckpt), "| tensors:", len(ckpt["model"]))
tuned = ml.load_model(checkpoint=result.best)
print("fine-tuned model:", tuned.name, "from", tuned.checkpoint)

# %% [markdown]
# ## 4. One held-out slice, before and after
# `predict_case` segments every target of a test case from its box, reading the stored embeddings
# (the pretrained and fine-tuned models share the encoder, so they share the embeddings). The
# figure shows the label with the fewest targets (`tutorial.focus_label`) on the slice where it
# is largest (`prompts.key_slice`).

# %%
test_case = sorted(c for c, split in ds.meta["split"].items() if split == "test")[0]
before = ml.predict_case(model, ds, test_case, max_slices_per_case=S.max_slices_per_case)
after = ml.predict_case(tuned, ds, test_case, max_slices_per_case=S.max_slices_per_case)
k = tutorial.focus_label(ds, among=before.truth)
z = prompts.key_slice(before.truth[k])
print(f"{test_case}, slice {before.slices[z]} (most {before.label_names[k]} pixels)")
for label, name in before.label_names.items():
    print(f"{name:20s} Dice on this slice: pretrained {ml.dice(before.pred[label][z], before.truth[label][z]):.3f}"
          f" → fine-tuned {ml.dice(after.pred[label][z], after.truth[label][z]):.3f}")
plotting.compare(before.image[z], {"ground truth": before.truth[k][z], "pretrained": before.pred[k][z],
                                   "fine-tuned": after.pred[k][z]});

# %% [markdown]
# ## Next
# `05_evaluate` measures DSC and NSD per case and label on every test case.
