"""The main job on the bundled sample data: ``python -m medsam_lite.demo``.

Segments the lateral ventricles and the whole brain in the sample slice from their boxes with the
bundled LiteMedSAM and writes an overlay PNG and the masks to ``--out`` (default ``runs/demo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import medsam_lite as ml
    from medsam_lite import io, plotting, samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    boxes = np.stack([ml.box_from_mask(label == 3), ml.box_from_mask(label > 0)])
    predictor = ml.Predictor(ml.load_model())
    predictor.set_image(image)
    masks, scores = predictor.predict(boxes)
    for name, mask, truth, score in zip(["ventricles", "brain"], masks, [label == 3, label > 0], scores):
        io.write_volume(mask.astype(np.uint8) * 255, out / f"{name}_mask.png")
        print(f"{name:10s} Dice vs label {ml.dice(mask, truth):.3f}  predicted IoU {score:.2f}")
    ax = plotting.show_masks(image, masks, boxes, labels=["ventricles", "brain"])
    ax.figure.savefig(out / "overlay.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'overlay.png'} and the masks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
