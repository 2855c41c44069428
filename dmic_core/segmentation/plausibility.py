"""Is a coronary mask anatomically plausible? Real-data false-vessel measures without coronary labels.

Coronary arteries run on the heart's outer surface, in the epicardial fat. Without a coronary
reference a mask can still be checked against anatomy: a voxel far from the heart, inside the
aorta or pulmonary-artery lumen, in aerated lung, in bone or outside the body is a false vessel
whatever the truth is. :func:`anatomy_regions` finds those regions on a volume (from HU, plus the
heart and great-vessel masks when they exist), :func:`false_vessel_report` measures a mask
against them, on any grid of the same anatomy (the mask's voxels are looked up by position).

Region definitions (all on the regions' own grid, usually the scan's native one):

* ``heart_distance``: signed distance (mm) to the heart mask's surface, > 0 outside. The *heart
  shell* is ``|d| <= shell_mm`` (default 10 mm); *far from the heart* is ``d > shell_mm``.
* ``great_vessels``: the aorta / pulmonary-artery (and branch) lumen masks given, eroded by one
  voxel so a vessel leaving the aortic root is not counted inside it.
* ``lung``: aerated lung parenchyma: the closed HU < -400 region (so the lung's own vessels,
  which look like coronaries, count as lung), without the air outside the body.
* ``bone``: connected HU > 300 regions outside the given contrast-vessel and heart masks (dilated
  3 mm) holding at least 5 voxels of cortical density (> 700 HU) and lying mostly outside the
  lung, plus a 1.5 mm rim. Dense undiluted contrast in a vein without a mask can be counted here;
  the bench figure shows the region.
* ``outside_body``: air below -960 HU (5 mm mean) connected to the edge of the volume, plus a
  1.5 mm rim. On a crop that cuts through the bowel or stomach, their gas counts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

#: Distance from the heart surface (mm) within which coronary arteries are expected.
SHELL_MM = 10.0
#: Categories of :func:`false_vessel_report`, in report order.
FALSE_CATEGORIES = ("far_from_heart", "great_vessel_lumen", "lung", "bone", "outside_body")


@dataclass
class AnatomyRegions:
    """Region maps of one scan on its ``(Z, Y, X)`` grid with ``spacing`` (mm)."""

    spacing: tuple[float, float, float]
    lung: np.ndarray
    bone: np.ndarray
    outside_body: np.ndarray
    great_vessels: np.ndarray | None = None
    heart_distance: np.ndarray | None = None  # float32 mm, > 0 outside the heart
    shell_mm: float = SHELL_MM

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.lung.shape)  # type: ignore[return-value]


def _ball(radius_vox: int) -> np.ndarray:
    r = max(1, int(radius_vox))
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (g ** 2).sum(0) <= r * r


def _vox(mm: float, spacing: tuple[float, float, float]) -> int:
    return max(1, int(round(mm / float(np.mean(spacing)))))


def signed_distance(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Signed Euclidean distance (mm, float32) to the surface of ``mask``: > 0 outside, < 0 inside."""
    m = np.asarray(mask, bool)
    if not m.any():
        return np.full(m.shape, np.inf, np.float32)
    outside = ndimage.distance_transform_edt(~m, sampling=spacing)
    inside = ndimage.distance_transform_edt(m, sampling=spacing)
    return (outside - inside).astype(np.float32)


