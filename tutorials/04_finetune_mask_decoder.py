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
# # 04 · Fine-tune the mask decoder
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/04_finetune_mask_decoder.ipynb)
#
# Train LiteMedSAM's mask decoder on your labels, the MedSAM way, from the embeddings of notebook 03
# — and read honestly what it did, label by label.
#
# **Time:** the training cell prints how long it took (a finished run is only read back).

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
# ## The recipe
# MedSAM keeps the image encoder frozen and trains the decoder on box prompts. `finetune` does the
# same on the embeddings stored by notebook 03 (it computes any that are missing, and the dataset
# of notebook 02 is prepared here if it is not):
#
# * prompts: the ground-truth box of each target, each side enlarged by a random `0–20` px at 1024
#   scale (`0–5` px for LiteMedSAM's 256 input) so the model tolerates loose boxes;
# * loss: soft Dice + binary cross-entropy; optimizer: Adam; only the **mask decoder** learns
#   (`train_prompt_encoder=True` adds the prompt encoder);
# * **validation by case**: after every epoch, Dice on a held-out **training case** (the test cases
#   are never seen); `best.pt` is the epoch with the best validation Dice among those that lose no
#   label against the pretrained decoder (the guard, section 2). `best.pt` and `last.pt`
#   are written atomically with the optimizer state, so `resume=True` continues an interrupted run;
#   a `seed` makes a CPU run repeatable.
#
# Epochs, learning rate and batch size come from the settings file (`epochs`, `lr`, `batch_size`).
# The MedSAM paper (and `finetune`'s default) uses `lr=1e-5`; on a CPU budget `lr=1e-4` reaches
# the same Dice in far fewer epochs. `max_minutes=` caps a run on a slow machine.
#
# **What one patient can teach.** The sample's three cases are slabs of **one** CT: the model trains
# on one slab, validates on another and is tested on the third. Validation and test are then the
# same patient, so a gain here is an upper bound on what a new patient would see, and a loss is a
# warning: with so little data the decoder can unlearn what it knew about organs it already
# segmented well. Read the per-label curves, not only the mean.

# %%
import time

import torch

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.io.display import stored_for_display
from medsam_lite.interactive import prompts

ds = tutorial.ensure_dataset(S)
model = tutorial.load_model(S)
print("fine-tuning settings:", tutorial.finetune_kwargs(S), "→", S.finetune_dir)

# %% [markdown]
# ## 1. Train
# `resume=True` makes re-running this cell safe: a finished run is simply read back, an interrupted
# one continues from `last.pt`. `progress=False` keeps the stored output short; the history table
# has one row per epoch.

# %%
t0 = time.perf_counter()
result = ml.finetune(ds, S.finetune_dir, model, progress=False, **tutorial.finetune_kwargs(S))
print(f"finetune: {time.perf_counter() - t0:.0f} s (this call; a finished run is only read back)")
print("train cases:", result.train_cases, "| validation cases:", result.val_cases)
result.history.round(3)

# %% [markdown]
# ## 2. Loss and validation Dice, per label
# `val_dice` is the mean Dice over the validation case's targets (2D, from tight boxes); the
# dashed curves split it by label, in each label's colour. The dotted line is the pretrained model
# (epoch 0: `finetune` validates the starting decoder first), the star the epoch `best.pt` holds:
# the best mean validation Dice among the epochs that lose no label by more than `guard_tolerance`
# (default `0.01` Dice) against epoch 0 — epoch 0 itself when none qualifies. The lines under the figure say,
# per label, how that epoch compares with the pretrained model on the validation case, and why it was
# chosen (`result.summary`). With only two cases there is no validation case: `best.pt` is then the
# last epoch, and this says so.

# %%
names = S.label_names(ds)
plotting.plot_history(result.history, label_names=names, best_epoch=result.best_epoch);
if result.history["val_dice"].notna().any():
    best = result.best_row                               # best.pt's epoch (the guard's choice)
    first = result.history.set_index("epoch").loc[0]     # epoch 0: the pretrained decoder
    print(f"best epoch {result.best_epoch} (against epoch 0): " + ", ".join(
        f"{n} {first[f'val_dice_{n}']:.3f} → {best[f'val_dice_{n}']:.3f}" for n in names.values()
        if f"val_dice_{n}" in best and best[f"val_dice_{n}"] == best[f"val_dice_{n}"]))
