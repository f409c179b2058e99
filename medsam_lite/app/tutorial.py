"""What the tutorials share: one settings object, the runtime (threads, device), and prerequisites.

Every tutorial from 02 on starts with one settings cell::

    S = tutorial.settings()

which reads ``tutorials/settings.toml`` (see :mod:`medsam_lite.app.config`: data folder,
modality, labels, test cases, ``min_mm2``, work folder, model, epochs, learning rate, batch size,
clicks, threads/device) and derives everything below it from ``S``. A script passes the same
entries as keywords instead (``tutorial.settings(data="my_ct", modality="CT")``: no file is read
then, unless ``file=`` names one; keywords override the file). Environment variables override both,
so a test (or a batch run) can point the same notebooks at another dataset without editing them:
``MEDSAM_LITE_DATA``, ``MEDSAM_LITE_MODALITY``, ``MEDSAM_LITE_TEST_CASES`` (comma-separated, or
``auto`` for a seeded 20 % split), ``MEDSAM_LITE_LABELS`` (JSON ``{"1": "liver"}`` or ``1,2``),
``MEDSAM_LITE_WORK``, ``MEDSAM_LITE_THREADS``, ``MEDSAM_LITE_QUICK=1`` (or ``true``/``yes``/``on``: a few
central slices per case and fewer epochs: less data, the same computation), ``MEDSAM_LITE_SETTINGS``
(another file). A value that means nothing (``MEDSAM_LITE_THREADS=abc``, ``MEDSAM_LITE_QUICK=maybe``)
is refused naming the variable.

Any notebook can be opened first: :func:`ensure_dataset`, :func:`ensure_embeddings` and
:func:`ensure_checkpoint` build what is missing by calling the package (each idempotent and
resumable), and say which notebook explains the step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import DEFAULTS, check_modality, dicom_label_names, env_flag, env_labels
from .config import short_path  # a notebook helper: the paths the notebooks print (tutorial.short_path)

#: The repository the Colab install cell clones (``project.urls.Repository``; a test keeps the two
#: and every notebook's install cell in sync). ``$MEDSAM_LITE_REPO`` overrides it there.
REPO_URL = "https://github.com/medsam-lite/medsam_lite"

#: Slices per case and epochs in quick mode (``MEDSAM_LITE_QUICK=1``).
QUICK_SLICES = 3
QUICK_EPOCHS = 2


@dataclass
class Settings:
    """The tutorials' settings (see :func:`settings` and ``tutorials/settings.toml``).

    Attributes:
        data: folder of scans + label maps (any layout :func:`medsam_lite.preprocess` reads).
        modality: ``"CT"`` (Hounsfield units, windowed) or ``"MR"`` / any other name (percentiles).
        test_cases: held-out case ids, or None for a seeded 20 % split.
        labels: ``{value: name}`` or a list of values to use; None = every label found.
        work: output folder; ``dataset``, ``finetune`` and ``outputs`` live in it.
        quick: quick mode (``MEDSAM_LITE_QUICK=1``).
        max_slices_per_case: None (every slice), or the quick mode's central slices per case.
        epochs: fine-tuning epochs (2 in quick mode). lr: learning rate. batch_size: targets per step.
        threads: torch CPU threads (None: every core), set where work starts (:func:`load_model`,
            the CLI), never by reading settings. device: ``"cuda"`` or ``"cpu"`` (``"auto"`` picks a
            GPU when present). Defaults: :data:`medsam_lite.app.config.DEFAULTS`, one table.
        min_mm2: targets under this area (mm²) on a slice are dropped by ``preprocess`` (None: the
            pixel rule only).
        model: the model table's name (``"lite_medsam"``). model_checkpoint: its weights file
            (None: the bundled LiteMedSAM weights).
        clicks: corrective clicks per target (notebook 08; the shipped click decoder answers them).
        source: the settings file read, or None.
        scan, boxes, reference: notebook 08's scan without labels (a file or a DICOM series folder),
            its boxes ``{name: (slice, [x0, y0, x1, y1])}`` (XYXY, displayed pixels: :func:`boxes_on`) and an optional
            label map to score the result against (None: none).
    """

    data: Path
    modality: str = DEFAULTS["modality"]
    test_cases: list | None = DEFAULTS["test_cases"]
    labels: dict | list | None = DEFAULTS["labels"]
    work: Path = Path(DEFAULTS["work"])
    quick: bool = False
    max_slices_per_case: int | None = None
    epochs: int = DEFAULTS["epochs"]
    lr: float = DEFAULTS["lr"]
    threads: int | None = DEFAULTS["threads"]
    device: str = DEFAULTS["device"]
    overrides: dict = field(default_factory=dict, repr=False)
    min_mm2: float | None = DEFAULTS["min_mm2"]
    model: str = DEFAULTS["model"]
    model_checkpoint: Path | None = DEFAULTS["checkpoint"]
    batch_size: int = DEFAULTS["batch_size"]
    clicks: int = DEFAULTS["clicks"]
    source: Path | None = None
    scan: Path | None = None
    boxes: dict = field(default_factory=dict)
    reference: Path | None = None

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
        return {"modality": self.modality, "test_cases": self.test_cases, "labels": self.labels,
                "min_mm2": self.min_mm2}

    def label_names(self, dataset=None) -> dict[int, str]:
        """``{value: name}`` of the labels in use: the settings' names, else the prepared
        ``dataset``'s (every label it holds when the settings choose none)."""
        if isinstance(self.labels, dict):
            return dict(self.labels)
        names = {int(k): v for k, v in (dataset.meta["labels"] if dataset is not None else {}).items()}
        return {k: names.get(k, f"label_{k}") for k in self.labels} if self.labels else names

    def annotation_labels(self) -> dict[int, str]:
        """``{value: name}`` of the labels :attr:`boxes` name (notebook 08), in the settings' order.

        Raises:
            InputError: no ``scan`` or no ``[boxes]`` in the settings, or a box named after no label
                of the settings (names: :meth:`label_names`).
        """
        if not self.scan or not self.boxes:
            missing = " and ".join(k for k, v in (("scan", self.scan), ("[boxes]", self.boxes)) if not v)
            raise InputError(f"notebook 08 needs {missing} in the settings file ({self.source}): set scan = "
                             "\"path/to/scan.nii.gz\" (or a DICOM series folder) and a [boxes] table, e.g. "
                             "liver = [5, 41, 26, 106, 83] (slice, then XYXY in the scan's pixels).")
        names = self.label_names()
        unknown = sorted(set(self.boxes) - set(names.values()))
        if unknown:
            raise InputError(f"boxes {unknown} name no label of the settings ({sorted(names.values())}); name each "
                             "box after one of the labels (`labels` in the settings file).")
        return {v: n for v, n in names.items() if n in self.boxes}

    def summary(self) -> str:
        """The settings in effect, in one line (what every notebook prints)."""
        labels = (", ".join(f"{k} {v}" for k, v in self.labels.items()) if isinstance(self.labels, dict)
                  else ", ".join(map(str, self.labels)) if self.labels else "all")
        parts = [f"settings {self.source.name if self.source else '(arguments)'}", f"data {self.data}",
                 f"modality {self.modality}", f"labels {labels}",
                 f"test cases {', '.join(self.test_cases) if self.test_cases else 'auto (20 %)'}",
                 f"min {self.min_mm2:g} mm²" if self.min_mm2 else "min_mm2 off", f"work {self.work}",
                 f"model {self.model}" + (f" + {self.model_checkpoint}" if self.model_checkpoint else ""),
                 f"{self.epochs} epochs, lr {self.lr:g}, batch {self.batch_size}", f"clicks {self.clicks}",
                 ("quick mode: " + str(QUICK_SLICES) + " central slices per case") if self.quick else "full run",
                 f"{self.threads} CPU threads, device {self.device}"]
        if self.scan:
            parts.append(f"scan to annotate {self.scan} ({len(self.boxes)} boxes)")
        if self.overrides:
            parts.append("overridden by the environment: " + ", ".join(sorted(self.overrides)))
        return " | ".join(parts)