def anatomy_regions(hu: np.ndarray, spacing: tuple[float, float, float], *, heart: np.ndarray | None = None,
                    great_vessels: np.ndarray | None = None, other_vessels: np.ndarray | None = None,
                    shell_mm: float = SHELL_MM) -> AnatomyRegions:
    """Region maps of a scan (see the module docstring for the definitions).

    Args:
        hu: ``(Z, Y, X)`` HU on the canonical grid.
        spacing: ``(z, y, x)`` mm.
        heart: whole-heart mask (chambers and myocardium), if known.
        great_vessels: aorta / pulmonary-artery lumen mask, if known (counted as false-vessel region).
        other_vessels: further contrast-vessel masks that are *not* bone (e.g. the brachiocephalic
            trunk, carotids); only used to keep them out of the bone region.
    """
    hu = np.asarray(hu)
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    smooth = ndimage.uniform_filter(hu.astype(np.float32), size=tuple(max(1, 2 * _vox(2.5, spacing) + 1) for _ in range(3)))
    # outside the body: very low mean HU connected to the volume's border
    air = smooth < -960
    lab, n = ndimage.label(air)
    border = np.unique(np.concatenate([lab[[0, -1]].ravel(), lab[:, [0, -1]].ravel(), lab[:, :, [0, -1]].ravel()]))
    outside = np.isin(lab, border[border > 0]) if n else np.zeros(hu.shape, bool)
    outside = ndimage.binary_dilation(outside, _ball(_vox(1.5, spacing)))
    # aerated lung: HU < -400, closed so that the lung's vessels belong to it, without outside air
    lung = ndimage.binary_opening(hu < -400, _ball(1)) & ~outside
    lung = ndimage.binary_closing(lung, _ball(_vox(4.5, spacing)), border_value=0)
    lung &= ~outside
    known = np.zeros(hu.shape, bool)
    for m in (heart, great_vessels, other_vessels):
        if m is not None:
            known |= np.asarray(m) > 0
    if heart is not None:
        lung &= ~(np.asarray(heart) > 0)
    # bone: dense components outside the contrast vessels holding cortical density
    known_d = ndimage.binary_dilation(known, _ball(_vox(3.0, spacing))) if known.any() else known
    cand = (hu > 300) & ~known_d
    lab, n = ndimage.label(cand, structure=np.ones((3, 3, 3), bool))
    if n:
        cortical = np.bincount(lab[(hu > 700) & cand], minlength=n + 1)
        size = np.bincount(lab.ravel(), minlength=n + 1)
        in_lung = np.bincount(lab[lung & cand], minlength=n + 1)
        keep = (cortical >= 5) & (in_lung < 0.5 * size)  # vessels inside the lung are not bone
        keep[0] = False
        bone = keep[lab]
        bone = ndimage.binary_dilation(bone, _ball(_vox(1.5, spacing))) & ~known
    else:
        bone = np.zeros(hu.shape, bool)
    gv = None
    if great_vessels is not None:
        gv = ndimage.binary_erosion(np.asarray(great_vessels) > 0, _ball(1))
    dist = signed_distance(np.asarray(heart) > 0, spacing) if heart is not None else None
    return AnatomyRegions(spacing, lung, bone, outside, gv, dist, float(shell_mm))


def lookup_indices(mask: np.ndarray, mask_spacing: tuple[float, float, float], regions: AnatomyRegions,
                   origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, ...]:
    """Region-grid indices of every mask voxel (nearest voxel by position).

    Positions are ``origin_mm + index * spacing`` on both grids, with the regions' voxel 0 at 0:
    a mask on a resampled grid of the same scan passes its spacing (and its first voxel's offset).
    """
    idx = np.nonzero(np.asarray(mask))
    out = []
    for axis in range(3):
        pos = origin_mm[axis] + idx[axis] * float(mask_spacing[axis])
        out.append(np.clip(np.rint(pos / regions.spacing[axis]).astype(np.int64), 0, regions.shape[axis] - 1))
    return tuple(out)


