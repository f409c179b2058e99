"""Shared fixtures: the real LiteMedSAM model and the bundled sample data, each built once per session.

Slow things are built here once and shared (session scope); a test that changes files works on a
copy (``shutil.copytree(small_dataset.root, …)``), never on the shared folder.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# This machine has 2 cores: one pytest process uses both, or (scripts/test.sh: pytest -n 2) each of two
# worker processes uses one, MEDSAM_LITE_THREADS=1 (never run two torch processes unpinned).
THREADS = int(os.environ.get("MEDSAM_LITE_THREADS", "2"))
torch.set_num_threads(THREADS)

#: The small real dataset shared by test_embed, test_finetune, test_evaluate, test_security,
#: test_bad_inputs, test_crash_safety and test_distributed: three sample subjects, sub-07 the test case.
SMALL_CASES = ("sub-01", "sub-02", "sub-07")
SMALL_TEST_CASES = ["sub-07"]
MAX_SLICES = 3  # consecutive central slices per case that the tests embed (they include ventricles)


#: Test files and notebooks in the order scripts/test.sh hands them out (``pytest -n 2 --dist loadfile
#: --no-loadscope-reorder``: whole files, in collection order, to whichever process has room; each
#: process starts with two). The longest first (seconds per file measured in CI: bench/RESULTS.md,
#: "Suite time"), so the long ones run side by side and the short ones fill the end (started last, one
#: long file was the whole tail). The two own-data notebook runs open the two processes; notebook 02
#: (which prepares tutorials/work for the others: two notebooks preparing it at once would collide on
#: its lock) runs right after the first, long before the other notebooks start. Files not named here
#: follow in their usual order, then :data:`RUN_LAST`.
RUN_FIRST = (
    "tests/test_notebook_own_data.py", "tests/test_notebook_own_rtstruct.py",
    "tutorials/02_prepare_custom_dataset.ipynb", "tests/test_distributed.py", "tests/test_volume.py",
    "tests/test_crash_safety.py", "tests/test_backends.py", "tests/test_clicks.py", "tests/test_finetune.py",
    "tests/test_labelmaps.py", "tests/test_formats.py", "tests/test_coldstart.py", "tests/test_cli.py",
    "tests/test_volume_clicks.py", "tests/test_prefetch.py", "tests/test_predict.py", "tests/test_speed.py",
    "tests/test_challenge_rules.py", "tests/test_widgets.py", "tests/test_embed.py",
    "tests/test_notebook_tutorial.py", "tests/test_train_precision.py", "tests/test_preprocess.py",
    "tests/test_fileutil.py", "tests/test_colab.py", "tests/test_browser.py",
    "tutorials/04_finetune_mask_decoder.ipynb", "tests/test_evaluate.py", "tests/test_seam.py",
    "tutorials/07_3d_volume_segmentation.ipynb", "tutorials/08_annotate_without_labels.ipynb",
    "tests/test_session.py", "tutorials/03_precompute_embeddings.ipynb", "tests/test_cvpr25.py",
    "tests/test_weak_labels.py", "tests/test_properties.py", "tutorials/06_interactive_box_prompting.ipynb",
    "tutorials/01_quickstart.ipynb",
)
#: Notebook 05 trains notebook 04's decoder itself when it is missing: far behind 04, never beside it.
RUN_LAST = ("tutorials/05_evaluate.ipynb",)


def pytest_collection_modifyitems(config, items):
    """Order the collected files as :data:`RUN_FIRST` and :data:`RUN_LAST` say (a stable sort: the
    tests of a file keep their order, and so do the files not named)."""
    rank = {path: i for i, path in enumerate(RUN_FIRST)}
    rank.update({path: len(RUN_FIRST) + 1 + i for i, path in enumerate(RUN_LAST)})
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(RUN_FIRST)))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that sets torch's thread count (``cli.main(["--threads", "1", …])``, ``tutorial.settings``)
    must not leave the rest of the session on fewer cores: restore it after every test."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _keep_locale():
    """SimpleITK's GDCM writer (the tests' DICOM series helpers) switches the process locale to "C":
    every later text decode in that process (``subprocess.run(..., text=True)``, ``open``) would then be
    ASCII. Put the locale back after every test, so no test depends on which ran before it."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture
