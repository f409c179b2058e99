"""Train the click decoder shipped in the package (medsam_lite/model/weights/click_decoder.pt).

LiteMedSAM's published decoder was trained on boxes only: its point embeddings are untrained and a
click makes the mask worse. This script trains a copy of its prompt encoder + mask decoder on the
bundled real abdominal scans with simulated corrective clicks (medsam_lite.train.steps.click_rounds_loss):
each step starts from the **published** decoder's box-only mask (exactly what a user sees first,
since box-only prompts keep the published decoder), then 1 … ``--clicks`` rounds (drawn per batch)
each add one click from the current error with the previous logits as mask input; the last round
is trained (the earlier ones run without gradients: half the work, this CPU is shared).

Data: data_samples/ct_abdomen (CT, cases 01-02; case-03 held out) and data_samples/mr_abdomen (MR,
case-01; case-02 held out), preprocessed with min_mm2=64, every label. The held-out cases are never
read for training or model selection (fixed epochs), so bench/bench_clicks.py measures on them.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/train_click_decoder.py --minutes 30

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
from medsam_lite.model.checkpoints import CLICK_DECODER, file_sha256
from medsam_lite.model.models import SamModel
from medsam_lite.train.steps import click_rounds_loss, jitter_boxes, load_targets

SOURCES = [("ct", "CT", ["case-03"]), ("mr", "MR", ["case-02"])]


def prepare(work: Path, model) -> list:
    """Preprocess + embed both samples (reused when already there); the training targets of each."""
    out = []
    for name, modality, held_out in SOURCES:
        src = samples.ct_abdomen_dir() if name == "ct" else samples.mr_abdomen_dir()
        ds = work / name
        if not (ds / "dataset.json").exists():
            ml.preprocess(src, ds, modality=modality, min_mm2=64, test_cases=held_out, progress=False)
        store = ml.embed(ds, model, split="train", progress=False)
        dataset = check_dataset(ds)
        chosen = select_slices(dataset, "train", None, None)
        targets = dataset.manifest.merge(chosen[["case", "slice"]], on=["case", "slice"])
        targets = targets[targets["split"] == "train"].sort_values(["case", "slice", "label"]).reset_index(drop=True)
        data = load_targets(dataset, model, targets, store)
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(src.iterdir())}
        out.append((name, store, data, sorted(set(targets["case"])), files))
        print(f"{name}: {len(data['rows'])} training targets on {len(set(data['rows'].tolist()))} slices", flush=True)
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    published = ml.load_model(backend="torch", click_decoder=False)
    sources = prepare(Path(args.work), published)
    parts = SimpleNamespace(image_encoder=published.image_encoder,
                            prompt_encoder=copy.deepcopy(published.prompt_encoder),
                            mask_decoder=copy.deepcopy(published.mask_decoder))
    trainee = SamModel(parts, published.spec, published.weights_sha256, published.checkpoint)
    for p in trainee.image_encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam([{"params": list(trainee.prompt_encoder.parameters()), "lr": args.prompt_lr},
                                  {"params": list(trainee.mask_decoder.parameters()), "lr": args.lr}])
    items = [(s, i) for s, (_, _, data, _, _) in enumerate(sources) for i in range(len(data["rows"]))]
    shift = int(round(20 * published.input_size / 1024))
    history, started, saved = [], time.perf_counter(), time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if history and (time.perf_counter() - started + history[-1]["seconds"]) > 60 * args.minutes:
            break
        rng = np.random.default_rng([args.seed, epoch])
        order = rng.permutation(len(items))
        trainee.mask_decoder.train()
        t0, total, count = time.perf_counter(), 0.0, 0
        for start in range(0, len(order), args.batch_size):
            batch = [items[k] for k in order[start:start + args.batch_size]]
            for s in sorted({b[0] for b in batch}):  # one source (one store) per forward
                idx = np.array([i for src, i in batch if src == s])
                _, store, data, _, _ = sources[s]
                boxes = jitter_boxes(data["boxes"][idx], data["content_hw"][idx], shift, rng)
                emb = store.get_batch(data["rows"][idx])
                target = torch.from_numpy(data["masks"][idx])[:, None].float()
                rounds = int(rng.integers(1, args.clicks + 1))  # 1…K clicks; the last round is trained
                loss, _ = click_rounds_loss(trainee, emb, torch.from_numpy(boxes), target, data["content_hw"][idx],
                                            rounds, rng, first=published, every_round=False)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(idx), count + len(idx)
            if time.perf_counter() - saved > 300:  # a long epoch on a shared CPU: keep what is learned so far
                print(f"  epoch {epoch}: {count}/{len(order)} targets, loss {total / count:.4f}, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
                save(trainee, args, sources, history + [{"epoch": epoch, "targets_done": count}], published)
                saved = time.perf_counter()
            if time.perf_counter() - started > 60 * args.minutes:
                break
        history.append({"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0})
        print(f"epoch {epoch}: loss {total / count:.4f} ({history[-1]['seconds']:.0f} s)", flush=True)
        save(trainee, args, sources, history, published)


def save(trainee, args, sources, history, published) -> None:
    state = {k: v.detach().cpu().half() for k, v in trainee.state_dict().items()
             if k.startswith(("prompt_encoder.", "mask_decoder."))}
    config = {"seed": args.seed, "clicks": args.clicks, "lr": args.lr, "prompt_lr": args.prompt_lr,
              "batch_size": args.batch_size, "threads": args.threads,
              "epochs_run": len(history), "history": history, "torch": torch.__version__,
              "start": "LiteMedSAM's published prompt encoder + mask decoder; first round from the published decoder",
              "data": {name: {"train_cases": cases, "targets": int(len(data["rows"])), "files_sha256_16": files,
                              "preprocess": "min_mm2=64, every label"}
                       for name, _, data, cases, files in sources}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save({"format": "medsam_lite.click_decoder/1", "model": state, "base_sha256": file_sha256(
        published.checkpoint), "config": json.dumps(config)}, tmp)
    tmp.replace(out)


if __name__ == "__main__":
    main()
