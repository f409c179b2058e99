"""Plot helpers the notebooks call: mask and box overlays, image grids, training curves.

Boxes are XYXY in the pixels of the image they are drawn on; masks are ``H×W`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .io.display import display_window, radiological_flips, stored_for_display

#: The Okabe–Ito palette (Okabe & Ito 2008), distinguishable with every common colour-vision
#: deficiency; black is left out (it vanishes on a scan). RGB in [0, 1].
OKABE_ITO = {
    "orange": (0.902, 0.624, 0.000), "sky_blue": (0.337, 0.706, 0.914), "bluish_green": (0.000, 0.620, 0.451),
    "yellow": (0.941, 0.894, 0.259), "vermillion": (0.835, 0.369, 0.000), "blue": (0.000, 0.447, 0.698),
    "reddish_purple": (0.800, 0.475, 0.655),
}
#: One colour per label / box index when a label has no entry in :data:`LABEL_COLORS`.
COLORS = np.array(list(OKABE_ITO.values()))

#: THE label → colour table: a label name has one colour in every figure, the widget and the demo
#: (names compare in lower case, spaces as ``_``). The seven abdominal organs get the assignment that
#: keeps neighbours on a slice (liver/kidney/IVC/stomach/spleen, aorta/IVC, …) furthest apart under
#: simulated protan-, deuteran- and tritanopia (tests/test_display.py).
LABEL_COLORS = {
    "liver": OKABE_ITO["orange"], "spleen": OKABE_ITO["sky_blue"], "kidney_right": OKABE_ITO["bluish_green"],
    "kidney_left": OKABE_ITO["vermillion"], "aorta": OKABE_ITO["reddish_purple"],
    "inferior_vena_cava": OKABE_ITO["yellow"], "stomach": OKABE_ITO["blue"],
    "gallbladder": OKABE_ITO["bluish_green"], "pancreas": OKABE_ITO["yellow"],
    "white_matter": OKABE_ITO["sky_blue"], "grey_matter": OKABE_ITO["orange"], "gray_matter": OKABE_ITO["orange"],
    "lateral_ventricles": OKABE_ITO["vermillion"], "ventricles": OKABE_ITO["vermillion"],
    "brain": OKABE_ITO["sky_blue"], "target": OKABE_ITO["orange"],
}


def color(i) -> np.ndarray:
    """The RGB colour (floats in [0, 1]) of a label: by name (:data:`LABEL_COLORS`; an unknown name
    gets a fixed colour from its text), by index ``i`` into :data:`COLORS`, or an RGB triple as is."""
    if isinstance(i, (tuple, list, np.ndarray)) and len(i) == 3:
        return np.asarray(i, dtype=float)
    if isinstance(i, str):
        key = i.strip().lower().replace(" ", "_").replace("-", "_")
        if key in LABEL_COLORS:
            return np.asarray(LABEL_COLORS[key])
        import zlib

        return COLORS[zlib.crc32(key.encode("utf-8")) % len(COLORS)]
    return COLORS[int(i) % len(COLORS)]


def overlay(image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray], alpha: float = 0.45,
            colors: Sequence[int] | None = None) -> np.ndarray:
    """Blend masks onto an image and return ``H×W×3`` ``uint8`` (e.g. for a widget or PNG).

    Args:
        image: ``H×W`` or ``H×W×3``; non-``uint8`` input is min-max scaled for display.
        masks: one ``H×W`` bool mask or a sequence / ``N×H×W`` stack.
        alpha: mask opacity.
        colors: colour per mask: a label name (:data:`LABEL_COLORS`) or an index (default ``0, 1, 2, …``).

    Raises:
        InputError: an image that is not ``H×W``/``H×W×3`` real numbers (or holds NaN/Inf), or masks
            of another size than the image.
    """
    from .errors import InputError

    img = np.asarray(image)
    shape_ok = img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
    if (img.dtype.kind not in "uifb" or img.size == 0 or not shape_ok
            or (img.dtype.kind == "f" and not np.isfinite(img).all())):
        raise InputError(f"overlay needs an H×W or H×W×3 image of finite real numbers, got {img.dtype} {img.shape}.")
    try:
        stack = np.asarray(masks, dtype=bool)
    except (TypeError, ValueError):
        raise InputError("masks must be one H×W bool mask or a list / N×H×W stack of them.") from None
    if stack.shape[-2:] != img.shape[:2] or stack.ndim not in (2, 3):
        raise InputError(f"masks of shape {stack.shape} do not fit the {img.shape[0]}×{img.shape[1]} image; "
                         "give H×W masks of the image's size.")
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        img = ((img - lo) / max(hi - lo, 1e-8) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    out = img[..., :3].astype(np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    for i, m in enumerate(stack):
        c = color(colors[i] if colors is not None else i) * 255
        out[m] = (1 - alpha) * out[m] + alpha * c
    return np.clip(out, 0, 255).astype(np.uint8)


def show_box(box, ax=None, index=0, label: str | None = None) -> None:
    """Draw one XYXY box as a rectangle (pixel-edge aligned) on ``ax``, in the colour of ``index``
    (a label name or an index, :func:`color`)."""
    ax = ax or plt.gca()
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                               edgecolor=color(index), linewidth=2))
    if label:
        ax.text(x0, y0 - 2, label, color=color(index), fontsize=9, va="bottom")


def _flip_for_display(image, masks, boxes, direction):
    """Image ``H×W(×3)``, masks ``N×H×W`` and XYXY boxes flipped together (display only)."""
    if direction is None:
        return image, masks, boxes
    flip_rows, flip_cols = radiological_flips(direction)
    h, w = np.shape(image)[:2]
    image = np.asarray(image)[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]
    if masks is not None and len(masks):
        masks = np.asarray(masks, dtype=bool)[..., ::-1 if flip_rows else 1, ::-1 if flip_cols else 1]
    if boxes is not None:
        b = np.atleast_2d(np.asarray(boxes, dtype=float)).copy()
        if flip_cols:
            b[:, [0, 2]] = (w - 1) - b[:, [2, 0]]
        if flip_rows:
            b[:, [1, 3]] = (h - 1) - b[:, [3, 1]]
        boxes = b
    return image, masks, boxes


#: Boxes drawn in a colour no mask uses (see :data:`COLORS`), so a box is never mistaken for a mask.
BOX_COLOR = (1.0, 1.0, 1.0)


def show_masks(image: np.ndarray, masks=None, boxes=None, ax=None, title: str | None = None,
               labels: Sequence[str] | None = None, direction=None, legend: Sequence[str] | None = None,
               colors: Sequence | None = None, modality: str | None = None, points=None, point_labels=None):
    """Show an image with mask overlays and XYXY boxes (one colour per index). Returns the axes.

    Args:
        image: ``H×W`` (any real dtype, min-max scaled for display) or ``H×W×3``.
        masks: ``N×H×W`` bool (mask ``i`` in colour ``i``), or None.
        boxes: ``N×4`` XYXY in the image's pixels; drawn in the mask's colour with ``labels``, or in
            :data:`BOX_COLOR` (dashed, a colour no mask uses) when ``legend`` is given.
        labels: text beside each box.
        direction: the volume's direction (:attr:`medsam_lite.io.Volume.direction`) to show an
            axial slice in radiological orientation (see :func:`radiological_flips`); display only.
        legend: one name per mask: a legend in the masks' colours.
        points, point_labels: clicks ``N×2`` ``(x, y)`` in the image's pixels and ``1`` foreground /
            ``0`` background each (default all foreground): drawn as stars (green / vermillion,
            white edge), flipped with the image.
        modality: window a non-``uint8`` image for display (:func:`display_window`: CT soft
            tissue W400/L40, else percentiles) instead of min-max scaling it.
        colors: colour per mask: a label name (:data:`LABEL_COLORS`, the same in every figure) or
            an index; default: the ``legend`` names, else ``0, 1, 2, …``. Keep one colour per label across
            figures that show different subsets of the labels.
    """
    from matplotlib.patches import Patch

    if colors is None and legend is not None and len(legend) and masks is not None and len(legend) == len(masks):
        colors = list(legend)  # colour by label name: one colour per label everywhere
    if modality is not None and np.asarray(image).dtype != np.uint8:
        image = display_window(image, modality)
    h, w = np.shape(image)[:2]
    image, masks, boxes = _flip_for_display(image, masks, boxes, direction)
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    ax.imshow(overlay(image, masks, colors=colors) if masks is not None and len(masks)
              else overlay(image, np.zeros((0,) + np.shape(image)[:2], bool)))
    if boxes is not None:
        for i, b in enumerate(np.atleast_2d(np.asarray(boxes, dtype=float))):
            if legend is None:
                show_box(b, ax, colors[i] if colors is not None and i < len(colors) else i,
                         labels[i] if labels else None)
            else:
                x0, y0, x1, y1 = b
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                           edgecolor=BOX_COLOR, linewidth=1.2, linestyle="--"))
    if points is not None and len(points):
        pts = np.atleast_2d(np.asarray(points, dtype=float)).copy()
        lab = np.ones(len(pts), int) if point_labels is None else np.asarray(point_labels, int)
        if direction is not None:
            flip_rows, flip_cols = radiological_flips(direction)
            if flip_cols:
                pts[:, 0] = (w - 1) - pts[:, 0]
            if flip_rows:
                pts[:, 1] = (h - 1) - pts[:, 1]
        for positive, c in ((1, OKABE_ITO["bluish_green"]), (0, OKABE_ITO["vermillion"])):
            sel = lab == positive
            if sel.any():
                ax.plot(pts[sel, 0], pts[sel, 1], linestyle="none", marker="*", markersize=15, color=c,
                        markeredgecolor="w", markeredgewidth=1.0)
    if legend is not None:
        handles = [Patch(color=color(colors[i] if colors is not None else i), label=name)
                   for i, name in enumerate(legend)]
        if boxes is not None:
            handles.append(Patch(fill=False, edgecolor=BOX_COLOR, linestyle="--", label="box prompt"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=True,
                  facecolor="0.15", edgecolor="0.15", labelcolor="w")
    if direction is not None:
        ax.text(0.01, 0.5, "R", color="w", transform=ax.transAxes, fontsize=9, va="center")
        ax.text(0.97, 0.5, "L", color="w", transform=ax.transAxes, fontsize=9, va="center")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def compare(image: np.ndarray, panels: dict[str, np.ndarray], box=None, figsize_per: float = 3.5,
            direction=None, colors: Sequence | None = None, legend: Sequence[str] | None = None,
            modality: str | None = None):
    """Side by side: one panel per named mask (e.g. ground truth, pretrained, fine-tuned).

    A panel is one ``H×W`` mask, or an ``N×H×W`` stack (one colour per index, e.g. per label).
    ``direction``, ``colors``, ``legend`` and ``modality`` are those of :func:`show_masks` (the
    legend is drawn beside the last panel; colours default to the legend's label names).
    """
    if colors is None and legend is not None:
        colors = list(legend)
    fig, axes = plt.subplots(1, len(panels), figsize=(figsize_per * len(panels) + (1.5 if legend else 0),
                                                      figsize_per))
    axes = np.atleast_1d(axes)
    for i, (ax, (name, mask)) in enumerate(zip(axes, panels.items())):
        stack = mask if np.ndim(mask) == 3 else [mask]
        show_masks(image, stack, None if box is None else [box], ax=ax, title=name, direction=direction,
                   colors=colors, legend=legend if legend is not None and i == len(axes) - 1 else None,
                   modality=modality)
    fig.tight_layout()
    return fig


#: Error-map colours: false positives (predicted, not in the reference) and false negatives (in the
#: reference, missed), an Okabe–Ito pair a colour-blind reader tells apart.
FP_COLOR, FN_COLOR = OKABE_ITO["vermillion"], OKABE_ITO["sky_blue"]


def error_map(truth, pred) -> tuple[np.ndarray, np.ndarray]:
    """``(false_positive, false_negative)`` bool ``H×W`` masks of a prediction against a reference;
    ``N×H×W`` stacks (one mask per label) are compared label by label and the errors united."""
    t, p = np.asarray(truth, bool), np.asarray(pred, bool)
    if t.shape != p.shape:
        from .errors import InputError

        raise InputError(f"reference {t.shape} and prediction {p.shape} differ in shape; give masks of one slice.")
    fp, fn = p & ~t, t & ~p
    return (fp.any(axis=0), fn.any(axis=0)) if fp.ndim == 3 else (fp, fn)


def plot_error_maps(image, truth, predictions: dict, direction=None, modality: str | None = None,
                    figsize_per: float = 3.5, title: str | None = None):
    """Where each prediction is wrong: one panel per named prediction (e.g. pretrained, fine-tuned)
    with its false positives (:data:`FP_COLOR`) and false negatives (:data:`FN_COLOR`) over the
    image, titled with the pixel counts and the Dice of the (united) masks.

    Args:
        image: the slice, ``H×W`` (original intensities with ``modality``, or ``uint8``).
        truth: the reference, ``H×W`` bool or an ``N×H×W`` stack (one mask per label).
        predictions: ``{name: mask}`` of the same shape as ``truth``.
        direction, modality: as in :func:`show_masks` (radiological flips; display window).
    """
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(predictions), figsize=(figsize_per * len(predictions) + 1.6, figsize_per))
    axes = np.atleast_1d(axes)
    t = np.asarray(truth, bool)
    for ax, (name, pred) in zip(axes, predictions.items()):
        fp, fn = error_map(t, pred)
        p = np.asarray(pred, bool)
        pu, tu = (p.any(axis=0), t.any(axis=0)) if p.ndim == 3 else (p, t)
        d = 2 * np.count_nonzero(pu & tu) / max(np.count_nonzero(pu) + np.count_nonzero(tu), 1)
        show_masks(image, np.stack([fp, fn]), ax=ax, direction=direction, colors=[FP_COLOR, FN_COLOR], modality=modality,
                   title=f"{name}: Dice {d:.3f}\n{int(fp.sum())} px too many, {int(fn.sum())} px missed")
    axes[-1].legend(handles=[Patch(color=FP_COLOR, label="false positive"), Patch(color=FN_COLOR, label="false negative")],
                    loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, facecolor="0.15", edgecolor="0.15",
                    labelcolor="w")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, ax=None, label_names: dict | None = None, best_epoch: int | None = None):
    """Training curves from ``finetune``'s history: loss, and validation Dice per epoch (the mean,
    and one curve per label when the history has ``val_dice_<label>`` columns), on integer epoch ticks.

    An ``epoch`` 0 row (the model before training, when the history has one) is drawn as the
    pretrained baseline (a dotted line); the best epoch is marked with a star: ``best_epoch`` when
    given (``FinetuneResult.best_epoch``, the guard's choice, 0 = the pretrained decoder kept), else
    the highest mean validation Dice after epoch 0. Without validation Dice (no validation case) the
    panel says so.

    ``history`` is a DataFrame or a list of dicts with ``epoch``, ``train_loss`` and ``val_dice``.
    ``label_names`` (``{value: name}``) names the per-label curves; colours follow the label names
    (:data:`LABEL_COLORS`).
    """
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    df = pd.DataFrame(history)
    if ax is None:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    else:
        ax1, ax2 = ax
    trained = df[df["epoch"] > 0] if "epoch" in df else df
    base = df[df["epoch"] == 0] if "epoch" in df else df.iloc[:0]
    ax1.plot(trained["epoch"], trained["train_loss"], "o-", color="0.2")
    ax1.set_ylabel("train loss (Dice + BCE)")
    ax1.set_title("training loss")
    val = pd.to_numeric(trained["val_dice"], errors="coerce") if "val_dice" in trained else pd.Series(dtype=float)
    if val.notna().any():
        ax2.plot(trained["epoch"], val, "o-", color="k", label="mean")
        if len(base) and pd.notna(base["val_dice"].iloc[0]):
            ax2.axhline(float(base["val_dice"].iloc[0]), color="k", linestyle=":", linewidth=1,
                        label=f"pretrained (epoch 0) {float(base['val_dice'].iloc[0]):.3f}")
        if best_epoch is None:
            best, best_dice = int(trained["epoch"].loc[val.idxmax()]), float(val.max())
        else:
            best = int(best_epoch)
            best_dice = float(pd.to_numeric(df.loc[df["epoch"] == best, "val_dice"], errors="coerce").iloc[0])
        ax2.plot([best], [best_dice], marker="*", markersize=14, color=OKABE_ITO["vermillion"], linestyle="none",
                 label=f"best epoch {best}: {best_dice:.3f}")
    else:
        ax2.text(0.5, 0.5, "no validation case:\nno validation Dice", ha="center", va="center", transform=ax2.transAxes)
    for col in [c for c in df.columns if c.startswith("val_dice_")]:
        name = col[len("val_dice_"):]
        ax2.plot(trained["epoch"], trained[col], ".--", label=name, color=color(name))
    ax2.set_ylabel("validation Dice")
    ax2.set_title("validation Dice (held-out training case)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    for a in (ax1, ax2):
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.figure.tight_layout()
    return ax1.figure


def _case_directions(source, cases) -> dict:
    """``{case: direction}`` of the scans of ``source`` (a data folder) named in ``cases``."""
    from .io import scans as io
    from .io.cases import find_cases

    out = {}
    for c in find_cases(source):
        if c.name in cases:
            try:
                out[c.name] = io.read_volume(c.image).direction
            except Exception:  # noqa: BLE001 - a figure without orientation beats no figure
                pass
    return out


def plot_dataset_grid(dataset, n: int = 8, split: str | None = None, ncols: int = 4, seed: int = 0,
                      figsize_per: float = 3.0, source=None):
    """A grid of stored slices from a prepared dataset, each with one target's mask and box.

    Targets are sampled (seeded) in turn from each label, so every label shows up. The box, stored
    in original slice pixels, is drawn in the stored image's pixels (``Geometry.box_to_model``).
    CT slices are shown in the soft-tissue display window (:func:`stored_for_display`), colours
    by label name (:data:`LABEL_COLORS`).

    Args:
        dataset: a prepared dataset folder or a :class:`~medsam_lite.data.dataset.Dataset`.
        n: number of panels.
        split: ``"train"`` or ``"test"`` to show only that split (default: both).
        ncols: panels per row.
        seed: sampling seed.
        source: the data folder the dataset was prepared from: its scans' geometry turns axial
            slices (``axis`` 0) into radiological orientation (:func:`medsam_lite.io.display.display_flips`), as in every
            other figure. Without it slices are shown in array order.
    """
    from .data.dataset import open_dataset

    ds = open_dataset(dataset)
    m = ds.manifest if split is None else ds.split(split)
    m = m.sample(frac=1.0, random_state=seed)
    m = m.assign(turn=m.groupby("label").cumcount()).sort_values(["turn", "label"]).head(n)
    directions = _case_directions(source, set(m["case"])) if source is not None else {}
    preset = ds.preset
    nrows = max(1, -(-len(m) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(figsize_per * ncols, figsize_per * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, row, box in zip(axes.ravel(), m.itertuples(), ds.stored_boxes(m)):
        direction = directions.get(row.case) if int(row.axis) == 0 else None
        show_masks(stored_for_display(ds.image(row.image), preset), [ds.mask(row.mask)], [box], ax=ax,
                   labels=None, direction=direction, colors=[row.label_name])
        ax.set_title(f"{row.case} #{row.slice} · {row.label} {row.label_name}\n{row.split}, {row.pixels} px",
                     fontsize=9)
    fig.tight_layout()
    return fig


def plot_target_sizes(manifest, min_pixels: int | None = None, ax=None, bins: int = 30, min_mm2: float | None = None):
    """Histogram of target sizes (original pixels, log scale) per label, from a manifest.

    Args:
        manifest: the DataFrame returned by ``preprocess`` (or ``Dataset.manifest``).
        min_pixels: draw the threshold below which targets were dropped (``1`` is not drawn).
        min_mm2: the area rule that was applied (``dataset.meta["min_mm2"]``): drawn in pixels of
            each pixel spacing of the manifest (``min_mm2 / (spacing_row × spacing_col)``).
    """
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    edges = np.geomspace(max(1, manifest["pixels"].min()) / 1.2, manifest["pixels"].max() * 1.2, bins + 1)
    for label, group in manifest.groupby("label"):
        name = group["label_name"].iloc[0]
        ax.hist(group["pixels"], bins=edges, alpha=0.6, color=color(name), label=f"{label} {name}")
    if min_pixels and min_pixels > 1:
        ax.axvline(min_pixels, color="k", linestyle="--", linewidth=1, label=f"min_pixels = {min_pixels}")
    if min_mm2:
        for (sr, sc), _ in manifest.groupby(["spacing_row", "spacing_col"]):
            px = float(min_mm2) / (float(sr) * float(sc))
            ax.axvline(px, color="k", linestyle=":", linewidth=1,
                       label=f"min {float(min_mm2):g} mm² = {px:.1f} px at {float(sr):g}×{float(sc):g} mm")
    ax.set_xscale("log")
    ax.set_xlabel("target size (pixels of the original slice)")
    ax.set_ylabel("targets")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
