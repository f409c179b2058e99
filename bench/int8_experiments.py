"""int8 encoder experiments (issue 22, item 2): NNCF post-training quantization variants of the
OpenVINO encoder; speed and mask agreement with the fp32 encoder on real CT and MR organs.

Calibration: 10 bundled slices (CT case-01 and MR case-01, every 2nd slice). Evaluation: CT case-03
slices 1/4/7 and MR case-02 slices 3/6, one tight box per organ (> 60 px), masks from the torch
decoder on fp32 vs int8 embeddings, Dice per mask. Both encoders compiled with
``INFERENCE_PRECISION_HINT="f32"`` (OpenVINO's CPU plugin otherwise runs bf16 on CPUs with bf16).

    OMP_NUM_THREADS=1 python bench/int8_experiments.py plain|convonly|matmulonly|mixed|sq|noattn

Prints one JSON line: fp32 ms, int8 ms, speed-up, mask Dice mean / min.
"""
import sys, time, json, numpy as np, torch
torch.set_num_threads(1)
import openvino as ov, nncf
import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.geometry import to_rgb_uint8
from medsam_lite.model.inference import prepare_image
variant = sys.argv[1]
model = ml.load_model(backend="torch")
from medsam_lite.model.backends import build_runtime
path = str(build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder, backend="openvino", threads=1).encoder_path)
core = ov.Core()
def slices(folder, case, preset, zs):
    scan = io.read_volume(folder/f"{case}.nii.gz").array; lab = io.read_volume(folder/f"{case}_label.nii.gz").array
    out=[]
    for z in zs:
        rgb = prepare_image(scan[z].astype(np.float32), ml.IntensityPreset.resolve(preset))
        g = model.geometry(rgb.shape[:2]); x = g.image_to_model(rgb)
        boxes=[ml.box_from_mask(lab[z]==v) for v in np.unique(lab[z]) if v>0 and (lab[z]==v).sum()>60]
        out.append((x, g, np.array(boxes, np.float32)))
    return out
ct, mr = samples.ct_abdomen_dir(), samples.mr_abdomen_dir()
calib = [s[0] for s in slices(ct, "case-01", "CT", range(0,10,2)) + slices(mr, "case-01", "MR", range(0,10,2))]
evals = slices(ct, "case-03", "CT", [1,4,7]) + slices(mr, "case-02", "MR", [3,6])
m = core.read_model(path)
t=time.time()
kw = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
if variant == "convonly":
    kw["ignored_scope"] = nncf.IgnoredScope(types=["MatMul", "Softmax"])
elif variant == "matmulonly":
    kw["ignored_scope"] = nncf.IgnoredScope(types=["Convolution", "GroupConvolution"])
elif variant == "mixed":
    kw["preset"] = nncf.QuantizationPreset.MIXED
elif variant == "sq":
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    kw["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.5))
elif variant == "noattn":
    # keep MatMuls of attention (activation x activation) and the last stage in fp32
    kw["ignored_scope"] = nncf.IgnoredScope(patterns=[".*attn.*"], validate=False)
q = nncf.quantize(m, nncf.Dataset(calib, lambda x: x.numpy()), **kw)
print(variant, "quantize s", round(time.time()-t,1), flush=True)
cfg = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
f32 = core.compile_model(m, "CPU", cfg); i8 = core.compile_model(q, "CPU", cfg)
def run(c, x): return torch.from_numpy(np.array(c(x.numpy())[0]))
tf, ti = [], []; dices=[]
for x, g, boxes in evals:
    s=time.perf_counter(); ef = run(f32, x); tf.append(time.perf_counter()-s)
    s=time.perf_counter(); ei = run(i8, x); ti.append(time.perf_counter()-s)
    pr = torch.from_numpy(g.box_prompt(boxes))
    with torch.no_grad():
        lf,_ = model.decode(ef, pr); li,_ = model.decode(ei, pr)
    mf = g.logits_to_original(lf).numpy()>0; mi = g.logits_to_original(li).numpy()>0
    for a,b in zip(mf,mi):
        dices.append(2*(a&b).sum()/max(a.sum()+b.sum(),1))
print(json.dumps({"variant": variant, "fp32_ms": round(1000*np.median(tf)), "int8_ms": round(1000*np.median(ti)),
      "speedup": round(np.median(tf)/np.median(ti),2), "dice_mean": round(float(np.mean(dices)),4), "dice_min": round(float(np.min(dices)),4), "n": len(dices)}), flush=True)
