"""Weak labels (issue 33): boxes / RECIST lines on disk → preprocess → finetune, and the box loss."""

import numpy as np
import pytest
import torch
from scipy import ndimage

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.data.dataset import open_dataset
from medsam_lite.interactive.session import AnnotationSession
from medsam_lite.io.weaklabels import WeakAnnotation, read_weak_labels, write_weak_labels
from medsam_lite.train.losses import BoxSupervisedLoss, DiceBCELoss, LossBatch, intensity_pseudo_mask

VENTRICLES = 3


def _longest_run(mask: np.ndarray, axis: int):
    """End points ``((x, y), (x, y))`` of the longest straight run of ``mask`` along rows (1) or columns (0)."""
    best = (0, None)
    for i in range(mask.shape[1 - axis]):
        line = mask[i] if axis == 1 else mask[:, i]
        lab, n = ndimage.label(line)
        for k in range(1, n + 1):
            idx = np.flatnonzero(lab == k)
            if len(idx) > best[0]:
                a, b = idx[0], idx[-1]
                best = (len(idx), ((a, i), (b, i)) if axis == 1 else ((i, a), (i, b)))
    return tuple((float(x), float(y)) for x, y in best[1])


def test_projection_loss_prefers_the_mask_that_fills_the_box():
    box = torch.zeros(1, 1, 32, 32)
    box[..., 8:20, 10:24] = 1
    image = torch.zeros_like(box)
    image[..., 8:20, 10:24] = 1.0  # the object is bright and fills its box
    loss = BoxSupervisedLoss()
    batch = LossBatch(box, torch.tensor([True]), None, image)
    fill, leak, small = (box * 2 - 1) * 10, torch.full_like(box, 10.0), -torch.ones_like(box) * 10
    small[..., 12:16, 14:18] = 10
    assert loss(fill, batch) < 0.05 < loss(leak, batch) and loss(fill, batch) < loss(small, batch)
    mixed = LossBatch(box.repeat(2, 1, 1, 1), torch.tensor([False, True]), None, image.repeat(2, 1, 1, 1))
    both = fill.repeat(2, 1, 1, 1)  # a mask target with the right mask + a box target filled: both low
    assert loss(both, mixed) < 0.05


def test_intensity_pseudo_mask_finds_the_object_the_box_holds():
    """A dark object inside a tight box on bright tissue: its pixels are foreground, the tissue in the
    box (as frequent in the band outside the box) background, nothing outside the box labelled."""
    image = torch.full((1, 1, 64, 64), 0.8)
    image[..., 20:40, 20:30] = 0.1  # the object: two dark blocks, bright tissue between them
    image[..., 20:40, 36:44] = 0.1
    box = torch.zeros_like(image)
    box[..., 20:40, 20:44] = 1
    target, weight = intensity_pseudo_mask(image, box, ring=6)
    obj = image < 0.5
    assert target[obj].all() and not target[~obj].any() and (weight[box == 0] == 0).all()
    assert weight[(box > 0) & ~obj].all()  # the tissue between the blocks: labelled background


def test_weak_label_files_round_trip(tmp_path):
    anns = [WeakAnnotation("a", 1, "box", 3, (1.0, 2.0, 10.0, 12.0)),
            WeakAnnotation("a", "liver", "box3d", None, (1.0, 2.0, 10.0, 12.0), (2, 5)),
            WeakAnnotation("b", 2, "recist", 4, (0, 0, 0, 0), None, (((1.0, 5.0), (9.0, 5.0)), ((5.0, 2.0), (5.0, 8.0))))]
    for name in ("w.csv", "w.json"):
        back = read_weak_labels(write_weak_labels(tmp_path / name, anns))
        assert back[:2] == anns[:2] and back[2].box == (1.0, 2.0, 9.0, 8.0) and back[2].lines == anns[2].lines
        assert back[1].slices() == [2, 3, 4, 5]
    (tmp_path / "bad.csv").write_text("case,label,kind,slice,x0,y0,x1,y1\na,1,circle,3,1,2,3,4\n")
    with pytest.raises(ml.InputError, match="line 2.*kind must be one of"):
        read_weak_labels(tmp_path / "bad.csv")


