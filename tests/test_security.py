"""Security: nothing unpickles untrusted data, and manifest paths cannot leave the dataset folder.

1. A static check of the package source (``ast``, with import aliases resolved): every
   ``torch.load`` passes ``weights_only=True``, every ``np.load`` passes ``allow_pickle=False``, and
   nothing calls ``pickle``/``dill``/``joblib``/``marshal``/``shelve``/``pandas.read_pickle``/
   ``torch.jit.load``/``eval``/``exec`` or ``yaml.load`` without a safe loader.
2. At run time, files that would run code when unpickled (a checkpoint, an embedding store, a
   resume checkpoint) are refused and the code never runs.
3. Paths read from a manifest (``..``, absolute paths, symbolic links) cannot leave the dataset
   folder, through ``Dataset.path``/``image``/``mask`` nor through ``embed``, ``finetune``, ``evaluate``.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import medsam_lite as ml
from medsam_lite.data.dataset import open_dataset
from medsam_lite.data.embed import select_slices

PACKAGE = Path(ml.__file__).parent


# ------------------------------------------------------------------------------------ static check
FORBIDDEN = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads", "cPickle.load",
    "cPickle.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load",
    "marshal.load", "marshal.loads", "shelve.open", "pandas.read_pickle", "numpy.lib.format.read_array",
    "torch.jit.load", "torch.package.PackageImporter", "eval", "exec", "builtins.eval", "builtins.exec",
}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name → fully qualified name, from the module's imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualified(func: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    base = aliases.get(func.id, func.id)
    name = ".".join([base, *reversed(parts)])
    return name.replace("np.", "numpy.", 1) if name.startswith("np.") else name


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else f"<{ast.unparse(kw.value)}>"
        if kw.arg is None:
            return "<**kwargs>"
    return "<absent>"


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Every call in ``source`` that could unpickle or execute untrusted data."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, aliases)
        where = f"{filename}:{node.lineno}"
        if name is None:
            continue
        if name in FORBIDDEN:
            problems.append(f"{where}: {name}()")
        elif name == "torch.load" and _keyword(node, "weights_only") is not True:
            problems.append(f"{where}: torch.load without weights_only=True")
        elif name in ("numpy.load", "numpy.lib.npyio.load") and _keyword(node, "allow_pickle") is not False:
            problems.append(f"{where}: numpy.load without allow_pickle=False")
        elif name == "yaml.load" and "Safe" not in str(_keyword(node, "Loader")) and not (
                len(node.args) > 1 and "Safe" in ast.unparse(node.args[1])):
            problems.append(f"{where}: yaml.load without SafeLoader")
    return problems


def test_the_checker_finds_unsafe_calls():
    bad = """
