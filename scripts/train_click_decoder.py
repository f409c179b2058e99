"""Train the click decoder shipped in the package (medsam_lite/model/weights/click_decoder.pt).

LiteMedSAM's published decoder was trained on boxes only: its point embeddings are untrained and a
click makes the mask worse. This script trains a copy of its prompt encoder + mask decoder on the
bundled real abdominal scans with simulated corrective clicks (medsam_lite.train.steps.click_rounds_loss):
each step starts from the **published** decoder's box-only mask (exactly what a user sees first,
since box-only prompts keep the published decoder), then ``--clicks`` rounds each add one click from
the current error with the previous logits as mask input (the box kept in every round, as at
inference); the loss is summed over every click round (``--last-round-only``: the last round of
1 … ``--clicks`` drawn per batch, the earlier recipe). ``--robot-share`` of the clicks are the
evaluation robot's (interior of the largest error region), the others uniform inside that region.
Every target trains, also those whose box mask is already good: the robot then clicks on small
boundary errors, and the decoder learns not to damage the mask. Learning rates follow a cosine
decay over ``--epochs``.

``--val`` (recipe pilots only): CT case-02 and every third slice of MR case-01 are left out of
training and the Dice after the box and each robot click is printed on them after every epoch
(training cases only: the held-out cases stay out of recipe choice too).

Data: data_samples/ct_abdomen (CT, cases 01-02; case-03 held out) and data_samples/mr_abdomen (MR,
case-01; case-02 held out), preprocessed with min_mm2=64, every label. The held-out cases are never
read for training or model selection (fixed epochs), so bench/bench_clicks.py measures on them.

    PYTHONPATH=. python scripts/train_click_decoder.py --threads 2 --epochs 3 --minutes 60 \
        --batch-size 2 --seed 1 --init first.pt --flips

The shipped file came from two runs: ``--last-round-only --minutes 33`` (seed 0, one epoch from the
published decoder: ``first.pt``), then the command above (``--init first.pt``: every round, three
epochs over the training cases and their mirrored copies, 980 targets, 2 threads, 29 min); its config
records both (the first under ``init``). The recipe was chosen by ``--val`` pilots (CT case-02 and a
third of MR case-01 held out of training, both arms from ``first.pt`` with seed 1;
its one epoch had seen those validation slices, alike for both arms): over the
validation organs with box Dice < 0.9 (box only 0.727; CT 0.735), box + 3 clicks was 0.842 after six
epochs without mirroring (CT 0.823) and 0.861 after three epochs with ``--flips`` (CT 0.852) — the
held-out test cases took no part in that choice. The previous shipped decoder was the no-mirroring
recipe (six epochs).

Leave one domain out (``--train-on ct`` / ``--train-on mr``): every slab of one sample trains (none
held out there) and the other sample's patient — another patient and another modality — is the
test (``bench/bench_clicks.py --organs CT_ONLY.pt MR_ONLY.pt``). On the shared 2-vCPU machine at
1 thread (load 10–15) one target-step took ~10 s of wall time, so the two decoders of
``bench/RESULTS.md`` ("Clicks on real organs of the other patient") are two chained ~10-minute runs
each (``--epochs 1 --minutes 9``, then ``--init`` the first, ``--minutes 11``/``10``, seeds 1 / 2;
CT ``--flips``): ~115 target-steps each, against ~3,200 for the shipped decoder.

``--synth parts caps merged`` (issue 31, round 8): the training targets also hold new targets made of the
labels (:func:`synthesized`: each organ split in two by a straight cut the image does not show, its edge beyond such a
cut, two touching organs as one — the targets of ``bench/bench_clicks.py``'s ``parts`` / ``caps`` / ``merged``
domains, made on the model grid with the same functions of :mod:`medsam_lite.samples`), so the decoder also learns
targets whose box holds tissue like them beyond an edge the image does not show. Its leave-one-domain-out test against
a control of the same budget without them: ``bench/RESULTS.md``, "Click decoders trained on split and merged labels".

Writes a float16 state dict ``{"model": {prompt_encoder.*, mask_decoder.*}, "base_sha256": …,
"config": JSON (seed, data files and SHA-256s, cases, settings, history)}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import samples
from medsam_lite.data.dataset import check_dataset
from medsam_lite.data.embed import select_slices
from medsam_lite.model.checkpoints import CLICK_DECODER
from medsam_lite.fileutil import file_sha256
from medsam_lite.model.models import SamModel
from medsam_lite.train.steps import click_rounds_loss, jitter_boxes, load_targets

SOURCES = [("ct", "CT", ["case-03"]), ("mr", "MR", ["case-02"])]
#: ``--train-on ct`` / ``mr``: leave one domain out: every case of one sample trains (none held out
#: there), the other sample — another patient and another modality — is the test (bench/bench_clicks.py
#: ``--organs``).
DOMAIN_SOURCES = {"both": SOURCES, "ct": [("ct", "CT", [])], "mr": [("mr", "MR", [])]}


#: ``--flips``: mirrored copies of each training case (array axes of ``GetArrayFromImage``: z, y, x).
FLIPS = {"fx": (2,), "fy": (1,), "fxy": (1, 2)}


def split_val(data: dict, train, val) -> tuple[dict, dict]:
    """``(train, val)`` parts of ``load_targets`` output; ``train``/``val``: bool per target."""
    train, val = np.asarray(train, bool), np.asarray(val, bool)
    return ({k: v[train] for k, v in data.items()}, {k: v[val] for k, v in data.items()})


def flipped_source(src: Path, out: Path, held_out: list) -> Path:
    """``src``'s cases plus left-right, front-back and both-ways mirrored copies of each training case.

    A copy keeps the original's geometry (spacing, origin, direction) with its voxels mirrored in
    plane: a new, plausible slice for the decoder, whose embedding the encoder computes afresh
    (the encoder is not mirror-equivariant). Held-out cases are copied as they are, never mirrored.
    Copies are named ``<case>-fx`` / ``-fy`` / ``-fxy``.
    """
    import shutil

    import SimpleITK as sitk

    if (out / "done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        shutil.copy2(path, out / path.name)
        if not path.name.endswith(".nii.gz") or path.name.endswith("_label.nii.gz"):
            continue
        case = path.name[: -len(".nii.gz")]
        if case in held_out:
            continue
        for tag, axes in FLIPS.items():
            for part in ("", "_label"):
                image = sitk.ReadImage(str(src / f"{case}{part}.nii.gz"))
                flipped = sitk.GetImageFromArray(np.flip(sitk.GetArrayFromImage(image), axes).copy())
                flipped.CopyInformation(image)
                sitk.WriteImage(flipped, str(out / f"{case}-{tag}{part}.nii.gz"))
    (out / "done").write_text("ok\n")
    return out


#: ``--synth``: new targets made of each slice's labels (issue 31: "merged or split labels as new targets").
SYNTH = ("parts", "caps", "merged")


def synthesized(data: dict, kinds) -> dict:
    """``data`` (:func:`~medsam_lite.train.steps.load_targets`' dict of mask targets) with new targets made of its
    masks on the model grid (``N×S×S`` bool): ``"parts"`` — each target split in two by a straight cut the image
    does not show (:func:`medsam_lite.samples.split_target`), ``"caps"`` — the small side of such a cut (an organ's
    edge, :func:`~medsam_lite.samples.cap_target`), ``"merged"`` — two touching targets of one slice as one
    (:func:`~medsam_lite.samples.merged_targets`). Each new target: its own tight XYXY box in model pixels
    (:func:`medsam_lite.box_from_mask`), the slice's embedding row and content size; kept when it has at least
    25 model-grid pixels. Seeded by the store row and the label name (the same targets in every run)."""
    if not kinds:
        return data
    assert data["lines"] is None and data["images"] is None and not data["weak"].any(), "mask targets only"
    rows, masks, names, content = [], [], [], []

    def add(row, mask, name, hw):
        if mask.sum() >= 25:
            rows.append(row), masks.append(mask), names.append(name), content.append(hw)

    for i, (row, mask, name) in enumerate(zip(data["rows"], data["masks"], data["label_names"])):
        tag = f"{row}:{name}"
        if "parts" in kinds:
            for part in samples.split_target(mask, tag):
                add(row, part, f"part of {name}", data["content_hw"][i])
        if "caps" in kinds:
            add(row, samples.cap_target(mask, tag), f"edge of {name}", data["content_hw"][i])
    if "merged" in kinds:
        for row in np.unique(data["rows"]):
            idx = np.flatnonzero(data["rows"] == row)
            for name, mask in samples.merged_targets([(data["label_names"][i], data["masks"][i]) for i in idx]):
                add(row, mask, name, data["content_hw"][idx[0]])
    if not rows:
        return data
    n = len(rows)
    new = {"rows": np.array(rows, np.int64), "masks": np.stack(masks),
           "boxes": np.stack([ml.box_from_mask(m) for m in masks]).astype(np.float32),
           "content_hw": np.stack(content), "label_names": np.array(names, object), "weak": np.zeros(n, bool)}
    out = dict(data)
    for key, value in new.items():
        out[key] = np.concatenate([np.asarray(data[key], value.dtype), value])
    out["parts"] = list(data["parts"]) + [np.zeros((0, 4), np.float32)] * n
    return out


def prepare(work: Path, model, val: bool = False, flips: bool = False, sources=SOURCES, every: int = 1,
            synth=()) -> list:
    """Preprocess + embed the samples (reused when already there); the training targets of each.

    ``every``: keep every ``every``-th slice of each case (a cheaper run; 1: all). ``synth``: :data:`SYNTH`
    kinds of new targets added to the training targets (:func:`synthesized`; not to ``--val``'s)."""
    out = []
    for name, modality, held_out in sources:
        src = samples.ct_abdomen_dir() if name == "ct" else samples.mr_abdomen_dir()
        tag = name if held_out else f"{name}_all"  # every case trains: another split, another folder
        ds, files = work / tag, {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(src.iterdir())}
        if flips:
            src, ds = flipped_source(src, work / f"{tag}_flips_src", held_out), work / f"{tag}_flips"
        if not (ds / "dataset.json").exists():
            ml.preprocess(src, ds, modality=modality, min_mm2=64, test_cases=held_out, progress=False)
        store = ml.embed(ds, model, split="train", progress=False)
        dataset = check_dataset(ds)
        chosen = select_slices(dataset, "train", None, None)
        targets = dataset.manifest.merge(chosen[["case", "slice"]], on=["case", "slice"])
        targets = targets[targets["split"] == "train"].sort_values(["case", "slice", "label"]).reset_index(drop=True)
        if every > 1:
            targets = targets[targets["slice"] % every == 0].reset_index(drop=True)
        data = load_targets(dataset, model, targets, store)
        vdata = None
        if val:  # mirrored copies of a validation slice are left out of both parts
            base = targets["case"].str.split("-f").str[0]
            original = (base == targets["case"]).to_numpy()
            held = (base == "case-02").to_numpy() if name == "ct" else (targets["slice"] % 3 == 0).to_numpy()
            data, vdata = split_val(data, ~held, held & original)
        data = synthesized(data, synth)
        out.append((name, store, data, sorted(set(targets["case"])), files, vdata))
        print(f"{name}: {len(data['rows'])} training targets on {len(set(data['rows'].tolist()))} slices"
              + (f", {len(vdata['rows'])} validation targets" if vdata else ""), flush=True)
    return out


@torch.no_grad()
def validate(trainee, published, sources, clicks: int) -> dict:
    """Dice (model grid) after the box and each robot click on the validation targets (``--val``)."""
    dices, scans = [], []
    for name, store, _, _, _, vdata in sources:
        for start in range(0, len(vdata["rows"]), 8):
            idx = np.arange(start, min(start + 8, len(vdata["rows"])))
            emb = store.get_batch(vdata["rows"][idx])
            target = torch.from_numpy(vdata["masks"][idx])[:, None].float()
            boxes = torch.from_numpy(vdata["boxes"][idx])
            per, rounds = [], []
            click_rounds_loss(trainee, emb, boxes, target, vdata["content_hw"][idx], clicks, None,
                              first=published, rounds_out=rounds)
            for logits in rounds:
                pred, truth = logits[:, 0] > 0, target[:, 0] > 0.5
                per.append((2 * (pred & truth).sum((1, 2)) / (pred.sum((1, 2)) + truth.sum((1, 2))).clamp(min=1)).numpy())
            dices.append(np.stack(per, 1))
            scans += [name] * len(idx)
    d, scans = np.concatenate(dices), np.array(scans)
    hard = d[:, 0] < 0.9
    out = {"all": d.mean(0).round(4).tolist(), "box<0.9": d[hard].mean(0).round(4).tolist(),
           "box>=0.9": d[~hard].mean(0).round(4).tolist(), "n": len(d), "n_hard": int(hard.sum())}
    for name in sorted(set(scans)):  # per scan: the CT and the MR answer clicks differently
        out[f"{name} box<0.9"] = d[hard & (scans == name)].mean(0).round(4).tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="bench/work/clicks", help="datasets and embeddings (reused)")
    parser.add_argument("--out", default=str(CLICK_DECODER))
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=30.0, help="stop starting epochs after this")
    parser.add_argument("--lr", type=float, default=1e-4, help="mask decoder learning rate")
    parser.add_argument("--prompt-lr", type=float, default=1e-3, help="prompt encoder learning rate (its point "
                        "embeddings start untrained)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--last-round-only", action="store_true", help="the earlier recipe: loss on the last of "
                        "1 … --clicks rounds (drawn per batch) only")
    parser.add_argument("--robot-share", type=float, default=0.5, help="share of clicks at the robot's point")
    parser.add_argument("--init", help="start from this click decoder file (e.g. an earlier run of this script on "
                        "the same data) instead of the published prompt encoder + decoder")
    parser.add_argument("--flips", action="store_true", help="train on mirrored copies of each training case too "
                        "(left-right, front-back, both: 4× the targets, each with its own embedding)")
    parser.add_argument("--train-on", choices=sorted(DOMAIN_SOURCES), default="both",
                        help="both (the shipped decoder: CT case-01/02 + MR case-01) or one sample only, every case "
                        "(leave one domain out: the other sample's patient is the test)")
    parser.add_argument("--every", type=int, default=1, help="train on every k-th slice only (a cheaper run)")
    parser.add_argument("--synth", nargs="*", choices=SYNTH, default=[], help="also train on new targets made of "
                        "the labels: each organ split by a cut the image does not show, its edge beyond such a cut, "
                        "two touching organs as one (issue 31, round 8)")
    parser.add_argument("--val", action="store_true", help="recipe pilot: validate on CT case-02 + a third of MR "
                        "case-01 (left out of training); never for the shipped decoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    published = ml.load_model(backend="torch", click_decoder=False)
    if args.val and args.train_on != "both":
        parser.error("--val holds out slices of both samples: use it with --train-on both")
    sources = prepare(Path(args.work), published, args.val, args.flips, DOMAIN_SOURCES[args.train_on], args.every,
                      args.synth)
    parts = SimpleNamespace(image_encoder=published.image_encoder,
                            prompt_encoder=copy.deepcopy(published.prompt_encoder),
                            mask_decoder=copy.deepcopy(published.mask_decoder))
    trainee = SamModel(parts, published.spec, published.weights_sha256, published.checkpoint)
    init_config = None
    if args.init:
        obj = torch.load(args.init, map_location="cpu", weights_only=True)
        assert obj["base_sha256"] == file_sha256(published.checkpoint), "--init was trained on another encoder"
        state = {k: v.float() for k, v in obj["model"].items()}
        own = {k: v for k, v in trainee.state_dict().items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
        assert set(state) == set(own), "--init does not hold this model's prompt encoder + mask decoder"
        trainee.load_state_dict(state, strict=False)
        init_config = json.loads(obj["config"])
    for p in trainee.image_encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam([{"params": list(trainee.prompt_encoder.parameters()), "lr": args.prompt_lr},
                                  {"params": list(trainee.mask_decoder.parameters()), "lr": args.lr}])
    items = [(s, i) for s, (_, _, data, _, _, _) in enumerate(sources) for i in range(len(data["rows"]))]
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    shift = int(round(20 * published.input_size / 1024))
    history, started, saved = [], time.perf_counter(), time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if time.perf_counter() - started > 60 * args.minutes:  # the last epoch may stop part-way (recorded)
            break
        rng = np.random.default_rng([args.seed, epoch])
        order = rng.permutation(len(items))
        for group, base in zip(optimizer.param_groups, base_lrs):  # cosine decay over --epochs
            group["lr"] = base * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / args.epochs))
        trainee.mask_decoder.train()
        t0, total, count = time.perf_counter(), 0.0, 0
        for start in range(0, len(order), args.batch_size):
            batch = [items[k] for k in order[start:start + args.batch_size]]
            for s in sorted({b[0] for b in batch}):  # one source (one store) per forward
                idx = np.array([i for src, i in batch if src == s])
                _, store, data, _, _, _ = sources[s]
                boxes = jitter_boxes(data["boxes"][idx], data["content_hw"][idx], shift, rng)
                emb = store.get_batch(data["rows"][idx])
                target = torch.from_numpy(data["masks"][idx])[:, None].float()
                rounds = int(rng.integers(1, args.clicks + 1)) if args.last_round_only else args.clicks
                loss, _ = click_rounds_loss(trainee, emb, torch.from_numpy(boxes), target, data["content_hw"][idx],
                                            rounds, rng, first=published, every_round=not args.last_round_only,
                                            robot_share=args.robot_share)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(idx), count + len(idx)
            if time.perf_counter() - saved > 300:  # a long epoch on a shared CPU: keep what is learned so far
                print(f"  epoch {epoch}: {count}/{len(order)} targets, loss {total / count:.4f}, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
                save(trainee, args, sources, history + [{"epoch": epoch, "targets_done": count}], published, init_config)
                saved = time.perf_counter()
            if time.perf_counter() - started > 60 * args.minutes:
                break
        history.append({"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0,
                        "targets_done": count, "of": len(order)})
        if args.val:
            trainee.mask_decoder.eval()
            history[-1]["val_dice"] = validate(trainee, published, sources, args.clicks)
        print(f"epoch {epoch}: loss {total / count:.4f} ({history[-1]['seconds']:.0f} s) "
              f"{history[-1].get('val_dice', '')}", flush=True)
        save(trainee, args, sources, history, published, init_config)


def save(trainee, args, sources, history, published, init_config=None) -> None:
    state = {k: v.detach().cpu().half() for k, v in trainee.state_dict().items()
             if k.startswith(("prompt_encoder.", "mask_decoder."))}
    config = {"seed": args.seed, "clicks": args.clicks, "lr": args.lr, "prompt_lr": args.prompt_lr,
              "batch_size": args.batch_size, "threads": args.threads, "epochs": args.epochs,
              "minutes": args.minutes, "every_round": not args.last_round_only, "robot_share": args.robot_share,
              "flips": sorted(FLIPS) if args.flips else None, "train_on": args.train_on, "every_kth_slice": args.every,
              "synthesized_targets": sorted(args.synth),
              "lr_schedule": "cosine over epochs", "box_jitter_px_at_1024": 20,
              "validation": "CT case-02 + MR case-01 slices % 3 == 0 (pilot)" if args.val else None,
              "epochs_run": len(history), "history": history, "torch": torch.__version__,
              "start": ("LiteMedSAM's published prompt encoder + mask decoder" if init_config is None else
                        f"the click decoder {Path(args.init).name} (its config under 'init')")
                       + "; first round from the published decoder", "init": init_config,
              "data": {name: {"train_cases": cases, "targets": int(len(data["rows"])), "files_sha256_16": files,
                              "preprocess": "min_mm2=64, every label"}
                       for name, _, data, cases, files, _ in sources}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"format": "medsam_lite.click_decoder/1", "model": state, "base_sha256": file_sha256(
        published.checkpoint), "config": json.dumps(config)}, tmp)
    tmp.replace(out)


if __name__ == "__main__":
    main()
