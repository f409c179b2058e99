"""Build the bundled sample data of ``medsam_lite`` from the MNI ICBM152 2009 template.

The MNI ICBM152 2009a nonlinear symmetric template (T1 plus grey/white matter probability
maps, as the 1 mm uint8 ``*_converted.nii.gz`` files) ships inside the ``nilearn``
package; ``nilearn`` is used only to find those files. From them this script derives,
deterministically (fixed seed):

* ``brain_mri/sub-XX.nii.gz`` + ``brain_mri/sub-XX_label.nii.gz`` for 8 synthetic
  "subjects": the template T1 warped by a random smooth deformation and a small random
  affine, with a smooth bias field, a gamma (contrast) change, a random intensity scale and
  Rician noise, resampled to a clinical-like 1 x 1 mm in-plane, 4 mm thick axial grid.
  Labels: 0 background, 1 white matter, 2 grey matter, 3 lateral ventricles.
* ``brain_slice.png`` / ``brain_slice_label.png``: one axial slice of ``sub-01`` through the
  lateral ventricles (image normalized to 0..255, labels with the same values 1/2/3).
* ``labels.json``.

Run ``python data_samples/make_samples.py`` (``--out`` defaults to this folder).
Only numpy, scipy and SimpleITK are used to compute and write the data.

The real abdominal CT and MR samples (``ct_abdomen/``, ``mr_abdomen/``) are cut from the
TotalSegmentator test files instead: ``pip download --no-deps --no-binary :all:
totalsegmentator==2.18.0 -d /tmp/ts``, then ``python data_samples/make_samples.py
--abdomen-from /tmp/ts/totalsegmentator-2.18.0.tar.gz`` (see :func:`make_abdomen`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

SEED = 20240917
N_SUBJECTS = 8
SPACING = (1.0, 1.0, 4.0)  # x, y, z in mm (axial slices 4 mm thick)
SLAB_OFFSETS = (-1.5, -0.5, 0.5, 1.5)  # mm; the image averages 1 mm samples across the slab
LABELS = {"1": "white_matter", "2": "grey_matter", "3": "lateral_ventricles"}
TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


#: TotalSegmentator files → (folder, image, label, kept classes {value: name}); values are kept.
ABDOMEN = {
    "ct_abdomen": ("example_ct_sm.nii.gz", "example_seg.nii.gz", {
        1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver",
        6: "stomach", 7: "pancreas", 52: "aorta", 63: "inferior_vena_cava"}),  # class_map["total"]
    "mr_abdomen": ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", {
        1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver",
        6: "stomach", 7: "pancreas", 23: "aorta", 24: "inferior_vena_cava"}),  # class_map["total_mr"]
}
#: Slices per case when a scan is cut into cases along z (blocks of consecutive slices).
ABDOMEN_BLOCK = 10


def make_abdomen(source: Path, out: Path) -> None:
    """Cut the TotalSegmentator reference scans into ``case-XX`` blocks of 10 axial slices.

    ``source`` is the sdist (``totalsegmentator-2.18.0.tar.gz``) or its extracted folder. Each
    scan (CT 122×101×30, MR 117×91×20 voxels at 3 mm, x·y·z) becomes ``case-01``, ``case-02`` …
    (slices z = 0–9, 10–19, …), each with its own origin, so one case can be held out. Labels keep
    TotalSegmentator's values for the classes in :data:`ABDOMEN`; every other class becomes 0.
    """
    import tarfile
    import tempfile

    import SimpleITK as sitk

    source = Path(source)
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_file():
            with tarfile.open(source) as tar:
                members = [m for m in tar.getmembers() if "/tests/reference_files/example_" in m.name
                           and m.name.endswith(".nii.gz") and m.name.count("/") == 3]
                tar.extractall(tmp, members=members, filter="data")
            source = next(Path(tmp).iterdir())
        ref = source / "tests" / "reference_files"
        for folder, (image_name, label_name, classes) in ABDOMEN.items():
            image, label = sitk.ReadImage(str(ref / image_name)), sitk.ReadImage(str(ref / label_name))
            lab = sitk.GetArrayFromImage(label)
            kept = np.where(np.isin(lab, list(classes)), lab, 0).astype(np.uint8)
            subset = sitk.GetImageFromArray(kept)
            subset.CopyInformation(label)
            (out / folder).mkdir(parents=True, exist_ok=True)
            nz = image.GetSize()[2]
            for i, z0 in enumerate(range(0, nz, ABDOMEN_BLOCK), start=1):
                z1 = min(z0 + ABDOMEN_BLOCK, nz)
                name = f"case-{i:02d}"
                sitk.WriteImage(image[:, :, z0:z1], str(out / folder / f"{name}.nii.gz"), useCompression=True)
                sitk.WriteImage(subset[:, :, z0:z1], str(out / folder / f"{name}_label.nii.gz"),
                                useCompression=True)
                counts = {classes[v]: int((kept[z0:z1] == v).sum()) for v in classes}
                print(f"{folder}/{name}: z {z0}-{z1 - 1} of {nz}, voxels per class {counts}")
            (out / folder / "labels.json").write_text(
                json.dumps({str(k): v for k, v in classes.items()}, indent=2) + "\n")


# --------------------------------------------------------------------------- template
def template_dir() -> Path:
    """Folder of nilearn's bundled MNI ICBM152 2009 template."""
    import nilearn  # only to locate the files

    return Path(nilearn.__file__).resolve().parent / "datasets" / "data"


