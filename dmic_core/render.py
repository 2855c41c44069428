"""Slices as RGB images for viewers: CT windows, vessel-mask and CTU QP-map overlays, differences.

Pure numpy (no UI): the app's pages call these and hand the arrays to ``st.image``. Views follow
the radiological convention of the canonical frames (:mod:`dmic_core.volume`): axial frames as
stored (anterior up, patient's right on the left), coronal and sagittal with superior up and
rows stretched by the slice spacing so anatomy keeps its proportions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dmic_core.codecs.qp import CTU_SIZE

PLANES = ("axial", "coronal", "sagittal")

#: CT window presets: name -> (level, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "CCTA": (300.0, 900.0),
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (500.0, 2000.0),
}

MASK_RGB = np.array([255, 40, 40], dtype=np.float32)


@dataclass(frozen=True)
class Window:
    level: float
    width: float

    @property
    def bounds(self) -> tuple[float, float]:
        return self.level - self.width / 2.0, self.level + self.width / 2.0


def window_preset(name: str) -> Window:
    level, width = WINDOW_PRESETS[name]
    return Window(level, width)


def plane_length(shape: tuple[int, int, int], plane: str) -> int:
    """Number of slices of ``plane`` for a ``(Z, Y, X)`` volume."""
    return {"axial": shape[0], "coronal": shape[1], "sagittal": shape[2]}[_check_plane(plane)]


def _check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    return plane


def take_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice of a canonical ``(Z, Y, X)`` array, oriented for display (superior up)."""
    _check_plane(plane)
    n = plane_length(array.shape, plane)
    index = int(np.clip(index, 0, n - 1))
    if plane == "axial":
        return array[index]
    if plane == "coronal":
        return array[::-1, index, :]
    return array[::-1, :, index]


def _row_index(n_rows: int, row_mm: float, col_mm: float) -> np.ndarray | None:
    """Nearest-neighbour row indices that make rows as tall as columns are wide."""
    if row_mm <= 0 or col_mm <= 0 or abs(row_mm / col_mm - 1.0) < 0.05:
        return None
    out_rows = max(1, int(round(n_rows * row_mm / col_mm)))
    return np.minimum((np.arange(out_rows) * (n_rows / out_rows)).astype(np.int64), n_rows - 1)


