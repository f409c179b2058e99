"""The click-prompt graph of the compiled backends follows SamModel.weights_version: no state dict per click."""

from __future__ import annotations

import shutil

import pytest
import torch

import medsam_lite as ml
from medsam_lite.model import backends
from medsam_lite.model.prompt_graph import prompt_weights_sha256


def test_click_prompts_hash_nothing_per_click_and_follow_weights_changed(monkeypatch, count_state_dicts):
    if "onnxruntime" not in backends.available_backends():
        pytest.skip("onnxruntime is not installed")
    m = ml.load_model(backend="onnxruntime")
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    box = torch.tensor([[40.0, 50.0, 150.0, 170.0]])
    pts, labels = torch.tensor([[[90.0, 100.0], [60.0, 70.0]]]), torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        first = m.decode(emb, box, pts, labels)[0]  # loads (or exports once) the prompts graph
    calls = count_state_dicts()
    with torch.no_grad():
        again = [m.decode(emb, box, pts, labels)[0] for _ in range(3)]
    assert calls == []  # nothing hashed per click
    assert all(torch.equal(a, first) for a in again)
    monkeypatch.undo()
    pe, md = m.prompt_parts(clicks=True)
    with torch.no_grad():
        md.iou_token.weight.mul_(-1.5)  # an in-place edit of the click decoder ...
        md.mask_tokens.weight.mul_(-1.5)
        assert torch.equal(m.decode(emb, box, pts, labels)[0], first)  # ... unseen until it is told
    m.weights_changed()
    new = prompt_weights_sha256(pe, md, m.weights_version)
    try:
        with torch.no_grad():
            after = m.decode(emb, box, pts, labels)[0]
            eager = m._run(pe, md, emb, box, pts, labels, None)[0]
    finally:  # the export of these edited weights is of no use to anyone: out of the cache
        for folder in (m.runtime._settings["cache_dir"] / "exports").glob(f"prompts-{new[:16]}-*"):
            shutil.rmtree(folder, ignore_errors=True)
    assert not torch.allclose(after, first, atol=1e-3)
    torch.testing.assert_close(after, eager, atol=2e-3, rtol=1e-3)  # the edited weights, compiled
