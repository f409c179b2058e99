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
# Train LiteMedSAM's **mask decoder** on the stored embeddings of the sample dataset's training subjects, with MedSAM's loss and box jitter, and watch the validation Dice.

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
# ## The recipe
# MedSAM keeps the image encoder frozen and trains the decoder on box prompts. `finetune` does the
# same on the embeddings stored by notebook 03 (it computes any that are missing):
#
# * prompts: the ground-truth box of each target, each side enlarged by a random 0–20 px at 1024
#   scale (0–5 px for LiteMedSAM's 256 input) so the model tolerates loose boxes;
# * loss: soft Dice + binary cross-entropy; optimizer: Adam; only the **mask decoder** learns
#   (`train_prompt_encoder=True` adds the prompt encoder);
# * validation Dice after every epoch on held-out **training** cases (the test cases `sub-07` and
#   `sub-08` are never seen); `best.pt` and `last.pt` are written atomically with the optimizer state,
#   so `resume=True` continues an interrupted run; a `seed` makes a CPU run repeatable.
#
# **Learning rate.** The MedSAM paper (and `finetune`'s default) uses `lr=1e-5`. On a CPU budget
# of a few minutes we use `lr=1e-4`: on these data it reaches the same Dice in far fewer epochs.
#
# **Quick mode** (`MEDSAM_LITE_QUICK=1`, set in CI): 3 central slices per case and 2 epochs, to
# check that everything runs; the numbers mean little. Unset it for the real run (all slices,
# 5 epochs: about 8 minutes on an idle 2-core CPU, longer on a busy one — `max_minutes=` caps it).

# %%
import os
import time

import torch

import medsam_lite as ml
from medsam_lite import plotting

torch.set_num_threads(2)
QUICK = os.environ.get("MEDSAM_LITE_QUICK") == "1"
MAX_SLICES = 3 if QUICK else None
EPOCHS = 2 if QUICK else 5
OUT = "work/finetune_quick" if QUICK else "work/finetune"

model = ml.load_model()

# %% [markdown]
# ## 1. Train
# `resume=True` makes re-running this cell safe: a finished run is simply read back, an interrupted
# one continues from `last.pt`.

# %%
t0 = time.perf_counter()
result = ml.finetune("work/sample_dataset", OUT, model, epochs=EPOCHS, lr=1e-4, batch_size=8, seed=0,
                     max_slices_per_case=MAX_SLICES, resume=True)
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
# (the pretrained and fine-tuned models share the encoder, so they share the embeddings).

# %%
before = ml.predict_case(model, "work/sample_dataset", "sub-07", max_slices_per_case=MAX_SLICES)
after = ml.predict_case(tuned, "work/sample_dataset", "sub-07", max_slices_per_case=MAX_SLICES)
z = int(before.truth[3].sum(axis=(1, 2)).argmax())   # the slice with most ventricle pixels
for k, name in before.label_names.items():
    print(f"{name:20s} Dice on this slice: pretrained {ml.dice(before.pred[k][z], before.truth[k][z]):.3f}"
          f" → fine-tuned {ml.dice(after.pred[k][z], after.truth[k][z]):.3f}")
plotting.compare(before.image[z], {"ground truth": before.truth[3][z], "pretrained": before.pred[3][z],
                                   "fine-tuned": after.pred[3][z]});

# %% [markdown]
# ## Next
# `05_evaluate` measures DSC and NSD per case and label on both test subjects.