def false_vessel_report(mask: np.ndarray, mask_spacing: tuple[float, float, float], regions: AnatomyRegions,
                        origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                        select: np.ndarray | None = None) -> dict[str, Any]:
    """Volumes (ml) of ``mask`` by false-vessel category, the mask volume and its heart-shell fraction.

    Args:
        mask: 0/1 coronary mask on its own grid.
        mask_spacing: its ``(z, y, x)`` spacing in mm.
        regions: :func:`anatomy_regions` of the same scan (any grid).
        select: optional boolean map on the *regions'* grid restricting the count (e.g. a held-out
            z-range); volumes are then of the mask inside it.

    Returns:
        ``mask_ml``; ``false_ml`` per category of :data:`FALSE_CATEGORIES` (they may overlap; the
        far-from-heart one needs a heart mask, else None); ``false_any_ml`` (their union);
        ``heart_shell_fraction`` (share of the mask within ``shell_mm`` of the heart surface,
        either side); ``inside_heart_deep_ml`` (deeper than ``shell_mm`` inside the heart).
    """
    idx = lookup_indices(mask, mask_spacing, regions, origin_mm)
    if select is not None:
        keep = np.asarray(select, bool)[idx]
        idx = tuple(i[keep] for i in idx)
    ml = float(np.prod(mask_spacing)) / 1000.0
    n = int(idx[0].size)
    cats: dict[str, np.ndarray | None] = {
        "far_from_heart": None, "great_vessel_lumen": None,
        "lung": regions.lung[idx], "bone": regions.bone[idx], "outside_body": regions.outside_body[idx]}
    out: dict[str, Any] = {"mask_ml": n * ml, "shell_mm": regions.shell_mm}
    shell = deep = None
    if regions.heart_distance is not None:
        d = regions.heart_distance[idx]
        cats["far_from_heart"] = d > regions.shell_mm
        shell = np.abs(d) <= regions.shell_mm
        deep = d < -regions.shell_mm
    if regions.great_vessels is not None:
        cats["great_vessel_lumen"] = regions.great_vessels[idx]
    union = np.zeros(n, bool)
    out["false_ml"] = {}
    for name in FALSE_CATEGORIES:
        hit = cats[name]
        out["false_ml"][name] = None if hit is None else int(hit.sum()) * ml
        if hit is not None:
            union |= hit
    out["false_any_ml"] = int(union.sum()) * ml
    out["heart_shell_fraction"] = None if shell is None else (float(shell.mean()) if n else 0.0)
    out["inside_heart_deep_ml"] = None if deep is None else int(deep.sum()) * ml
    return out


# ------------------------------------------------------------------ out-of-distribution check
#: What the shipped model was trained on and what a coronary tree holds; outside these, warn.
PIXEL_MM_RANGE = (0.25, 0.6)  # training pixels 0.30-0.45 mm
MAX_SLICE_MM = 1.0  # training frames 0.5 mm
MAX_Z_COVERAGE_MM = 200.0  # heart-centred scans: phantoms 70-140 mm, CCTA about 100-160 mm
MIN_Z_FOR_VOLUME_MM = 60.0  # below this (a slab) the whole tree is not in view: no volume check
FOV_MM = (120.0, 320.0)  # in-plane field of view
VESSEL_ML = (0.3, 15.0)  # coronary lumen: phantoms 2.7-8.9 ml, adult trees a few ml
MIN_CONTRAST_ML = 20.0  # contrast-filled blood (150-700 HU) a CCTA must show
MAX_OFF_HEART_FRACTION = 0.2


