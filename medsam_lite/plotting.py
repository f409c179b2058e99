"""Plot helpers the notebooks call: mask and box overlays, image grids, training curves.

Boxes are XYXY in the pixels of the image they are drawn on; masks are ``H×W`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

#: One colour per label / box index (RGB in [0, 1]).
COLORS = np.array([
    [0.12, 0.56, 1.00], [1.00, 0.50, 0.05], [0.17, 0.80, 0.17], [0.90, 0.10, 0.30],
    [0.58, 0.40, 0.74], [0.95, 0.85, 0.10], [0.09, 0.75, 0.81], [0.89, 0.47, 0.76],
])


def color(i: int) -> np.ndarray:
    """The RGB colour (floats in [0, 1]) used for label/box number ``i``."""
    return COLORS[int(i) % len(COLORS)]


def overlay(image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray], alpha: float = 0.45,
            colors: Sequence[int] | None = None) -> np.ndarray:
    """Blend masks onto an image and return ``H×W×3`` ``uint8`` (e.g. for a widget or PNG).

    Args:
        image: ``H×W`` or ``H×W×3``; non-``uint8`` input is min-max scaled for display.
        masks: one ``H×W`` bool mask or a sequence / ``N×H×W`` stack.
        alpha: mask opacity.
        colors: colour index per mask (default ``0, 1, 2, …``).

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


def show_box(box, ax=None, index: int = 0, label: str | None = None) -> None:
    """Draw one XYXY box as a rectangle (pixel-edge aligned) on ``ax``."""
    ax = ax or plt.gca()
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                               edgecolor=color(index), linewidth=2))
    if label:
        ax.text(x0, y0 - 2, label, color=color(index), fontsize=9, va="bottom")


