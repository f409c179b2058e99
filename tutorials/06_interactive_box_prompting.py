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
# Draw boxes with the mouse on a CT slice and on the slices of a volume, and see **LiteMedSAM**'s
# masks at once — on a CPU, from one encoder run per slice.
#
# ![The box prompter in JupyterLab: two boxes drawn with the mouse, their masks painted at once](images/06_widget.png)
#
# *The widget in a real browser (the screenshot `tests/test_browser.py` takes, on the synthetic
# brain MRI slice of `data_samples/`: a box around the brain and one around the ventricles).* The
# widget needs a live kernel: on GitHub you see its last picture, not the widget.
#
# **Time:** the cells print the encoder and box → mask times. On Colab, run the install cell
# first: it enables Colab's custom widget manager.

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
# ## 1. The model and a slice
# The scan is the first test case of the settings (the sample: the held-out CT slab), and the
# slice the one where the settings' first label is largest. The label map is only used here to
# place the starting box and to score the masks; you would not have it for a new scan
# (notebook 08 starts from one without).

# %%
import matplotlib.pyplot as plt
import numpy as np

import medsam_lite as ml
from medsam_lite import io, plotting
from medsam_lite.interactive import prompts
from medsam_lite.interactive.widgets import BoxPrompter

model = tutorial.load_model(S)
case, image_path, label_path = tutorial.case_paths(S)
scan, label_volume = tutorial.read_case(S, case)              # quick mode: a few slices around the target
label = label_volume.array
names = {v: n for v, n in S.label_names(tutorial.ensure_dataset(S)).items() if (label == v).any()}
first, small = next(iter(names)), tutorial.focus_label(tutorial.ensure_dataset(S), among=names)
z = prompts.key_slice(label == first)
ct_slice = scan.array[z]                                     # H×W, original intensities
truth = {n: label[z] == v for v, n in names.items()}
print(f"{case} slice {z}: {ct_slice.shape} {ct_slice.dtype}; classes {list(names.values())}")

# %% [markdown]
# ## 2. Draw a box, get a mask
# `BoxPrompter` runs the image encoder once for the slice and keeps the embedding. Then every box
# you **draw** (drag with the mouse), **move** or **resize** is segmented by the mask decoder alone
# and the mask is painted into the image at once. Click a class chip (or press `1`, `2`, …) before
# drawing to choose the class; click a box and press `Delete` (or its ×) to remove it, and its mask
# goes too. The status line under the image shows how long the last update took and how often the
# encoder ran. (A mouse-down inside an existing box moves that box: to box a structure inside a
# larger one, draw the inner box first, or start the drag outside.)
#
# The `default_boxes` are already drawn when the widget appears: without a browser (e.g. when this
# notebook runs under `pytest --nbmake`) nobody draws, and the rest of the notebook still has masks.
# The widget shows the slice like every figure of the tutorials: radiological orientation (the
# patient's right on the viewer's left, anterior at the top; `direction=` gives the scan's
# geometry, a volume brings its own), the CT soft-tissue display window and one colour per label
# name. Boxes in code (`default_boxes`, `add_box`, `click`) are XYXY in the **array's** pixels; what
# you draw on the picture is converted to them at the widget's edge (`prompter.view`).

# %%
prompter = BoxPrompter(ct_slice, model, labels=names, modality=S.modality, direction=scan.direction,
                       default_boxes=[(ml.box_from_mask(truth[names[first]]), names[first])])
prompter

# %% [markdown]
# ## 3. Read the masks
# The prompter keeps its state: re-run this cell after you change the boxes.
# `prompter.prompts` lists each box with its mask and the model's predicted IoU;
# `prompter.masks` is one mask per class (the union of its boxes); `prompter.label_map` holds each class's
# value from the settings' labels (`{value: name}`), so it matches the scan's own label map.

# %%
for p in prompter.prompts:
    print(f"{p.label:<20} box {p.box.round().astype(int)}  predicted IoU {p.score:.2f}  {p.mask.sum()} px")
