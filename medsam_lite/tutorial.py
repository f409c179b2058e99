"""What the tutorials share: one settings object, the runtime (threads, device), and prerequisites.

Every tutorial from 02 on starts with one settings cell::

    S = tutorial.settings(data=samples.brain_mri_dir(), modality="MR",
                          test_cases=["sub-07", "sub-08"], labels=None, work="work")

and derives everything below it from ``S``. Environment variables override the cell, so a test
(or a batch run) can point the same notebooks at another dataset without editing them:
``MEDSAM_LITE_DATA``, ``MEDSAM_LITE_MODALITY``, ``MEDSAM_LITE_TEST_CASES`` (comma-separated, or
``auto`` for a seeded 20 % split), ``MEDSAM_LITE_LABELS`` (JSON ``{"1": "liver"}`` or ``1,2``),
``MEDSAM_LITE_WORK``, ``MEDSAM_LITE_THREADS``, ``MEDSAM_LITE_QUICK=1`` (or ``true``/``yes``/``on``: a few
central slices per case and fewer epochs: less data, the same computation). A value that means
nothing (``MEDSAM_LITE_THREADS=abc``, ``MEDSAM_LITE_QUICK=maybe``) is refused naming the variable.

Any notebook can be opened first: :func:`ensure_dataset`, :func:`ensure_embeddings` and
:func:`ensure_checkpoint` build what is missing by calling the package (each idempotent and
resumable), and say which notebook explains the step.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

#: The repository the Colab install cell clones (``project.urls.Repository``; a test keeps the two
#: and every notebook's install cell in sync). ``$MEDSAM_LITE_REPO`` overrides it there.
REPO_URL = "https://github.com/medsam-lite/medsam_lite"

#: Slices per case and epochs in quick mode (``MEDSAM_LITE_QUICK=1``).
QUICK_SLICES = 3
QUICK_EPOCHS = 2


@dataclass
class Settings:
    """The tutorials' settings (see :func:`settings`).

    Attributes:
        data: folder of scans + label maps (any layout :func:`medsam_lite.preprocess` reads).
        modality: ``"CT"`` (Hounsfield units, windowed) or ``"MR"`` / any other name (percentiles).
        test_cases: held-out case ids, or None for a seeded 20 % split.
        labels: ``{value: name}`` or a list of values to use; None = every label found.
        work: output folder; ``dataset``, ``finetune`` and ``outputs`` live in it.
        quick: quick mode (``MEDSAM_LITE_QUICK=1``).
        max_slices_per_case: None (every slice), or the quick mode's central slices per case.
        epochs: fine-tuning epochs (5; 2 in quick mode). lr: learning rate (1e-4).
        threads: torch CPU threads. device: ``"cuda"`` when available, else ``"cpu"``.
    """

    data: Path
    modality: str = "MR"
    test_cases: list | None = None
    labels: dict | list | None = None
    work: Path = Path("work")
    quick: bool = False
    max_slices_per_case: int | None = None
    epochs: int = 5
    lr: float = 1e-4
    threads: int = 1
    device: str = "cpu"
    overrides: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """A short name of the data folder (``brain_mri``), used in output folder names."""
        return self.data.name.split(".")[0] or "data"

    @property
    def dataset(self) -> Path:
        """The prepared dataset folder: ``work/<name>_dataset``."""
        return self.work / f"{self.name}_dataset"

    @property
    def finetune_dir(self) -> Path:
        """The fine-tuning run: ``work/<name>_finetune`` (``…_finetune_quick`` in quick mode)."""
        return self.work / (f"{self.name}_finetune" + ("_quick" if self.quick else ""))

    @property
    def checkpoint(self) -> Path:
        """The fine-tuned decoder (``best.pt`` of :attr:`finetune_dir`)."""
        return self.finetune_dir / "best.pt"

    @property
    def outputs(self) -> Path:
        """Where notebooks write masks and tables: ``work/outputs``."""
        return self.work / "outputs"

    def preprocess_kwargs(self) -> dict:
        """The keyword arguments of :func:`medsam_lite.preprocess` these settings give."""
        return {"modality": self.modality, "test_cases": self.test_cases, "labels": self.labels}


def _env_labels(text: str):
    text = text.strip()
    try:
        if text.startswith("{"):
            return {int(k): str(v) for k, v in json.loads(text).items()}
        return [int(v) for v in text.split(",") if v.strip()]
    except (ValueError, AttributeError) as err:
        raise InputError(f"MEDSAM_LITE_LABELS={text!r} is neither JSON {{\"1\": \"liver\"}} nor a list "
                         "such as 1,2.") from err


def env_flag(name: str) -> bool:
    """An on/off environment variable: ``1/true/yes/on`` → True, unset, empty or ``0/false/no/off`` →
    False (any case); anything else is refused naming the variable."""
    text = os.environ.get(name, "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise InputError(f"{name}={os.environ[name]!r} is neither on (1, true, yes) nor off (0, false, no, or unset).")


def setup_runtime(threads: int | None = None) -> tuple[int, str]:
    """Set torch's CPU threads and pick the device.

    Args:
        threads: CPU threads for torch (default: ``$MEDSAM_LITE_THREADS``, else every core).

    Returns:
        ``(threads, device)`` with device ``"cuda"`` when a GPU is visible, else ``"cpu"``.
    """
    import torch

    env = os.environ.get("MEDSAM_LITE_THREADS", "").strip()
    if threads is None and env:
        if not env.isdigit() or int(env) < 1:
            raise InputError(f"MEDSAM_LITE_THREADS={env!r} must be a whole number ≥ 1 (CPU threads for torch); "
                             "fix or unset the environment variable.")
        threads = int(env)
    if threads is None:
        threads = os.cpu_count() or 1
    if isinstance(threads, bool) or int(threads) < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}.")
    torch.set_num_threads(int(threads))
    return int(threads), ("cuda" if torch.cuda.is_available() else "cpu")


def settings(data, modality: str = "MR", test_cases=None, labels=None, work="work",
             threads: int | None = None, verbose: bool = True) -> Settings:
    """Build the tutorials' :class:`Settings`; environment variables override the arguments.

    Args:
        data: folder of scans + label maps (``$MEDSAM_LITE_DATA``).
        modality: ``"CT"`` or ``"MR"`` (``$MEDSAM_LITE_MODALITY``); a CT-looking scan with
            ``"MR"`` (values near −1000) gets a warning naming the fix.
        test_cases: held-out case ids, or None for a seeded 20 % split (``$MEDSAM_LITE_TEST_CASES``).
        labels: ``{value: name}``, a list of values, or None for all (``$MEDSAM_LITE_LABELS``).
        work: output folder (``$MEDSAM_LITE_WORK``).
        threads: torch CPU threads (``$MEDSAM_LITE_THREADS``; default every core).
        verbose: print the settings in effect.

    Raises:
        InputError: a data folder that does not exist, or an unreadable override.
    """
    env = os.environ
    overrides = {k: env[k] for k in ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES",
                                     "MEDSAM_LITE_LABELS", "MEDSAM_LITE_WORK") if env.get(k)}
    data = Path(overrides.get("MEDSAM_LITE_DATA", data))
    modality = overrides.get("MEDSAM_LITE_MODALITY", modality)
    if "MEDSAM_LITE_TEST_CASES" in overrides:
        text = overrides["MEDSAM_LITE_TEST_CASES"].strip()
        test_cases = None if text == "auto" else [c.strip() for c in text.split(",") if c.strip()]
    if "MEDSAM_LITE_LABELS" in overrides:
        labels = _env_labels(overrides["MEDSAM_LITE_LABELS"])
    work = Path(overrides.get("MEDSAM_LITE_WORK", work))
    if not data.exists():
        raise InputError(f"data folder {data} does not exist; set `data=` in the settings cell to your folder "
                         "of scans + label maps (notebook 02 lists the layouts).")
    quick = env_flag("MEDSAM_LITE_QUICK")
    threads, device = setup_runtime(threads)
    s = Settings(data=data, modality=str(modality), test_cases=list(test_cases) if test_cases else None,
                 labels=labels, work=work, quick=quick,
                 max_slices_per_case=QUICK_SLICES if quick else None,
                 epochs=QUICK_EPOCHS if quick else 5, threads=threads, device=device, overrides=overrides)
    check_modality(s)
    if verbose:
        print(f"data {s.data} | modality {s.modality} | test cases {s.test_cases or 'auto (20 %)'} | "
              f"labels {s.labels or 'all'} | work {s.work}")
        print(f"{'quick mode: ' + str(QUICK_SLICES) + ' central slices per case' if quick else 'full run'}"
              f" | {threads} CPU threads | device {device}")
        if overrides:
            print("overridden by the environment:", ", ".join(sorted(overrides)))
    return s


def check_modality(s: Settings) -> bool:
    """Warn when the first scan's values contradict ``s.modality``; return whether they agree.

    A scan whose lowest values are near −1000 (air in Hounsfield units) is a CT: with ``"MR"`` it
    would be scaled by percentiles instead of a HU window.
    """
    from .data.preprocess import find_cases
    from .io import scans as io

    try:
        case = find_cases(s.data, exclude=s.work)[0]
        arr = io.read_volume(case.image).array
    except (InputError, IndexError):
        return True  # preprocess will say what is wrong with the folder
    low = float(np.percentile(arr, 1)) if arr.size else 0.0
    looks_ct = low < -500
    if looks_ct and s.modality.upper() != "CT":
        warnings.warn(f"{case.image.name} has values near {low:.0f} (air in Hounsfield units): it looks like a CT, "
                      f"but modality={s.modality!r} scales it as MR. Set modality=\"CT\" in the settings cell.",
                      stacklevel=3)
        return False
    if s.modality.upper() == "CT" and float(arr.min()) >= 0:
        warnings.warn(f"modality='CT' but {case.image.name} has no negative values: CT in Hounsfield units "
                      "has air at −1000. If this is not a CT, set modality=\"MR\".", stacklevel=3)
        return False
    return True


def ensure_dataset(s: Settings):
    """The prepared dataset of ``s`` (notebook 02), prepared now if missing or unfinished.

    Calls :func:`medsam_lite.preprocess` (which skips finished cases) and returns
    :func:`medsam_lite.dataset.open_dataset` of :attr:`Settings.dataset`.
    """
    from .data.dataset import open_dataset
    from .data.preprocess import preprocess

    if not (s.dataset / "dataset.json").exists():
        print(f"{s.dataset} is not prepared yet: preparing it now (notebook 02 explains this step).")
    preprocess(s.data, s.dataset, progress=False, **s.preprocess_kwargs())
    return open_dataset(s.dataset)


def ensure_embeddings(s: Settings, model=None):
    """The embedding store of ``s``'s dataset (notebook 03): computes missing entries, reuses the rest."""
    from .data.embed import embed

    ds = ensure_dataset(s)
    return embed(ds, model, max_slices_per_case=s.max_slices_per_case, progress=False)