def load_template(folder: Path | None = None):
    """Return (t1, gm, wm) float32 arrays indexed [i, j, k] and the voxel->RAS affine."""
    import SimpleITK as sitk

    folder = template_dir() if folder is None else Path(folder)
    arrays, affine = [], None
    for key in ("t1", "gm", "wm"):
        img = sitk.ReadImage(str(folder / TEMPLATE.format(key)))
        # SimpleITK arrays are [k, j, i]; transpose to [i, j, k].
        arrays.append(sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32))
        direction = np.array(img.GetDirection()).reshape(3, 3)
        lps = np.eye(4)
        lps[:3, :3] = direction * np.array(img.GetSpacing())
        lps[:3, 3] = img.GetOrigin()
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK works in LPS, the template in RAS
        if affine is None:
            affine = ras
        elif not np.allclose(affine, ras):
            raise ValueError("template files do not share one grid")
    return arrays[0], arrays[1], arrays[2], affine


def template_labels(t1, gm, wm, affine) -> np.ndarray:
    """uint8 label map on the template grid: 1 WM, 2 GM, 3 lateral ventricles."""
    brain = t1 > 0
    labels = np.zeros(t1.shape, np.uint8)
    labels[brain & (wm >= gm) & (wm > 0.5 * 255)] = 1
    labels[brain & (gm > wm) & (gm > 0.5 * 255)] = 2

    # CSF: inside the brain where the tissue probabilities add up to little.
    csf = brain & ((gm + wm) < 0.4 * 255)
    comp, n = ndi.label(csf)
    sizes = ndi.sum(csf, comp, np.arange(1, n + 1))
    # A component is a candidate if its whole bounding box lies in a central region
    # (RAS mm): near the midline, mid-brain front to back, middle of the z range. That
    # excludes the large sulcal/cisternal CSF component, which reaches the brain surface.
    lo_box, hi_box = np.array([-45.0, -75.0, -25.0]), np.array([45.0, 45.0, 45.0])
    candidates = []
    for index, sl in enumerate(ndi.find_objects(comp)):
        if sl is None or sizes[index] < 2000:
            continue
        lo = affine[:3, :3] @ [s.start for s in sl] + affine[:3, 3]
        hi = affine[:3, :3] @ [s.stop - 1 for s in sl] + affine[:3, 3]
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if np.all(lo >= lo_box) and np.all(hi <= hi_box):
            candidates.append((sizes[index], index + 1))
    candidates.sort(reverse=True)
    if not candidates:
        raise RuntimeError("no lateral ventricle candidate found in the template")
    vent = np.isin(comp, [c[1] for c in candidates[:2]])
    # Grow by one voxel into dark (CSF-like) T1 voxels: puts the edge at half intensity
    # between ventricular CSF and white matter instead of on the GM+WM<0.4 contour.
    half = 0.5 * (np.median(t1[vent]) + np.median(t1[labels == 1]))
    vent |= ndi.binary_dilation(vent) & brain & (t1 < half)
    labels[vent] = 3  # ventricles override WM/GM
    return labels