for name, mask in prompter.masks.items():
    if mask.any():
        print(f"{name}: Dice against the label {ml.dice(mask, truth[name]):.3f}")
print("image encoder runs:", prompter.encoder_calls, "| boxes decoded:", prompter.decoder_calls)
plotting.show_masks(ct_slice, list(prompter.masks.values()), direction=scan.direction, modality=S.modality,
                    legend=list(names.values()), title="prompter.masks");

# %% [markdown]
# ## 4. A second box costs only the decoder
# `add_box` adds a box as if you had drawn it (here around the label with the fewest targets in the
# dataset). The encoder does not run again, and the boxes already there are not decoded again
# either. The cell prints the update time and the new mask's Dice.

# %%
encoder_runs = prompter.encoder_calls
prompter.add_box(ml.box_from_mask(truth[names[small]]), names[small])
print(f"mask update {prompter.timings['update_ms']:.0f} ms "
      f"(decoder {prompter.timings['decode_ms']:.0f} ms, overlay {prompter.timings['render_ms']:.0f} ms)")
assert prompter.encoder_calls == encoder_runs       # no new encoding for a new box
print(f"{names[small]} Dice:", round(ml.dice(prompter.masks[names[small]], truth[names[small]]), 3))

# %% [markdown]
# ## 5. Correct a mask with a click
# **Click** (without dragging) where the mask is wrong: the point goes to the selected object (the box
# last drawn or clicked) — foreground by default, background with the "− background click" button
# or **Shift**-click. The decoder runs again from the box, every click so far and the previous mask
# (no new encoding: a click costs what a box costs), and the point is drawn as a small cross.
# **undo** takes back the last click (or box). In code, `prompter.click(x, y)` does the same; the
# state lives in `prompter.session`, an `AnnotationSession` you can also use without any widget
# (notebook 08). LiteMedSAM's decoder was trained with boxes only, so clicks go to the click decoder
# shipped in the package (`bench/bench_clicks.py` measures it). A click changes the mask only in the
# region under it, read from the image (tissue like the clicked one, on the click's side of the mask);
# where the image cannot tell the clicked tissue from the other side, or the click sits on the mask's
# 1-px rim, it changes little more than the clicked pixel (at most 5 % of the mask): click again, undo it
# or draw a tighter box. A click keeps to its side of the object's box: the box says the target lies inside
# it, so a foreground click inside the box adds nothing outside it (to take in a part the box left out,
# click there, outside the box, or redraw the box). Here the click goes on a pixel of the first organ that its mask missed (found from the
# label, to run without a browser); the figure shows the mask before and after, the click as a star.

