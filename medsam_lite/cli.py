"""The ``medsam-lite`` command: a thin shell over the Python functions.

Each subcommand mirrors one function (``preprocess``, ``embed``, ``finetune``, ``predict``,
``evaluate``) with the same defaults. Exit codes: 0 success, 2 bad input or usage (the message says
what to fix), 1 an unexpected failure. Boxes on the command line are XYXY in original pixels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _window(value: str | None):
    """``"medsam"`` (a preset name) or ``"-160,240"`` (low,high in HU) → window argument."""
    if value is None or "," not in value:
        return value
    low, high = value.split(",", 1)
    return (float(low), float(high))


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lite_medsam",
                   help="model name: lite_medsam, medsam_vit_b, sam_vit_b/l/h")
    p.add_argument("--checkpoint", default=None,
                   help="weights file (required for the ViT models; a fine-tuned checkpoint from "
                        "`finetune` works too); None = the bundled LiteMedSAM")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 …; None = cuda if available")


def _intensity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", default="MR",
                   help="CT uses a HU window; anything else clips to the 0.5–99.5 percentiles")
    p.add_argument("--window", default=None,
                   help="CT window preset (medsam, soft_tissue, lung, bone, brain, …) or LOW,HIGH in HU "
                        "; None = medsam (-500,1000) for CT")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="medsam-lite", description=__doc__.splitlines()[0],
                                     formatter_class=fmt)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this process; None = torch's choice")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"medsam-lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preprocess", help="scans + label maps → a prepared dataset folder", formatter_class=fmt)
    p.add_argument("source", help="folder (MSD/nnU-Net, flat case + case_label, 2D images + masks, DICOM)")
    p.add_argument("out_dir", help="dataset folder to create or resume")
    _intensity_args(p)
    p.add_argument("--image-size", type=int, default=256, help="longest side of the stored slices")
    p.add_argument("--axis", type=int, default=None, help="slicing axis in (z, y, x) order; None = the thickest")
    p.add_argument("--min-pixels", type=int, default=100, help="drop targets smaller than this")
    p.add_argument("--split-components", action="store_true", help="one target per connected component")
    p.add_argument("--test-fraction", type=float, default=0.2, help="fraction of cases held out")
    p.add_argument("--test-cases", nargs="+", default=None, help="explicit held-out case ids")
    p.add_argument("--seed", type=int, default=0, help="seed of the case split")
    p.add_argument("--label-suffix", default=None, help="label file suffix in the flat layout; None = _label")

    p = sub.add_parser("embed", help="compute and store the image embedding of every slice", formatter_class=fmt)
    p.add_argument("dataset", help="prepared dataset folder")
    _model_args(p)
    p.add_argument("--batch-size", type=int, default=1, help="slices per encoder call")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored dtype")
    p.add_argument("--recompute", action="store_true", help="discard a store made with other settings")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="compute only rows I::N of the slices (N independent jobs fill one store, e.g. a "
                        "Slurm job array; I counts from 0); under torchrun each process takes its share anyway")

    p = sub.add_parser("finetune", help="fine-tune the mask decoder on stored embeddings", formatter_class=fmt,
                       epilog="several GPUs or processes: torchrun --nproc_per_node N -m medsam_lite.cli finetune "
                              "... (DistributedDataParallel; --batch-size stays the global batch)")
    p.add_argument("dataset", help="prepared dataset folder (embed it first)")
    p.add_argument("out_dir", help="folder for best.pt, last.pt and history.csv")
    _model_args(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (the paper's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--box-jitter", type=int, default=20, help="max box jitter in px at 1024 scale")
    p.add_argument("--train-prompt-encoder", action="store_true", help="also train the prompt encoder")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/last.pt")
    p.add_argument("--overwrite", action="store_true", help="start again over an existing out_dir")

    p = sub.add_parser("predict", help="image or volume + box → mask file", formatter_class=fmt)
    p.add_argument("image", help="2D image (PNG/JPG/DICOM/2D NIfTI) or 3D volume (NIfTI/NRRD/MHA/DICOM folder)")
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                   help="XYXY box in original pixels (on --slice for a volume)")
    p.add_argument("--box3d", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                   help="3D box for a volume (LiteMedSAM challenge format)")
    p.add_argument("--slice", type=int, default=None, help="key slice index of --box in a volume")
    p.add_argument("--out", required=True, help="mask file (.nii.gz/.nrrd/.mha keep the source geometry; .png for 2D)")
    _model_args(p)
    _intensity_args(p)

    p = sub.add_parser("evaluate", help="DSC and NSD per case and label on a split", formatter_class=fmt)
    p.add_argument("dataset", help="prepared (and embedded) dataset folder")
    _model_args(p)
    p.add_argument("--split", default="test", help="train or test")
    p.add_argument("--tolerance-mm", type=float, default=1.0, help="NSD tolerance in mm")
    p.add_argument("--out", default=None, help="write the per-case table to this CSV")
    return parser


def _shard(value: str) -> str:
    """``--shard I/N``, checked at parse time (a bad value exits with code 2 and says why)."""
    from .distributed import parse_shard
    from .errors import InputError

    try:
        parse_shard(value)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _load(args):
    from .distributed import default_device
    from .models import load_model

    # under torchrun each process takes its own GPU (cuda:LOCAL_RANK) unless --device says otherwise
    return load_model(args.model, checkpoint=args.checkpoint, device=default_device(args.device))


def _run(args) -> int:
    import medsam_lite as ml
    from . import io

    if args.command == "preprocess":
        manifest = ml.preprocess(args.source, args.out_dir, modality=args.modality, window=_window(args.window),
                                 image_size=args.image_size, axis=args.axis, min_pixels=args.min_pixels,
                                 split_components=args.split_components, test_fraction=args.test_fraction,
                                 test_cases=args.test_cases, seed=args.seed, label_suffix=args.label_suffix)
        counts = manifest.groupby("split")["case"].nunique().to_dict()
        print(f"{len(manifest)} targets from {manifest['case'].nunique()} cases {counts} → {args.out_dir}")
    elif args.command == "embed":
        store = ml.embed(args.dataset, model=_load(args), batch_size=args.batch_size, dtype=args.dtype,
                         recompute=args.recompute, shard=args.shard)
        print(f"embeddings stored in {store.path}")
    elif args.command == "finetune":
        result = ml.finetune(args.dataset, args.out_dir, model=_load(args), epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, seed=args.seed, box_jitter=args.box_jitter,
                             train_prompt_encoder=args.train_prompt_encoder, resume=args.resume,
                             overwrite=args.overwrite)
        print(f"best checkpoint: {result.best}\nlast checkpoint: {result.last}")
    elif args.command == "predict":
        _predict(args, ml, io)
    elif args.command == "evaluate":
        table, means = ml.evaluate(_load(args), args.dataset, split=args.split, tolerance_mm=args.tolerance_mm)
        print(means.to_string())
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out, index=False)
            print(f"per-case table → {args.out}")
    return EXIT_OK


def _predict(args, ml, io) -> None:
    if (args.box is None) == (args.box3d is None):
        raise ml.InputError("give exactly one of --box X0 Y0 X1 Y1 or --box3d X0 Y0 Z0 X1 Y1 Z1.")
    source = io.read_volume(args.image)
    model = _load(args)
    window = _window(args.window)
    is_volume = source.array.ndim == 3 and not (source.array.shape[-1] in (3, 4) and source.array.dtype.name == "uint8"
                                                  and len(source.spacing) == 2)
    if is_volume:
        box = args.box3d if args.box3d is not None else args.box
        if args.box is not None and args.slice is None:
            raise ml.InputError("a volume needs --slice Z with --box (or use --box3d).")
        from .volume import predict_volume

        mask = predict_volume(source, box, slice_index=args.slice, model=model,
                                 modality=args.modality, window=window)
    else:
        if args.box3d is not None:
            raise ml.InputError(f"{args.image} is a 2D image; use --box X0 Y0 X1 Y1.")
        mask = ml.predict(source.array, args.box, model=model, modality=args.modality, window=window)[0]
    out = Path(args.out)
    if out.suffix.lower() in (".png", ".jpg", ".bmp"):
        if mask.ndim != 2:
            raise ml.InputError(f"a volume's mask cannot be written as {out.suffix}; use .nii.gz.")
        io.write_volume(mask.astype("uint8") * 255, out)
    else:
        io.write_volume(mask.astype("uint8"), out, like=source)
    print(f"mask with {int(mask.sum())} voxels → {out}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .errors import InputError

    try:
        return _run(args)
    except InputError as exc:
        print(f"medsam-lite {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"medsam-lite {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
