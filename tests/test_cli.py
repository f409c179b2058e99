"""The medsam-lite command: help, exit codes, and the same masks as the Python API."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples

SUBCOMMANDS = ["preprocess", "embed", "finetune", "predict", "evaluate"]


def cli_exe():
    """The installed console script (beside this Python, or on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "medsam-lite")
    return beside if os.path.exists(beside) else shutil.which("medsam-lite")


def run_cli(*args, check=False, cwd=None):
    threads = os.environ.get("MEDSAM_LITE_THREADS", "2")  # 1 per process when tests run in parallel
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    proc = subprocess.run([cli_exe(), "--threads", threads, *map(str, args)], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=600, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_every_subcommand_with_defaults():
    top = run_cli("--help", check=True).stdout
    for name in SUBCOMMANDS:
        assert name in top
    assert "1e-05" in run_cli("finetune", "--help", check=True).stdout  # the paper's lr, shown
    assert "default: 100" in run_cli("preprocess", "--help", check=True).stdout


def test_predict_2d_matches_python(tmp_path, model, brain_slice):
    image, label = brain_slice
    box = ml.box_from_mask(label > 0)
    out = tmp_path / "mask.png"
    proc = run_cli("predict", samples.sample_path("brain_slice.png"), "--box", *box, "--out", out, check=True)
    assert "mask with" in proc.stdout
    cli_mask = io.read_volume(out).array > 0
    py_mask = ml.predict(image, box, model=model)[0]
    np.testing.assert_array_equal(cli_mask, py_mask)


def test_predict_3d_matches_python_and_keeps_geometry(tmp_path, model, brain_volume):
    image, label = brain_volume
    z = int(np.argmax((label.array == 1).sum(axis=(1, 2))))
    box = ml.box_from_mask(label.array[z] == 1)
    box3d = [box[0], box[1], z - 1, box[2], box[3], z + 1]
    out = tmp_path / "mask.nii.gz"
    run_cli("predict", image.path, "--box3d", *box3d, "--out", out, check=True)
    written = io.read_volume(out)
    assert written.same_geometry(image)
    expected = ml.predict_volume(image, box3d, model=model)
    np.testing.assert_array_equal(written.array > 0, expected > 0)


@pytest.mark.parametrize("args,message", [
    (["predict", "missing.png", "--box", 1, 2, 3, 4, "--out", "x.png"], "does not exist"),
    (["evaluate", "not_a_dataset"], "not a prepared dataset"),
    (["embed", "not_a_dataset"], "not a prepared dataset"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("verb", [["embed"], ["evaluate"], ["finetune"]])
def test_a_wrong_dataset_folder_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys, verb):
    from medsam_lite.app import cli

    def no_model(args):
        raise AssertionError("the model was loaded before the dataset was checked")

    monkeypatch.setattr(cli, "_load", no_model)
    argv = ["--threads", "1", *verb, str(tmp_path / "nothing")] + ([str(tmp_path / "out")] if verb == ["finetune"] else [])
    assert cli.main(argv) == 2
    assert "not a prepared dataset" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_box_on_a_2d_image_is_checked(tmp_path, brain_slice):
    proc = run_cli("predict", samples.sample_path("brain_slice.png"), "--box", 50, 50, 10, 10,
                   "--out", tmp_path / "m.png")
    assert proc.returncode == 2 and "inverted" in proc.stderr
    assert not (tmp_path / "m.png").exists()