def count_state_dicts(monkeypatch):
    """``start()`` makes every ``torch.nn.Module.state_dict`` call from then on append its module's class
    name to the list it returns (a per-call rebuild or hash of the weights shows up there); the
    test's ``monkeypatch`` undoes it."""
    def start() -> list:
        calls, real = [], torch.nn.Module.state_dict

        def counting(self, *args, **kwargs):
            calls.append(type(self).__name__)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, "state_dict", counting)
        return calls
    return start


#: What :func:`reuse_encodings` keeps: one store for the session (a repeat in another module that uses it is
#: answered too), at most this many encodings (4 MiB each), the oldest dropped first.
_ENCODINGS: dict = {}
_ENCODINGS_MAX = 96


@pytest.fixture(scope="module")
def reuse_encodings():
    """For one test module (``pytestmark = pytest.mark.usefixtures("reuse_encodings")``): an input the
    same encoder already encoded (in this module or another that uses this fixture) is answered from
    memory, not encoded again.

    ``SamModel.encode`` (the package's one encoder call) keeps each answer under the input's bytes
    (SHA-1 of the ``B×3×S×S`` model input) and the encoder that gave it: the weights as loaded (their
    SHA-256; after an announced in-place edit, ``weights_changed()``, that model's own encoder and
    weights version), the compiled runtime's backend, precision and threads (or torch eager), the
    device. A repeat gets a copy of the first answer: the values that encoder gives for that input,
    without the time (test_crash_safety encoded the same three central slices 13 times). An input
    that differs in any byte (another slice, another normalisation, a wrong row) is encoded. Not for
    modules that time the encoder, count its calls below ``model.encode``, or edit encoder weights in
    place without ``weights_changed()``."""
    import hashlib

    from medsam_lite.model.sammodel import SamModel

    real, memo = SamModel.encode, _ENCODINGS

    def encode(self, images):
        x = images.detach().cpu().contiguous()
        if x.dtype not in (torch.float32, torch.float64, torch.uint8):
            return real(self, images)  # (bf16/fp16 inputs: not kept)
        rt = self.runtime
        engine = "torch" if rt is None else tuple(getattr(rt, a, None) for a in ("name", "precision", "threads"))
        # after an in-place edit: this encoder object (kept in the key, so its id is never another's)
        weights = self.weights_sha256 if self.weights_version == 0 else (self.image_encoder, self.weights_version)
        key = (weights, engine, str(self.device), x.dtype, tuple(x.shape), hashlib.sha1(x.numpy().tobytes()).digest())
        if key not in memo:
            while len(memo) >= _ENCODINGS_MAX:
                memo.pop(next(iter(memo)))
            memo[key] = real(self, images)
        return memo[key].clone()

    SamModel.encode = encode
    yield memo
    SamModel.encode = real


@pytest.fixture(scope="session")
def model():
    import medsam_lite as ml

    return ml.load_model()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """:data:`SMALL_CASES` prepared once with the public API into ``<basetemp>/small_dataset``
    (a ``Dataset``). Its embedding store fills as tests embed; a test that writes anything else
    must work on a copy."""
    import medsam_lite as ml
    from medsam_lite import samples
    from medsam_lite.data.dataset import open_dataset

    d = samples.brain_mri_dir()
    root = tmp_path_factory.getbasetemp() / "small_dataset"
    ml.preprocess({c: (d / f"{c}.nii.gz", d / f"{c}_label.nii.gz") for c in SMALL_CASES}, root,
                  test_cases=SMALL_TEST_CASES, progress=False)
    return open_dataset(root)


@pytest.fixture(scope="session")
def brain_slice():
    """``(image uint8 H×W, label map uint8 H×W)`` of the bundled 2D sample."""
    from medsam_lite import io, samples

    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    return image, label


@pytest.fixture(scope="session")
def brain_volume():
    """``(image Volume, label Volume)`` of sample subject sub-01."""
    from medsam_lite import io, samples

    d = samples.brain_mri_dir()
    return io.read_volume(d / "sub-01.nii.gz"), io.read_volume(d / "sub-01_label.nii.gz")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