# --------------------------------------------------------------------------- subjects
def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class SmoothField:
    """Random smooth vector field (RAS mm -> mm) from Gaussian-smoothed control points."""

    def __init__(self, rng, rms_mm, lo, hi, step=12.0, smooth=1.0):
        self.lo, self.step = np.asarray(lo, float), step
        shape = tuple(int(np.ceil((b - a) / step)) + 1 for a, b in zip(lo, hi))
        field = rng.standard_normal((3,) + shape)
        field = np.stack([ndi.gaussian_filter(f, smooth, mode="nearest") for f in field])
        field *= rms_mm / np.sqrt(np.mean(np.sum(field**2, axis=0)))
        # Pre-filter once for cubic B-spline evaluation.
        self.coef = [ndi.spline_filter(f, order=3, mode="nearest") for f in field]

    def __call__(self, pts):
        idx = [(pts[a] - self.lo[a]) / self.step for a in range(3)]
        return [
            ndi.map_coordinates(c, idx, order=3, mode="nearest", prefilter=False)
            for c in self.coef
        ]


def subject_params(rng) -> dict:
    """Draw one subject's random parameters (the order of draws is part of the seed)."""
    return {
        "rotation_deg": rng.uniform(-4.0, 4.0, 3),
        "scale": rng.uniform(0.95, 1.05, 3),
        "translation_mm": rng.uniform(-3.0, 3.0, 3),
        "warp_rms_mm": rng.uniform(1.5, 2.5),
        "slice_offset_mm": rng.uniform(0.0, SPACING[2]),
        "gamma": rng.uniform(0.8, 1.25),
        "bias_coef": np.concatenate([rng.normal(0, 0.08, 3), rng.normal(0, 0.05, 6)]),
        "intensity_scale": rng.uniform(650.0, 900.0),
        "noise_rel": rng.uniform(0.015, 0.035),
    }