def estimate_heart(hu: np.ndarray, spacing: tuple[float, float, float], grid_mm: float = 1.5
                   ) -> tuple[np.ndarray, tuple[float, float, float]] | None:
    """A crude heart estimate without a heart mask: the largest connected contrast-filled blood pool
    (3 mm mean HU 150-700, opened by 6 mm: chambers with the aorta and pulmonary trunk, without
    the vessels branching off them), on a ~``grid_mm`` grid.

    Returns the mask and its spacing, or None when there is no blood pool of at least
    :data:`MIN_CONTRAST_ML`.
    """
    hu = np.asarray(hu)
    step = [max(1, int(round(grid_mm / s))) for s in spacing]
    shape = [n // k * k for n, k in zip(hu.shape, step)]
    if min(shape) == 0:
        return None
    coarse = hu[:shape[0], :shape[1], :shape[2]].astype(np.float32).reshape(
        shape[0] // step[0], step[0], shape[1] // step[1], step[1], shape[2] // step[2], step[2]).mean((1, 3, 5))
    csp = tuple(float(s * k) for s, k in zip(spacing, step))
    smooth = ndimage.uniform_filter(coarse, size=tuple(max(1, 2 * int(round(1.5 / s)) + 1) for s in csp))
    pool = (smooth > 150) & (smooth < 700)
    # opening by 6 mm (two distance transforms): keeps chambers and the aorta, drops the vessels
    # that branch off them into the lungs and the neck
    core = ndimage.distance_transform_edt(pool, sampling=csp) > 6.0
    pool = ndimage.distance_transform_edt(~core, sampling=csp) <= 6.0 if core.any() else core
    lab, n = ndimage.label(pool)
    if not n:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    if sizes.max() * float(np.prod(csp)) / 1000.0 < MIN_CONTRAST_ML:
        return None
    return lab == int(np.argmax(sizes)), csp  # type: ignore[return-value]


def assess_mask_plausibility(volume, mask: np.ndarray, heart: np.ndarray | None = None) -> list[str]:
    """Plain-language warnings when a coronary mask, or the scan it came from, is outside what the
    segmenter was made for (empty list: nothing to warn about).

    Checks the pixel size and slice spacing, the z coverage and field of view, contrast-filled
    blood, the predicted vessel volume against what a coronary tree holds, and how much of the
    mask lies off the heart: farther than 10 mm from ``heart`` when a heart mask is given, else
    farther than 25 mm from the estimated blood pool (:func:`estimate_heart`).

    Args:
        volume: the scan (a :class:`~dmic_core.volume.Volume`: HU and spacing).
        mask: the segmenter's 0/1 mask on the volume's grid.
        heart: optional whole-heart mask on the same grid.
    """
    hu = np.asarray(volume.hu)
    spacing = tuple(float(s) for s in volume.spacing)
    mask = np.asarray(mask) > 0
    if mask.shape != hu.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the volume {hu.shape}")
    out: list[str] = []
    pixel = float(np.sqrt(spacing[1] * spacing[2]))
    if not PIXEL_MM_RANGE[0] <= pixel <= PIXEL_MM_RANGE[1]:
        out.append(f"Pixel size {pixel:.2f} mm: the coronary model was trained on 0.30-0.45 mm CCTA pixels; the "
                   f"scan is resampled for it, and vessels thinner than a pixel cannot be found reliably.")
    if spacing[0] > MAX_SLICE_MM:
        out.append(f"Slices {spacing[0]:.2f} mm apart: the model expects about 0.5 mm CCTA slices; thin coronary "
                   f"segments are blurred across slices and masks are less reliable.")
    z_mm = hu.shape[0] * spacing[0]
    if z_mm > MAX_Z_COVERAGE_MM:
        out.append(f"The scan covers {z_mm:.0f} mm head to foot; a cardiac CT covers about 60-160 mm. Outside the "
                   f"heart the model's marks are not coronary arteries.")
    fov = min(hu.shape[1] * spacing[1], hu.shape[2] * spacing[2])
    if not FOV_MM[0] <= fov <= FOV_MM[1]:
        out.append(f"Field of view {fov:.0f} mm: cardiac CT uses about 150-250 mm centred on the heart.")
    vox_ml = float(np.prod(spacing)) / 1000.0
    contrast_ml = float(((hu > 150) & (hu < 700)).sum()) * vox_ml
    if contrast_ml < MIN_CONTRAST_ML:
        out.append(f"Only {contrast_ml:.0f} ml of contrast-filled blood (150-700 HU): this does not look like a "
                   f"contrast-enhanced cardiac CT, and coronary lumens cannot be told from the wall.")
    mask_ml = float(mask.sum()) * vox_ml
    if mask_ml > VESSEL_ML[1]:
        out.append(f"The mask holds {mask_ml:.1f} ml; a coronary tree holds about 1-12 ml. Most of it is not "
                   f"coronary artery (lung or chest-wall vessels, bone edges).")
    elif mask_ml < VESSEL_ML[0] and z_mm >= MIN_Z_FOR_VOLUME_MM:
        out.append(f"The mask holds only {mask_ml:.2f} ml: (almost) no coronary artery was found.")
    if mask.any():
        if heart is not None:
            dist = signed_distance(np.asarray(heart) > 0, spacing)
            off = float((dist[mask] > SHELL_MM).mean())
            where = f"farther than {SHELL_MM:.0f} mm from the heart"
        else:
            est = estimate_heart(hu, spacing)
            off, where = None, ""
            if est is not None:
                pool, csp = est
                dist = ndimage.distance_transform_edt(~pool, sampling=csp)
                idx = np.nonzero(mask)
                look = tuple(np.clip(idx[a] * spacing[a] / csp[a], 0, pool.shape[a] - 1).astype(np.int64)
                             for a in range(3))
                off = float((dist[look] > 25.0).mean())
                where = "farther than 25 mm from the heart's blood pool (estimated)"
        if off is not None and off > MAX_OFF_HEART_FRACTION:
            out.append(f"{100 * off:.0f} % of the mask lies {where}, where coronary arteries do not run.")
    return out


__all__ = ["SHELL_MM", "FALSE_CATEGORIES", "AnatomyRegions", "anatomy_regions", "signed_distance",
           "lookup_indices", "false_vessel_report", "estimate_heart", "assess_mask_plausibility"]
