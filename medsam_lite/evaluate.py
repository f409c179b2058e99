"""Dataset evaluation: DSC and NSD per case and label (the metrics themselves: :mod:`medsam_lite.metrics`).

:func:`evaluate` scores a model on a prepared dataset **per case and label in 3D**: for every
slice of a case the model segments each target from its ground-truth box (reading the stored
embedding; the encoder runs only for slices not embedded yet), the slices are stacked into a
volume at the stored resolution, and DSC / NSD are computed against the stacked ground truth with
spacing ``(slice_spacing, spacing_row × height / h, spacing_col × width / w)`` — the stored
slices' pixel size (``h × w`` is the stored size, ``height × width`` the original one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checks import check_int, check_labels
from .data.dataset import check_dataset
from .model.models import check_model
from .data.embed import embed, select_slices
from .errors import InputError
from .model.inference import decode
from .clicks import robot_session
from .metrics import clicks_to_reach, dice, nsd


@dataclass
class CaseSegmentation:
    """One case segmented slice by slice from its ground-truth boxes, stacked in 3D.

    Attributes:
        case: the case id.
        slices: ``z`` slice indices of the stack (consecutive, from the first to the last selected
            slice; a slice absent from the dataset is an empty image with empty masks).
        image: ``z×h×w`` uint8, the stored slices.
        truth, pred: label value → ``z×h×w`` bool volume.
        label_names: label value → name.
        spacing: ``(z, row, col)`` voxel size in mm of the stored slices.
        targets: the case's manifest rows with their boxes in stored pixels (``sx0 … sy1``).
        clicked: with ``clicks=K``: label value → ``K`` volumes, the masks after robot click 1 … K
            on every target (see :mod:`medsam_lite.clicks`).
    """

    case: str
    slices: np.ndarray
    image: np.ndarray = field(repr=False)
    truth: dict = field(repr=False)
    pred: dict = field(repr=False)
    label_names: dict
    spacing: tuple
    targets: pd.DataFrame = field(repr=False)
    clicked: dict = field(default_factory=dict, repr=False)

    def z(self, slice_index: int) -> int:
        """Position of dataset slice ``slice_index`` in the stack."""
        hit = np.flatnonzero(self.slices == int(slice_index))
        if hit.size == 0:
            raise InputError(f"slice {slice_index} is not in the stack of {self.case} ({self.slices[0]}…{self.slices[-1]}).")
        return int(hit[0])


#: The most robot clicks per target :func:`evaluate` runs: each click keeps one volume per label in
#: memory and runs the decoder once per target (interactive benchmarks use 5, SAM's up to 20).
MAX_CLICKS = 20


def check_clicks(clicks) -> int:
    """``clicks`` as a whole number 0 … :data:`MAX_CLICKS` (before any work)."""
    clicks = check_int(clicks, "clicks", 0)
    if clicks > MAX_CLICKS:
        raise InputError(f"clicks={clicks} is more than {MAX_CLICKS} robot clicks per target: every click keeps one "
                         "volume per label in memory and runs the decoder once per target, and interactive "
                         f"benchmarks stop at 5 (CVPR 2025) to 20 (SAM); pass clicks ≤ {MAX_CLICKS}.")
    return clicks


@torch.no_grad()
def predict_case(model, dataset, case: str, max_slices_per_case: int | None = None, labels=None,
                 store=None, clicks: int = 0) -> CaseSegmentation:
    """Segment every target of one case from its ground-truth box, on the stored embeddings.

    Args:
        model: a :class:`~medsam_lite.model.models.SamModel` (pretrained or fine-tuned).
        dataset: a prepared dataset folder or ``Dataset``.
        case: the case id.
        max_slices_per_case: only this many consecutive central slices (see ``select_slices``).
        labels: only these label values (default: all of the case's).
        store: an :class:`~medsam_lite.data.store.EmbeddingStore` (default: ``embed()`` for the case,
            which reuses what is stored and computes the rest).
        clicks: also segment each target with ``clicks`` robot clicks after its box (``clicked``).

    Returns:
        :class:`CaseSegmentation` at the stored slices' resolution.
    """
    dataset, model = check_dataset(dataset), check_model(model)
    if not isinstance(case, str):
        raise InputError(f"case must be a case id (a string such as 'sub-07'), got {case!r}.")
    clicks = check_clicks(clicks)  # before any embedding (each click holds a volume per label)
    labels = check_labels(labels)
    chosen = select_slices(dataset, None, [case], max_slices_per_case)
    if store is None:
        store = embed(dataset, model, cases=[case], max_slices_per_case=max_slices_per_case, progress=False)
    else:
        store.check_serves(dataset)
    targets = dataset.manifest.merge(chosen[["case", "slice"]], on=["case", "slice"])
    if labels is not None:
        targets = targets[targets["label"].isin(labels)]
    targets = targets.sort_values(["slice", "label", "component"]).reset_index(drop=True)
    first = dataset.image(chosen["image"].iloc[0])
    h, w = first.shape
    z0, z1 = int(chosen["slice"].min()), int(chosen["slice"].max())
    slices = np.arange(z0, z1 + 1)
    image = np.zeros((len(slices), h, w), np.uint8)
    names = dict(zip(targets["label"].astype(int), targets["label_name"]))
    truth = {k: np.zeros(image.shape, bool) for k in names}
    pred = {k: np.zeros(image.shape, bool) for k in names}
    clicked = {k: [np.zeros(image.shape, bool) for _ in range(clicks)] for k in names}
    boxes = targets[["x0", "y0", "x1", "y1"]].to_numpy(np.float32)  # original pixels
    original_hw = (int(chosen["height"].iloc[0]), int(chosen["width"].iloc[0]))
    for _, row in chosen.iterrows():
        z = int(row["slice"]) - z0
        image[z] = dataset.image(row["image"])
        if image[z].shape != (h, w):
            raise InputError(f"slices of case {case} differ in size ({image[z].shape} vs {(h, w)}); "
                             "re-run preprocess().")
        on_slice = np.flatnonzero(targets["slice"].to_numpy() == int(row["slice"]))
        if on_slice.size == 0:
            continue
        emb = store.embedding(model, case, int(row["slice"]), original_hw, (h, w))
        prompts = emb.geometry.box_prompt(boxes[on_slice])  # the published prompts; masks on the stored slice
        masks = decode(model, emb, prompts, space="model", logits=False)[0]  # one image, N boxes
        for j, t in enumerate(on_slice):
            k = int(targets.at[t, "label"])
            pred[k][z] |= masks[j]
            truth[k][z] |= dataset.mask(targets.at[t, "mask"])
            if clicks:
                after = robot_session(model, replace(emb, image=image[z]),  # the stored slice: the rule reads it
                                      dataset.mask(targets.at[t, "mask"]), boxes[t], clicks, "image")[0]
                for c in range(clicks):
                    clicked[k][c][z] |= after[c + 1]
    r = chosen.iloc[0]
    geometry = model.geometry(original_hw, (h, w))
    spacing = (float(r["slice_spacing"]), *geometry.image_spacing((r["spacing_row"], r["spacing_col"])))
    targets[["sx0", "sy0", "sx1", "sy1"]] = geometry.box_to_image(boxes)
    return CaseSegmentation(str(case), slices, image, truth, pred, names, spacing, targets, clicked)


def _check_spacing(chosen: pd.DataFrame) -> None:
    """Pixel sizes usable for NSD: row/col positive; between slices positive, or NaN for 2D cases."""
    rc = chosen[["spacing_row", "spacing_col"]].to_numpy(float)
    z = chosen["slice_spacing"].to_numpy(float)
    bad = ~(np.isfinite(rc) & (rc > 0)).all(axis=1) | ~(np.isnan(z) | (np.isfinite(z) & (z > 0)))
    if bad.any():
        r = chosen[bad].iloc[0]
        raise InputError(f"case {r['case']} slice {r['slice']} has pixel spacing ({r['slice_spacing']}, "
                         f"{r['spacing_row']}, {r['spacing_col']}) in the manifest; NSD needs positive sizes. "
                         "Re-run preprocess() on scans with a valid spacing.")
    flat = chosen[np.isnan(z)]
    if (flat.groupby("case")["slice"].nunique() > 1).any():
        raise InputError("a 2D case (no slice spacing) lists several slices in the manifest; re-run preprocess().")


def evaluate(model, dataset, split: str = "test", tolerance_mm: float = 1.0, cases=None,
             max_slices_per_case: int | None = None, labels=None, progress: bool = True, clicks: int = 0):
    """DSC and NSD per case and label (3D) on one split of a prepared dataset.

    Every target is segmented from its ground-truth box (no jitter) with ``model``, on the stored
    embeddings (computed first where missing; a fine-tuned model shares the pretrained one's
    encoder and so its embeddings). See the module docstring for how slices are stacked and which
    spacing is used.

    Args:
        model: a :class:`~medsam_lite.model.models.SamModel`, e.g. ``load_model()`` or
            ``load_model(checkpoint="runs/ft/best.pt")``.
        dataset: a prepared dataset folder or ``Dataset``.
        split: ``"test"`` (default), ``"train"``, or ``None`` for every case.
        tolerance_mm: NSD tolerance in mm (default 1.0).
        cases: only these case ids. max_slices_per_case: only this many central slices per case.
        labels: only these label values.
        progress: show a progress bar.
        clicks: ``K > 0`` also runs the robot user of :mod:`medsam_lite.clicks` on every target (``K``
            corrective clicks after its box, previous logits as mask input) and adds ``dsc@1`` …
            ``dsc@K`` (3D Dice after that many clicks; ``dsc`` is after the box alone) and ``noc85`` /
            ``noc90`` (clicks until the 3D Dice reaches 0.85 / 0.90, capped at ``K``) to both tables.

    Warns:
        UserWarning: on the test split of a dataset whose test cases share a source scan with its
            training cases (same file, DICOM series, or slabs of one scan; recorded by ``preprocess``):
            the scores, e.g. a NoC before/after ``finetune(clicks=K)``, are then not held out.

    Returns:
        ``(per_case, per_label)``. A 2D case (an image, no slice spacing) gets 2D DSC and NSD, with
        ``tolerance_mm`` in its pixel size (mm where the image file records one; PNG records none,
        so there it is in original pixels). ``per_case`` is a DataFrame with one row per (case, label) —
        ``case``, ``label``, ``label_name``, ``dsc``, ``nsd``, ``slices`` (with that label),
        ``truth_voxels``, ``pred_voxels``; ``per_label`` has the mean ``dsc`` / ``nsd`` and the
        number of ``cases`` per ``label_name``, plus a last row ``"mean"`` averaging the labels.
    """
    dataset, model = check_dataset(dataset), check_model(model)
    if isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, (int, float, np.number)) \
            or not (np.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InputError(f"tolerance_mm must be a finite number ≥ 0 (mm), got {tolerance_mm!r}.")
    labels = check_labels(labels)
    clicks = check_clicks(clicks)
    chosen = select_slices(dataset, split, cases, max_slices_per_case)
    if split == "test" and dataset.meta.get("shared_sources"):  # recorded by preprocess: say it with the scores
        warnings.warn(dataset.meta["shared_sources"], stacklevel=2)
    _check_spacing(chosen)  # before any embedding is computed
    store = embed(dataset, model, split=split, cases=cases, max_slices_per_case=max_slices_per_case,
                  progress=progress)
    records = []
    for case in tqdm(sorted(set(chosen["case"])), desc="evaluate", unit="case", disable=not progress):
        seg = predict_case(model, dataset, case, max_slices_per_case, labels, store, clicks)
        for k, name in sorted(seg.label_names.items()):
            t, p = seg.truth[k], seg.pred[k]
            flat = len(seg.slices) == 1 and not np.isfinite(seg.spacing[0])  # a 2D case: 2D DSC and NSD
            steps = [dice(p, t)] + [dice(c, t) for c in seg.clicked.get(k, [])]
            extra = {**{f"dsc@{c}": steps[c] for c in range(1, len(steps))},
                     **({"noc85": clicks_to_reach(steps, 0.85), "noc90": clicks_to_reach(steps, 0.90)} if clicks else {})}
            records.append({**extra, "case": case, "label": k, "label_name": name, "dsc": dice(p, t),
                            "nsd": nsd(p[0], t[0], seg.spacing[1:], tolerance_mm) if flat
                            else nsd(p, t, seg.spacing, tolerance_mm),
                            "slices": int(t.any(axis=(1, 2)).sum()), "truth_voxels": int(t.sum()),
                            "pred_voxels": int(p.sum())})
    per_case = pd.DataFrame(records)
    if per_case.empty:
        raise InputError("nothing to evaluate: the selected slices have no targets with these labels.")
    per_label = (per_case.groupby(["label", "label_name"]).agg(dsc=("dsc", "mean"), nsd=("nsd", "mean"),
                                                             cases=("case", "nunique"))
                 .reset_index().drop(columns="label").set_index("label_name"))
    per_label.loc["mean"] = [per_label["dsc"].mean(), per_label["nsd"].mean(), per_case["case"].nunique()]
    per_label["cases"] = per_label["cases"].astype(int)
    if clicks:
        extra = [c for c in per_case.columns if c.startswith(("dsc@", "noc"))]
        means = per_case.groupby("label_name")[extra].mean()
        per_label = per_label.join(means)
        per_label.loc["mean", extra] = means.mean()
        per_case = per_case[[c for c in per_case.columns if c not in extra] + extra]
    return per_case, per_label
