"""The one seam for model calls, the intensity preset end to end, the version, and the CLI's defaults."""

import ast
import importlib.metadata
import inspect
from pathlib import Path

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.app import cli

PACKAGE = Path(ml.__file__).parent


def _calls(attr_names):
    """``{module: [line, …]}`` of calls ``x.<attr>(…)`` with a non-string first argument."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in attr_names:
                first = node.args[0] if node.args else None
                if first is None and not node.keywords or isinstance(first, ast.Constant):
                    continue  # str.encode(), bytes.decode("utf-8") …
                found.setdefault(path.name, []).append(node.lineno)
    return found


def test_one_call_site_for_the_encoder_and_one_for_the_decoder():
    calls = _calls({"encode", "decode"})
    # the seam (inference.py) and the two model classes behind it: the torch SamModel (sammodel.py) and
    # the torch-free ExportedModel (exported.py), which hands a call to its torch model once one is loaded
    assert set(calls) == {"inference.py", "sammodel.py", "exported.py"}, calls
    assert len(calls["inference.py"]) == 2, calls  # model.encode(inputs), model.decode(embeddings, boxes)
    parts = _calls({"image_encoder", "mask_decoder", "prompt_encoder"})
    assert set(parts) <= {"sammodel.py", "backends.py"}, parts  # the torch modules run only there (and are exported)


def test_version_comes_from_the_package_metadata():
    assert ml.__version__ == importlib.metadata.version("medsam-lite")


@pytest.fixture(scope="module")
def ct_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    ml.preprocess(samples.ct_abdomen_dir(), root / "ds", modality="CT", labels=[5], test_cases=["case-03"],
                  progress=False)
    return root / "ds"


def test_a_store_survives_a_version_bump(ct_dataset, model, monkeypatch):
    store = ml.embed(ct_dataset, model, cases=["case-01"], max_slices_per_case=2, progress=False)
    done = store.done.copy()
    monkeypatch.setattr(ml, "__version__", "99.0")
    again = ml.embed(ct_dataset, model, cases=["case-01"], max_slices_per_case=2, progress=False)
    assert (again.done == done).all() and done.sum() == 2  # reused, nothing recomputed or discarded
    assert again.signature["medsam_lite_version"] != "99.0"  # recorded at creation, for information


def test_a_fine_tuned_model_normalizes_as_its_training_data(ct_dataset, model, tmp_path):
    """finetune → load_model(checkpoint) → set_image(CT in HU) uses the dataset's CT window, unasked."""
    run = ml.finetune(ct_dataset, tmp_path / "ft", model, epochs=1, lr=1e-4, cases=["case-01", "case-02"],
                      max_slices_per_case=2, progress=False)
    tuned = ml.load_model(checkpoint=run.best)
    assert tuned.preset == ml.IntensityPreset.resolve("CT")
    image = io.read_volume(samples.ct_abdomen_dir() / "case-02.nii.gz").array
    label = io.read_volume(samples.ct_abdomen_dir() / "case-02_label.nii.gz").array
    z = int(np.argmax((label == 5).sum(axis=(1, 2))))
    hu, box = image[z], ml.box_from_mask(label[z] == 5)
    predictor = ml.Predictor(tuned)
    predictor.set_image(hu)  # no modality=
    assert predictor.embedding.preset.modality == "CT"
    implicit = predictor.predict(box)[0]
    predictor.set_image(hu, modality="CT")
    np.testing.assert_array_equal(implicit, predictor.predict(box)[0])
    predictor.set_image(hu, modality="MR")  # what the model was NOT trained on: a different input
    assert predictor.embedding.preset.modality == "MR"
    assert not np.array_equal(ml.normalize_intensity(hu, "MR"), ml.normalize_intensity(hu, "CT"))


def test_every_cli_option_has_the_functions_default():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for verb, func in (("preprocess", ml.preprocess), ("embed", ml.embed), ("finetune", ml.finetune),
                       ("evaluate", ml.evaluate)):
        actions = {a.dest: a for a in sub.choices[verb]._actions}
        for name, param in inspect.signature(func).parameters.items():
            if name in ("model", "progress", "exclude") or param.default is inspect.Parameter.empty:
                continue
            assert name in actions, (verb, name)
            assert actions[name].default == param.default, (verb, name, actions[name].default, param.default)
    finetune_help = sub.choices["finetune"].format_help()
    for flag in ("--val-cases", "--labels", "--max-minutes", "--max-slices-per-case", "--cases"):
        assert flag in finetune_help
    evaluate_help = sub.choices["evaluate"].format_help()
    assert "--cases" in evaluate_help and "--labels" in evaluate_help


def test_precision_means_training_for_finetune_and_the_model_elsewhere():
    """finetune(precision=) and load_model(precision=) share a name: finetune's --precision is the
    training one (the model loads at load_model's default), evaluate's the model's."""
    parser = cli.build_parser()
    args = parser.parse_args(["finetune", "ds", "out", "--precision", "bf16"])
    assert args.precision == "bf16" and args.model_precision == "fp32"
    args = parser.parse_args(["evaluate", "ds", "--precision", "bf16"])
    assert args.model_precision == "bf16" and "precision" not in args.names


@pytest.mark.parametrize("argv", [["preprocess", "a", "b", "--window", "a,b"], ["--threads", "-1", "embed", "x"],
                                  ["preprocess", "a", "b", "--window", "0,nan"], ["--threads", "0", "embed", "x"],
                                  ["finetune", "a", "b", "--lr", "fast"]])
def test_bad_cli_values_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err
