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

#: Vessel-mask colour: green, apart from the blue-white-red CTU QP tint and its yellow grid.
MASK_RGB = np.array([40, 220, 90], dtype=np.float32)


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
        mask: vessel mask on the same grid, blended in green (:data:`MASK_RGB`).
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


# --- orientation, positions and plotly views with colour bars and a cursor readout ------------------

#: Edge letters (top, bottom, left, right) of each display plane, radiological convention of the
#: canonical LPS frames: axial anterior up and the patient's right on the left; coronal and sagittal
#: superior up.
ORIENTATION = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}


def orientation_letters(plane: str) -> dict[str, str]:
    """``{"top", "bottom", "left", "right"}`` letters of a display plane."""
    top, bottom, left, right = ORIENTATION[_check_plane(plane)]
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def display_spacing(plane: str, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """(row mm, column mm) of a display slice of ``plane``."""
    z, y, x = spacing
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[_check_plane(plane)]


def slice_position_mm(plane: str, index: int, spacing: tuple[float, float, float]) -> float:
    """Distance in mm of slice ``index`` (0-based) from the volume's first slice of that plane."""
    axis = PLANES.index(_check_plane(plane))
    return float(index) * float(spacing[axis])


def difference_limit(original: np.ndarray, decoded: np.ndarray, percentile: float = 99.0) -> float:
    """A difference-map scale suited to the image's coding noise: the ``percentile`` of |decoded -
    original| inside the body (original above -500 HU), rounded up to 5 HU, within 5..400 HU."""
    a = np.asarray(original)
    b = np.asarray(decoded)
    step = max(1, a.shape[0] // 16)
    a, b = a[::step], b[::step]
    body = a > -500
    diff = np.abs(b.astype(np.float32) - a.astype(np.float32))[body] if body.any() else np.zeros(1)
    value = float(np.percentile(diff, percentile)) if diff.size else 5.0
    return float(np.clip(5.0 * np.ceil(value / 5.0), 5.0, 400.0))


def heatmap_figure(values: np.ndarray, plane: str, spacing: tuple[float, float, float], *, zmin: float,
                   zmax: float, colorscale: Any = "gray", colorbar: str | None = None, unit: str = "HU",
                   title: str = "", max_pixels: int = 320, height: int = 380, hover_note: str = "") -> Any:
    """A display slice (``take_slice`` orientation) as a plotly heatmap: axes in mm from the slice's
    corner at the true aspect, orientation letters on the four edges, a hover readout of the value
    (``unit``) and the position in mm (plus ``hover_note``, e.g. the slice's own position), and a
    colour bar titled ``colorbar`` (none when None).

    Large slices are subsampled to at most ``max_pixels`` per side (the readout then reads the
    sampled voxel)."""
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=np.float32)
    row_mm, col_mm = display_spacing(plane, spacing)
    step = max(1, int(np.ceil(max(values.shape) / max_pixels)))
    shown = values[::step, ::step]
    ys = np.arange(shown.shape[0]) * step * row_mm
    xs = np.arange(shown.shape[1]) * step * col_mm
    fig = go.Figure(go.Heatmap(
        z=shown, x=xs, y=ys, zmin=zmin, zmax=zmax, colorscale=colorscale, showscale=colorbar is not None,
        colorbar=dict(title=dict(text=colorbar or "", side="right"), thickness=12, len=0.9) if colorbar else None,
        hovertemplate=f"%{{z:.0f}} {unit}<br>x %{{x:.1f}} mm, y %{{y:.1f}} mm"
                      + (f"<br>{hover_note}" if hover_note else "") + "<extra></extra>"))
    letters = orientation_letters(plane)
    for key, (x, y, xa, ya) in {"top": (0.5, 1.0, "center", "bottom"), "bottom": (0.5, 0.0, "center", "top"),
                                "left": (0.0, 0.5, "right", "middle"), "right": (1.0, 0.5, "left", "middle")}.items():
        fig.add_annotation(text=f"<b>{letters[key]}</b>", x=x, y=y, xref="x domain", yref="y domain",
                           xanchor=xa, yanchor=ya, showarrow=False, font=dict(size=14, color="#d4a017"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", scaleratio=1.0, showgrid=False, title_text="mm",
                     zeroline=False)
    fig.update_xaxes(showgrid=False, title_text="mm", zeroline=False)
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=height, margin=dict(l=40, r=10, t=40, b=30),
                      template="plotly_white")
    return fig


def ctu_offsets_slice(offsets: np.ndarray, shape: tuple[int, int, int], plane: str, index: int) -> np.ndarray:
    """The per-CTU QP offsets spread over one display slice (:func:`ctu_values`), as floats."""
    return ctu_values(np.asarray(offsets, dtype=np.float32), shape, plane, index)


def window_colorscale() -> list[list[Any]]:
    return [[0.0, "rgb(0,0,0)"], [1.0, "rgb(255,255,255)"]]


#: Colour scale of HU differences (blue negative, white 0, red positive) and of QP offsets (purple
#: finer, white 0, orange coarser) -- distinct from each other and from the vessel mask's green.
DIFF_COLORSCALE = [[0.0, "rgb(30,70,200)"], [0.5, "rgb(255,255,255)"], [1.0, "rgb(200,30,30)"]]
DQP_COLORSCALE = [[0.0, "rgb(94,60,153)"], [0.5, "rgb(247,247,247)"], [1.0, "rgb(230,97,1)"]]