@pytest.fixture(scope="module")
def recist_dataset(tmp_path_factory):
    """sub-01 with RECIST lines only (long + short axis of the ventricles on 2 slices), sub-07 as the test case."""
    d = samples.brain_mri_dir()
    lab = io.read_volume(d / "sub-01_label.nii.gz").array
    zs = [z for z in range(lab.shape[0]) if (lab[z] == VENTRICLES).sum() > 200]
    anns, lesions = [], []
    for z in zs[len(zs) // 2: len(zs) // 2 + 2]:
        cc, n = ndimage.label(lab[z] == VENTRICLES)
        m = cc == 1 + int(np.argmax(np.bincount(cc.ravel())[1:]))  # one lesion: the larger ventricle
        lesions.append(m)
        anns.append(WeakAnnotation("sub-01", VENTRICLES, "recist", z, (0, 0, 0, 0), None,
                                   (_longest_run(m, 1), _longest_run(m, 0))))
    root = tmp_path_factory.mktemp("recist")
    write_weak_labels(root / "recist.csv", anns)
    ml.preprocess({"sub-01": (d / "sub-01.nii.gz", None), "sub-07": (d / "sub-07.nii.gz", d / "sub-07_label.nii.gz")},
                  root / "ds", test_cases=["sub-07"], weak=root / "recist.csv", labels=[VENTRICLES], progress=False)
    return root / "ds", anns, lesions


def test_recist_lines_in_dataset_and_a_fine_tuned_decoder_out(recist_dataset, model, tmp_path):
    root, anns, lesions = recist_dataset
    ds = open_dataset(root)
    train = ds.manifest[ds.manifest["split"] == "train"]
    assert list(train["weak"]) == ["recist", "recist"] and list(train["slice"]) == [a.slice for a in anns]
    stored = ds.weak_mask(train["mask"].iloc[0])
    assert (stored == 255).sum() >= 10 and (stored == 128).sum() > (stored == 255).sum()
    pts = np.array([p for line in anns[0].lines for p in line])  # the box is the two lines' bounding box
    np.testing.assert_allclose(train[["x0", "y0", "x1", "y1"]].iloc[0], [*pts.min(0), *pts.max(0)])
    assert all(lesions[0][int(y), int(x)] for x, y in pts)  # the lines' end points lie on the lesion
    with pytest.raises(ml.InputError, match="weak labels.*BoxSupervisedLoss"):
        ml.finetune(root, tmp_path / "x", model, epochs=1, loss=DiceBCELoss(), progress=False)
    r = ml.finetune(root, tmp_path / "ft", model, epochs=1, lr=1e-4, batch_size=2, val_fraction=0, progress=False)
    ckpt = torch.load(r.best, map_location="cpu", weights_only=True)
    assert '"box_supervised"' in ckpt["config"] and r.history["train_loss"].iloc[-1] > 0
    tuned = ml.load_model(checkpoint=r.best)
    changed = [k for k, v in ckpt["model"].items() if not torch.equal(v, model.state_dict()[k])]
    assert changed and torch.equal(tuned.state_dict()[changed[0]], ckpt["model"][changed[0]])
    with pytest.raises(ml.InputError, match="weak labels but fell in the test split"):
        ml.preprocess({"sub-07": (samples.brain_mri_dir() / "sub-07.nii.gz", None), "sub-01":
                       (samples.brain_mri_dir() / "sub-01.nii.gz", samples.brain_mri_dir() / "sub-01_label.nii.gz")},
                      tmp_path / "bad", test_cases=["sub-07"], weak=[WeakAnnotation("sub-07", 3, "box", 20, (1, 1, 9, 9))],
                      progress=False)
    assert not (tmp_path / "bad").exists()


def test_session_boxes_become_weak_labels(model, brain_slice, tmp_path):
    image, label = brain_slice
    session = AnnotationSession(image, model, labels={VENTRICLES: "ventricles"})
    box = ml.box_from_mask(label == VENTRICLES)
    session.add_box(box, "ventricles")
    path = session.save_boxes(tmp_path / "boxes.csv", case="slice")
    session.close()
    back = read_weak_labels(path)
    assert len(back) == 1 and back[0].case == "slice" and back[0].label == VENTRICLES and back[0].slice == 0
    np.testing.assert_allclose(back[0].box, session.objects[0].box, atol=1e-3)


def test_several_boxes_per_target_say_what_lies_between_them():
    """Two boxes of one label on one slice (one per ventricle) are one target: a mask bridging the two
    boxes, or one filling only one of them, costs more than the two objects; the outside term too."""
    box = torch.zeros(1, 1, 32, 32)
    box[..., 8:20, 4:12] = 1
    box[..., 8:20, 18:28] = 1
    parts = [np.array([[4, 8, 11, 19], [18, 8, 27, 19]], np.float32)]
    two = (box * 2 - 1) * 10
    bridge, one = two.clone(), two.clone()
    bridge[..., 8:20, 4:28] = 10
    one[..., 8:20, 18:28] = -10
    for outside in (0.0, 1.0):
        loss = BoxSupervisedLoss(pairwise=0.0, outside=outside)
        batch = LossBatch(box, torch.tensor([True]), None, None, parts)
        assert loss(two, batch) < 0.05 < loss(bridge, batch) and 0.5 < loss(one, batch)
    assert BoxSupervisedLoss(pairwise=0.0)(one, LossBatch(box, torch.tensor([True]))) < 0.5  # the parts say it


def test_weak_boxes_of_one_label_and_slice_are_one_target():
    from types import SimpleNamespace

    import pandas as pd

    from medsam_lite.train.steps import weak_groups

    rows = pd.DataFrame({"case": ["a", "a", "a", "a"], "slice": [3, 4, 4, 4], "label": [3, 3, 3, 2],
                         "weak": ["", "box", "box", "box"]})
    assert weak_groups(SimpleNamespace(meta={"split_components": False}), rows) == [[0], [1, 2], [3]]
    assert weak_groups(SimpleNamespace(meta={"split_components": True}), rows) == [[0], [1], [2], [3]]


def test_held_out_sentence_names_the_label_the_guard_let_through():
    import pandas as pd

    from medsam_lite.train.config import FinetuneResult

    run = FinetuneResult("best.pt", "last.pt", pd.DataFrame(), ["case-01"], ["case-02"], best_epoch=3,
                         change={"liver": {"change": 0.004}, "spleen": {"change": 0.02}}, tolerance=0.01)
    before = pd.DataFrame({"dsc": [0.953, 0.80, 0.5]}, index=["liver", "spleen", "aorta"])
    table, text = run.held_out(before, pd.DataFrame({"dsc": [0.933, 0.85, 0.3]}, index=["liver", "spleen", "aorta"]))
    assert list(table.index[table["below"]]) == ["liver", "aorta"]
    assert "liver 0.953 → 0.933 (-0.020)" in text and "+0.004 at epoch 3" in text and "disagree" in text
    assert "validation cases hold no aorta" in text and "spleen" not in text
    _, fine = run.held_out(before, before)
    assert "no label's held-out DSC is below" in fine


def test_self_training_term_follows_the_models_confident_pixels_inside_the_box():
    box = torch.zeros(1, 1, 16, 16)
    box[..., 2:14, 2:14] = 1
    pseudo = torch.full_like(box, 0.5)   # unsure: not used
    pseudo[..., 4:8, 4:8] = 0.9          # the model was sure: object
    pseudo[..., 10:13, 10:13] = 0.1      # sure: background
    agree = torch.where(pseudo >= 0.5, 10.0, -10.0)
    agree[..., 10:13, 10:13] = -10.0
    flip = agree.clone()
    flip[..., 4:8, 4:8] = -10.0
    loss = BoxSupervisedLoss(pairwise=0.0, outside=0.0, self_train=1.0)
    plain = BoxSupervisedLoss(pairwise=0.0, outside=0.0)
    batch = LossBatch(box, torch.tensor([True]), pseudo=pseudo)
    assert loss(flip, batch) - plain(flip, batch) > 1.0 > loss(agree, batch) - plain(agree, batch)
