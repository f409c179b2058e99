"""What the click decoder proposes and what the rule keeps, per robot click (bench/RESULTS.md, "Brain tissue:
why clicks do not gain"): a spy rule wraps LocalRule() and logs, for the newest click, its label, the previous
mask's area and equivalent radius, the error region under the click and its depth, the decoder's changed pixels
(and how many move toward the truth), the connected change under the click, and what the rule accepted.

    PYTHONPATH=. OMP_NUM_THREADS=1 MEDSAM_LITE_THREADS=1 python bench/diag_click_answers.py "brain tissue"
"""
import sys, json
import numpy as np, torch
import medsam_lite as ml
sys.path.insert(0, "bench")
import bench_clicks as B
from medsam_lite.model.clickrule import LocalRule
from scipy import ndimage
torch.set_num_threads(1)
domain = sys.argv[1] if len(sys.argv) > 1 else "brain tissue"
TRUTH = {}
LOG = []

class Spy:
    name = "spy"
    def __init__(self, inner): self.inner = inner
    def accept(self, previous, proposed, points, labels):
        acc = self.inner.accept(previous, proposed, points, labels)
        t = TRUTH["t"]
        prev, prop = previous[0], proposed[0]
        x, y = points[0][-1]; lab = int(labels[0][-1])
        col, row = int(round(x)), int(round(y))
        dirchange = (prop & ~prev) if lab == 1 else (prev & ~prop)
        good_all = (prev != prop) & (prop == t)
        a = acc[0] & (prev != prop)
        cc, n = ndimage.label(dirchange, np.ones((3, 3)))
        k = cc[row, col]
        region = cc == k if k else np.zeros_like(prev)
        err = prev ^ t
        ecc, _ = ndimage.label(err)
        eregion = ecc == ecc[row, col] if ecc[row, col] else np.zeros_like(prev)
        LOG.append(dict(label=lab, prev_area=int(prev.sum()), radius=float(np.sqrt(prev.sum() / np.pi)),
                        err_region=int(eregion.sum()), err_edt=float(ndimage.distance_transform_edt(np.pad(eregion, 1))[1:-1, 1:-1][row, col]) if eregion.any() else 0.0,
                        dec_changed=int((prev != prop).sum()), dec_good=int(good_all.sum()),
                        dec_dir=int(dirchange.sum()), under_click=bool(k), region=int(region.sum()),
                        region_good=int((region & (prop == t)).sum()),
                        region_in_err=int((region & eregion).sum()),
                        region_maxdist=float(np.hypot(*(np.argwhere(region) - [row, col]).T).max()) if region.any() else 0.0,
                        acc=int(a.sum()), acc_good=int((a & (prop == t)).sum())))
        return acc

shipped = ml.load_model()
rule = Spy(LocalRule())
pred = ml.Predictor(shipped)
for tag, image, modality, targets, _ in B.slices(domain):
    pred.set_image(image, modality=modality)
    for name, truth in targets:
        if truth.sum() < 10: continue
        TRUTH["t"] = truth
        box = ml.box_from_mask(truth)
        LOG.append(dict(target=name, slice=tag, area=int(truth.sum())))
        d = ml.simulate_clicks(shipped, pred.embedding, truth, box, n_clicks=3, click_rule=rule)
        LOG.append(dict(dice=[round(float(v), 3) for v in d]))
        print(tag, name, d.round(3), flush=True)
for r in LOG: print(r)