def finetune_kwargs(s: Settings) -> dict:
    """The :func:`medsam_lite.finetune` keywords notebook 04 uses for ``s`` (one place for both)."""
    return {"epochs": s.epochs, "lr": s.lr, "batch_size": 8, "seed": 0,
            "max_slices_per_case": s.max_slices_per_case, "resume": True}


def ensure_checkpoint(s: Settings, model=None, train: bool = True) -> Path | None:
    """The fine-tuned decoder of notebook 04 for ``s``: trained now if missing and ``train``.

    ``finetune(..., resume=True)`` reads a finished run back and continues an interrupted one.
    With ``train=False`` a missing checkpoint returns None after saying which notebook writes it.
    """
    if not train:
        if s.checkpoint.exists():
            return s.checkpoint
        print(f"no fine-tuned decoder at {s.checkpoint}: run notebook 04 to train one; using the pretrained model.")
        return None
    from .train.finetune import finetune

    if not s.checkpoint.exists():
        print(f"no fine-tuned decoder at {s.checkpoint}: training it now "
              f"({s.epochs} epochs; notebook 04 explains this step).")
    ds = ensure_dataset(s)
    return Path(finetune(ds, s.finetune_dir, model, progress=False, **finetune_kwargs(s)).best)


def focus_label(dataset, among=None) -> int:
    """The label shown in the tutorials' figures: the one with the fewest targets in ``dataset``
    (a prepared dataset, its folder, or a manifest DataFrame) — where fine-tuning matters most.

    Args:
        among: only consider these label values (e.g. ``seg.truth.keys()`` of one case).
    """
    from .data.dataset import open_dataset

    manifest = dataset if hasattr(dataset, "groupby") else open_dataset(dataset).manifest
    counts = manifest.groupby("label").size()
    if among is not None:
        counts = counts[counts.index.isin([int(k) for k in among])]
    if counts.empty:
        raise InputError("no label to show: the dataset (or the given labels) has no targets.")
    return int(counts.idxmin())


