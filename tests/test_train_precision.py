"""finetune(precision="bf16"): bf16 autocast for the forward pass, fp32 weights and checkpoints; refused
where the device has no bf16, before anything is computed or written."""

import numpy as np
import pytest
import torch

import medsam_lite as ml
from medsam_lite.train import steps

TINY = dict(max_slices_per_case=2, lr=1e-4, batch_size=4, seed=3, progress=False)


def test_unknown_precision_is_refused_before_any_work(small_dataset, model, tmp_path):
    with pytest.raises(ml.InputError, match="precision"):
        ml.finetune(small_dataset, tmp_path / "ft", model, epochs=1, precision="fp16", **TINY)
    assert not (tmp_path / "ft").exists()


def test_bf16_is_refused_on_a_device_without_it(small_dataset, model, tmp_path, monkeypatch):
    monkeypatch.setattr(steps, "bf16_supported", lambda device: False)
    with pytest.raises(ml.InputError, match="precision='fp32'"):
        ml.finetune(small_dataset, tmp_path / "ft", model, epochs=1, precision="bf16", **TINY)
    assert not (tmp_path / "ft").exists()


def test_autocast_lowers_the_decoder_and_not_the_loss(model):
    if not steps.bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no native bf16")
    emb = torch.randn(2, 256, 64, 64)
    boxes = torch.tensor([[100.0, 100.0, 300.0, 300.0], [50.0, 60.0, 200.0, 400.0]])
    with steps.train_autocast("bf16", torch.device("cpu"))():
        low, _ = steps.decode_logits(model, emb, boxes)
        up = steps._upsampled(low, 1024)
    assert low.dtype == torch.bfloat16 and up.dtype == torch.float32


def test_bf16_run_trains_and_keeps_fp32_checkpoints(small_dataset, model, tmp_path):
    if not steps.bf16_supported(model.device):
        pytest.skip("this CPU has no native bf16")
    fp = ml.finetune(small_dataset, tmp_path / "fp32", model, epochs=2, **TINY)
    bf = ml.finetune(small_dataset, tmp_path / "bf16", model, epochs=2, precision="bf16", **TINY)
    state = torch.load(bf.last, map_location="cpu", weights_only=True)["model"]
    base = model.mask_decoder.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values())
    assert any(not torch.equal(state[f"mask_decoder.{k}"], v) for k, v in base.items())  # it trained
    # same seed, same data: the bf16 losses follow the fp32 ones (bf16 rounding, not another recipe)
    np.testing.assert_allclose(bf.history["train_loss"], fp.history["train_loss"], rtol=0.05)
    np.testing.assert_allclose(bf.history["val_dice"], fp.history["val_dice"], atol=0.03)
    tuned = ml.load_model(checkpoint=bf.best)
    assert tuned.mask_decoder.state_dict()["output_upscaling.0.weight"].dtype == torch.float32
