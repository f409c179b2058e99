"""``medsam-lite … --settings FILE``: the command reads the settings file the notebooks read (issue 23);
flags given on the command line override it, the environment overrides the file."""

from __future__ import annotations

import json

import pytest

from medsam_lite.app import cli, tutorial

ENV = ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES", "MEDSAM_LITE_LABELS",
       "MEDSAM_LITE_WORK", "MEDSAM_LITE_QUICK", "MEDSAM_LITE_THREADS", "MEDSAM_LITE_SETTINGS")


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    import torch

    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    path = tmp_path / "mine.toml"
    path.write_text('data = "samples:ct_abdomen"\nmodality = "CT"\nlabels = { 5 = "liver", 52 = "aorta" }\n'
                    'test_cases = ["case-03"]\nmin_mm2 = 64\nwork = "w"\nepochs = 3\nlr = 3e-4\nbatch_size = 4\n'
                    'threads = 1\ndevice = "cpu"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    yield path
    torch.set_num_threads(threads)


def parsed(argv):
    args = cli.build_parser().parse_args(argv)
    cli.apply_settings(args, argv)
    return args


def test_each_verb_takes_its_folders_and_options_from_the_file(settings_file, capsys):
    s = tutorial.settings(file=settings_file, verbose=False)
    args = parsed(["preprocess", "--settings", str(settings_file)])
    assert (args.source, args.out_dir) == (s.data, s.dataset) and args.out_dir.name == "ct_abdomen_dataset"
    assert (args.modality, args.labels, args.test_cases, args.min_mm2) == ("CT", {5: "liver", 52: "aorta"}, ["case-03"], 64)
    assert "settings mine.toml" in capsys.readouterr().out          # the settings in effect, in one line
    args = parsed(["finetune", "--settings", str(settings_file)])
    assert (args.dataset, args.out_dir) == (s.dataset, s.finetune_dir)
    assert (args.epochs, args.lr, args.batch_size, args.threads, args.device) == (3, 3e-4, 4, 1, "cpu")
    assert args.max_slices_per_case is None and args.model == "lite_medsam" and args.checkpoint is None
    for verb in ("embed", "evaluate"):
        assert parsed([verb, "--settings", str(settings_file)]).dataset == s.dataset


def test_flags_override_the_file_and_the_environment_overrides_it_too(settings_file, monkeypatch):
    args = parsed(["finetune", "my_ds", "--settings", str(settings_file), "--epochs", "10", "--lr", "1e-4"])
    assert args.dataset == "my_ds" and args.epochs == 10 and args.lr == 1e-4   # --epochs 10 is the default: given, it still wins
    assert args.batch_size == 4                                                 # not given: the file's
    args = parsed(["--threads", "2", "preprocess", "--settings", str(settings_file), "--labels", "5", "--modality", "MR"])
    assert args.labels == [5] and args.modality == "MR" and args.threads == 2
    monkeypatch.setenv("MEDSAM_LITE_QUICK", "1")
    monkeypatch.setenv("MEDSAM_LITE_LABELS", "52")
    args = parsed(["finetune", "--settings", str(settings_file)])
    assert args.max_slices_per_case == tutorial.QUICK_SLICES and args.epochs == tutorial.QUICK_EPOCHS
    assert parsed(["preprocess", "--settings", str(settings_file)]).labels == [52]
    assert parsed(["embed", "--settings", str(settings_file), "--max-slices-per-case", "5"]).max_slices_per_case == 5


def test_preprocess_from_the_file_prepares_the_chosen_labels(settings_file, capsys):
    assert cli.main(["preprocess", "--settings", str(settings_file)]) == cli.EXIT_OK
    meta = json.loads((settings_file.parent / "w" / "ct_abdomen_dataset" / "dataset.json").read_text())
    assert meta["modality"] == "CT" and meta["min_mm2"] == 64
    assert {int(k) for k in meta["labels"]} == {5, 52} and meta["split"]["case-03"] == "test"
    assert sorted(meta["split"]) == ["case-01", "case-02", "case-03"]


def test_without_file_or_folders_the_command_says_what_to_give(tmp_path, capsys):
    assert cli.main(["finetune"]) == cli.EXIT_BAD_INPUT
    assert "give DATASET OUT_DIR, or --settings FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "nowhere"\n', encoding="utf-8")
    assert cli.main(["embed", "--settings", str(bad)]) == cli.EXIT_BAD_INPUT
    assert "nowhere" in capsys.readouterr().err


def test_notebook_08_entries_scan_boxes_reference(settings_file):
    from medsam_lite import InputError
    from medsam_lite.app import config

    text = settings_file.read_text(encoding="utf-8")
    settings_file.write_text(text + 'scan = "samples:ct_abdomen/case-03.nii.gz"\nreference = ""\n\n[boxes]\n'
                             'liver = [5, 41, 26, 106, 83]\naorta = [5, 49.5, 40, 60, 50]\n', encoding="utf-8")
    s = tutorial.settings(file=settings_file, verbose=False)
    assert s.scan.name == "case-03.nii.gz" and s.scan.is_file() and s.reference is None
    assert s.boxes == {"liver": (5, [41.0, 26.0, 106.0, 83.0]), "aorta": (5, [49.5, 40.0, 60.0, 50.0])}
    assert "scan to annotate" in s.summary() and s.annotation_labels() == {5: "liver", 52: "aorta"}
    s = tutorial.settings(file=settings_file, verbose=False, labels={5: "liver"})   # the other notebooks still run
    with pytest.raises(InputError, match="name no label"):   # 08: a box for a label the settings do not choose
        s.annotation_labels()
    with pytest.raises(InputError, match=r"needs scan in the settings file .*set scan ="):   # 08 without a scan
        tutorial.settings(file=settings_file, verbose=False, scan="").annotation_labels()
    for bad in ("[5, 41, 26, 106]", "[5, 106, 26, 41, 83]", "[1.5, 41, 26, 106, 83]", "[-1, 41, 26, 106, 83]"):
        settings_file.write_text(text + f"\n[boxes]\nliver = {bad}\n", encoding="utf-8")
        with pytest.raises(InputError, match="boxes.liver"):
            config.read(settings_file)


def test_a_script_gives_scan_and_boxes_as_keywords(tmp_path):
    from medsam_lite import InputError, samples

    scan = samples.ct_abdomen_dir() / "case-03.nii.gz"
    s = tutorial.settings(data=samples.ct_abdomen_dir(), modality="CT", work=tmp_path, threads=1, verbose=False, scan=str(scan),
                          boxes={"liver": [5, 41, 26, 106, 83]})
    assert s.scan == scan and s.boxes == {"liver": (5, [41.0, 26.0, 106.0, 83.0])} and s.reference is None
    with pytest.raises(InputError, match="boxes"):
        tutorial.settings(data=samples.ct_abdomen_dir(), modality="CT", work=tmp_path, threads=1, verbose=False,
                          boxes={"liver": [41, 26, 106, 83]})
