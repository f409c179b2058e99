"""The ``medsam-lite`` command: a thin shell over the Python functions.

Each subcommand mirrors one function (``preprocess``, ``embed``, ``finetune``, ``evaluate``) and is
**built from its signature** (only the verb named: ``--help`` imports no torch): every parameter becomes an
option with the function's own default and its docstring's description (parsed by ``docstring_parser``) as
help, so the two cannot drift apart. ``predict`` wraps
:func:`~medsam_lite.predict` / :func:`~medsam_lite.predict_volume`. Exit codes: 0 success, 2 bad
input or usage (one line that says what to fix, no traceback), 1 an unexpected failure, 130
interrupted. Boxes on the command line are XYXY in original pixels.

``preprocess``, ``embed``, ``finetune`` and ``evaluate`` also take ``--settings FILE``: the settings
file the tutorials read (``tutorials/settings.toml``, see :mod:`medsam_lite.app.config`) gives
the folders (``data`` → the dataset ``work/<data>_dataset`` → the run ``work/<data>_finetune``),
modality, labels, test cases, ``min_mm2``, model and checkpoint, epochs, lr, batch size, threads and
device, so one file drives the notebooks and the command. Precedence: a flag given on the command
line, then the environment variables of :func:`medsam_lite.app.tutorial.settings` (``MEDSAM_LITE_DATA``,
``MEDSAM_LITE_QUICK`` …), then the file, then the function's default.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from ..fileutil import check_writable

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
#: Subcommands that read ``--settings FILE``.
SETTINGS_VERBS = ("preprocess", "embed", "finetune", "evaluate")

#: Parameters that are not options: the model (built from --model/--checkpoint/…), progress bars.
_SKIP = {"model", "progress", "exclude"}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default from the signature; a ``None`` the docstring explains is not repeated."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None and "default" in text:
            return text
        return super()._get_help_string(action)


def _axis(value: str):
    return int(value) if value.strip().lstrip("-").isdigit() else value


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``medsam-lite finetune: error: …``) and exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {value!r}")
    return number


def _window(value: str):
    """``"medsam"`` (a window name) or ``"-160,240"`` (low,high) → the ``window`` argument."""
    from ..errors import InputError
    from ..model.intensity import parse_window

    try:
        return parse_window(value)  # the one CT-window check
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(kind):
    def convert(value: str):
        try:
            out = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {'whole ' if kind is int else ''}number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
        return out
    convert.__name__ = kind.__name__
    return convert


def _label(value: str):
    """A label value (``5``) or a name (``liver``: from labels.json / dataset.json, RTSTRUCT / SEG ROIs)."""
    return int(value) if value.strip().isdigit() else value


def _shard(value: str) -> str:
    from ..distributed import parse_shard
    from ..errors import InputError

    try:
        parse_shard(value)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


#: Parameters whose command-line form is not their Python type (lists, windows, axes, shards, counts);
#: the others are read by their default's type, or by their annotation when the default is ``None``.
_CONVERT = {"window": dict(type=_window, metavar="NAME|LOW,HIGH"), "axis": dict(type=_axis, metavar="0|1|2|z|y|x"),
            "labels": dict(type=_label, nargs="+", metavar="LABEL"),
            "cases": dict(nargs="+", metavar="CASE"), "test_cases": dict(nargs="+", metavar="CASE"),
            "val_cases": dict(nargs="+", metavar="CASE"), "shard": dict(type=_shard, metavar="I/N"),
            "max_slices_per_case": dict(type=_positive_int)}


def _doc_args(func) -> dict[str, str]:
    """``{parameter: help}`` from the docstring's ``Args:`` section (parsed by ``docstring_parser``,
    Google style; ``a, b: text`` documents both), reST roles and literals reduced to plain text."""
    from docstring_parser import DocstringStyle, parse

    out: dict[str, str] = {}
    for param in parse(inspect.getdoc(func) or "", style=DocstringStyle.GOOGLE).params:
        text = " ".join((param.description or "").split())
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", re.sub(r"``([^`]+)``", r"\1", text))
        for name in param.arg_name.split(","):
            out[name.strip()] = text.replace("%", "%%")
    return out


def _option_type(param: inspect.Parameter):
    """How an option is read: by its default's type, or the ``int``/``float`` of an ``X | None`` annotation."""
    if isinstance(param.default, (int, float)) and not isinstance(param.default, bool):
        return _number(type(param.default))
    kinds = {p.strip() for p in str(param.annotation).split("|")} - {"None"}
    return _number(int) if kinds == {"int"} else _number(float) if kinds == {"float"} else str