def resolve_threads(threads: int | None = None) -> int:
    """The CPU thread count to use: ``threads``, else ``$MEDSAM_LITE_THREADS``, else every core.

    Nothing is set here (see :func:`setup_runtime`).

    Raises:
        InputError: ``threads`` or ``$MEDSAM_LITE_THREADS`` is not a whole number ≥ 1.
    """
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
    return int(threads)


def setup_runtime(threads: int | None = None) -> tuple[int, str]:
    """Set torch's CPU threads and pick the device: called where work starts, not when settings are read.

    Args:
        threads: CPU threads for torch (default: ``$MEDSAM_LITE_THREADS``, else every core).

    Returns:
        ``(threads, device)`` with device ``"cuda"`` when a GPU is visible, else ``"cpu"``.
    """
    import torch

    threads = resolve_threads(threads)
    torch.set_num_threads(threads)
    return threads, ("cuda" if torch.cuda.is_available() else "cpu")


_UNSET = object()


def settings(data=None, modality=_UNSET, test_cases=_UNSET, labels=_UNSET, work=_UNSET, threads=_UNSET,
             verbose: bool = True, file=None, **more) -> Settings:
    """Build the tutorials' :class:`Settings` from the settings file, keywords and the environment.

    With no data folder (``tutorial.settings()``, as every notebook does) it reads the settings file
    (:func:`medsam_lite.app.config.find`); with ``data=`` (a script) only ``file=`` is read.
    Keywords override the file; environment variables override both.

    Args:
        data: folder of scans + label maps (``$MEDSAM_LITE_DATA``).
        modality: ``"CT"`` or ``"MR"`` (``$MEDSAM_LITE_MODALITY``); a CT-looking scan with
            ``"MR"`` (values near −1000) gets a warning naming the fix. Default ``"MR"``.
        test_cases: held-out case ids, or None for a seeded 20 % split (``$MEDSAM_LITE_TEST_CASES``).
        labels: ``{value: name}``, a list of values and / or names (``["liver", 5]``: resolved through the
            data's ``labels.json`` / RTSTRUCT / SEG names), or None for all (``$MEDSAM_LITE_LABELS``).
        work: output folder (``$MEDSAM_LITE_WORK``; default ``"work"``).
        threads: torch CPU threads (``$MEDSAM_LITE_THREADS``; default every core).
        verbose: print the settings in effect (one line).
        file: a settings file to read (default: found as above when ``data`` is None).
        **more: the file's other entries: ``min_mm2``, ``model``, ``checkpoint`` (weights of
            ``model``), ``epochs``, ``lr``, ``batch_size``, ``clicks``, ``device``
            (``"auto"``/``"cpu"``/``"cuda"``), ``scan``/``boxes``/``reference`` (notebook 08; boxes
            ``{name: [slice, x0, y0, x1, y1]}``);
            defaults in :data:`DEFAULTS`.

    Raises:
        InputError: no settings file and no data folder (or no ``data`` entry), a data folder that does
            not exist, a label name the data does not carry, an unknown keyword, or an unreadable override.
    """
    from . import config

    unknown = sorted(set(more) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown settings {unknown}; the settings are {sorted(set(DEFAULTS) | {'data'})}.")
    given = {k: v for k, v in dict(modality=modality, test_cases=test_cases, labels=labels, work=work,
                                  threads=threads, **more).items() if v is not _UNSET}
    source = None
    values = dict(DEFAULTS)
    if file is not None or data is None:
        source = Path(file) if file is not None else config.find()
        if source is None:
            raise InputError("no settings file found (settings.toml here or in tutorials/) and no data folder "
                             "given: copy tutorials/settings.toml beside the notebook, or pass data=.")
        values.update(config.read(source))
    if given.get("boxes"):  # a script's {name: [slice, x0, y0, x1, y1]}, as in the file
        given["boxes"] = config.read_boxes(given["boxes"], "boxes=")
    values.update(given)
    if data is not None:
        values["data"] = data
    env = os.environ
    overrides = {k: env[k] for k in ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES",
                                     "MEDSAM_LITE_LABELS", "MEDSAM_LITE_WORK") if env.get(k)}
    data = config.data_folder(overrides.get("MEDSAM_LITE_DATA") or values.get("data"), source)
    modality = overrides.get("MEDSAM_LITE_MODALITY", values["modality"])
    test_cases, labels = values["test_cases"], values["labels"]
    if "MEDSAM_LITE_TEST_CASES" in overrides:
        text = overrides["MEDSAM_LITE_TEST_CASES"].strip()
        test_cases = None if text == "auto" else [c.strip() for c in text.split(",") if c.strip()]
    labels = env_labels(env_text) if (env_text := overrides.get("MEDSAM_LITE_LABELS")) else labels
    work = Path(overrides.get("MEDSAM_LITE_WORK", values["work"]))
    labels = config.resolve_labels(labels, data, work, f"MEDSAM_LITE_LABELS={env_text}" if env_text else f"labels ({source})")
    quick = env_flag("MEDSAM_LITE_QUICK")
    threads = resolve_threads(values["threads"])  # the number only: torch is set where work starts
    device = values["device"]
    if device != "cpu":
        import torch

        gpu = torch.cuda.is_available()
        if device == "cuda" and not gpu:
            raise InputError("device = \"cuda\" but torch sees no GPU here; use \"auto\" or \"cpu\".")
        device = "cuda" if gpu else "cpu"
    checkpoint = values["checkpoint"]
    s = Settings(data=data, modality=str(modality), test_cases=list(test_cases) if test_cases else None,
                 labels=labels, work=work, quick=quick,
                 max_slices_per_case=QUICK_SLICES if quick else None,
                 epochs=QUICK_EPOCHS if quick else int(values["epochs"]), lr=float(values["lr"]),
                 threads=threads, device=device, overrides=overrides,
                 min_mm2=float(values["min_mm2"]) if values["min_mm2"] else None, model=str(values["model"]),
                 model_checkpoint=Path(checkpoint) if checkpoint else None, batch_size=int(values["batch_size"]),
                 clicks=int(values["clicks"]), source=source, scan=Path(values["scan"]) if values["scan"] else None,
                 boxes=dict(values["boxes"] or {}),
                 reference=Path(values["reference"]) if values["reference"] else None)
    check_modality(s)
    _notebook_warnings()
    if verbose:
        print(s.summary())
    return s


