"""Compare: original, DMIC and HEVC at the nearest matching rate, one synced slider, differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dmic_core.render import (PLANES, WINDOW_PRESETS, Window, difference_rgb, nearest_rate, per_frame_accuracy,
                              plane_length, qp_offset_map, render_slice, zoom_crop)
from pages._common import init_state, job_points, load_label_cached, load_volume_cached, pick_job, show_input_error

K = "cmpr_"


@st.cache_data(max_entries=64, show_spinner=False)
def _result(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def result_json(out_dir: str) -> dict:
    path = Path(out_dir) / "result.json"
    return _result(str(path), path.stat().st_mtime)


@st.cache_resource(max_entries=8, show_spinner=False)
def _qp_map(path: str, mtime: float) -> np.ndarray | None:
    return np.load(path) if Path(path).is_file() else None


def qp_map_of(out_dir: str) -> np.ndarray | None:
    path = Path(out_dir) / "qp_map.npy"
    return _qp_map(str(path), path.stat().st_mtime if path.is_file() else 0.0)


@st.cache_resource(max_entries=8, show_spinner=False)
def _decoded_mask(recon: str, segmenter: str, label: str | None, image: str) -> np.ndarray:
    from dmic_core.segmentation import load_segmenter

    volume = load_volume_cached(recon)
    seg = load_segmenter(segmenter, label=load_label_cached(label, image) if segmenter == "gt" else None)
    return seg.segment(volume)


def page() -> None:
    init_state()
    st.title("Compare")
    job = pick_job(K + "job")
    points = job_points(job["id"])
    others = points[points["method"] != "hevc"]
    anchors = points[points["method"] == "hevc"]
    if others.empty or anchors.empty:
        st.info("Comparison needs at least one HEVC point and one point of another method in the job.")
        st.stop()
    options = list(others.index)
    chosen = st.selectbox("Point to compare", options, key=K + "point",
                          format_func=lambda i: f"{others.loc[i, 'method']} {others.loc[i, 'setting']:g} — "
                                                f"{others.loc[i, 'bpp']:.4f} bpp, mIoU {others.loc[i, 'miou']:.4f}")
    ours = others.loc[chosen]
    hevc = nearest_rate(points, "hevc", float(ours["bpp"]))
    st.caption(f"Nearest HEVC rate: base QP {hevc['setting']:g} at {hevc['bpp']:.4f} bpp "
               f"({100 * (hevc['bpp'] / ours['bpp'] - 1):+.1f}% rate), mIoU {hevc['miou']:.4f} vs {ours['miou']:.4f}")
    params = job["params"]
    try:
        original = load_volume_cached(params["image"])
        ours_vol = load_volume_cached(Path(ours["out_dir"]) / "recon.nii.gz")
        hevc_vol = load_volume_cached(Path(hevc["out_dir"]) / "recon.nii.gz")
    except Exception as exc:  # noqa: BLE001 - files removed or unreadable
        show_input_error(exc, "job outputs")
        st.stop()
    ours_res = result_json(ours["out_dir"])

    c1, c2, c3, c4, c5 = st.columns(5)
    plane = c1.selectbox("View", PLANES, key=K + "plane")
    preset = c2.selectbox("Window", list(WINDOW_PRESETS), key=K + "window")
    zoom = c3.selectbox("Zoom", [1, 2, 4], key=K + "zoom", format_func=lambda z: f"{z}×")
    limit = c4.slider("Difference scale (± HU)", 10, 400, 100, 10, key=K + "limit")
    qp_alpha = c5.slider("QP map opacity", 0.0, 1.0, 0.35, 0.05, key=K + "qp_alpha")
    n = plane_length(original.shape, plane)
    index = st.slider("Slice (synced)", 0, n - 1, n // 2, key=K + f"idx_{plane}")
    if zoom > 1:
        z1, z2 = st.columns(2)
        cy = z1.slider("Zoom centre: vertical", 0.0, 1.0, 0.5, 0.05, key=K + "cy")
        cx = z2.slider("Zoom centre: horizontal", 0.0, 1.0, 0.5, 0.05, key=K + "cx")
    else:
        cx = cy = 0.5
    window = Window(*WINDOW_PRESETS[preset])
    qp_map = qp_map_of(ours["out_dir"])
    offsets = None if qp_map is None else qp_offset_map(qp_map, ours_res.get("paper_frame_qps"))

    def show(col, rgb, caption):
        col.image(zoom_crop(rgb, zoom, (cy, cx)), caption=caption, width="stretch")

    row = st.columns(3)
    show(row[0], render_slice(original.hu, plane, index, window, spacing=original.spacing), "original")
    show(row[1], render_slice(ours_vol.hu, plane, index, window, spacing=original.spacing, ctu_map=offsets,
                              ctu_alpha=qp_alpha if offsets is not None else 0.0, ctu_limit=10),
         f"{ours['method']} {ours['setting']:g} ({ours['bpp']:.4f} bpp) · QP offsets overlaid")
    show(row[2], render_slice(hevc_vol.hu, plane, index, window, spacing=original.spacing),
         f"HEVC QP {hevc['setting']:g} ({hevc['bpp']:.4f} bpp)")
    row = st.columns(3)
    row[0].caption("Differences (decoded − original), blue negative, red positive")
    show(row[1], difference_rgb(original.hu, ours_vol.hu, plane, index, limit_hu=limit, spacing=original.spacing),
         f"{ours['method']} − original (±{limit} HU)")
    show(row[2], difference_rgb(original.hu, hevc_vol.hu, plane, index, limit_hu=limit, spacing=original.spacing),
         f"HEVC − original (±{limit} HU)")

    st.subheader("Per slice")
    hevc_res = result_json(hevc["out_dir"])
    fig = go.Figure()
    for res, name in ((ours_res, f"{ours['method']} {ours['setting']:g}"), (hevc_res, f"HEVC {hevc['setting']:g}")):
        bits = (res.get("summary") or {}).get("bits_per_frame")
        if bits:
            fig.add_trace(go.Scatter(y=bits, mode="lines", name=name))
    fig.update_layout(xaxis_title="axial slice", yaxis_title="bits", height=300, template="plotly_white",
                      margin=dict(t=30, b=30))
    st.plotly_chart(fig, key=K + "bits", width="stretch")
    if st.toggle("Per-slice vessel IoU (segments both decoded volumes)", key=K + "acc"):
        segmenter = params.get("segmenter", "builtin")
        try:
            with st.spinner("Segmenting the decoded volumes…"):
                reference = (load_label_cached(params["label"], params["image"]) if params.get("label")
                             else _decoded_mask(params["image"], segmenter, None, params["image"]))
                acc = go.Figure()
                for out_dir, name in ((ours["out_dir"], ours["method"]), (hevc["out_dir"], "HEVC")):
                    mask = _decoded_mask(str(Path(out_dir) / "recon.nii.gz"), segmenter, params.get("label"),
                                         params["image"])
                    acc.add_trace(go.Scatter(y=per_frame_accuracy(reference, mask), mode="lines", name=name))
            acc.update_layout(xaxis_title="axial slice", yaxis_title="vessel IoU", height=300,
                              template="plotly_white", margin=dict(t=30, b=30))
            st.plotly_chart(acc, key=K + "accfig", width="stretch")
        except Exception as exc:  # noqa: BLE001
            show_input_error(exc, "segmentation")


page()