def add_function_options(p: argparse.ArgumentParser, func, positional: tuple[str, ...], optional: bool = False
                         ) -> list[str]:
    """Add one option per parameter of ``func`` (defaults from its signature); returns their names.
    With ``optional`` the positional arguments may be left out (a settings file gives them)."""
    helps = _doc_args(func)
    names = []
    for name, param in inspect.signature(func).parameters.items():
        if name in _SKIP or param.kind is param.VAR_KEYWORD:
            continue
        names.append(name)
        text = helps.get(name, "")
        if name in positional:
            if optional:
                text += " (default: from --settings FILE)"
            p.add_argument(name, help=text, **(dict(nargs="?", default=None) if optional else {}))
            continue
        flag, default = "--" + name.replace("_", "-"), param.default
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif name in _CONVERT:
            p.add_argument(flag, default=default, help=text, **_CONVERT[name])
        else:
            p.add_argument(flag, type=_option_type(param), default=default, help=text)
    return names


def _model_options(p: argparse.ArgumentParser, taken) -> None:
    """load_model's options; one the verb's function has itself (finetune's training ``precision``)
    stays the function's, and the model is then loaded with load_model's default for it."""
    from ..model.models import MODELS, load_model

    helps, defaults = _doc_args(load_model), inspect.signature(load_model).parameters
    p.add_argument("--model", default=defaults["name"].default, choices=sorted(MODELS), help=helps.get("name"))
    for name in ("checkpoint", "device", "backend"):
        p.add_argument("--" + name, default=defaults[name].default, help=helps.get(name))
    if "precision" in taken:
        p.set_defaults(model_precision=defaults["precision"].default)
    else:
        p.add_argument("--precision", dest="model_precision", metavar="PRECISION",
                       default=defaults["precision"].default, help=helps.get("precision"))