def make_subject(t1, labels, affine, rng):
    """Return (image int16 [k, j, i], label uint8 [k, j, i], origin LPS, params, info)."""
    p = subject_params(rng)
    inv = np.linalg.inv(affine)
    # Brain bounding box and centre in RAS mm.
    ijk = np.array(np.nonzero(t1 > 0))
    lo_v, hi_v = ijk.min(axis=1), ijk.max(axis=1)
    corners = np.array([[a, b, c] for a in (lo_v[0], hi_v[0]) for b in (lo_v[1], hi_v[1])
                        for c in (lo_v[2], hi_v[2])]).T
    corners = affine[:3, :3] @ corners + affine[:3, 3:4]
    b_lo, b_hi = corners.min(axis=1), corners.max(axis=1)
    centre = 0.5 * (b_lo + b_hi)

    # Subject -> template mapping: q = c + A (r - c) + t, then + smooth displacement.
    a_mat = _rotation(p["rotation_deg"]) @ np.diag(p["scale"])
    warp = SmoothField(rng, p["warp_rms_mm"], b_lo - 30, b_hi + 30)
    bias_c = p["bias_coef"]

    # Output grid in LPS mm (ITK convention, identity direction): covers the brain with a
    # margin wide enough for the random affine; cropped to the subject's brain afterwards.
    margin = 14.0
    lps_lo = np.array([-b_hi[0], -b_hi[1], b_lo[2]]) - margin
    lps_hi = np.array([-b_lo[0], -b_lo[1], b_hi[2]]) + margin
    lps_lo[2] += p["slice_offset_mm"]
    size = [int(np.floor((b - a) / d)) + 1 for a, b, d in zip(lps_lo, lps_hi, SPACING)]
    gk, gj, gi = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in size[::-1]),
                             indexing="ij")
    lx, ly, lz = (lps_lo[0] + gi * SPACING[0], lps_lo[1] + gj * SPACING[1],
                  lps_lo[2] + gk * SPACING[2])
    del gi, gj, gk
    r = [-lx, -ly, lz]  # subject RAS mm at slice centres
    disp = warp(r)  # displacement, evaluated at slice centres (smooth on a 12 mm scale)

    def to_template_index(dz):
        rr = [r[0], r[1], r[2] + dz]
        q = [centre[a] + sum(a_mat[a, b] * (rr[b] - centre[b]) for b in range(3))
             + p["translation_mm"][a] + disp[a] for a in range(3)]
        return [sum(inv[a, b] * q[b] for b in range(3)) + inv[a, 3] for a in range(3)]

    # Labels: nearest neighbour at the slice centre. Image: mean of 1 mm linear samples
    # across the 4 mm slab (partial volume of a thick slice).
    label = ndi.map_coordinates(labels, to_template_index(0.0), order=0, mode="constant",
                                cval=0).astype(np.uint8)
    slab = np.zeros(label.shape, np.float64)
    for dz in SLAB_OFFSETS:
        slab += ndi.map_coordinates(t1, to_template_index(dz), order=1, mode="constant",
                                    cval=0.0)
    slab /= len(SLAB_OFFSETS)
    mask = slab > 0.5

    # Contrast (gamma), smooth multiplicative bias field, intensity scale, Rician noise.
    img = np.clip(slab / 255.0, 0.0, 1.0) ** p["gamma"]
    u = [(r[a] - centre[a]) / 100.0 for a in range(3)]
    poly = (bias_c[0] * u[0] + bias_c[1] * u[1] + bias_c[2] * u[2]
            + bias_c[3] * u[0] ** 2 + bias_c[4] * u[1] ** 2 + bias_c[5] * u[2] ** 2
            + bias_c[6] * u[0] * u[1] + bias_c[7] * u[0] * u[2] + bias_c[8] * u[1] * u[2])
    bias = np.exp(np.clip(poly, -0.3, 0.3))
    img = p["intensity_scale"] * bias * img
    sigma = p["noise_rel"] * p["intensity_scale"]
    n1 = rng.standard_normal(img.shape) * sigma
    n2 = rng.standard_normal(img.shape) * sigma
    img = np.sqrt((img + n1) ** 2 + n2**2)
    img = np.where(mask, np.maximum(np.rint(img), 1), 0).astype(np.int16)  # skull-stripped
    label[~mask] = 0

    # Crop to the brain plus a margin (6 voxels in-plane, 1 slice in z).
    nz = np.array(np.nonzero(mask | (label > 0)))
    lo_c = np.maximum(nz.min(axis=1) - [1, 6, 6], 0)
    hi_c = np.minimum(nz.max(axis=1) + [1, 6, 6], np.array(img.shape) - 1)
    sl = tuple(slice(a, b + 1) for a, b in zip(lo_c, hi_c))
    img, label = img[sl], label[sl]
    origin = lps_lo + np.array(SPACING) * lo_c[::-1]

    # Deformation diagnostics on the (uncropped) slice-centre grid.
    dmag = np.sqrt(sum(d**2 for d in disp))
    grads = [np.gradient(d, SPACING[2], SPACING[1], SPACING[0]) for d in disp]  # d/dk,j,i
    # Jacobian of r -> r + disp(r) wrt RAS axes (RAS x = -LPS x, so flip the sign of i/j).
    jac = np.empty((3, 3) + disp[0].shape)
    for a in range(3):
        jac[a, 0] = -grads[a][2]
        jac[a, 1] = -grads[a][1]
        jac[a, 2] = grads[a][0]
        jac[a, a] += 1.0
    det = (jac[0, 0] * (jac[1, 1] * jac[2, 2] - jac[1, 2] * jac[2, 1])
           - jac[0, 1] * (jac[1, 0] * jac[2, 2] - jac[1, 2] * jac[2, 0])
           + jac[0, 2] * (jac[1, 0] * jac[2, 1] - jac[1, 1] * jac[2, 0]))
    info = {"disp_max_mm": float(dmag[mask].max()), "disp_mean_mm": float(dmag[mask].mean()),
            "jac_det_min": float(det[mask].min()),
            "bias_range": (float(bias[mask].min()), float(bias[mask].max()))}
    return img, label, origin, p, info


# --------------------------------------------------------------------------- writing
def _write_volume(array_kji, origin, path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    img.SetSpacing(SPACING)
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))  # LPS, axial
    sitk.WriteImage(img, str(path), useCompression=True)


def _write_png(array_2d, path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array_2d, np.uint8)),
                    str(path))


