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
# # 06 · Interactive box prompting: draw a box, get a mask
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/medsam-lite/medsam_lite/blob/main/tutorials/06_interactive_box_prompting.ipynb)
#
# Draw boxes with the mouse on a brain MRI slice and on the slices of a volume, and see
# **LiteMedSAM**'s masks at once — on a CPU, from one encoder run per slice.
#
# ![The box prompter in JupyterLab: two boxes drawn with the mouse, their masks painted at once](images/06_widget.png)
#
# *The widget in a real browser (the screenshot `tests/test_browser.py` takes): a box around the
# brain and one around the ventricles, drawn with the mouse.* The widget needs a live kernel: on
# GitHub you see its last picture, not the widget.
#
# **Time:** about 1 minute on a 2-core CPU (an encoder run of ~1–2 s per visited slice; each box
# → mask update ~0.2 s, `bench/RESULTS.md`). On Colab, run the install cell first: it enables
# Colab's custom widget manager.

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
# ## 1. The model and a sample slice
# The sample slice is an axial brain MRI (a synthetic variant of the MNI ICBM152 template) with a
# label map: 1 = white matter, 2 = grey matter, 3 = lateral ventricles. The label map is only used
# here to place the starting boxes and to score the masks; you would not have it for your own scans.

# %%
import os

import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting, samples, tutorial
from medsam_lite.interactive.widgets import BoxPrompter

threads, device = tutorial.setup_runtime()             # every core (or $MEDSAM_LITE_THREADS); GPU if any
QUICK = os.environ.get("MEDSAM_LITE_QUICK") == "1"   # CI: visit fewer slices in part 7
model = ml.load_model()                                # LiteMedSAM, offline

scan = io.read_volume(samples.sample_path("brain_slice.png"))       # a Volume: array + geometry
label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
truth = {"brain": label > 0, "ventricles": label == 3}
print("slice", scan.array.shape, scan.array.dtype)

# %% [markdown]
# ## 2. Draw a box, get a mask
# `BoxPrompter` runs the image encoder once for the slice (about 2 s) and keeps the embedding. Then
# every box you **draw** (drag with the mouse), **move** or **resize** is segmented by the mask decoder
# alone (about 0.1 s on a CPU) and the mask is painted into the image at once. Click a class chip
# (or press `1`, `2`) before drawing to choose the class; click a box and press `Delete` (or its ×)
# to remove it, and its mask goes too. The status line under the image shows how long the last
# update took and how often the encoder ran. (A drag that starts inside an existing box moves that
# box, and a click there without dragging adds a point, part 5: to box a structure inside a larger
# one, draw the inner box first, or start the drag outside.)
#
# The `default_boxes` are already drawn when the widget appears: without a browser (e.g. when this
# notebook runs under `pytest --nbmake`) nobody draws, and the rest of the notebook still has masks.
# Boxes are XYXY in the image's pixels; the widget's own XYWH boxes are converted at its edge.

# %%
brain_box = ml.box_from_mask(truth["brain"])      # a starting box: drag it, or draw your own
prompter = BoxPrompter(scan, model, labels=["brain", "ventricles"],
                       default_boxes=[(brain_box, "brain")])
prompter

# %% [markdown]
# ## 3. Read the masks
# The prompter keeps its state: re-run this cell after you change the boxes.
# `prompter.prompts` lists each box with its mask and the model's predicted IoU;
# `prompter.masks` is one mask per class (the union of its boxes); `prompter.label_map` numbers the
# classes `1, 2, …` in the order of `labels`.

# %%
for p in prompter.prompts:
    print(f"{p.label:<10} box {p.box.round().astype(int)}  predicted IoU {p.score:.2f}  {p.mask.sum()} px")
for name, mask in prompter.masks.items():
    if mask.any():
        print(f"{name}: Dice against the label {ml.dice(mask, truth[name]):.3f}")
print("image encoder runs:", prompter.encoder_calls, "| boxes decoded:", prompter.decoder_calls)
plotting.show_masks(scan.array, list(prompter.masks.values()), title="prompter.masks");

# %% [markdown]
# ## 4. A second box costs only the decoder
# `add_box` adds a box as if you had drawn it (here around the lateral ventricles, class
# `ventricles`). The encoder does not run again, and the boxes already there are not decoded
# again either. The pretrained LiteMedSAM is good at the whole brain (Dice ≈ 0.8) but poor at the
# ventricles (Dice ≈ 0.1): that is what fine-tuning the decoder on your own labels is for.

# %%
encoder_runs = prompter.encoder_calls
prompter.add_box(ml.box_from_mask(truth["ventricles"]), "ventricles")
print(f"mask update {prompter.timings['update_ms']:.0f} ms "
      f"(decoder {prompter.timings['decode_ms']:.0f} ms, overlay {prompter.timings['render_ms']:.0f} ms)")
assert prompter.encoder_calls == encoder_runs       # no new encoding for a new box
print("ventricles Dice:", round(ml.dice(prompter.masks["ventricles"], truth["ventricles"]), 3))

# %% [markdown]
# ## 5. Correct a mask with a click
# **Click** (without dragging) where the mask is wrong: the point goes to the selected object (the box
# last drawn or clicked) — foreground by default, background with the "− background click" button
# or **Shift**-click. The decoder runs again from the box, every click so far and the previous mask
# (no new encoding: a click costs what a box costs), and the point is drawn as a small cross.
# **undo** takes back the last click (or box). In code, `prompter.click(x, y)` does the same; the
# state lives in `prompter.session`, an `AnnotationSession` you can also use without any widget.
# Clicks go to the click decoder `load_model()` ships (LiteMedSAM's own decoder was trained with
# boxes only); a click can still make a mask worse: undo it then.

