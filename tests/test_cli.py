"""The medsam-lite command: help, exit codes, and the same masks as the Python API."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.app import cli

SUBCOMMANDS = ["preprocess", "embed", "finetune", "predict", "evaluate"]
pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory


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


# ---- shared by the tests below (from test_faults2.py)
def _cache_file(tmp_path, monkeypatch) -> Path:
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(blocker))
    return blocker


SLICE, SLICE_LABEL = samples.sample_path("brain_slice.png"), samples.sample_path("brain_slice_label.png")


def brain(case: str):
    d = samples.brain_mri_dir()
    return d / f"{case}.nii.gz", d / f"{case}_label.nii.gz"


@pytest.mark.parametrize("name", ["labels.jpg", "labels.JPEG"])
def test_cli_refuses_a_label_map_to_jpeg_before_reading_the_scan(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: pytest.fail("scan read before the refusal"))
    out = tmp_path / name
    assert cli.main(["predict", str(SLICE), "--labels-from", str(SLICE_LABEL), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "JPEG" in err and ".png" in err and not out.exists()


@pytest.mark.parametrize("name", ["mask.jpeg", "mask.TIF", "mask.Png"])
def test_cli_masks_in_image_formats_are_0_255_whatever_the_suffix_case(tmp_path, capsys, brain_slice, model,
                                                                       name):
    image, label = brain_slice
    box = ml.box_from_mask(label > 0)
    expected = ml.predict(image, box, model=model)[0]
    out = tmp_path / name
    assert cli.main(["predict", str(SLICE), "--box", *map(str, box), "--out", str(out)]) == 0
    raw = io.read_volume(out).array
    if name.endswith("jpeg"):  # lossy: grey values near the edges, but bright inside
        assert raw.max() > 200
    else:
        assert set(np.unique(raw).tolist()) == {0, 255}
    back = io.read_label(out, allow_lossy=True).array  # the package reads its own file back as label 1
    assert set(np.unique(back).tolist()) == {0, 1} and ml.dice(back == 1, expected) > 0.98


def test_cli_labels_from_with_specks_exits_0(tmp_path, capsys):
    out = tmp_path / "labels.png"
    assert cli.main(["predict", str(SLICE), "--labels-from", str(SLICE_LABEL), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().err and set(np.unique(io.read_volume(out).array)) >= {1, 3}


def test_cli_says_an_unusable_cache_in_one_line(tmp_path, monkeypatch, capsys, brain_slice):
    _cache_file(tmp_path, monkeypatch)
    box = ml.box_from_mask(brain_slice[1] == 3)
    out = tmp_path / "mask.png"
    assert cli.main(["predict", str(SLICE), "--box", *map(str, box), "--out", str(out), "--backend",
                     "onnxruntime"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "MEDSAM_LITE_CACHE" in line]
    assert len(lines) == 1 and lines[0].startswith("medsam-lite predict: warning:") and out.exists()


@pytest.mark.parametrize("ndim", [2, 3])
def test_cli_names_two_components_per_pixel(tmp_path, monkeypatch, capsys, ndim):
    scan = io.read_volume(brain("sub-01")[0]).array
    part = scan[scan.shape[0] // 2] if ndim == 2 else scan[10:14]
    image = sitk.Compose(sitk.GetImageFromArray(part), sitk.GetImageFromArray(part))
    path = tmp_path / "two.nrrd"
    sitk.WriteImage(image, str(path))
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("model loaded"))
    argv = ["predict", str(path), "--box", "40", "50", "120", "150", "--out", str(tmp_path / "m.nii.gz")]
    assert cli.main(argv + (["--slice", "1"] if ndim == 3 else [])) == 2
    err = capsys.readouterr().err
    assert "2 components per pixel" in err and "save one channel" in err


@pytest.mark.parametrize("out", ["mask.nii.gzz", "mask.png"])
def test_cli_checks_the_output_format_before_the_work(tmp_path, monkeypatch, capsys, out):
    reads = []
    real = io.scans.read_volume
    if out.endswith("gzz"):  # an unknown suffix: refused before the scan is read
        monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: pytest.fail("scan read"))
    else:  # a 2D format for a volume: refused once the scan's header says 3D, before the model
        monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: reads.append(1) or real(*a, **k))
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("model loaded before the refusal"))
    argv = ["predict", str(brain("sub-01")[0]), "--box3d", "60", "60", "20", "120", "140", "24",
            "--out", str(tmp_path / out)]
    assert cli.main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / out).exists()