print(result.summary)  # which epoch best.pt holds and why (or: no validation case, best.pt = the last epoch)

# %% [markdown]
# ## 3. The checkpoint
# `best.pt` holds only the trained decoder weights (plus the optimizer state and the history) and
# loads with `torch.load(..., weights_only=True)`. `load_model(checkpoint=...)` applies it on top of
# the pretrained LiteMedSAM, and the result is an ordinary model for `Predictor`, `evaluate`, …

# %%
ckpt = torch.load(result.best, map_location="cpu", weights_only=True)
print("best epoch:", ckpt["epoch"], "| keys:", sorted(ckpt), "| tensors:", len(ckpt["model"]))
tuned = tutorial.load_model(S, checkpoint=result.best)
print("fine-tuned model:", tuned.name, "from", tutorial.short_path(tuned.checkpoint))

# %% [markdown]
# ## 4. Did the guard hold on the held-out cases?
# The guard chose `best.pt` on the validation case; the test cases were never seen. `evaluate`
# scores both models in 3D on them (DSC per label), and `result.held_out` puts the two side by side
# with the validation change that chose `best.pt`. The sentence is computed from the table: it names
# any label whose test DSC is below the pretrained model's by more than the tolerance, and why the
# guard kept that checkpoint anyway (validation and test disagree — on one patient's slabs they
# often do — or the validation case has no target of that label). Notebook 05 adds NSD and per-case rows.

# %%
_, test_before = ml.evaluate(model, ds, split="test", max_slices_per_case=S.max_slices_per_case, progress=False)
_, test_after = ml.evaluate(tuned, ds, split="test", max_slices_per_case=S.max_slices_per_case, progress=False)
held, guard_text = result.held_out(test_before, test_after)
print(guard_text)
held.round(3)

# %% [markdown]
# ## 5. One held-out slice, before and after
# `predict_case` segments every target of a test case from its box, reading the stored embeddings
# (the pretrained and fine-tuned models share the encoder, so they share the embeddings). The
# slice shown is where the label with the fewest targets (`tutorial.focus_label`) is largest
# (`prompts.key_slice`); every label of that slice is drawn, each in its colour. The second figure
# shows **where** each model is wrong on that slice: false positives (predicted, not in the
# reference) and false negatives (missed). The reference labels of the sample are TotalSegmentator's
# model output (see `data_samples/NOTICE.md`), not manual contours: Dice here is agreement with it.

# %%
test_case = sorted(c for c, split in ds.meta["split"].items() if split == "test")[0]
before = ml.predict_case(model, ds, test_case, max_slices_per_case=S.max_slices_per_case)
after = ml.predict_case(tuned, ds, test_case, max_slices_per_case=S.max_slices_per_case)
k = tutorial.focus_label(ds, among=before.truth)
z = prompts.key_slice(before.truth[k])
shown = [v for v in names if v in before.truth]
print(f"{test_case}, slice {before.slices[z]} (most {before.label_names[k]} pixels)")
for v in shown:
    print(f"{names[v]:20s} Dice on this slice: pretrained {ml.dice(before.pred[v][z], before.truth[v][z]):.3f}"
          f" → fine-tuned {ml.dice(after.pred[v][z], after.truth[v][z]):.3f}")
direction = io.read_volume(tutorial.case_paths(S, test_case)[1]).direction
image = stored_for_display(before.image[z], ds.preset)   # CT: soft-tissue display window
truth = [before.truth[v][z] for v in shown]
plotting.compare(image, {"reference": truth, "pretrained": [before.pred[v][z] for v in shown],
                         "fine-tuned": [after.pred[v][z] for v in shown]},
                 direction=direction, legend=[names[v] for v in shown]);
plotting.plot_error_maps(image, truth, {"pretrained": [before.pred[v][z] for v in shown],
                                        "fine-tuned": [after.pred[v][z] for v in shown]}, direction=direction);

# %% [markdown]
# ## Next
# `05_evaluate` measures DSC and NSD per case and label in 3D on every test case, and says per
# label where fine-tuning helped and where it did not.