def build_parser(argv=None) -> argparse.ArgumentParser:
    import medsam_lite as ml

    rest = [a for i, a in enumerate(argv or []) if a[:1] != "-" and (i == 0 or argv[i - 1] != "--threads")]
    only = "*" if argv is None else (rest or [""])[0]  # with argv only the verb named gets its options
    fmt = _Formatter
    parser = _Parser(prog="medsam-lite", description=__doc__.splitlines()[0], formatter_class=fmt)
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="CPU threads for torch and the inference backend; None = all cores")
    parser.add_argument("--version", action="version", version=f"medsam-lite {ml.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    settings_help = ("a settings file (tutorials/settings.toml) giving the folders and the other options; "
                     "options given here override it")
    verbs = {"preprocess": ("preprocess", ("source", "out_dir"), "scans + label maps → a prepared dataset folder"),
             "embed": ("embed", ("dataset",), "compute and store the image embedding of every slice"),
             "finetune": ("finetune", ("dataset", "out_dir"), "fine-tune the mask decoder on stored embeddings"),
             "evaluate": ("evaluate", ("dataset",), "DSC and NSD per case and label on a split"),
             "challenge": ("run_challenge", ("in_dir", "out_dir"),
                           "CVPR24/CVPR25 challenge npz files → segs npz + efficiency.csv (CVPR24: the published "
                           "LiteMedSAM path; CVPR25: its box and click steps)")}
    for verb, (func, positional, text) in verbs.items():
        p = sub.add_parser(verb, help=text, description=text, formatter_class=fmt)
        if only not in ("*", verb):
            continue  # listed in --help; its options (and its module) only when it is the verb given
        func = getattr(ml, func)
        p.set_defaults(func=func, positional=positional,
                       names=add_function_options(p, func, positional, optional=verb in SETTINGS_VERBS))
        if verb in SETTINGS_VERBS:
            p.add_argument("--settings", default=None, metavar="FILE", help=settings_help)
        if "model" in inspect.signature(func).parameters:
            _model_options(p, inspect.signature(func).parameters)
        if verb == "evaluate":
            p.add_argument("--out", default=None, help="write the per-case table to this CSV file")
        if verb == "finetune":
            p.epilog = ("several GPUs or processes: torchrun --nproc_per_node N -m medsam_lite.app.cli finetune ... "
                        "(DistributedDataParallel; --batch-size stays the global batch)")

    p = sub.add_parser("predict", help="image or volume + box → mask file", formatter_class=fmt)
    if only not in ("*", "predict"):
        return parser
    from ..io.formats import FORMATS  # (SimpleITK: only for the verb that writes)

    p.add_argument("image", help="2D image (PNG/JPG/DICOM/2D NIfTI) or 3D volume (NIfTI/NRRD/MHA/DICOM folder)")
    p.add_argument("--box", nargs=4, type=_number(float), metavar=("X0", "Y0", "X1", "Y1"),
                   help="XYXY box in original pixels (on --slice for a volume)")
    p.add_argument("--box3d", nargs=6, type=_number(float), metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                   help="3D box for a volume (LiteMedSAM challenge format)")
    p.add_argument("--labels-from", default=None, metavar="LABEL_FILE",
                   help="a label map on the same grid: one box per label (and 2D component) → a label map out")
    p.add_argument("--slice", type=_number(int), default=None, help="key slice index of --box in a volume")
    p.add_argument("--out", required=True, help="mask file (.nii.gz/.nrrd/.mha keep the source geometry; .png for 2D; "
                   ".dcm: a DICOM-SEG referencing the source DICOM series, or an RTSTRUCT with --format rtstruct)")
    p.add_argument("--format", default=None, choices=[f.name for f in FORMATS],
                   help="output format (medsam_lite.io.formats); default: from the --out suffix (.dcm: dicom-seg)")
    p.add_argument("--modality", default=None, help=_doc_args(ml.Predictor.set_image).get("modality"))
    p.add_argument("--window", default=None, **_CONVERT["window"], help="CT window name or LOW,HIGH")
    _model_options(p, ())
    return parser


def _given(argv) -> set[str]:
    """The options and arguments given on the command line ``argv`` (a parse without defaults)."""
    parser = build_parser(argv)
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for p in [parser, *[s for a in subs for s in a.choices.values()]]:
        for action in p._actions:
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def apply_settings(args, argv) -> None:
    """Fill ``args`` from ``args.settings`` (a settings file, read by :func:`medsam_lite.app.tutorial.settings`
    with its environment overrides) where the command line gave no value; print the settings in effect.
    Without a settings file, check that the positional arguments were given."""
    from ..errors import InputError

    if getattr(args, "settings", None) is None:
        missing = [name.upper() for name in getattr(args, "positional", ()) if getattr(args, name) is None]
        if missing:
            raise InputError(f"give {' '.join(missing)}, or --settings FILE (tutorials/settings.toml) that names them.")
        return
    from . import tutorial

    s = tutorial.settings(file=args.settings, verbose=False)
    values = {"preprocess": dict(source=s.data, out_dir=s.dataset, **s.preprocess_kwargs()),
              "embed": dict(dataset=s.dataset, max_slices_per_case=s.max_slices_per_case),
              "finetune": dict(dataset=s.dataset, out_dir=s.finetune_dir, **tutorial.finetune_kwargs(s)),
              "evaluate": dict(dataset=s.dataset, max_slices_per_case=s.max_slices_per_case)}[args.command]
    values.update(threads=s.threads, model=s.model, device=s.device,
                  checkpoint=str(s.model_checkpoint) if s.model_checkpoint else None)
    given = _given(argv)
    for name, value in values.items():
        if hasattr(args, name) and name not in given:
            setattr(args, name, value)
    print(s.summary())


