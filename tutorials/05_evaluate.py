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
# # 05 · Evaluate: pretrained vs fine-tuned, per label
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/05_evaluate.ipynb)
#
# Score the pretrained and the fine-tuned model in 3D on the held-out test cases with the MedSAM
# paper's two metrics, per label — and decide, label by label, whether fine-tuning was worth it.
#
# **Time:** the evaluation cell prints how long it took.

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
# ## The metrics
# * **DSC** (Dice similarity coefficient): volume overlap, `2|P∩G| / (|P|+|G|)`.
# * **NSD** (normalized surface distance, "surface Dice"): the share of both surfaces lying within a
#   tolerance of the other — it rewards boundaries in the right place, which DSC barely sees on
#   large structures. medsam_lite computes it with DeepMind's `surface-distance` package, the
#   implementation used by the MedSAM paper. The tolerance here is `2 mm` (the CVPR 2025 challenge's),
#   and never below the in-plane pixel of the slices it is computed on (printed below): a tolerance
#   under one pixel only counts boundaries that are exactly right.
# * **The reference**: the sample's label maps are TotalSegmentator's model output (see
#   `data_samples/NOTICE.md`), not manual contours: every Dice here is agreement with that model.
#
# `evaluate` scores each **test case** in 3D: every target on every slice is segmented from its
# ground-truth box (read from the stored embeddings), the slices are stacked, and DSC/NSD are
# computed per case and label with the voxel spacing of the stored slices (the slice spacing, and
# in-plane the original spacing scaled by the resize).
#
# The fine-tuned decoder is notebook 04's `best.pt` (the epoch the guard chose); `finetune(...,
# resume=True)` reads the finished run back, or trains it first if it is missing (same settings as
# notebook 04, resumable).

# %%
import time

import pandas as pd

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.io.display import stored_for_display
from medsam_lite.interactive import prompts

ds = tutorial.ensure_dataset(S)
pretrained = tutorial.load_model(S)
# notebook 04's run: read back when finished (trained now if missing, same settings, resumable)
run = ml.finetune(ds, S.finetune_dir, pretrained, progress=False, **tutorial.finetune_kwargs(S))
checkpoint = run.best  # best.pt: the epoch the guard chose (epoch 0 = the pretrained decoder kept)
tuned = tutorial.load_model(S, checkpoint=checkpoint)
print("fine-tuned decoder:", checkpoint)

# %% [markdown]
# ## 1. Pretrained vs fine-tuned on the held-out cases

# %%
test = ds.split("test")
pixel_mm = float((test[["spacing_row", "spacing_col"]].max(axis=1) * test[["height", "width"]].max(axis=1)
                  / ds.image_size).max()) if len(test) else 0.0   # in-plane pixel of the stored slices
TOLERANCE_MM = max(2.0, round(pixel_mm, 2))
print(f"NSD tolerance {TOLERANCE_MM:g} mm (stored slices' in-plane pixel: {pixel_mm:.2f} mm)")
t0 = time.perf_counter()
per_case_0, per_label_0 = ml.evaluate(pretrained, ds, split="test", tolerance_mm=TOLERANCE_MM,
                                      max_slices_per_case=S.max_slices_per_case, progress=False)
per_case_1, per_label_1 = ml.evaluate(tuned, ds, split="test", tolerance_mm=TOLERANCE_MM,
                                      max_slices_per_case=S.max_slices_per_case, progress=False)
print(f"evaluated both models in {time.perf_counter() - t0:.0f} s")
nsd = f"nsd@{TOLERANCE_MM:g}mm"
table = pd.concat({"pretrained": per_label_0[["dsc", "nsd"]].rename(columns={"nsd": nsd}),
                   "fine-tuned": per_label_1[["dsc", "nsd"]].rename(columns={"nsd": nsd})}, axis=1)
table.round(3)

# %% [markdown]
# ## 2. Where fine-tuning helped, and where it did not
# One line per label: the change in 3D DSC on the test cases, called a gain or a loss when it is
# larger than `0.01`.

