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
# # 03 · Precompute the image embeddings once
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/03_precompute_embeddings.ipynb)
#
# Run LiteMedSAM's image encoder once per stored slice and keep the result on disk: fine-tuning
# (notebook 04), evaluation (05) and every new box then read it back instead of encoding again.
#
# **Time:** the embedding cell prints how long it took; a second call takes a fraction of a second.

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
# ## Why
# The image encoder is almost all of LiteMedSAM's compute; the prompt encoder and mask decoder that
# turn a box into a mask are small. The encoder stays **frozen** when we fine-tune, so its output
# for a slice never changes: compute it once, store it, and let training and every new box read it
# back. That is what makes fine-tuning on a CPU practical.
#
# This notebook uses the dataset of notebook 02 (`S.dataset`); it is prepared here if missing.

# %%
import time

import matplotlib.pyplot as plt

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.io.display import radiological_flips, stored_for_display
from medsam_lite.interactive import prompts

ds = tutorial.ensure_dataset(S)
model = tutorial.load_model(S)
print(len(ds.slices), "slices in", ds.slices["case"].nunique(), "cases | slices per case embedded:",
      S.max_slices_per_case or "all")

# %% [markdown]
# ## 1. Embed every slice once
# `embed` writes the store beside the dataset, in `embeddings/<model>/`, as a memory-mapped `.npy`
# file (float16 by default: one `256×64×64` embedding per slice): reading one embedding does not load
# the others into memory. `progress=True` (the default) shows a progress bar and the disk estimate;
# here the cell prints the time and the size instead.

# %%
t0 = time.perf_counter()
store = ml.embed(ds, model, max_slices_per_case=S.max_slices_per_case, progress=False)
t_embed = time.perf_counter() - t0
print(f"{int(store.done.sum())} of {len(store)} slices stored; this call took {t_embed:.1f} s")
print("file:", store.path / "embeddings.npy", store.embeddings.shape, store.embeddings.dtype,
      f"{store.embeddings.nbytes / 2**20:.0f} MiB")

# %% [markdown]
# ## 2. A second call is free
# Everything already stored is reused; an interrupted run (Ctrl-C, a restarted kernel) continues
# where it stopped — an entry only counts as done once it is completely written.

# %%
t0 = time.perf_counter()
store = ml.embed(ds, model, max_slices_per_case=S.max_slices_per_case, progress=False)
print(f"second call: {time.perf_counter() - t0:.2f} s")

# %% [markdown]
# ## 3. The signature: never mix embeddings
# The store records what its embeddings depend on — the model name, a hash of the **image encoder's**
# weights, the input size and preprocessing recipe, the storage dtype, the package version and a
# hash of every slice image. Each reuse checks it. A fine-tuned model (same encoder, new decoder)
# reuses the store; another encoder, another dtype or changed images make `embed` stop with a
# `StoreMismatchError` (or recompute with `recompute=True`).

# %%
print({k: store.signature[k] for k in ("model_name", "input_size", "recipe", "dtype", "medsam_lite_version")})
print("encoder sha256:", store.signature["encoder_sha256"][:16], "…  dataset sha256:",
      store.signature["dataset_sha256"][:16], "…")
try:
    ml.embed(ds, model, dtype="float32", max_slices_per_case=S.max_slices_per_case, progress=False)
except ml.StoreMismatchError as err:
    print("StoreMismatchError:", err)

# %% [markdown]
# ## 4. New boxes on a stored embedding
# `Predictor.set_embedding` takes a stored embedding instead of running the encoder: segmenting a
# new box costs only the decoder. The manifest's boxes are in the **original** slice's pixels; the
# stored slice is that slice resized (longest side 256), so `prompts.boxes_to_stored` maps them to
# it (with the same `Geometry` the model uses) and the predictor gets the stored size — the masks
# then come out at the stored size, like the stored masks. The slice shown is the test case's slice
# with the most targets, in radiological orientation and the CT display window; each label keeps
# its colour (by name) in every notebook.

# %%
test_cases = [c for c, split in ds.meta["split"].items() if split == "test"]
per_slice = ds.manifest.groupby(["case", "slice"]).size().rename("targets")
stored = ds.slices[store.done].join(per_slice, on=["case", "slice"])
if stored["case"].isin(test_cases).any():
    stored = stored[stored["case"].isin(test_cases)]
row = int(stored["targets"].idxmax())                # the stored slice with the most targets
sl = ds.slices.loc[row]
targets = ds.manifest[(ds.manifest["case"] == sl["case"]) & (ds.manifest["slice"] == sl["slice"])]
image = ds.image(sl["image"])
boxes = prompts.boxes_to_stored(targets[["x0", "y0", "x1", "y1"]].to_numpy(),
                                (int(sl["height"]), int(sl["width"])), ds.image_size)

predictor = ml.Predictor(model)
t0 = time.perf_counter()
predictor.set_embedding(store.get(row), image.shape)
masks, scores = predictor.predict(boxes)
print(f"{len(boxes)} boxes on a stored embedding in {(time.perf_counter() - t0) * 1000:.0f} ms, "
      f"encoder calls: {predictor.encoder_calls}")
truth = [ds.mask(m) for m in targets["mask"]]
print("Dice per target:", {n: round(ml.dice(p, t), 3) for n, p, t in zip(targets["label_name"], masks, truth)})

colors = list(targets["label_name"])                 # one colour per label name in every figure
shown = stored_for_display(image, ds.preset)  # CT: soft-tissue display window, not the model's input window
direction = io.read_volume(tutorial.case_paths(S, sl["case"])[1]).direction   # display: radiological orientation
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
flip_rows, flip_cols = radiological_flips(direction)
axes[0].imshow(store.get(row).abs().mean(0).numpy()[::-1 if flip_rows else 1, ::-1 if flip_cols else 1], cmap="magma")
axes[0].set_title("mean |embedding| over 256 channels (64×64)")
axes[0].set_axis_off()
plotting.show_masks(shown, truth, boxes=boxes, ax=axes[1], direction=direction, colors=colors, legend=[],
                    title=f"{sl['case']} slice {sl['slice']}: ground truth")
plotting.show_masks(shown, masks, boxes=boxes, ax=axes[2], direction=direction, colors=colors,
                    legend=list(targets["label_name"]), title="pretrained, from the stored embedding")
fig.tight_layout()

# %% [markdown]
# ## Next
# * `04_finetune_mask_decoder` trains the mask decoder on these embeddings.
# * `05_evaluate` compares pretrained and fine-tuned models with DSC and NSD.