def _notebook_warnings() -> None:
    """In a notebook kernel, a warning prints as ``UserWarning: message``: the kernel names each cell's code by a
    temporary file (``/tmp/ipykernel_…/….py:2:``), which means nothing to a reader and would be stored in the
    rendered notebooks. Elsewhere (scripts, tests) warnings print as Python prints them."""
    import sys
    import warnings

    if "ipykernel" not in sys.modules:
        return

    def short(message, category, filename, lineno, line=None):
        return f"{category.__name__}: {message}\n"

    warnings.formatwarning = short


def load_model(s: Settings, checkpoint=None):
    """The settings' model (``s.model`` with ``s.model_checkpoint``) on ``s.device``; with
    ``checkpoint`` a fine-tuned decoder (``best.pt``) applied on top of it."""
    from ..model.models import load_model as load

    if checkpoint is not None:
        return load(s.model, checkpoint=checkpoint, device=s.device)
    return load(s.model, checkpoint=s.model_checkpoint, device=s.device)


def ensure_dataset(s: Settings):
    """The prepared dataset of ``s`` (notebook 02), prepared now if missing or unfinished.

    Calls :func:`medsam_lite.preprocess` (which skips finished cases) and returns
    :func:`medsam_lite.data.dataset.open_dataset` of :attr:`Settings.dataset`.
    """
    from ..data.dataset import open_dataset
    from ..data.preprocess import preprocess

    if not (s.dataset / "dataset.json").exists():
        print(f"{s.dataset} is not prepared yet: preparing it now (notebook 02 explains this step).")
    preprocess(s.data, s.dataset, progress=False, **s.preprocess_kwargs())
    return open_dataset(s.dataset)