# %%
organs = [name for name in table.index if name != "mean"]
for name in organs:
    d0, d1 = table.loc[name, ("pretrained", "dsc")], table.loc[name, ("fine-tuned", "dsc")]
    verdict = "helped" if d1 - d0 > 0.01 else "hurt" if d1 - d0 < -0.01 else "no real change"
    print(f"{name:20s} DSC {d0:.3f} → {d1:.3f} ({d1 - d0:+.3f}): {verdict}")
print(f"mean over the labels: DSC {table.loc[organs, ('pretrained', 'dsc')].mean():.3f} → "
      f"{table.loc[organs, ('fine-tuned', 'dsc')].mean():.3f}")

# %% [markdown]
# ### The guard, checked on the test cases
# `finetune` chose `best.pt` on the **validation** case: the best mean validation Dice among the
# epochs that lose no label by more than `guard_tolerance` against the pretrained decoder (epoch 0).
# The test cases can still disagree. `run.held_out` puts, per label, the test DSC of the pretrained
# model and of the chosen checkpoint side by side with the validation change that chose it, and the
# sentence under the table is computed from these numbers: it names every label whose test DSC fell
# by more than the tolerance, and why the guard let it through (validation and test disagree, or no
# validation target of that label).

# %%
held, guard_text = run.held_out(per_label_0, per_label_1)
print(guard_text)
held.round(3)

# %% [markdown]
# **Reading it honestly.** On the sample the training, validation and test cases are slabs of **one
# patient**, so this table measures how well the decoder learned *this* patient's organs:
#
# * a label the pretrained model already segments well (a large organ with clear edges) has little
#   to gain, and a decoder trained on a few dozen targets of one patient can lose some of what it
#   knew — on another patient such a loss is usually larger, not smaller;
# * a label the pretrained model gets wrong (a small vessel, a low-contrast organ) is where
#   fine-tuning can help; a gain measured on the same patient is an upper bound for a new one;
# * a label the model misses entirely from a box usually stays missed after a few epochs on one
#   patient: the box does not say enough.
#
# The outcome also depends on what else is trained: in `bench/RESULTS.md` the same slabs, trained
# on six organs for twice the epochs, improved five organs on the held-out slab and lowered the liver.
#
# **What to do instead, or as well**: correct the masks the model gets wrong with clicks (notebook
# 08 — no training at all); fine-tune on **more cases from more patients** (notebook 08 turns
# annotated scans into a dataset) and hold out whole patients; fine-tune only the labels where the
# pretrained model fails (`labels=` in the settings) and keep the pretrained model for the others.

# %% [markdown]
# Per case and label (the rows behind the means):

# %%
per_case_1.merge(per_case_0[["case", "label_name", "dsc", "nsd"]], on=["case", "label_name"],
                 suffixes=("", "_pretrained")).round(3)

# %% [markdown]
# ## 3. Side by side
# For each test case, the slice where the label with the fewest targets is largest, segmented by
# both models from the same boxes: one colour per label (as in every notebook), radiological
# orientation, CT display window; below it, where each model is wrong (false positives / negatives).

# %%
names = S.label_names(ds)
for case in sorted(per_case_1["case"].unique()):
    before = ml.predict_case(pretrained, ds, case, max_slices_per_case=S.max_slices_per_case)
    after = ml.predict_case(tuned, ds, case, max_slices_per_case=S.max_slices_per_case)
    z = prompts.key_slice(before.truth[tutorial.focus_label(ds, among=before.truth)])
    shown = [v for v in names if v in before.truth]
    image = stored_for_display(before.image[z], ds.preset)
    direction = io.read_volume(tutorial.case_paths(S, case)[1]).direction
    truth = [before.truth[v][z] for v in shown]
    fig = plotting.compare(image, {"reference": truth, "pretrained": [before.pred[v][z] for v in shown],
                                   "fine-tuned": [after.pred[v][z] for v in shown]},
                           direction=direction, legend=[names[v] for v in shown])
    fig.suptitle(f"{case}, slice {before.slices[z]}", y=1.02)
    plotting.plot_error_maps(image, truth, {"pretrained": [before.pred[v][z] for v in shown],
                                            "fine-tuned": [after.pred[v][z] for v in shown]}, direction=direction)

# %% [markdown]
# ## Next
# * `07_3d_volume_segmentation` — one box → a whole organ in 3D, with the fine-tuned decoder.
# * `08_annotate_without_labels` — make label maps for more patients from boxes.
