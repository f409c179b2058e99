"""int8 encoder experiments (issue 22, item 2): NNCF post-training quantization variants of the
OpenVINO encoder; speed and mask agreement with the fp32 OpenVINO encoder on real CT and MR organs.

Calibration: 24 bundled real slices (CT case-01 and case-02, every slice but the first and last;
MR case-01, slices 1/3/5/7). Evaluation (held out): CT case-03 slices 1/3/5/7/9 and MR case-02
slices 2/5/8, one tight box per organ (> 60 px), masks from the torch decoder on fp32 vs int8
embeddings, Dice per mask. Both encoders compiled with ``INFERENCE_PRECISION_HINT="f32"``
(OpenVINO's CPU plugin otherwise runs bf16 on CPUs with bf16), 1 thread; the fp32 and int8
encoders are timed alternately on the same slices in the same process (median of the 8 slices).

    OMP_NUM_THREADS=1 python bench/int8_experiments.py VARIANT [VARIANT ...]

Variants (all ``model_type=TRANSFORMER``, which in NNCF 3.4 already means the MIXED preset and
SmoothQuant with alpha 0.95 on MatMuls):
  plain        defaults
  sq05         SmoothQuant alpha 0.5 on MatMuls
  keep_sens    attention (q@k, attn@v, softmax), patch embedding, last stage (layers.3) and neck in fp32
  keep_sens_l0 keep_sens + the high-resolution MBConv stage (layers.0) and the downsampling convs in fp32
  lin_only     only the linear layers of stages 1-2 (qkv, proj, fc1, fc2) in int8
Prints one JSON line per variant: fp32 ms, int8 ms, speed-up, mask Dice mean / min (CT and MR).
"""
import json, sys, time
from pathlib import Path

import numpy as np, torch
torch.set_num_threads(1)
import nncf, openvino as ov
import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.backends import build_runtime
from medsam_lite.model.inference import prepare_image

OUT = Path("/tmp/int8_q")
model = ml.load_model(backend="torch")
path = str(build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                         backend="openvino", threads=1).encoder_path)
core = ov.Core()


def slices(folder, case, preset, zs):
    scan = io.read_volume(folder / f"{case}.nii.gz").array
    lab = io.read_volume(folder / f"{case}_label.nii.gz").array
    out = []
    for z in zs:
        rgb = prepare_image(scan[z].astype(np.float32), ml.IntensityPreset.resolve(preset))
        g = model.geometry(rgb.shape[:2])
        boxes = [ml.box_from_mask(lab[z] == v) for v in np.unique(lab[z]) if v > 0 and (lab[z] == v).sum() > 60]
        out.append((g.image_to_model(rgb), g, np.array(boxes, np.float32), preset))
    return out


ct, mr = samples.ct_abdomen_dir(), samples.mr_abdomen_dir()
calib = [s[0] for s in slices(ct, "case-01", "CT", range(1, 9)) + slices(ct, "case-02", "CT", range(1, 9))
         + slices(mr, "case-01", "MR", range(1, 9))]
evals = slices(ct, "case-03", "CT", [1, 3, 5, 7, 9]) + slices(mr, "case-02", "MR", [2, 5, 8])
cfg = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
fp32_model = core.read_model(path)
f32 = core.compile_model(fp32_model, "CPU", cfg)


def run(c, x):
    return torch.from_numpy(np.array(c(x.numpy())[0]))


def masks(emb, g, boxes):
    with torch.no_grad():
        logits, _ = model.decode(emb, torch.from_numpy(g.box_prompt(boxes)))
    return g.logits_to_original(logits).numpy() > 0


ref = [masks(run(f32, x), g, b) for x, g, b, _ in evals]
ATTN = [f"/layers.{i}/blocks.{j}/attn/{n}" for i, nb in ((1, 2), (2, 6), (3, 2)) for j in range(nb)
        for n in ("MatMul", "MatMul_1", "Softmax")]
FRONT = ["/patch_embed/seq/seq.0/c/Conv/WithoutBiases", "/patch_embed/seq/seq.2/c/Conv/WithoutBiases"]
NECK = ["/neck/neck.0/Conv", "/neck/neck.2/Conv"]


def variant_kwargs(v):
    kw = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
    if v == "sq05":
        from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                           AdvancedSmoothQuantParameters)
        kw["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.5))
    elif v in ("keep_sens", "keep_sens_l0"):
        pats = [".*/layers\\.3/.*"] + (([".*/layers\\.0/.*", ".*/downsample/.*"]) if v == "keep_sens_l0" else [])
        kw["ignored_scope"] = nncf.IgnoredScope(names=ATTN + FRONT + NECK, patterns=pats, validate=False)
    elif v == "lin_only":
        kw["ignored_scope"] = nncf.IgnoredScope(
            names=ATTN + FRONT + NECK, types=["Convolution", "GroupConvolution"],
            patterns=[".*/layers\\.3/.*"], validate=False)
    elif v != "plain":
        raise SystemExit(f"unknown variant {v}")
    return kw


for v in sys.argv[1:]:
    t = time.time()
    q = nncf.quantize(core.read_model(path), nncf.Dataset(calib, lambda x: x.numpy()), **variant_kwargs(v))
    qs = time.time() - t
    OUT.mkdir(exist_ok=True)
    ov.save_model(q, OUT / f"{v}.xml")
    i8 = core.compile_model(q, "CPU", cfg)
    tf, ti, dice = [], [], {"CT": [], "MR": []}
    for (x, g, boxes, preset), mf in zip(evals, ref):
        s = time.perf_counter(); run(f32, x); tf.append(time.perf_counter() - s)
        s = time.perf_counter(); ei = run(i8, x); ti.append(time.perf_counter() - s)
        for a, b in zip(mf, masks(ei, g, boxes)):
            dice[preset].append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    allv = dice["CT"] + dice["MR"]
    print(json.dumps({"variant": v, "quantize_s": round(qs), "fp32_ms": round(1000 * np.median(tf)),
                      "int8_ms": round(1000 * np.median(ti)), "speedup": round(np.median(tf) / np.median(ti), 2),
                      "dice_mean": round(float(np.mean(allv)), 4), "dice_min": round(float(np.min(allv)), 4),
                      "ct_mean_min": [round(float(np.mean(dice["CT"])), 4), round(float(np.min(dice["CT"])), 4)],
                      "mr_mean_min": [round(float(np.mean(dice["MR"])), 4), round(float(np.min(dice["MR"])), 4)],
                      "n": len(allv), "load": round(float(open("/proc/loadavg").read().split()[0]), 1)}), flush=True)