# %%
brain = prompter.session.objects[0]                   # the brain box's object
before = ml.dice(brain.mask, truth["brain"])
prompter.click(60, 163, obj=brain)                    # a pixel of the brain the mask missed (bottom left)
print(f"brain Dice: box {before:.3f} → box + 1 click {ml.dice(brain.mask, truth['brain']):.3f}; "
      f"clicks {brain.points.tolist()}, encoder runs {prompter.encoder_calls}")
assert prompter.encoder_calls == encoder_runs and len(brain.points) == 1

# %% [markdown]
# ## 6. Save the masks
# `save` writes the label map: PNG for a 2D image, NIfTI (`.nii.gz`), NRRD or MHA with the source's
# geometry for any image. Read it back to check.

# %%
saved = prompter.save("work/06_brain_slice_labels.png")
back = io.read_volume(saved).array
print(saved, back.shape, back.dtype, "classes", np.unique(back))
assert np.array_equal(back, prompter.label_map)

# %% [markdown]
# ## 7. A 3D volume: a slice slider
# Give `BoxPrompter` a whole volume (a `Volume` from `io.read_volume`, or a `(z, y, x)` array)
# and it adds a slice slider. The volume is normalized once (MR: 0.5–99.5 percentiles over the
# brain); each slice's embedding is computed on its **first visit** and kept, so going back to a slice
# costs nothing. With `prefetch=1` the slices just above and below are encoded in a background thread
# while you look at this one, so stepping to the next slice shows its mask without waiting for the
# encoder. Boxes belong to their slice.

# %%
subject = samples.brain_mri_dir()
volume = io.read_volume(subject / "sub-01.nii.gz")
volume_label = io.read_volume(subject / "sub-01_label.nii.gz").array
print("volume (z, y, x)", volume.array.shape, "spacing (x, y, z) mm", volume.spacing)

z = 24
prompter3d = BoxPrompter(volume, model, labels=["brain"], modality="MR", prefetch=1,   # encode z±1 meanwhile
                         default_boxes=[(ml.box_from_mask(volume_label[z] > 0), "brain", z)])
prompter3d

# %% [markdown]
# Visit other slices (move the slider, or call `set_slice`) and add a box on each; then come back
# to slice 24: its embedding is cached, so the encoder runs once per visited slice, not once per visit.

# %%
for s in ([20] if QUICK else [16, 20, 28, 32]):
    prompter3d.set_slice(s)
    prompter3d.add_box(ml.box_from_mask(volume_label[s] > 0), "brain")
runs = prompter3d.encoder_calls
prompter3d.set_slice(z)
assert prompter3d.encoder_calls == runs            # slice 24 was already encoded
print("encoder runs:", prompter3d.encoder_calls, "for slices", prompter3d.summary()["cached_embeddings"])
for p in prompter3d.prompts:
    print(f"slice {p.slice}: Dice {ml.dice(p.mask, volume_label[p.slice] > 0):.3f}")

# %% [markdown]
# The label map is a volume of the scan's shape; `save` writes it with the scan's spacing, origin
# and direction, so it overlays the scan in any viewer (3D Slicer, ITK-SNAP).

# %%
saved3d = prompter3d.save("work/06_sub-01_brain.nii.gz")
back3d = io.read_volume(saved3d)
print(saved3d, back3d.array.shape, "spacing", back3d.spacing, "same geometry:", back3d.same_geometry(volume))
assert back3d.same_geometry(volume) and np.array_equal(back3d.array, prompter3d.label_map)

# %% [markdown]
# ## 8. Annotate a scan, then train on it
# A scan without labels: box (and click) the organs on a few slices, then `save_case` writes the scan,
# its label map (same geometry) and `labels.json` into a folder `preprocess` reads — the start of
# notebooks 02–04 on your own labels. Unlabelled slices are background: `preprocess` takes targets
# only from the slices you labelled. (Here the boxes come from the sample's labels, to run without
# a browser; `labels={value: name}` keeps the values of the other scans of a dataset.)

# %%
ct = io.read_volume(samples.ct_abdomen_dir() / "case-03.nii.gz")                  # CT in HU, 3 mm
ct_truth = io.read_volume(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array  # only to place boxes
annotator = BoxPrompter(ct, model, labels={1: "spleen", 5: "liver"}, modality="CT", slice_index=4,
                        default_boxes=[(ml.box_from_mask(ct_truth[z] == v), name, z)
                                       for z in (2, 4) for v, name in ((1, "spleen"), (5, "liver"))])
annotator

# %%
image_path, label_path = annotator.save_case("work/06_my_scans", case="my_ct")
manifest = ml.preprocess("work/06_my_scans", "work/06_my_dataset", modality="CT", min_mm2=64, progress=False)
print(image_path, label_path)
print(manifest[["case", "slice", "label_name", "pixels"]].to_string(index=False))
assert set(zip(manifest["slice"], manifest["label_name"])) == {(z, n) for z in (2, 4) for n in ("spleen", "liver")}

# %% [markdown]
# ## Notes
# * **Colab**: the install cell at the top enables Colab's custom widget manager, which this widget
#   needs; run it first.
# * **Speed**: a box → mask update is the mask decoder plus repainting the image (~0.1 s here);
#   a click costs the same; only the first visit to a slice runs the image encoder (~2 s).
#   `bench/bench_widget.py` and `bench/bench_clicks_widget.py` measure them.
# * **Your own scans**: `BoxPrompter("scan.nii.gz", labels=[...], modality="CT")` reads the file
#   and keeps its geometry for `save`.
