"""One settings file for the tutorials (issue 23): ``tutorials/settings.toml`` read by
``tutorial.settings()``, keywords for scripts, environment variables over both."""

from __future__ import annotations

import pytest

import medsam_lite as ml
from medsam_lite import samples
from medsam_lite.app import tutorial
from medsam_lite.app import config

ENV = ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES", "MEDSAM_LITE_LABELS",
       "MEDSAM_LITE_WORK", "MEDSAM_LITE_QUICK", "MEDSAM_LITE_THREADS", "MEDSAM_LITE_SETTINGS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import torch

    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(threads)


def test_the_repository_file_drives_the_notebooks_on_the_real_ct(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)            # no settings.toml here: the repository's tutorials/settings.toml
    s = tutorial.settings(threads=1)
    line = capsys.readouterr().out
    assert s.source.name == "settings.toml" and s.source.parent.name == "tutorials"
    assert s.data.resolve() == samples.ct_abdomen_dir().resolve() and s.modality == "CT"
    assert s.test_cases == ["case-03"] and s.min_mm2 == 64
    names = samples.sample_labels("ct_abdomen")
    assert s.labels and all(names[v] == n for v, n in s.labels.items())   # the file's names are the sample's
    assert s.preprocess_kwargs()["min_mm2"] == 64 and tutorial.finetune_kwargs(s)["batch_size"] == s.batch_size
    assert len(line.strip().splitlines()) == 1 and "modality CT" in line and "case-03" in line
    assert s.work.resolve() == (s.source.parent / "work").resolve()


def test_a_file_of_ones_own_with_keywords_and_environment_on_top(tmp_path, monkeypatch):
    data = tmp_path / "scans"
    data.mkdir()
    (tmp_path / "settings.toml").write_text(
        'data = "scans"\nmodality = "CT"\nlabels = { 5 = "liver", 52 = "aorta" }\ntest_cases = []\n'
        'min_mm2 = 0\nwork = "out"\nepochs = 7\nlr = 3e-4\nbatch_size = 4\nclicks = 2\nthreads = 1\n'
        'device = "cpu"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = tutorial.settings(verbose=False)
    assert (s.data, s.labels, s.test_cases, s.min_mm2, s.work) == \
        (tutorial.short_path(data), {5: "liver", 52: "aorta"}, None, None, tutorial.short_path(tmp_path / "out"))
    assert (s.epochs, s.lr, s.batch_size, s.clicks, s.threads, s.device) == (7, 3e-4, 4, 2, 1, "cpu")
    assert not s.data.is_absolute()              # printed paths stay relative
    s = tutorial.settings(verbose=False, epochs=3, labels=[5])   # keywords over the file
    assert s.epochs == 3 and s.labels == [5] and s.label_names() == {5: "label_5"}
    monkeypatch.setenv("MEDSAM_LITE_LABELS", '{"1": "spleen"}')   # the environment over both
    monkeypatch.setenv("MEDSAM_LITE_QUICK", "1")
    s = tutorial.settings(verbose=False, labels=[5])
    assert s.labels == {1: "spleen"} and s.quick and s.epochs == tutorial.QUICK_EPOCHS
    assert "MEDSAM_LITE_LABELS" in s.summary()
    other = tmp_path / "other.toml"
    other.write_text('data = "scans"\nmodality = "MR"\n', encoding="utf-8")
    monkeypatch.setenv("MEDSAM_LITE_SETTINGS", str(other))
    assert tutorial.settings(verbose=False).modality == "MR"


def test_scripts_keep_their_keywords_and_read_no_file(tmp_path):
    s = tutorial.settings(data=samples.brain_mri_dir(), work=tmp_path / "w", threads=1, verbose=False)
    assert s.source is None and s.modality == "MR" and s.labels is None and s.min_mm2 is None and s.epochs == 5


@pytest.mark.parametrize("text, match", [
    ('data = "x"\nepoch = 3\n', "unknown entries"),
    ('data = "x"\nepochs = "3"\n', "epochs"),
    ('data = "x"\nlabels = { one = "liver" }\n', "labels"),
    ('data = "x"\ndevice = "tpu"\n', "device"),
    ('data = "x\n', "cannot read"),
    ('data = "samples:nothing_here"\n', "nothing_here"),
])
def test_a_bad_file_is_refused_naming_the_entry(tmp_path, text, match):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ml.InputError, match=match):
        config.read(path)


def test_a_missing_data_folder_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "settings.toml").write_text('data = "nope"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ml.InputError, match="settings.toml"):
        tutorial.settings(verbose=False)