def ensure_embeddings(s: Settings, model=None):
    """The embedding store of ``s``'s dataset (notebook 03): computes missing entries, reuses the rest."""
    from ..data.embed import embed

    ds = ensure_dataset(s)
    return embed(ds, model, max_slices_per_case=s.max_slices_per_case, progress=False)


def finetune_kwargs(s: Settings) -> dict:
    """The :func:`medsam_lite.finetune` keywords notebook 04 uses for ``s`` (one place for both)."""
    return {"epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "seed": 0,
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
    from ..train.finetune import finetune

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
    from ..data.dataset import open_dataset

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
    from ..io.cases import find_cases

    cases = find_cases(s.data, exclude=s.work)
    by_name = {c.name: c for c in cases}
    if case is None:
        case = next((c for c in (s.test_cases or []) if c in by_name), cases[-1].name)
    if case not in by_name:
        raise InputError(f"case {case!r} is not in {s.data}; cases there: {sorted(by_name)[:10]}.")
    c = by_name[case]
    return case, c.image, c.label


def boxes_on(boxes: dict, scan) -> dict:
    """``[boxes]`` (``{name: (slice, XYXY)}`` in the pixels of the slice as the figures show it,
    :func:`medsam_lite.app.config.read_boxes`) → ``{name: (slice, XYXY float32)}`` in array pixels of ``scan`` (a
    :class:`~medsam_lite.io.Volume`): a RAS-stored scan (most NIfTI) is flipped in both axes for
    display (:func:`medsam_lite.io.display.display_flips`), a DICOM series in LPS not at all.

    Raises:
        InputError: a slice index or a box outside the scan.
    """
    from ..io.display import display_flips
    from ..model.geometry import check_boxes

    shape = np.shape(scan.array)
    h, w = shape[-2:]
    flip_rows, flip_cols = display_flips(scan)
    out = {}
    for name, (z, box) in boxes.items():
        if len(shape) == 3 and not 0 <= z < shape[0]:
            raise InputError(f"boxes.{name}: slice {z} is outside the scan's {shape[0]} slices (0 … {shape[0] - 1}).")
        x0, y0, x1, y1 = (float(v) for v in box)
        if flip_cols:
            x0, x1 = (w - 1) - x1, (w - 1) - x0
        if flip_rows:
            y0, y1 = (h - 1) - y1, (h - 1) - y0
        out[name] = (int(z), check_boxes([x0, y0, x1, y1], (h, w))[0])
    return out


#: Slices kept on each side of the target's key slice when quick mode crops a scan (notebook 07).
QUICK_HALF_SLICES = 3


def read_case(s: Settings, case: str | None = None):
    """``(scan, label)`` :class:`~medsam_lite.io.Volume` pair of one case (:func:`case_paths`; RTSTRUCT / SEG too).

    In quick mode both are cropped, along the thick axis (largest spacing), to the key slice of
    :func:`focus_label` ± :data:`QUICK_HALF_SLICES`; the crop keeps the physical geometry (origin
    moved with SimpleITK), so masks saved ``like=scan`` still overlay the crop. Outside quick mode
    the volumes are returned as read.
    """
    from ..io import scans as io
    from ..interactive.prompts import key_slice

    case, image_path, label_path = case_paths(s, case)
    scan, label = io.read_volume(image_path), io.read_label(label_path, reference=image_path,
                                                            names=dicom_label_names(s, label_path))
    if not s.quick or scan.array.ndim != 3:
        return scan, label
    axis = scan.slice_axis()
    k = focus_label(ensure_dataset(s))
    target = np.moveaxis(label.array == k, axis, 0)
    if not target.any():
        raise InputError(f"case {case} has no voxel of label {k}; pick another case in the settings.")
    centre = key_slice(target)
    lo = max(0, centre - QUICK_HALF_SLICES)
    hi = min(target.shape[0], centre + QUICK_HALF_SLICES + 1)
    return scan.crop(lo, hi, axis), label.crop(lo, hi, axis)


#: Notebook 06's unseen click example: subject, slice, the lesion's seed and radius range (px).
UNSEEN_LESION = {"subject": "sub-05", "z": 16, "seed": 2026, "radius_px": (5, 11)}


def unseen_lesion_slice(subject: str = UNSEEN_LESION["subject"], z: int = UNSEEN_LESION["z"],
                        seed: int = UNSEEN_LESION["seed"], radius_px=UNSEEN_LESION["radius_px"]):
    """A slice the click decoder never trained on, with a lesion of a kind no training label has
    (notebook 06's click example): the bundled synthetic brain MRI ``brain_mri/<subject>``, slice
    ``z``, with :func:`medsam_lite.samples.synthetic_lesion` in its white matter (label 1), seeded.

    Returns ``(image, lesion, volume)``: ``image`` ``H×W`` float64 (the MR slice's intensities with the
    lesion), ``lesion`` ``H×W`` bool (the lesion's mask, same pixels), and the subject's
    :class:`medsam_lite.io.Volume` (its ``direction`` shows the slice in radiological orientation).
    """
    from .. import samples
    from ..io import read_volume

    folder = samples.brain_mri_dir()
    volume = read_volume(folder / f"{subject}.nii.gz")
    label = read_volume(folder / f"{subject}_label.nii.gz").array
    if not 0 <= z < volume.array.shape[0]:
        raise InputError(f"slice {z} is outside {subject} (0…{volume.array.shape[0] - 1}); choose a slice in range.")
    made = samples.synthetic_lesion(volume.array[z].astype(np.float32), label[z] == 1, np.random.default_rng(seed),
                                    "MR", radius_px)
    if made is None:
        raise InputError(f"{subject} slice {z} has no white matter deep enough for a lesion of {radius_px} px; "
                         "choose another slice.")
    return made[0], made[1], volume
