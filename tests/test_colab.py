"""Notebook 01 on a simulated Colab runtime: one click, one kernel, no restart.

The simulation (see FACTS.md, "Colab"):

* a fresh venv **without** medsam_lite whose site-packages holds one ``.pth`` line pointing at this
  interpreter's site-packages, so torch and the notebook stack import but the editable
  medsam_lite (registered by an ``__editable__`` .pth that a plain path line does not execute)
  does not — checked first;
* a stand-in ``google.colab`` package (``output.enable_custom_widget_manager``, ``drive.mount``)
  imported at kernel start from an IPython startup file (``IPYTHONDIR``);
* a kernelspec pointing at that venv (``JUPYTER_PATH``);
* ``MEDSAM_LITE_REPO=file://<a clean git clone of this checkout>`` and ``MEDSAM_LITE_CLONE`` in the
  temp dir (Colab's ``/content/medsam_lite``); pip runs offline (``PIP_NO_INDEX``) and builds
  without isolation, finding every dependency already installed through the ``.pth``.

nbclient then runs **every** cell of notebook 01 (tags ignored) in one kernel with no restart, runs
the install cell a second time, and checks nothing is nested or broken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "01_quickstart.ipynb"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone the checkout")

STUB = {
    "google/colab/__init__.py": "from . import drive, output  # noqa: F401\n",
    "google/colab/output.py": textwrap.dedent("""\
        import os
        CALLS = []
        def enable_custom_widget_manager():
            CALLS.append("enable_custom_widget_manager")
            with open(os.environ["COLAB_STUB_LOG"], "a") as f:
                f.write("enable_custom_widget_manager\\n")
        """),
    "google/colab/drive.py": textwrap.dedent("""\
        import os
        def mount(path, force_remount=False):
            os.makedirs(os.path.join(path, "MyDrive"), exist_ok=True)
        """),
}


def _run(cmd, env, cwd="/", **kw):
    """Run outside the checkout: ``python -c`` puts its working directory on ``sys.path``."""
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=300, **kw)


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("colab")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MEDSAM_LITE_SAMPLES", "JUPYTER_PATH", "IPYTHONDIR", "MEDSAM_LITE_WORK")}
    # the repository as a user gets it: a clean clone of this checkout's committed state
    repo = tmp / "origin"
    _run(["git", "clone", "-q", str(ROOT), str(repo)], env, check=True)
    # a venv without medsam_lite that sees this interpreter's packages through one .pth line
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env, check=True)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env,
                     check=True).stdout.strip())
    (site / "zz_host_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # stand-in google.colab, imported at kernel start
    stub = tmp / "colab_stub"
    for rel, text in STUB.items():
        (stub / rel).parent.mkdir(parents=True, exist_ok=True)
        (stub / rel).write_text(text)
    startup = tmp / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(f"import sys\nsys.path.insert(0, {str(stub)!r})\nimport google.colab\n")
    kernels = tmp / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab (simulated)", "language": "python"}))
    content = tmp / "content"
    content.mkdir()
    threads = os.environ.get("MEDSAM_LITE_THREADS", "2")  # the test process only waits on the kernel
    env.update(IPYTHONDIR=str(tmp / "ipython"), JUPYTER_PATH=str(tmp / "jupyter"),
               MEDSAM_LITE_REPO=f"file://{repo}", MEDSAM_LITE_CLONE=str(content / "medsam_lite"),
               COLAB_STUB_LOG=str(tmp / "colab_calls.log"),
               PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               MEDSAM_LITE_QUICK="1", OMP_NUM_THREADS=threads, MEDSAM_LITE_THREADS=threads, MPLBACKEND="agg")
    return {"tmp": tmp, "py": py, "env": env, "content": content, "clone": content / "medsam_lite",
            "site": site}


def test_the_fresh_runtime_has_torch_but_not_medsam_lite(colab):
    probe = _run([str(colab["py"]), "-c", "import torch, ipykernel, nbformat; import medsam_lite"], colab["env"])
    assert "No module named 'medsam_lite'" in probe.stderr, probe.stderr[-2000:]
    ok = _run([str(colab["py"]), "-c", "import torch, torchvision, ipykernel, setuptools; print(torch.__version__)"],
              colab["env"])
    assert ok.returncode == 0, ok.stderr[-2000:]


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            parts.append("ERROR " + out["ename"] + ": " + out["evalue"] + "\n" + "\n".join(out["traceback"]))
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebook_01_runs_on_colab_in_one_kernel_and_the_install_cell_reruns(colab, monkeypatch):
    from nbclient import NotebookClient

    for key in list(os.environ):
        if key not in colab["env"]:
            monkeypatch.delenv(key)
    for key, value in colab["env"].items():
        monkeypatch.setenv(key, value)   # the kernel (and the kernelspec lookup) see this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:            # tags are ignored: every cell runs, as on Colab
        cell.metadata.pop("tags", None)
    client = NotebookClient(nb, kernel_name="colab", timeout=600, allow_errors=False,
                            resources={"metadata": {"path": str(colab["content"])}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
        rerun = nbformat.v4.new_code_cell(nb.cells[1].source)
        nb.cells.append(rerun)
        client.execute_cell(rerun, len(nb.cells) - 1)
        check = nbformat.v4.new_code_cell(textwrap.dedent("""\
            import json, os, sys
            import medsam_lite, medsam_lite.samples
            print(json.dumps({"file": medsam_lite.__file__, "cwd": os.getcwd(),
                              "samples": str(medsam_lite.samples.brain_mri_dir()),
                              "prefix": sys.prefix}))
            """))
        nb.cells.append(check)
        client.execute_cell(check, len(nb.cells) - 1)

    text = "\n".join(_outputs_text(c) for c in nb.cells)
    assert "ERROR" not in text, text[-3000:]
    assert "Dice vs label" in text and "CT" in text
    facts = json.loads(_outputs_text(check).strip().splitlines()[-1])
    clone = colab["clone"]
    # a regular install into the runtime's own site-packages, importable without a restart
    assert Path(facts["file"]).is_relative_to(colab["site"]), facts
    assert Path(facts["prefix"]) == colab["py"].parent.parent
    assert Path(facts["cwd"]) == clone / "tutorials"
    assert Path(facts["samples"]) == clone / "data_samples" / "brain_mri"
    # idempotent: the second run pulled instead of cloning inside tutorials/, nothing nested
    assert not (clone / "tutorials" / "medsam_lite").exists()
    assert not (clone / "medsam_lite" / "medsam_lite").exists()
    assert [p.name for p in colab["content"].iterdir()] == ["medsam_lite"]
    assert (clone / ".git").is_dir()
    calls = Path(colab["env"]["COLAB_STUB_LOG"]).read_text().split()
    assert calls == ["enable_custom_widget_manager"] * 2
