"""Builds tutorials/02_prepare_custom_dataset.ipynb. Run: python tools/notebooks/nb02.py"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbtools import ROOT, code, md, write_notebook  # noqa: E402

cells = [
    md("""
## 1. The folder you need
`preprocess` finds image/label pairs in the layouts you probably already have. A label map is an
integer image on the **same grid** as its scan (same shape, spacing, origin, direction), with
0 = background and one value per structure.

| layout | images | label maps |
|---|---|---|
| nnU-Net / Medical Segmentation Decathlon | `imagesTr/<case>_0000.nii.gz` (only channel `_0000` is used; MSD's `<case>.nii.gz` works too) | `labelsTr/<case>.nii.gz` |
| flat folder (NIfTI, NRRD, MHA) | `<case>.nii.gz` | `<case>_label.nii.gz` (or `_mask`, `_seg`; or `label_suffix="…"`) |
| 2D images | `<name>.png` / `.jpg` | `<name>_mask.png` or `<name>_label.png` (0/255 masks count as label 1) |
| DICOM | one folder per series: `<case>/…` | `<case>_label.nii.gz` beside the folder |
| any | a list of `(image_path, label_path)` pairs, or `{case: (image, label)}` | |

Label names come from a `labels.json` (`{"1": "liver", "2": "tumour"}`) in or above the folder,
from an MSD / nnU-Net `dataset.json`, or from `labels={1: "liver"}`.

The sample dataset is a flat folder: eight brain-MRI "subjects" with white matter (1),
grey matter (2) and the lateral ventricles (3), and a `labels.json` one level up.
"""),
    code("""
import time
from pathlib import Path

import pandas as pd

import medsam_lite as ml
from medsam_lite import io, plotting, samples
from medsam_lite.dataset import open_dataset
from medsam_lite.preprocess import find_cases, thick_axis

source = samples.brain_mri_dir()
for case in find_cases(source):
    print(f"{case.name}: {case.image.name} + {case.label.name}")

scan = io.read_volume(source / "sub-01.nii.gz")
print("array (z, y, x):", scan.array.shape, scan.array.dtype, "| spacing (z, y, x) mm:", scan.spacing_zyx)
print("thick axis (array order):", thick_axis(scan.spacing_zyx))
"""),
    md("""
## 2. The recipe
For each case `preprocess`:

1. reads image and label map with SimpleITK and checks they share one geometry;
2. normalizes the **whole volume** to `uint8` (MR and other modalities: 0.5–99.5 percentiles of
   the voxels > 0; CT: `modality="CT"` and a window in HU, [-500, 1000] by default);
3. cuts it into slices along the axis of **largest spacing** (here z, 4 mm), or `axis=…`;
4. keeps one binary target per label per slice (or per connected component with
   `split_components=True`), dropping targets under `min_pixels=100`;
5. stores each kept slice **once** as a `uint8` PNG at model resolution (longest side 256, aspect
   kept), each target as a 0/255 mask PNG, and one manifest row per target.

Cases are split into train/test **by case** (never a subject in both): a seeded 80/20 shuffle by
default, or an explicit `test_cases=[…]`. Everything is checked before anything is written, and a
re-run skips finished cases (an interrupted case is redone).

The later notebooks use `work/sample_dataset` with `sub-07` and `sub-08` held out.
"""),
    code("""
out = Path("work/sample_dataset")
t0 = time.perf_counter()
manifest = ml.preprocess(source, out, test_cases=["sub-07", "sub-08"])
print(f"prepared {manifest['case'].nunique()} cases in {time.perf_counter() - t0:.1f} s: "
      f"{manifest[['case', 'slice']].drop_duplicates().shape[0]} slices, {len(manifest)} targets")
manifest.head()
"""),
    md("""
## 3. What is in the folder
`dataset.json` holds the settings, label names, split and per-case status; `manifest.csv` one
row per target. The box `x0, y0, x1, y1` is **XYXY in original slice pixels** (`height × width`,
before resizing), inclusive of the target's extreme pixels; `spacing_row` / `spacing_col` /
`slice_spacing` are in mm; `image` and `mask` are paths relative to the folder.
"""),
    code("""
ds = open_dataset(out)
print({k: ds.meta[k] for k in ("format", "image_size", "modality", "window", "min_pixels", "labels")})
print("split:", ds.meta["split"])
print(sorted(str(p.relative_to(out)) for p in out.iterdir()))
print(sorted(p.name for p in (out / "images" / "sub-01").iterdir())[:5], "…")
row = manifest.iloc[0]
print("stored image", ds.image(row["image"]).shape, ds.image(row["image"]).dtype,
      "from an original slice of", (int(row["height"]), int(row["width"])))
"""),
    md("""
## 4. Statistics
How many targets of each label each split holds, and how big they are. The ventricles are small
and appear on few slices: a label with few targets gets few training samples.
"""),
    code("""
print("targets per label and split")
display(pd.crosstab(manifest["label_name"], manifest["split"], margins=True))
print("slices per split:", manifest.drop_duplicates(["case", "slice"])["split"].value_counts().to_dict())
print("target size (original pixels):")
display(manifest.groupby("label_name")["pixels"].describe()[["count", "min", "50%", "max"]])
plotting.plot_target_sizes(manifest, min_pixels=ds.meta["min_pixels"]);
"""),
    md("""
## 5. Look at the data
Always look before you train: each panel is a stored slice with one target's mask and its box
(drawn in the stored image's pixels).
"""),
    code("""
plotting.plot_dataset_grid(ds, n=8, ncols=4);
"""),
    md("""
## 6. Re-running, and mistakes
Running the same call again skips every finished case. A mistake — a label map from another
scan, a probability map instead of labels, a missing label file — stops `preprocess` with an
`InputError` that says what to fix, **before** anything is written.
"""),
    code("""
t0 = time.perf_counter()
again = ml.preprocess(source, out, test_cases=["sub-07", "sub-08"])
print(f"re-run: {time.perf_counter() - t0:.2f} s, same manifest: {again.equals(manifest)}")

try:
    ml.preprocess([(source / "sub-01.nii.gz", source / "sub-02_label.nii.gz")], "work/mismatched")
except ml.InputError as err:
    print("InputError:", err)
print("work/mismatched exists:", Path("work/mismatched").exists())
"""),
    md("""
## 7. Your own data
```python
# CT in Hounsfield units, nnU-Net layout, soft-tissue window, only labels 1 and 2:
ml.preprocess("Dataset001_Liver/", "work/liver", modality="CT", window="soft_tissue",
              labels={1: "liver", 2: "tumour"})
# DICOM series folders patient1/, patient2/ … with patient1_label.nii.gz beside them:
ml.preprocess("dicom_export/", "work/ct", modality="CT")
# 2D images: photo.png + photo_mask.png; one target per connected component:
ml.preprocess("png_folder/", "work/cells", split_components=True, min_pixels=30)
```

## Next
* `03` — compute the image embeddings of `work/sample_dataset` once.
* `04` — fine-tune the mask decoder on the training cases.
"""),
]

write_notebook(ROOT / "tutorials" / "02_prepare_custom_dataset.ipynb",
               "02 · From a folder of scans to a training set",
               "Turn your own scans and label maps into a training set with the **MedSAM recipe**: "
               "per-volume normalization, slices along the thick axis, one box per target, a split "
               "by case. No preprocessing code to write.",
               cells)