def to_gray(hu2d: np.ndarray, window: Window) -> np.ndarray:
    """uint8 grey levels of HU under a window (clipped)."""
    lo, hi = window.bounds
    scaled = (hu2d.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def diverging_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    """Blue (negative) - white (0) - red (positive) colours, saturating at +-``limit``."""
    t = np.clip(np.asarray(values, dtype=np.float32) / max(float(limit), 1e-6), -1.0, 1.0)[..., None]
    white = np.array([255, 255, 255], dtype=np.float32)
    red = np.array([200, 30, 30], dtype=np.float32)
    blue = np.array([30, 70, 200], dtype=np.float32)
    return np.where(t >= 0, white + (red - white) * t, white + (blue - white) * (-t))


def ctu_values(ctu_map: np.ndarray, shape: tuple[int, int, int], plane: str, index: int) -> np.ndarray:
    """A per-CTU map ``(Z, rows, cols)`` spread over the voxels of one display slice."""
    z, y, x = shape
    zi = np.arange(z)
    yi = np.minimum(np.arange(y) // CTU_SIZE, ctu_map.shape[1] - 1)
    xi = np.minimum(np.arange(x) // CTU_SIZE, ctu_map.shape[2] - 1)
    if plane == "axial":
        k = int(np.clip(index, 0, z - 1))
        return ctu_map[k][np.ix_(yi, xi)]
    if plane == "coronal":
        r = yi[int(np.clip(index, 0, y - 1))]
        return ctu_map[:, r, :][np.ix_(zi, xi)][::-1]
    c = xi[int(np.clip(index, 0, x - 1))]
    return ctu_map[:, :, c][np.ix_(zi, yi)][::-1]


def ctu_grid_lines(shape: tuple[int, int, int], plane: str) -> tuple[np.ndarray, np.ndarray]:
    """Boolean row and column masks of CTU borders in a display slice (before stretching)."""
    z, y, x = shape
    rows_n, cols_n = {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]
    rows = np.zeros(rows_n, dtype=bool)
    cols = np.zeros(cols_n, dtype=bool)
    cols[::CTU_SIZE] = True
    if plane == "axial":
        rows[::CTU_SIZE] = True
    return rows, cols


def render_slice(hu: np.ndarray, plane: str, index: int, window: Window, *,
                 spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 mask: np.ndarray | None = None, mask_alpha: float = 0.45,
                 ctu_map: np.ndarray | None = None, ctu_alpha: float = 0.35, ctu_limit: float = 10.0,
                 grid: bool = True) -> np.ndarray:
    """An RGB uint8 image of one slice with optional overlays.

    Args:
        hu: canonical ``(Z, Y, X)`` HU array.
        spacing: ``(z, y, x)`` voxel size in mm (coronal/sagittal rows are stretched by it).
        mask: vessel mask on the same grid, blended in red.
        ctu_map: per-CTU values ``(Z, rows, cols)`` (QP offsets, or QPs minus a centre), blended
            with a blue-white-red scale saturating at ``+-ctu_limit``; ``grid`` draws CTU borders.
    """
    gray = to_gray(take_slice(hu, plane, index), window)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if ctu_map is not None and ctu_alpha > 0:
        colours = diverging_rgb(ctu_values(ctu_map, hu.shape, plane, index), ctu_limit)
        rgb = rgb * (1 - ctu_alpha) + colours * ctu_alpha
        if grid:
            rows, cols = ctu_grid_lines(hu.shape, plane)
            line = np.array([255, 220, 0], dtype=np.float32)
            rgb[rows, :, :] = rgb[rows, :, :] * 0.4 + line * 0.6
            rgb[:, cols, :] = rgb[:, cols, :] * 0.4 + line * 0.6
    if mask is not None and mask_alpha > 0:
        m = take_slice(mask, plane, index) > 0
        rgb[m] = rgb[m] * (1 - mask_alpha) + MASK_RGB * mask_alpha
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    return _display_aspect(out, plane, spacing)


def _display_aspect(out: np.ndarray, plane: str, spacing: tuple[float, float, float]) -> np.ndarray:
    """Repeat rows of a coronal/sagittal slice so its pixels show at the true mm aspect."""
    if plane != "axial":
        col_mm = spacing[2] if plane == "coronal" else spacing[1]
        rows = _row_index(out.shape[0], spacing[0], col_mm)
        if rows is not None:
            out = out[rows]
    return out


def difference_rgb(a: np.ndarray, b: np.ndarray, plane: str, index: int, *, limit_hu: float = 50.0,
                   spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Decoded minus original (HU) of one slice on a blue-white-red scale of +-``limit_hu``."""
    diff = take_slice(b, plane, index).astype(np.float32) - take_slice(a, plane, index).astype(np.float32)
    out = diverging_rgb(diff, limit_hu).astype(np.uint8)
    return _display_aspect(out, plane, spacing)


def volume_facts(hu: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, Any]:
    """Shape, spacing, extent and HU statistics for a facts table (samples big volumes)."""
    sample = hu[:: max(1, hu.shape[0] // 64)]
    return {
        "frames x height x width": " x ".join(str(s) for s in hu.shape),
        "spacing z, y, x (mm)": ", ".join(f"{s:.3g}" for s in spacing),
        "extent z, y, x (mm)": ", ".join(f"{n * s:.0f}" for n, s in zip(hu.shape, spacing)),
        "HU min / max": f"{int(hu.min())} / {int(hu.max())}",
        "HU mean (sampled)": f"{float(sample.mean()):.0f}",
        "size in memory (MB)": f"{hu.nbytes / 2**20:.0f}",
    }


def nearest_rate(points: pd.DataFrame, method: str, bpp: float) -> pd.Series | None:
    """The point of ``method`` whose rate is nearest to ``bpp`` (in log rate); None if it has none."""
    rows = points[(points["method"] == method) & (points["bpp"] > 0)]
    if rows.empty or not bpp or bpp <= 0:
        return None
    distance = (np.log(rows["bpp"].astype(float)) - np.log(float(bpp))).abs()
    return rows.loc[distance.idxmin()]


def per_frame_accuracy(reference: np.ndarray, decoded_mask: np.ndarray) -> np.ndarray:
    """Vessel IoU of each frame (:func:`dmic_core.metrics.task.per_frame_scores`: 1.0 where neither
    mask has vessel, the metrics' empty-mask convention)."""
    from dmic_core.metrics.task import per_frame_scores

    return per_frame_scores(decoded_mask, reference)["vessel_iou"]


def zoom_crop(rgb: np.ndarray, zoom: float, center: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """The ``1/zoom`` part of an image around ``center`` (fractions of height, width), unscaled."""
    if zoom <= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    ch, cw = max(1, int(round(h / zoom))), max(1, int(round(w / zoom)))
    top = int(np.clip(round(center[0] * h - ch / 2), 0, h - ch))
    left = int(np.clip(round(center[1] * w - cw / 2), 0, w - cw))
    return rgb[top:top + ch, left:left + cw]


def qp_offset_map(qp_map: np.ndarray, frame_qps: Sequence[float] | None) -> np.ndarray:
    """Per-CTU QP offsets from an absolute QP map: minus each frame's QP (or its median CTU QP)."""
    qp_map = np.asarray(qp_map, dtype=np.float32)
    if frame_qps is not None and len(frame_qps) == qp_map.shape[0]:
        base = np.asarray(frame_qps, dtype=np.float32)[:, None, None]
    else:
        base = np.median(qp_map.reshape(qp_map.shape[0], -1), axis=1)[:, None, None]
    return qp_map - base
