"""Figures in radiological orientation, with legends (issue 23): checked on the real CT's anatomy."""

import matplotlib

matplotlib.use("Agg")
import numpy as np

from medsam_lite import io, plotting, samples
from medsam_lite.io.display import radiological_flips


def test_radiological_flips_put_the_liver_on_the_viewers_left_and_the_spine_at_the_bottom():
    label = io.read_volume(samples.ct_abdomen_dir() / "case-02_label.nii.gz")
    flip_rows, flip_cols = radiological_flips(label.direction)
    z = int(np.argmax((label.array == 5).sum(axis=(1, 2))))
    shown = label.array[z][:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]
    liver_x = np.nonzero(shown == 5)[1].mean() / shown.shape[1]
    assert liver_x < 0.5  # patient's right on the viewer's left
    if (shown == 1).any():  # the spleen on the viewer's right
        assert np.nonzero(shown == 1)[1].mean() / shown.shape[1] > 0.5
    aorta_rows = np.nonzero(shown == 52)[0]
    body_rows = np.nonzero(shown > 0)[0]
    if aorta_rows.size:  # the aorta lies in front of the spine: in the lower (posterior) half
        assert aorta_rows.mean() > body_rows.mean()
    # an identity direction (a DICOM series in LPS) needs no flip
    assert radiological_flips((1, 0, 0, 0, 1, 0, 0, 0, 1)) == (False, False)


def test_show_masks_flips_image_masks_and_boxes_together_and_names_each_mask():
    image = np.zeros((20, 30))
    mask = np.zeros((1, 20, 30), bool)
    mask[0, 2:5, 3:8] = True  # top-left in the stored array
    box = [3, 2, 7, 4]
    ax = plotting.show_masks(image, mask, [box], direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), legend=["organ"])
    shown = ax.images[0].get_array()
    coloured = np.nonzero(shown[..., 0] != shown[..., 1])
    assert coloured[0].min() == 20 - 5 and coloured[1].min() == 30 - 8  # now bottom-right
    rect = [p for p in ax.patches if hasattr(p, "get_xy")][0]
    assert rect.get_xy() == (30 - 1 - 7 - 0.5, 20 - 1 - 4 - 0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["organ", "box prompt"]


def test_plot_history_stars_the_epoch_finetune_chose_even_the_pretrained_one():
    """The guard may keep epoch 0 (or an epoch below the best mean): the star follows ``best_epoch``."""
    history = [dict(epoch=0, train_loss=float("nan"), val_dice=0.90, val_dice_liver=0.95),
               dict(epoch=1, train_loss=0.5, val_dice=0.95, val_dice_liver=0.80),
               dict(epoch=2, train_loss=0.4, val_dice=0.92, val_dice_liver=0.85)]

    def star(fig):
        ax = fig.axes[1]
        (line,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
        return float(line.get_xdata()[0]), float(line.get_ydata()[0]), line.get_label()

    assert star(plotting.plot_history(history)) == (1.0, 0.95, "best epoch 1: 0.950")  # no choice given: max
    assert star(plotting.plot_history(history, best_epoch=0)) == (0.0, 0.90, "best epoch 0: 0.900")
    assert star(plotting.plot_history(history, best_epoch=2)) == (2.0, 0.92, "best epoch 2: 0.920")
    matplotlib.pyplot.close("all")