# %%
obj = prompter.session.objects[0]                     # the first box's object
before, mask_before = ml.dice(obj.mask, truth[obj.label]), obj.mask.copy()
missed = np.argwhere(truth[obj.label] & ~obj.mask)    # (row, column) of the organ's pixels the mask missed
if len(missed):
    y, x = missed[len(missed) // 2]
    prompter.click(float(x), float(y), obj=obj)
    after = ml.dice(obj.mask, truth[obj.label])
    print(f"{obj.label} Dice: box {before:.3f} → box + 1 click at ({x}, {y}) {after:.3f}; "
          f"encoder runs {prompter.encoder_calls}")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, mask, title in ((axes[0], mask_before, f"box: Dice {before:.3f}"),
                            (axes[1], obj.mask, f"box + click: Dice {after:.3f}")):
        plotting.show_masks(ct_slice, [mask], boxes=[obj.box], points=[(x, y)], ax=ax, direction=scan.direction,
                            modality=S.modality, colors=[obj.label], title=title)
    fig.tight_layout()
else:
    print(f"{obj.label}: the mask misses no pixel of the label; no click needed")

# %% [markdown]
# ## 6. A click on a scan the click decoder never saw
# The click decoder trained on the bundled abdominal CT and MR; it never saw a brain MRI or a
# lesion. Here a synthetic brain MRI slice gets a synthetic lesion in its white matter
# (`tutorial.unseen_lesion_slice` with `medsam_lite.samples.synthetic_lesion`: its own contrast,
# texture and partial-volume edge, seeded; the cell prints the subject, slice, seed and radius range).
# The box is the lesion's bounding box, and one robot click (`medsam_lite.clicks.next_click`: the
# interior of the largest error region) corrects the box's mask. The cell prints the Dice before and
# after, how many pixels the click changed, and how far from the click the farthest change lies
# next to the rule's limit (the previous mask's equivalent radius, `sqrt(area / π)`): the click rule
# (`medsam_lite.model.clickrule.DEFAULT_RULE`, a `LocalRule`) reads the image the `Predictor` keeps. The click speaks
# for its **click region** — the connected pixels on its side of the mask whose intensity is closer
# to the clicked tissue than to the other side, read through a 3×3 median so that a noisy scan's single
# pixels do not decide — within that radius: the decoder's change is kept
# only there, and the rule applies the click itself to the region near the click (up to 2× the
# click's distance to the mask's edge, at most a fifth of the mask per click, and on the click's side of the
# box's edge), so a click counts even where the decoder ignores it; where the mask missed a rim all around the
# target (a lesion's dark rim, the box's mask its core), the other side is read just beyond the rim. The mask stays
# as it was everywhere else (`bench/RESULTS.md`, "Clicks by patient", "Clicks that keep to the user's box", "Clicks
# on noisy scans" and "Clicks on a rim the mask missed all around", measure it on unseen targets and on another
# patient's organs). The figure zooms on
# the lesion: the box, then the mask's pixels on the lesion, too many and missed before and after the
# click, drawn as a star.

# %%
from medsam_lite.clicks import next_click

where = tutorial.UNSEEN_LESION                                   # subject, slice, the lesion's seed and radius range (px)
lesion_slice, lesion, brain = tutorial.unseen_lesion_slice(**where)  # H×W MR slice with the lesion, its mask, the volume
print("synthetic lesion:", where)
predictor = ml.Predictor(model)
predictor.set_image(lesion_slice, modality="MR")
lesion_box = ml.box_from_mask(lesion)                          # XYXY, the slice's pixels
(box_mask,), _, logits = predictor.predict(lesion_box, return_logits=True)
cx, cy, clabel = next_click(box_mask, lesion)                  # the robot's click: (x, y), 1 = foreground
(click_mask,), _ = predictor.predict(lesion_box, points=[[cx, cy]], point_labels=[clabel], mask_input=logits)
dice_box, dice_click = ml.dice(box_mask, lesion), ml.dice(click_mask, lesion)
print(f"lesion {lesion.sum()} px; {'foreground' if clabel else 'background'} click at ({cx}, {cy})")
changed = np.argwhere(box_mask ^ click_mask)                    # (row, column) of the pixels the click changed
farthest = np.hypot(changed[:, 0] - cy, changed[:, 1] - cx).max() if len(changed) else 0.0
print(f"lesion Dice: box {dice_box:.3f} → box + 1 click {dice_click:.3f}; {len(changed)} pixels changed, "
      f"the farthest {farthest:.1f} px from the click (the rule's limit: {np.sqrt(box_mask.sum() / np.pi):.1f} px)")
x0, y0, x1, y1 = lesion_box.astype(int)                       # zoom: a 30-pixel margin around the box
rows, cols = slice(max(y0 - 30, 0), y1 + 31), slice(max(x0 - 30, 0), x1 + 31)
shift = np.array([cols.start, rows.start] * 2)
fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
plotting.show_masks(lesion_slice[rows, cols], boxes=[lesion_box - shift], ax=axes[0], direction=brain.direction,
                    modality="MR", title="the box on the lesion (the prompt)")
for ax, mask, title in ((axes[1], box_mask, f"box: Dice {dice_box:.3f}"),
                        (axes[2], click_mask, f"box + 1 click: Dice {dice_click:.3f}")):
    fp, fn = plotting.error_map(lesion, mask)                  # too many / missed pixels
    plotting.show_masks(lesion_slice[rows, cols], [(mask & lesion)[rows, cols], fp[rows, cols], fn[rows, cols]],
                        ax=ax, points=[(cx - cols.start, cy - rows.start)],
                        point_labels=[clabel], direction=brain.direction, modality="MR", title=title,
                        colors=[0, plotting.FP_COLOR, plotting.FN_COLOR],
                        legend=["lesion found", "too many", "missed"] if ax is axes[2] else None)
fig.tight_layout()
assert dice_click > dice_box                                   # the click fixed part of the error
assert farthest <= max(np.sqrt(box_mask.sum() / np.pi), 1.5)   # nothing changed beyond the rule's disc

# %% [markdown]
# ## 7. Save the masks
# `save` writes the label map: PNG for a 2D image, NIfTI (`.nii.gz`), NRRD or MHA with the source's
# geometry for any image. Read it back to check.

# %%
(S.outputs / "06").mkdir(parents=True, exist_ok=True)                 # save writes into an existing folder
saved = prompter.save(S.outputs / "06" / f"{case}_slice{z}_labels.png")
back = io.read_volume(saved).array
print(saved, back.shape, back.dtype, "classes", np.unique(back))
assert np.array_equal(back, prompter.label_map)

# %% [markdown]
# ## 8. A 3D volume: a slice slider
# Give `BoxPrompter` a whole volume (a `Volume` from `io.read_volume`, or a `(z, y, x)` array)
# and it adds a slice slider. The volume is normalized once; each slice's embedding is computed on
# its **first visit** and kept, so going back to a slice costs nothing. With `prefetch=1` the slices
# just above and below are encoded in a background thread while you look at this one, so stepping
# to the next slice shows its mask without waiting for the encoder. Boxes belong to their slice.

# %%
print("volume (z, y, x)", scan.array.shape, "spacing (x, y, z) mm", scan.spacing)
prompter3d = BoxPrompter(scan, model, labels={first: names[first]}, modality=S.modality, prefetch=1,   # encode z±1 meanwhile
                         default_boxes=[(ml.box_from_mask(label[z] == first), names[first], z)])
prompter3d

# %% [markdown]
# Visit other slices (move the slider, or call `set_slice`) and add a box on each; then come back
# to the first slice: its embedding is cached, so the encoder runs once per visited slice, not once
# per visit.

# %%
others = [int(s) for s in prompts.slices_with(label == first) if s != z][:2 if S.quick else 4]
for s in others:
    prompter3d.set_slice(s)
    prompter3d.add_box(ml.box_from_mask(label[s] == first), names[first])
runs = prompter3d.encoder_calls
prompter3d.set_slice(z)
assert prompter3d.encoder_calls == runs            # the first slice was already encoded
print("encoder runs:", prompter3d.encoder_calls, "for slices", prompter3d.summary()["cached_embeddings"])
for p in prompter3d.prompts:
    print(f"slice {p.slice}: Dice {ml.dice(p.mask, label[p.slice] == first):.3f}")

# %% [markdown]
# The label map is a volume of the scan's shape; `save` writes it with the scan's spacing, origin
# and direction, so it overlays the scan in any viewer (3D Slicer, ITK-SNAP).

# %%
saved3d = prompter3d.save(S.outputs / "06" / f"{case}_{names[first]}.nii.gz")
back3d = io.read_volume(saved3d)
print(saved3d, back3d.array.shape, "spacing", back3d.spacing, "same geometry:", back3d.same_geometry(scan))
assert back3d.same_geometry(scan) and np.array_equal(back3d.array, prompter3d.label_map)

# %% [markdown]
# ## Notes
# * **Colab**: the install cell at the top enables Colab's custom widget manager, which this widget
#   needs; run it first.
# * **Speed**: a box → mask update is the mask decoder plus repainting the image, and a click costs
#   the same; only the first visit to a slice runs the image encoder. `bench/bench_widget.py` and
#   `bench/bench_clicks_widget.py` measure them.
# * **Your own scans**: `BoxPrompter("scan.nii.gz", labels=[...], modality="CT")` reads the file
#   and keeps its geometry for `save`; `prompter.session` is the headless
#   `AnnotationSession` underneath (notebook 08 uses it directly).
