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
# # 05 · Evaluate: DSC and NSD, pretrained vs fine-tuned
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/05_evaluate.ipynb)
#
# Measure **Dice** and **normalized surface distance** per case and label on the held-out cases,
# for the pretrained and the fine-tuned LiteMedSAM, and look at the masks.
#
# **Time:** about 3 minutes on a 2-core CPU once notebooks 03–04 have run (measured: 182 s) (`evaluate` reads the stored
# embeddings). Opened first, it prepares the dataset, embeds the slices and fine-tunes the decoder
# (about 10 minutes on an idle 2-core CPU).

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
# ## The metrics
# * **DSC** (Dice similarity coefficient): volume overlap, `2|P∩G| / (|P|+|G|)`.
# * **NSD** (normalized surface distance, "surface Dice"): the share of both surfaces lying within a
#   tolerance (here 1 mm) of the other — it rewards boundaries in the right place, which DSC barely
#   sees on large structures. medsam_lite computes it with DeepMind's `surface-distance` package,
#   the implementation used by the MedSAM paper.
#
# `evaluate` scores each **test case** in 3D: every target on every slice is segmented from its
# ground-truth box (read from the stored embeddings), the slices are stacked, and DSC/NSD are
# computed per case and label with the voxel spacing of the stored slices (the slice spacing, and
# in-plane the original spacing scaled by the resize).
#
# The fine-tuned decoder is notebook 04's `S.checkpoint`; `tutorial.ensure_checkpoint` trains it
# first if it is missing (same settings as notebook 04, resumable).

# %%
import pandas as pd

import medsam_lite as ml
from medsam_lite import plotting
from medsam_lite.interactive import prompts

ds = tutorial.ensure_dataset(S)
pretrained = ml.load_model()
checkpoint = tutorial.ensure_checkpoint(S, pretrained)
tuned = ml.load_model(checkpoint=checkpoint)
print("fine-tuned decoder:", checkpoint)

# %% [markdown]
# ## 1. Pretrained vs fine-tuned on the held-out cases

# %%
per_case_0, per_label_0 = ml.evaluate(pretrained, ds, split="test", tolerance_mm=1.0,
                                      max_slices_per_case=S.max_slices_per_case)
per_case_1, per_label_1 = ml.evaluate(tuned, ds, split="test", tolerance_mm=1.0,
                                      max_slices_per_case=S.max_slices_per_case)
table = pd.concat({"pretrained": per_label_0[["dsc", "nsd"]], "fine-tuned": per_label_1[["dsc", "nsd"]]}, axis=1)
table.round(3)

# %% [markdown]
# Per case and label (the rows behind the means):

# %%
per_case_1.merge(per_case_0[["case", "label_name", "dsc", "nsd"]], on=["case", "label_name"],
                 suffixes=("", "_pretrained")).round(3)

# %% [markdown]
# ## 2. Side by side
# For each test case, the slice where the label with the fewest targets is largest, segmented by
# both models from the same boxes (one colour per label).

# %%
for case in sorted(per_case_1["case"].unique()):
    before = ml.predict_case(pretrained, ds, case, max_slices_per_case=S.max_slices_per_case)
    after = ml.predict_case(tuned, ds, case, max_slices_per_case=S.max_slices_per_case)
    z = prompts.key_slice(before.truth[tutorial.focus_label(ds, among=before.truth)])
    labels = sorted(before.truth)
    fig = plotting.compare(before.image[z], {
        "ground truth": [before.truth[k][z] for k in labels],
        "pretrained": [before.pred[k][z] for k in labels],
        "fine-tuned": [after.pred[k][z] for k in labels],
    })
    fig.suptitle(f"{case}, slice {before.slices[z]}: " + ", ".join(before.label_names[k] for k in labels), y=1.02)

# %% [markdown]
# ## What to expect
# On the sample data with the full run (all slices, 5 epochs) we measured on a 2-core CPU
# (`bench/RESULTS.md`, `bench/finetune_sample.py`): mean test DSC 0.42 → 0.78 (white matter
# 0.46 → 0.77, grey matter 0.66 → 0.81, lateral ventricles 0.15 → 0.77) and mean NSD 0.38 → 0.75.
# In quick mode the model saw only a handful of slices for two epochs, so the gain is small and
# noisy.