import pickle as pk
import numpy as np
from torch import load as tload
import torch, yaml
pk.loads(b"")
tload("a.pt")
torch.load("a.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
np.load("b.npy")
yaml.load(open("c.yml"))
eval("1 + 1")
"""
    found = unsafe_calls(bad)
    assert len(found) == 7, found
    good = """
import numpy as np, torch, yaml
torch.load("a.pt", map_location="cpu", weights_only=True)
np.load("a.npy", mmap_mode="r", allow_pickle=False)
yaml.load(open("c.yml"), Loader=yaml.SafeLoader)
"""
    assert unsafe_calls(good) == []


def test_package_source_never_unpickles_untrusted_data():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 10 and (PACKAGE / "model" / "models.py") in files
    problems = [p for f in files for p in unsafe_calls(f.read_text(encoding="utf-8"), f.name)]
    assert problems == []
    # and the safe loaders are really used where files are read
    text = {f.name: f.read_text(encoding="utf-8") for f in files}
    assert "weights_only=True" in text["checkpoints.py"] and "allow_pickle=False" in text["store.py"]


# ------------------------------------------------------------------------------------ run time
class _Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["zip, under optimizer", "legacy format, as the state dict"])
def test_checkpoint_variants_that_run_code_are_refused(tmp_path, model, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    decoder = {k: v for k, v in model.state_dict().items() if k.startswith("mask_decoder.")}
    if layout.startswith("zip"):  # a finetune-style checkpoint whose optimizer entry is booby-trapped
        torch.save({"model": decoder, "model_name": "lite_medsam", "optimizer": _Evil(marker)}, path)
    else:
        torch.save(_Evil(marker), path, _use_new_zipfile_serialization=False)
    with pytest.raises(ml.CheckpointError, match="refused"):
        ml.load_model(checkpoint=path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return small_dataset


@pytest.fixture(scope="module")
def two_slices(dataset, model, tmp_path_factory):
    """A copy whose manifest keeps one central slice of sub-01 (train) and of sub-07 (test), embedded."""
    root = tmp_path_factory.mktemp("two_slices") / "dataset"
    shutil.copytree(dataset.root, root, ignore=shutil.ignore_patterns("embeddings"))
    keep = select_slices(dataset, cases=["sub-01", "sub-07"], max_slices_per_case=1)[["case", "slice"]]
    dataset.manifest.merge(keep, on=["case", "slice"]).to_csv(root / "manifest.csv", index=False)
    ml.embed(root, model, progress=False)
    return root


def _copy_with(src: Path, dst: Path, column: str, value, where=0) -> Path:
    shutil.copytree(src, dst)
    m = pd.read_csv(dst / "manifest.csv", dtype={"case": str})
    m.loc[where, column] = value
    m.to_csv(dst / "manifest.csv", index=False)
    return dst


def test_an_embedding_store_that_would_run_code_is_not_unpickled(two_slices, model, tmp_path):
    marker = tmp_path / "pwned"
    copy = tmp_path / "copy"
    shutil.copytree(two_slices, copy)
    store = copy / "embeddings" / "lite_medsam"
    np.save(store / "embeddings.npy", np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ml.InputError):
        ml.embed(copy, model, progress=False)
    assert not marker.exists()


def test_a_resume_checkpoint_that_would_run_code_is_refused(two_slices, model, tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": _Evil(marker), "epoch": 1}, out / "last.pt")
    with pytest.raises(ml.CheckpointError, match="last.pt"):
        ml.finetune(two_slices, out, model, epochs=2, resume=True, val_fraction=0, progress=False)
    assert not marker.exists()


# ------------------------------------------------------------------------------------ manifest paths
@pytest.fixture(scope="module")
def outside_png(tmp_path_factory, dataset):
    """A real, readable PNG outside any dataset folder (a copy of a stored slice)."""
    d = tmp_path_factory.mktemp("outside")
    shutil.copy(dataset.root / dataset.slices.at[0, "image"], d / "secret.png")
    return d / "secret.png"


def test_manifest_paths_cannot_leave_the_dataset_folder(dataset, outside_png, tmp_path):
    ds = open_dataset(dataset.root)
    inside = ds.slices.at[0, "image"]
    up = os.path.relpath(outside_png, dataset.root)  # ../../outside0/secret.png
    assert up.startswith("..") and outside_png.is_file()
    for bad in (up, str(outside_png), "../../../../../../etc/passwd", "/etc/passwd",
                f"images/../../{Path(up).name}", f"{inside}/../../../..", ".", ""):
        with pytest.raises(ml.InputError, match="outside the dataset folder|not a file path"):
            ds.path(bad)
        with pytest.raises(ml.InputError):
            ds.image(bad)
        with pytest.raises(ml.InputError):
            ds.mask(bad)
    # a path that wanders but stays inside is fine, and reads the same slice
    case_dir, name = inside.rsplit("/", 1)
    wander = f"{case_dir}/../{Path(case_dir).name}/{name}"
    np.testing.assert_array_equal(ds.image(wander), ds.image(inside))
    # a symbolic link inside the folder that points outside is refused too
    link = tmp_path / "linked"
    shutil.copytree(dataset.root, link, ignore=shutil.ignore_patterns("embeddings"))
    target = link / inside
    target.unlink()
    target.symlink_to(outside_png)
    with pytest.raises(ml.InputError, match="outside the dataset folder"):
        open_dataset(link).image(inside)


@pytest.mark.parametrize("bad", ["../../outside/secret.png", "/etc/passwd"])
def test_embed_refuses_a_manifest_image_outside_before_writing(two_slices, model, tmp_path, bad):
    copy = _copy_with(two_slices, tmp_path / "copy", "image", bad)
    shutil.rmtree(copy / "embeddings")
    with pytest.raises(ml.InputError, match="outside the dataset folder"):
        ml.embed(copy, model, progress=False)
    assert not (copy / "embeddings").exists()


def test_evaluate_and_finetune_refuse_a_manifest_mask_outside(two_slices, model, tmp_path, outside_png):
    test_row = int(np.flatnonzero(pd.read_csv(two_slices / "manifest.csv", dtype={"case": str})["split"]
                                  == "test")[0])
    copy = _copy_with(two_slices, tmp_path / "eval", "mask", str(outside_png), where=test_row)
    with pytest.raises(ml.InputError, match="outside the dataset folder"):
        ml.evaluate(model, copy, progress=False)
    copy = _copy_with(two_slices, tmp_path / "ft", "mask", "../" * 6 + "etc/passwd", where=0)
    with pytest.raises(ml.InputError, match="outside the dataset folder"):
        ml.finetune(copy, tmp_path / "run", model, epochs=1, val_fraction=0, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