def case_paths(s: Settings, case: str | None = None):
    """``(case, image_path, label_path)`` of one case of ``s.data`` (default: the first test case,
    else the last case found)."""
    from .data.preprocess import find_cases

    cases = find_cases(s.data, exclude=s.work)
    by_name = {c.name: c for c in cases}
    if case is None:
        case = next((c for c in (s.test_cases or []) if c in by_name), cases[-1].name)
    if case not in by_name:
        raise InputError(f"case {case!r} is not in {s.data}; cases there: {sorted(by_name)[:10]}.")
    c = by_name[case]
    return case, c.image, c.label


#: Slices kept on each side of the target's key slice when quick mode crops a scan (notebook 07).
QUICK_HALF_SLICES = 3


def read_case(s: Settings, case: str | None = None):
    """``(scan, label)`` :class:`~medsam_lite.io.Volume` pair of one case (see :func:`case_paths`).

    In quick mode both are cropped, along the thick axis (largest spacing), to the key slice of
    :func:`focus_label` ± :data:`QUICK_HALF_SLICES`; the crop keeps the physical geometry (origin
    moved with SimpleITK), so masks saved ``like=scan`` still overlay the crop. Outside quick mode
    the volumes are returned as read.
    """
    import SimpleITK as sitk

    from .io import scans as io
    from .interactive.prompts import key_slice
    from .data.preprocess import thick_axis

    case, image_path, label_path = case_paths(s, case)
    scan, label = io.read_volume(image_path), io.read_volume(label_path)
    if not s.quick or scan.array.ndim != 3:
        return scan, label
    axis = thick_axis(scan.spacing_zyx, scan.array.shape)
    k = focus_label(ensure_dataset(s))
    target = np.moveaxis(label.array == k, axis, 0)
    if not target.any():
        raise InputError(f"case {case} has no voxel of label {k}; pick another case in the settings.")
    centre = key_slice(target)
    lo = max(0, centre - QUICK_HALF_SLICES)
    hi = min(target.shape[0], centre + QUICK_HALF_SLICES + 1)

    def crop(vol):
        img = vol.to_sitk()
        index, size = [0, 0, 0], list(img.GetSize())
        dim = 2 - axis  # SimpleITK's (x, y, z) order is the array's reversed
        index[dim], size[dim] = lo, hi - lo
        sub = sitk.RegionOfInterest(img, size, index)
        return io.Volume(sitk.GetArrayFromImage(sub), tuple(sub.GetSpacing()), tuple(sub.GetOrigin()),
                         tuple(sub.GetDirection()), vol.path)

    return crop(scan), crop(label)
