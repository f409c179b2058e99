"""The way back to full size: masks from the decoder's low-resolution logits, computed only where
a mask can be, identical to thresholding the full-size logits.

:meth:`Geometry.logits_to` (the published path) upsamples the ``N×1×256×256`` logits to the model
size, crops the padding and resizes bilinearly to ``(H, W)``; a mask is ``logits > 0``. Both resizes
are torch's ``bilinear, align_corners=False``: every output pixel is a combination of input pixels
with **non-negative** weights. So an output pixel can be positive only if one of the low-res pixels
it draws on is positive, and :func:`masks_at` computes the resize only over the rectangle those
pixels reach (the box's neighbourhood, found from the logits themselves, not guessed with a margin).

Inside that rectangle it evaluates the same separable weights (read from torch's own kernel, so they
are the very float32 weights torch uses) in float64, with a bound on the float32 rounding torch's
kernel can make: a pixel whose float64 value is farther from 0 than that bound has the sign torch
gives it. A mask with any pixel inside the bound (rare: the logit must be within ~1e-5 of 0) is
computed by the full published path instead. So the masks are **bitwise identical** to
``geometry.logits_to(low_res, hw) > 0``, by construction; each (geometry, size) pair is also checked
once against torch on a test field before the fast path is used for it.

Without torch (:mod:`.exported`), :func:`masks_exact` repeats torch's CPU kernel in numpy operation
for operation — the source index ``fma(scale, o + 0.5, -0.5)`` with ``scale = float32(in) / out``,
then per axis ``fma(a, w0, b * w1)`` columns first, then rows — which gives torch's float32 logits
bit for bit on this kind of CPU; :func:`bilinear_matches_torch` checks that against torch when the
exports are written, and the torch-free path is used only where it held.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Relative bound on torch's float32 rounding in one or two chained bilinear resizes: 128 unit
#: roundoffs (the worst case of the kernel's ``t0*w0 + t1*w1`` per axis and stage is ~10).
_ROUNDING = 2.0 ** -17


def _probe(n_in: int, n_out: int, axis: int) -> np.ndarray:
    """``n_out × n_in`` float64 matrix of torch's own bilinear weights along ``axis`` (0 rows, 1 columns).

    Interpolating the rows of an identity matrix gives each weight exactly (``1·w + 0·w' == w``).
    """
    import torch
    import torch.nn.functional as F
    eye = torch.eye(n_in, dtype=torch.float32)
    if axis == 0:
        out = F.interpolate(eye.reshape(n_in, 1, n_in, 1), size=(n_out, 1), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(eye.reshape(n_in, 1, 1, n_in), size=(1, n_out), mode="bilinear", align_corners=False)
    return out.reshape(n_in, n_out).T.double().numpy()


@lru_cache(maxsize=32)
def _taps(n_low: int, size: int, resized: int, n_out: int, two_stage: bool, axis: int):
    """``(index n_out×K int64, weight n_out×K float64)``: the composite 1-D map low-res → output."""
    if two_stage:
        matrix = _probe(resized, n_out, axis) @ _probe(n_low, size, axis)[:resized]
    else:
        matrix = _probe(n_low, n_out, axis)
    k = max(int((matrix > 0).sum(1).max()), 1)
    index = np.zeros((n_out, k), np.int64)
    weight = np.zeros((n_out, k), np.float64)
    for o, row in enumerate(matrix):
        nz = np.nonzero(row > 0)[0]
        index[o, :len(nz)], weight[o, :len(nz)] = nz, row[nz]
        index[o, len(nz):] = nz[0] if len(nz) else 0
    return index, weight


def _plan(geometry, low_hw: tuple[int, int], hw: tuple[int, int]):
    """Row and column taps for ``geometry`` from ``low_hw`` logits to ``hw``, or ``None`` if the
    one-off check against torch failed (the caller then takes the full path)."""
    return _checked_plan(int(low_hw[0]), int(low_hw[1]), int(geometry.input_size), tuple(geometry.resized_hw),
                         geometry.recipe != "stretch", int(hw[0]), int(hw[1]))


@lru_cache(maxsize=32)
def _checked_plan(lh: int, lw: int, size: int, resized_hw: tuple[int, int], two_stage: bool, h: int, w: int):
    import torch

    rows = _taps(lh, size, resized_hw[0], h, two_stage, 0)
    cols = _taps(lw, size, resized_hw[1], w, two_stage, 1)
    # one-off check on a field with many sign changes: every sure pixel must have torch's sign
    yy, xx = np.meshgrid(np.arange(lh), np.arange(lw), indexing="ij")
    field = (np.sin(yy * 0.37) * np.cos(xx * 0.23) * 8 + np.sin(yy * xx * 0.01)).astype(np.float32)
    ref = _full(torch.from_numpy(field)[None, None], size, resized_hw, two_stage, (h, w))[0].numpy() > 0
    ch, cw = min(h, 1024), min(w, 1024)  # a corner is enough to check the weights, and bounds the memory
    value, bound = _evaluate(field, rows, cols, (0, ch - 1), (0, cw - 1))
    sure = (np.abs(value) > bound) | (bound == 0)
    if not np.array_equal((value > 0)[sure], ref[:ch, :cw][sure]):
        return None
    return rows, cols


def _full(low_res: torch.Tensor, size: int, resized_hw, two_stage: bool, hw) -> torch.Tensor:
    """The published path (:meth:`Geometry.logits_to`), ``N×1×h×w`` → ``N×H×W`` float32."""
    import torch.nn.functional as F
    x = low_res.float()
    if two_stage:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x[..., :resized_hw[0], :resized_hw[1]]
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)[:, 0]


def _evaluate(low: np.ndarray, rows, cols, yr: tuple[int, int], xr: tuple[int, int]):
    """Float64 values and rounding bounds of the output rectangle ``yr × xr`` (inclusive ranges)."""
    ri, rw = rows[0][yr[0]:yr[1] + 1], rows[1][yr[0]:yr[1] + 1]
    ci, cw = cols[0][xr[0]:xr[1] + 1], cols[1][xr[0]:xr[1] + 1]
    r0, c0 = int(ri.min()), int(ci.min())
    band = low[r0:int(ri.max()) + 1, c0:int(ci.max()) + 1].astype(np.float64)
    out = []
    for x in (band, np.abs(band)):
        t = sum(rw[:, k, None] * x[ri[:, k] - r0] for k in range(ri.shape[1]))
        out.append(sum(t[:, ci[:, k] - c0] * cw[:, k] for k in range(ci.shape[1])))
    value, magnitude = out
    return value, magnitude * _ROUNDING


def masks_at(geometry, low_res_logits, hw: tuple[int, int]) -> np.ndarray:
    """``N×1×h×w`` decoder logits → ``N×H×W`` bool masks at ``hw``, equal to
    ``geometry.logits_to(low_res_logits, hw) > 0`` bit for bit, computed where a mask can be.

    Args:
        geometry: the :class:`~medsam_lite.model.geometry.Geometry` of the encoded image.
        low_res_logits: ``N×1×h×w`` float logits (``h = w = 256``), any device.
        hw: ``(H, W)`` of the masks: original pixels, or image (stored-slice) pixels.
    """
    import torch

    geometry.check_size()  # a thin image: one InputError naming the size, as logits_to gives
    low = low_res_logits.detach().float().cpu().numpy()[:, 0]
    n, (h, w) = low.shape[0], (int(hw[0]), int(hw[1]))
    masks = np.zeros((n, h, w), dtype=bool)
    plan = _plan(geometry, low.shape[1:], (h, w))
    two_stage = geometry.recipe != "stretch"
    for i in range(n):
        positive = low[i] > 0
        if not positive.any():
            continue  # every output is a non-negative combination of values <= 0
        if plan is not None:
            rows, cols = plan
            pr, pc = np.nonzero(positive.any(1))[0], np.nonzero(positive.any(0))[0]
            yr, xr = _reach(rows, pr[0], pr[-1]), _reach(cols, pc[0], pc[-1])
            if yr is None or xr is None:
                continue  # the positive logits fall between the samples of a downsizing resize
            value, bound = _evaluate(low[i], rows, cols, yr, xr)
            if ((np.abs(value) > bound) | (bound == 0)).all():
                masks[i, yr[0]:yr[1] + 1, xr[0]:xr[1] + 1] = value > 0
                continue
        full = _full(torch.from_numpy(low[i:i + 1, None]), geometry.input_size, geometry.resized_hw, two_stage, (h, w))
        masks[i] = full[0].numpy() > 0
    return masks


def _reach(taps, lo: int, hi: int) -> tuple[int, int] | None:
    """The inclusive range of outputs that draw (with weight > 0) on any input in ``lo..hi``, or None."""
    index, weight = taps
    hit = np.nonzero(((index >= lo) & (index <= hi) & (weight > 0)).any(1))[0]
    return (int(hit[0]), int(hit[-1])) if len(hit) else None


# --------------------------------------------------------------------------------------------
# The same masks without torch
# --------------------------------------------------------------------------------------------
def _fma(a, b, c) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (the product of two float32 is exact in float64); ``c`` is added
    in place (it does not broadcast beyond ``a * b``)."""
    out = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    out += c
    return out.astype(np.float32)


@lru_cache(maxsize=64)
def _linear_taps(n_in: int, n_out: int):
    """torch's CPU bilinear taps (``align_corners=False``, size given): ``(i0, i1, w0, w1)`` per output."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    src = np.maximum(_fma(scale, np.arange(n_out, dtype=f32) + f32(0.5), -0.5), f32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    w1 = (src - i0.astype(f32)).astype(f32)
    return i0, i1, (f32(1) - w1).astype(f32), w1


def resize_exact(x: np.ndarray, hw: tuple[int, int], rows=None, cols=None) -> np.ndarray:
    """``N×h×w`` float32 → ``N×H×W`` float32 as ``F.interpolate(bilinear, align_corners=False)`` on
    the CPU computes it (bit for bit where :func:`bilinear_matches_torch` holds); ``rows`` / ``cols``
    (index arrays) compute only those output rows / columns."""
    x = np.asarray(x, np.float32)
    r0, r1, rw0, rw1 = (a if rows is None else a[rows] for a in _linear_taps(x.shape[1], int(hw[0])))
    c0, c1, cw0, cw1 = (a if cols is None else a[cols] for a in _linear_taps(x.shape[2], int(hw[1])))
    top, bottom = x[:, r0], x[:, r1]
    t0 = _fma(top[..., c0], cw0, top[..., c1] * cw1)
    t1 = _fma(bottom[..., c0], cw0, bottom[..., c1] * cw1)
    return _fma(t0, rw0[:, None], t1 * rw1[:, None])


def logits_exact(geometry, low_res: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """:meth:`Geometry.logits_to` in numpy: ``N×1×h×w`` float32 → ``N×H×W`` float32 (no torch)."""
    geometry.check_size()
    return resize_exact(_content(geometry, np.asarray(low_res, np.float32)[:, 0]), hw)


def _content(geometry, x: np.ndarray) -> np.ndarray:
    """``N×h×w`` low-resolution logits → the image content on the model grid, as :meth:`Geometry.logits_to`'s
    first stage: ``"pad"``/``"sam"`` upsampled to ``S×S``, the padding cropped; ``"stretch"`` as given."""
    if geometry.recipe == "stretch":
        return x
    s = geometry.input_size
    rh, rw = geometry.resized_hw
    return resize_exact(x, (s, s))[:, :rh, :rw]


def masks_exact(geometry, low_res: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``N×1×h×w`` float32 logits → ``N×H×W`` bool masks, ``logits_to(...) > 0`` computed in numpy
    only over the rows and columns a positive logit reaches (every weight is ≥ 0)."""
    geometry.check_size()
    low = np.asarray(low_res, np.float32)[:, 0]
    h, w = int(hw[0]), int(hw[1])
    masks = np.zeros((low.shape[0], h, w), dtype=bool)
    for i in range(low.shape[0]):
        x = low[i:i + 1]
        if not (x > 0).any():
            continue  # every output is a non-negative combination of values <= 0
        x = _content(geometry, x)
        positive = x[0] > 0
        if not positive.any():
            continue
        pr, pc = np.nonzero(positive.any(1))[0], np.nonzero(positive.any(0))[0]
        r0, r1 = _linear_taps(x.shape[1], h)[:2]
        c0, c1 = _linear_taps(x.shape[2], w)[:2]
        rows = np.nonzero((r1 >= pr[0]) & (r0 <= pr[-1]))[0]
        cols = np.nonzero((c1 >= pc[0]) & (c0 <= pc[-1]))[0]
        if len(rows) and len(cols):
            part = resize_exact(x, (h, w), rows, cols)[0] > 0
            masks[i, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = part
    return masks


def bilinear_matches_torch() -> bool:
    """Whether :func:`resize_exact` gives torch's float32 bilinear resize bit for bit here (checked
    on fields with many sign changes, up- and downsizing, odd sizes); torch is imported."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for hi, wi, ho, wo in ((256, 256, 512, 512), (220, 256, 164, 191), (256, 256, 256, 256),
                           (133, 256, 97, 190), (256, 180, 700, 500), (256, 256, 1024, 1024)):
        x = (rng.standard_normal((1, hi, wi)) * 5).astype(np.float32)
        ref = F.interpolate(torch.from_numpy(x)[None], size=(ho, wo), mode="bilinear", align_corners=False)[0]
        if not np.array_equal(resize_exact(x, (ho, wo)).view(np.int32), ref.numpy().view(np.int32)):
            return False
    return True


# --------------------------------------------------------------------------------------------
# A mask input without torch: the antialiased bilinear downsizing of previous logits
# --------------------------------------------------------------------------------------------
#: How many taps of torch's antialiased kernel its compiled CPU loop adds as separate products (in
#: blocks of this many, in order) before the remainder, which it adds as fused multiply-adds; found
#: on this kind of CPU and checked against torch by :func:`antialias_matches_torch` before use.
AA_BLOCK = 4


@lru_cache(maxsize=64)
def _aa_taps(n_in: int, n_out: int):
    """torch's CPU ``antialias=True`` bilinear taps (``align_corners=False``, size given), computed in
    float32 as its kernel does → ``(index n_out×K, weight n_out×K float32, size n_out)``."""
    f32, f64 = np.float32, np.float64
    scale = f32(n_in) / f32(n_out)
    support = scale if scale >= 1 else f32(1)  # (interp size 2) × 0.5 × scale
    invscale = f32(1.0 / f64(scale)) if scale >= 1 else f32(1)
    center = (f64(scale) * (np.arange(n_out) + 0.5)).astype(f32)
    lo = np.maximum(((center - support).astype(f64) + 0.5).astype(np.int64), 0)
    hi = np.minimum(((center + support).astype(f64) + 0.5).astype(np.int64), n_in)
    size = hi - lo
    k = np.arange(max(int(size.max()), 1))
    index = lo[:, None] + k[None, :]
    x = np.abs((((index.astype(f32) - center[:, None]).astype(f64) + 0.5) * f64(invscale)).astype(f32))
    weight = np.where((x < 1) & (k[None, :] < size[:, None]), (1.0 - x.astype(f64)).astype(f32), f32(0))
    total = np.zeros(n_out, f32)
    for j in range(len(k)):
        total = (total + weight[:, j]).astype(f32)
    safe = np.where(total != 0, total, f32(1))
    weight = np.where(total[:, None] != 0, (weight / safe[:, None]).astype(f32), weight)
    return np.minimum(index, n_in - 1), weight, size


def _aa_pass(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """One antialiased pass along ``axis`` (``-1``: columns, ``-2``: rows) of float32 ``x``, in torch's
    order of operations (:func:`_aa_outputs`). With an integer factor (a 512² slice's mask input: 2) the
    outputs between the two edge ones read evenly spaced inputs: strided views instead of gathers."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    index, weight, size = _aa_taps(n_in, int(n_out))
    step, m = n_in // n_out, n_out - 2
    if n_in == step * n_out and m > 0 and (size[1:-1] == size[1]).all() and np.array_equal(
            index[1:-1], index[1] + step * np.arange(m)[:, None]):
        def view(j):
            part = slice(int(index[1, j]), int(index[1, j]) + step * (m - 1) + 1, step)
            return x[..., part] if axis == -1 else x[..., part, :]

        inner = _aa_outputs(view, weight[1:-1], size[1:-1], axis)
        edges = _aa_outputs(lambda j: np.take(x, index[[0, -1], j], axis=axis), weight[[0, -1]], size[[0, -1]], axis)
        first, last = (edges[..., :1], edges[..., 1:]) if axis == -1 else (edges[..., :1, :], edges[..., 1:, :])
        return np.concatenate([first, inner, last], axis=axis)
    return _aa_outputs(lambda j: np.take(x, index[:, j], axis=axis), weight, size, axis)


def _aa_outputs(take, weight: np.ndarray, size: np.ndarray, axis: int) -> np.ndarray:
    """The outputs whose taps ``take(j)`` reads (tap ``j`` of each output along ``axis``) with ``weight``
    (outputs × taps float32) and ``size`` (taps per output), in torch's order of operations: the first
    tap's product, then each further tap added as a plain product (blocks of :data:`AA_BLOCK`) or as a
    fused multiply-add (the remainder; exact in float64: the product of two float32 is, and the sum is
    rounded once to float32)."""
    shape = (-1, 1) if axis == -2 else (-1,)  # the weights along ``axis``
    w64 = weight.astype(np.float64)

    def plain(out, term, j):
        return out + (term * weight[:, j].reshape(shape)).astype(np.float32)

    def fused(out, term, j):
        return _fma(term, w64[:, j].reshape(shape), out)

    out = (take(0) * weight[:, 0].reshape(shape)).astype(np.float32)
    blocked = (size - 1) // AA_BLOCK * AA_BLOCK
    for j in range(1, weight.shape[1]):
        live, as_plain = j < size, j <= blocked  # per output: the tap exists; it is added as a plain product
        if not live.any():
            continue
        term = take(j)
        if as_plain[live].all():  # one way of adding for every output that has this tap: only that one computed
            step = plain(out, term, j)
        elif not as_plain[live].any():
            step = fused(out, term, j)
        else:
            step = np.where(as_plain.reshape(shape), plain(out, term, j), fused(out, term, j))
        out = step if live.all() else np.where(live.reshape(shape), step, out)
    return out


def resize_antialias_exact(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``N×h×w`` float32 → ``N×H×W`` float32 as ``F.interpolate(bilinear, align_corners=False,
    antialias=True)`` on the CPU computes it (columns first, then rows; bit for bit where
    :func:`antialias_matches_torch` holds)."""
    x = np.ascontiguousarray(x, np.float32)
    return np.ascontiguousarray(_aa_pass(_aa_pass(x, int(hw[1]), -1), int(hw[0]), -2))


@lru_cache(maxsize=1)
def antialias_exact_here() -> bool:
    """:func:`antialias_matches_torch`, checked once per process (for a torch model's mask input)."""
    return antialias_matches_torch()


def antialias_matches_torch() -> bool:
    """Whether :func:`resize_antialias_exact` gives torch's antialiased resize bit for bit here (down
    by 2 as a 512² slice's mask input, by odd factors with 5–20 taps, up; odd sizes); torch is imported."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for hi, wi, ho, wo in ((512, 512, 256, 256), (101, 122, 212, 256), (700, 300, 256, 110), (60, 1000, 15, 256),
                           (2048, 40, 256, 20), (164, 191, 219, 256), (256, 256, 256, 256)):
        x = (rng.standard_normal((1, hi, wi)) * 8).astype(np.float32)
        ref = F.interpolate(torch.from_numpy(x)[None], size=(ho, wo), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        if not np.array_equal(resize_antialias_exact(x, (ho, wo)).view(np.int32), ref.numpy().view(np.int32)):
            return False
    return True


def back_to_size(geometry, low_res, iou, hw: tuple[int, int], logits: bool):
    """The decoder's output at ``hw`` → ``(masks N×H×W bool, scores N float32, logits N×H×W float32 or
    None)``: numpy arrays (the torch-free model) in numpy, torch tensors through torch; the same bits."""
    if isinstance(low_res, np.ndarray):
        scores = np.asarray(iou, np.float32)[:, 0].copy()
        if not logits:
            return masks_exact(geometry, low_res, hw), scores, None
        full = logits_exact(geometry, low_res, hw)
        return full > 0, scores, full
    scores = iou[:, 0].float().cpu().numpy()
    if not logits:
        return masks_at(geometry, low_res, hw), scores, None
    full = geometry.logits_to(low_res, hw).cpu()
    return (full > 0).numpy(), scores, full.numpy()