def verify(out: Path, n_subjects: int = N_SUBJECTS) -> None:
    """Re-read the written volumes and check geometry and labels."""
    import SimpleITK as sitk

    for s in range(1, n_subjects + 1):
        img = sitk.ReadImage(str(out / "brain_mri" / f"sub-{s:02d}.nii.gz"))
        lab = sitk.ReadImage(str(out / "brain_mri" / f"sub-{s:02d}_label.nii.gz"))
        assert np.allclose(img.GetSpacing(), SPACING), img.GetSpacing()
        assert img.GetSize() == lab.GetSize()
        assert np.allclose(img.GetOrigin(), lab.GetOrigin())
        assert np.allclose(img.GetSpacing(), lab.GetSpacing())
        assert np.allclose(img.GetDirection(), lab.GetDirection())
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        la = sitk.GetArrayFromImage(lab)
        assert set(np.unique(la)) == {0, 1, 2, 3}, np.unique(la)
        mid = la[la.shape[0] // 2]
        assert all((mid == v).any() for v in (1, 2)), "WM/GM missing from the middle slice"
        assert (la == 3).sum(axis=(1, 2)).max() >= 300, "ventricles too small"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--n-subjects", type=int, default=N_SUBJECTS)
    parser.add_argument("--template-dir", type=Path, default=None,
                        help="folder with the MNI ICBM152 2009 files (default: nilearn's)")
    parser.add_argument("--abdomen-from", type=Path, default=None,
                        help="build only ct_abdomen/ and mr_abdomen/ from this totalsegmentator sdist")
    args = parser.parse_args(argv)
    if args.abdomen_from is not None:
        make_abdomen(args.abdomen_from, args.out)
        return

    t0 = time.perf_counter()
    out = args.out
    (out / "brain_mri").mkdir(parents=True, exist_ok=True)
    t1, gm, wm, affine = load_template(args.template_dir)
    labels = template_labels(t1, gm, wm, affine)
    del gm, wm
    counts = {int(v): int((labels == v).sum()) for v in (1, 2, 3)}
    print(f"template {t1.shape} labels {counts} ({time.perf_counter() - t0:.1f} s)")

    for s in range(1, args.n_subjects + 1):
        name = f"sub-{s:02d}"
        rng = np.random.default_rng([args.seed, s])
        img, lab, origin, p, info = make_subject(t1, labels, affine, rng)
        _write_volume(img, origin, out / "brain_mri" / f"{name}.nii.gz")
        _write_volume(lab, origin, out / "brain_mri" / f"{name}_label.nii.gz")
        counts = {int(v): int((lab == v).sum()) for v in (1, 2, 3)}
        vz = np.nonzero((lab == 3).sum(axis=(1, 2)) >= 100)[0]
        print(f"{name}: size (x,y,z)={img.shape[::-1]} max={img.max()} "
              f"labels {counts} ventricle slices(>=100px) {vz.tolist()} | "
              f"rot={np.round(p['rotation_deg'], 1).tolist()} "
              f"scale={np.round(p['scale'], 3).tolist()} gamma={p['gamma']:.2f} "
              f"warp max={info['disp_max_mm']:.1f} mm, min det J={info['jac_det_min']:.2f} "
              f"bias {info['bias_range'][0]:.2f}-{info['bias_range'][1]:.2f} "
              f"({time.perf_counter() - t0:.1f} s)")
        if s == 1:
            # Axial slice with the most ventricle pixels; normalized by the 0.5/99.5
            # percentiles of the brain (non-zero) voxels of the whole volume.
            z = int(np.argmax((lab == 3).sum(axis=(1, 2))))
            lo, hi = np.percentile(img[img > 0], [0.5, 99.5])
            sl = np.clip((img[z].astype(np.float64) - lo) / (hi - lo), 0, 1) * 255
            sl = np.where(img[z] > 0, sl, 0)
            _write_png(np.rint(sl), out / "brain_slice.png")
            _write_png(lab[z], out / "brain_slice_label.png")
            print(f"brain_slice.png: {name} axial slice z={z}, shape {sl.shape}")

    (out / "labels.json").write_text(json.dumps(LABELS, indent=2) + "\n")
    verify(out, args.n_subjects)
    print(f"done in {time.perf_counter() - t0:.1f} s -> {out}")


if __name__ == "__main__":
    main()