def _load(args, encode_next: bool = False):
    """The model of ``--model``/``--checkpoint``/``--device``/``--backend``; ``encode_next``: the caller
    encodes right away (``predict``), so a torch-free model starts compiling its encoder while it loads
    (:func:`~medsam_lite.model.exported.encoding_ahead`)."""
    from ..model.models import load_model

    device = args.device  # under torchrun (WORLD_SIZE > 1) each process takes cuda:LOCAL_RANK unless --device
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):  # (one process imports no torch here)
        from ..distributed import default_device  # (imports torch)

        device = default_device(args.device)
    if encode_next:
        from ..model.exported import encoding_ahead

        ahead = encoding_ahead()
    else:
        ahead = contextlib.nullcontext()
    with ahead:
        return load_model(args.model, checkpoint=args.checkpoint, device=device, backend=args.backend,
                          precision=args.model_precision)


def _run(args) -> int:
    import medsam_lite as ml

    if args.command == "predict":
        _predict(args, ml)
        return EXIT_OK
    if args.command == "evaluate" and args.out:  # checked before the model is loaded and any work
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise ml.InputError(f"--out {out} must be a CSV file path in an existing folder.")
        check_writable(out.parent, "--out")
    kwargs = {name: getattr(args, name) for name in args.names}
    if "dataset" in kwargs:  # a wrong folder is refused at once, not after the model has loaded (seconds)
        from ..data.dataset import open_dataset
        open_dataset(kwargs["dataset"])
    if "model" in inspect.signature(args.func).parameters:
        kwargs["model"] = _load(args)
    result = args.func(**kwargs)
    if args.command == "preprocess":
        counts = result.groupby("split")["case"].nunique().to_dict()
        print(f"{len(result)} targets from {result['case'].nunique()} cases {counts} → {args.out_dir}")
    elif args.command == "embed":
        print(f"embeddings stored in {result.path}")
    elif args.command == "finetune":
        print(f"best checkpoint: {result.best}\nlast checkpoint: {result.last}")
    elif args.command == "challenge":
        print(result.to_string(index=False))
        print(f"segs and efficiency.csv → {args.out_dir}")
    elif args.command == "evaluate":
        table, means = result
        print(means.to_string())
        if args.out:
            from ..fileutil import atomic_write_text

            atomic_write_text(args.out, table.to_csv(index=False))
            print(f"per-case table → {args.out}")
    return EXIT_OK