def radiological_flips(direction) -> tuple[bool, bool]:
    """``(flip_rows, flip_cols)`` that show an axial slice of a ``(z, y, x)`` array in radiological
    orientation: anterior at the top, the patient's right on the viewer's left.

    ``direction`` is the volume's SimpleITK direction (9 numbers, LPS world, ``(x, y, z)`` order, as
    in :class:`medsam_lite.io.Volume`). Array columns run along ``x``: radiological display wants
    them to run toward the patient's left (+L), rows toward posterior (+P). A NIfTI stored in RAS
    order (direction ``diag(-1, -1, 1)``) needs both flips; a DICOM series (identity) needs none.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    # column j of the direction matrix is array axis j (x, y, z) in LPS world coordinates
    return bool(d[1, 1] < 0 if abs(d[1, 1]) >= abs(d[0, 1]) else d[0, 1] < 0), \
        bool(d[0, 0] < 0 if abs(d[0, 0]) >= abs(d[1, 0]) else d[1, 0] < 0)


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
               colors: Sequence[int] | None = None):
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
        colors: colour index per mask (default ``0, 1, 2, …``): keep one colour per label across
            figures that show different subsets of the labels.
    """
    from matplotlib.patches import Patch

    image, masks, boxes = _flip_for_display(image, masks, boxes, direction)
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    ax.imshow(overlay(image, masks, colors=colors) if masks is not None and len(masks)
              else overlay(image, np.zeros((0,) + np.shape(image)[:2], bool)))
    if boxes is not None:
        for i, b in enumerate(np.atleast_2d(np.asarray(boxes, dtype=float))):
            if legend is None:
                show_box(b, ax, i, labels[i] if labels else None)
            else:
                x0, y0, x1, y1 = b
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                           edgecolor=BOX_COLOR, linewidth=1.2, linestyle="--"))
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
            direction=None, colors: Sequence[int] | None = None, legend: Sequence[str] | None = None):
    """Side by side: one panel per named mask (e.g. ground truth, pretrained, fine-tuned).

    A panel is one ``H×W`` mask, or an ``N×H×W`` stack (one colour per index, e.g. per label).
    ``direction``, ``colors`` and ``legend`` are those of :func:`show_masks` (the legend is drawn
    beside the last panel).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(figsize_per * len(panels) + (1.5 if legend else 0),
                                                      figsize_per))
    axes = np.atleast_1d(axes)
    for i, (ax, (name, mask)) in enumerate(zip(axes, panels.items())):
        stack = mask if np.ndim(mask) == 3 else [mask]
        show_masks(image, stack, None if box is None else [box], ax=ax, title=name, direction=direction,
                   colors=colors, legend=legend if legend is not None and i == len(axes) - 1 else None)
    fig.tight_layout()
    return fig


def plot_history(history, ax=None, label_names: dict | None = None):
    """Training curves from ``finetune``'s history: loss, and validation Dice per epoch (the mean,
    and one curve per label when the history has ``val_dice_<label>`` columns), on integer epoch ticks.

    ``history`` is a DataFrame or a list of dicts with ``epoch``, ``train_loss`` and ``val_dice``.
    ``label_names`` (``{value: name}``, in colour order) colours each label as in the overlays.
    """
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    df = pd.DataFrame(history)
    if ax is None:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    else:
        ax1, ax2 = ax
    ax1.plot(df["epoch"], df["train_loss"], "o-")
    ax1.set_ylabel("train loss (Dice + BCE)")
    ax1.set_title("training loss")
    if "val_dice" in df:
        ax2.plot(df["epoch"], df["val_dice"], "o-", color="k", label="mean")
    names = list((label_names or {}).values())
    for col in [c for c in df.columns if c.startswith("val_dice_")]:
        name = col[len("val_dice_"):]
        ax2.plot(df["epoch"], df[col], ".--", label=name,
                 color=color(names.index(name)) if name in names else None)
    ax2.set_ylabel("validation Dice")
    ax2.set_title("validation Dice (held-out training case)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    for a in (ax1, ax2):
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.figure.tight_layout()
    return ax1.figure


def plot_dataset_grid(dataset, n: int = 8, split: str | None = None, ncols: int = 4, seed: int = 0,
                      figsize_per: float = 3.0):
    """A grid of stored slices from a prepared dataset, each with one target's mask and box.

    Targets are sampled (seeded) in turn from each label, so every label shows up. The box, stored
    in original slice pixels, is drawn in the stored image's pixels (``Geometry.box_to_model``).

    Args:
        dataset: a prepared dataset folder or a :class:`~medsam_lite.data.dataset.Dataset`.
        n: number of panels.
        split: ``"train"`` or ``"test"`` to show only that split (default: both).
        ncols: panels per row.
        seed: sampling seed.
    """
    from .data.dataset import open_dataset

    ds = open_dataset(dataset)
    m = ds.manifest if split is None else ds.split(split)
    m = m.sample(frac=1.0, random_state=seed)
    m = m.assign(turn=m.groupby("label").cumcount()).sort_values(["turn", "label"]).head(n)
    nrows = max(1, -(-len(m) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(figsize_per * ncols, figsize_per * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, row, box in zip(axes.ravel(), m.itertuples(), ds.stored_boxes(m)):
        ax.imshow(overlay(ds.image(row.image), [ds.mask(row.mask)], colors=[row.label]))
        show_box(box, ax, index=row.label)
        ax.set_title(f"{row.case} #{row.slice} · {row.label_name}\n{row.split}, {row.pixels} px", fontsize=9)
    fig.tight_layout()
    return fig


def plot_target_sizes(manifest, min_pixels: int | None = None, ax=None, bins: int = 30):
    """Histogram of target sizes (original pixels, log scale) per label, from a manifest.

    Args:
        manifest: the DataFrame returned by ``preprocess`` (or ``Dataset.manifest``).
        min_pixels: draw the threshold below which targets were dropped.
    """
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    edges = np.geomspace(max(1, manifest["pixels"].min()) / 1.2, manifest["pixels"].max() * 1.2, bins + 1)
    for label, group in manifest.groupby("label"):
        ax.hist(group["pixels"], bins=edges, alpha=0.6, color=color(label), label=group["label_name"].iloc[0])
    if min_pixels:
        ax.axvline(min_pixels, color="k", linestyle="--", linewidth=1, label=f"min_pixels = {min_pixels}")
    ax.set_xscale("log")
    ax.set_xlabel("target size (pixels of the original slice)")
    ax.set_ylabel("targets")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