def _predict(args, ml) -> None:
    from ..io import scans as io
    from ..io.formats import check_label_output, label_writer

    if sum(x is not None for x in (args.box, args.box3d, args.labels_from)) != 1:
        raise ml.InputError("give exactly one of --box X0 Y0 X1 Y1, --box3d X0 Y0 Z0 X1 Y1 Z1 or --labels-from FILE.")
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ml.InputError(f"--out {out} must be a file path in an existing folder.")
    label_map = args.labels_from is not None
    check_label_output(out, label_map=label_map, format=args.format)  # the output's format before the scan is read
    check_writable(out.parent, "--out")  # before reading the image and running the model
    source = io.read_volume(args.image)
    comps = source.array.shape[-1] if source.array.ndim > len(source.spacing) else 1
    if comps > 1 and not (comps in (3, 4) and source.array.dtype.name == "uint8" and len(source.spacing) == 2):
        raise ml.InputError(f"{args.image} has {comps} components per pixel ({len(source.spacing)}D, "
                            f"{source.array.dtype}); save one channel as its own file (e.g. SimpleITK."
                            "VectorIndexSelectionCast(image, 0)) and predict on that.")
    is_volume = len(source.spacing) == 3
    given = io.read_label(args.labels_from, reference=args.image) if args.labels_from is not None else None
    # the registry's whole pre-work check (a DICOM output needs a DICOM series source) before the model runs
    write = label_writer(out, args.format, source, given.names if given is not None else {1: "segmentation"},
                         label_map=label_map, ndim=3 if is_volume else 2)
    if args.labels_from is not None:
        from ..interactive.labelmaps import predict_label_map, predict_volume_labels

        labels = io.align_label(given, source)[0].array
        model = _load(args, encode_next=True)
        if is_volume:
            mask = predict_volume_labels(source, labels, model=model, modality=args.modality, window=args.window)
        else:
            mask = predict_label_map(source.array, labels, model=model, modality=args.modality, window=args.window)
        write(mask)
        print(f"label map with labels {[int(v) for v in np.unique(mask) if v]} → {out}")
        return
    if is_volume:
        if args.box is not None and args.slice is None:
            raise ml.InputError("a volume needs --slice Z with --box (or use --box3d).")
        mask = ml.predict_volume(source, args.box3d if args.box3d is not None else args.box, slice_index=args.slice,
                                 model=_load(args, encode_next=True), modality=args.modality, window=args.window)
    else:
        if args.box3d is not None:
            raise ml.InputError(f"{args.image} is a 2D image; use --box X0 Y0 X1 Y1.")
        if args.slice is not None:
            raise ml.InputError(f"{args.image} is a 2D image; --slice is only for volumes.")
        mask = ml.predict(source.array, args.box, model=_load(args, encode_next=True), modality=args.modality,
                          window=args.window)[0]
    write(mask.astype(bool))  # 0/255 in image formats, 0/1 in volume formats, a segment in DICOM (io.formats)
    print(f"mask with {int(mask.sum())} voxels → {out}")


def main(argv=None) -> int:
    """Run ``medsam-lite`` with ``argv`` (default: this process's command line) → the exit code.

    A ``predict`` given by the process's own command line (``argv`` None: the console script,
    ``python -m medsam_lite.app.cli``) ends the process itself once its output is written and it succeeded
    (:func:`_exit_now`); called with an ``argv`` list (tests, notebooks) it returns the code.
    """
    if argv is None:
        return _main(sys.argv[1:], exit_when_done=True)
    return _main(list(argv))


def _exit_now(code: int):
    """End the process now with ``code``, without the interpreter's teardown: the output file is written and
    closed, stdout/stderr are flushed here. The teardown (collecting every module, unloading OpenVINO's and
    ONNX Runtime's thread pools) cost ~0.2 s of a cold ``predict --box3d`` (bench/bench_coldstart.py) and
    does nothing for the user; ``atexit`` work (a background prefetch's thread) is not needed by a finished
    ``predict``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (e.g. | head): nothing more to say
            pass
    os._exit(code)


def _main(argv: list[str], exit_when_done: bool = False) -> int:
    args = build_parser(argv).parse_args(argv)  # before any heavy import: --help and bad usage are instant
    from ..errors import InputError

    try:
        apply_settings(args, argv)  # before any work: the file's values where no flag was given
    except InputError as exc:
        print(f"medsam-lite {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.threads:  # torch reads it when (and if) it is imported; the compiled backends read it too
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        getattr(sys.modules.get("torch"), "set_num_threads", lambda n: None)(args.threads)

    def one_line(message, category, *_, **__):  # e.g. an unusable export cache: one line, no source excerpt
        print(f"medsam-lite {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            code = _run(args)
        if exit_when_done and args.command == "predict" and code == EXIT_OK:
            _exit_now(code)  # the mask is written: no teardown
        return code
    except InputError as exc:
        print(f"medsam-lite {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a folder that cannot be written, a full disk …
        print(f"medsam-lite {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        resume = " (add --resume)" if args.command == "finetune" else ""
        print(f"medsam-lite {args.command}: interrupted; run the same command again to continue{resume}.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
