"""Compare: original, a method's point and HEVC at the same rate, one synced slider, differences
and the QP offsets with colour bars, a cursor readout of HU and mm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dmic_core.app_actions import job_warnings, point_label, read_point_record
from dmic_core.evaluation.explain import match_at_rate
from dmic_core.render import (DIFF_COLORSCALE, DQP_COLORSCALE, PLANES, WINDOW_PRESETS, ctu_offsets_slice,
                              difference_limit, heatmap_figure, per_frame_accuracy, plane_length, qp_offset_map,
                              slice_position_mm, take_slice)
from pages._common import init_state, job_points, load_label_cached, load_volume_cached, pick_job, show_input_error

K = "cmpr_"


@st.cache_resource(max_entries=8, show_spinner=False)
def _qp_map(path: str, mtime: float) -> np.ndarray | None:
    return np.load(path) if Path(path).is_file() else None


def qp_map_of(out_dir: str) -> np.ndarray | None:
    path = Path(out_dir) / "qp_map.npy"
    return _qp_map(str(path), path.stat().st_mtime if path.is_file() else 0.0)


@st.cache_resource(max_entries=4, show_spinner=False)
def _original(image: str, slices: tuple[int, int] | None):
    volume = load_volume_cached(image)
    return volume.slab(*slices) if slices else volume


@st.cache_resource(max_entries=8, show_spinner=False)
def _decoded_mask(recon: str, segmenter: str, label: str | None, image: str,
                  slices: tuple[int, int] | None) -> np.ndarray:
    from dmic_core.segmentation import load_segmenter

    reference = None
    if segmenter == "gt":  # jobs of the CLI or older app versions: the label stands in for a model
        reference = load_label_cached(label, image)
        reference = reference[slices[0]:slices[1]] if slices else reference
    return load_segmenter(segmenter, label=reference).segment(load_volume_cached(recon))


@st.cache_data(max_entries=16, show_spinner=False)
def _limit(image: str, slices: tuple[int, int] | None, recon: str) -> float:
    return difference_limit(_original(image, slices).hu, load_volume_cached(recon).hu)


def _fmt(value, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else format(value, fmt)


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
    for warning in job_warnings(points, job["params"].get("segmenter")):
        st.warning(warning, icon=":material/warning:")
    options = list(others.index)
    chosen = st.selectbox("Point to compare", options, key=K + "point",
                          format_func=lambda i: f"{point_label(others.loc[i, 'method'], others.loc[i, 'setting'])} — "
                                                f"{others.loc[i, 'bpp']:.4f} bits/voxel, vessel IoU "
                                                f"{others.loc[i, 'vessel_iou']:.3f}")
    ours = others.loc[chosen]
    match = match_at_rate(points, "hevc", float(ours["bpp"]))
    hevc = match["nearest"]
    ours_name = point_label(ours["method"], ours["setting"])
    hevc_name = point_label("hevc", hevc["setting"])
    st.markdown("**At the same rate** ({:.4f} bits/voxel)".format(float(ours["bpp"])))
    rows = [{"": ours_name, "rate (bits/voxel)": _fmt(float(ours["bpp"]), ".4f"),
             "vessel IoU ↑": _fmt(ours["vessel_iou"], ".3f"), "Dice ↑": _fmt(ours["dice"], ".3f"),
             "mIoU ↑": _fmt(ours["miou"], ".4f"), "PSNR (dB) ↑": _fmt(ours["psnr_hu"], ".2f"),
             "vessel |ΔHU| mean ↓": _fmt(ours["hu_err_mean"], ".1f"), "vessel |ΔHU| max ↓": _fmt(ours["hu_err_max"], ".0f")}]
    hevc_row_name = ("HEVC interpolated at this rate" if match["interpolated"]
                     else f"HEVC nearest point ({hevc_name})")
    rows.append({"": hevc_row_name, "rate (bits/voxel)": _fmt(match["bpp"], ".4f"),
                 "vessel IoU ↑": _fmt(match["vessel_iou"], ".3f"), "Dice ↑": _fmt(match["dice"], ".3f"),
                 "mIoU ↑": _fmt(match["miou"], ".4f"), "PSNR (dB) ↑": _fmt(match["psnr_hu"], ".2f"),
                 "vessel |ΔHU| mean ↓": _fmt(match["hu_err_mean"], ".1f"),
                 "vessel |ΔHU| max ↓": _fmt(None if match["interpolated"] else hevc["hu_err_max"], ".0f")})
    st.dataframe(rows, hide_index=True, key=K + "table")
    if match["far"]:
        st.warning(f"No HEVC point reaches this rate: the nearest, {hevc_name}, is "
                   f"{match['rate_diff_pct']:+.0f}% in rate, so the images below do not compare equal rates. "
                   "Add base QPs around this rate on **Compress**.", icon=":material/warning:")
    elif match["interpolated"]:
        st.caption(f"HEVC numbers interpolated (log rate) between its neighbouring points; the images show its "
                   f"nearest point, {hevc_name} ({100 * (float(hevc['bpp']) / float(ours['bpp']) - 1):+.1f}% rate).")
    params = job["params"]
    slices = tuple(params["slices"]) if params.get("slices") else None
    try:
        original = _original(params["image"], slices)
        ours_vol = load_volume_cached(Path(ours["out_dir"]) / "recon.nii.gz")
        hevc_vol = load_volume_cached(Path(hevc["out_dir"]) / "recon.nii.gz")
    except Exception as exc:  # noqa: BLE001 - files removed or unreadable
        show_input_error(exc, "job outputs")
        st.stop()
    ours_res = read_point_record(ours["out_dir"])
    suggested = _limit(params["image"], slices, str(Path(hevc["out_dir"]) / "recon.nii.gz"))

    c1, c2, c3 = st.columns(3)
    plane = c1.selectbox("View", PLANES, key=K + "plane")
    preset = c2.selectbox("Window", list(WINDOW_PRESETS), key=K + "window")
    limit = c3.slider("Difference scale (± HU)", 5, 400, int(suggested), 5, key=K + "limit",
                      help=f"Default {suggested:g} HU: the 99th percentile of HEVC's coding error in the body, "
                           "so coding noise is visible without saturating")
    n = plane_length(original.shape, plane)
    number = st.slider(f"{plane.capitalize()} slice (synced, 1–{n})", 1, n, n // 2 + 1, key=K + f"idx_{plane}")
    index = number - 1
    st.caption(f"{plane} slice {number} of {n}, {slice_position_mm(plane, index, original.spacing):.1f} mm from the "
               "first; hover an image for HU and position (mm from its top-left corner). Letters: A anterior, "
               "P posterior, R right, L left, S superior, I inferior.")
    level, width = WINDOW_PRESETS[preset]
    lo, hi = level - width / 2, level + width / 2
    spacing = original.spacing

    def view(col, hu, title, key):
        fig = heatmap_figure(take_slice(hu, plane, index), plane, spacing, zmin=lo, zmax=hi, colorscale="gray",
                             colorbar=None, title=title)
        col.plotly_chart(fig, key=K + key, width="stretch")

    row = st.columns(3)
    view(row[0], original.hu, "original", "v_orig")
    view(row[1], ours_vol.hu, f"{ours_name} · {float(ours['bpp']):.4f} bits/voxel", "v_ours")
    view(row[2], hevc_vol.hu, f"{hevc_name} · {float(hevc['bpp']):.4f} bits/voxel", "v_hevc")
    row = st.columns(3)
    qp_map = qp_map_of(ours["out_dir"])
    offsets = None if qp_map is None else qp_offset_map(qp_map, ours_res.get("paper_frame_qps"))
    if offsets is not None and np.any(offsets != 0):
        bound = float(max(1.0, np.abs(offsets).max()))
        dqp = heatmap_figure(ctu_offsets_slice(offsets, original.shape, plane, index), plane, spacing, zmin=-bound,
                             zmax=bound, colorscale=DQP_COLORSCALE, colorbar="ΔQP", unit="ΔQP",
                             title=f"{ours_name}: QP offset per 64×64 block (purple finer, orange coarser)")
        row[0].plotly_chart(dqp, key=K + "dqp", width="stretch")
    else:
        row[0].caption(f"{ours_name} sets no per-block QP offsets (one QP per slice).")
    for col, vol, name, key in ((row[1], ours_vol, ours_name, "d_ours"), (row[2], hevc_vol, hevc_name, "d_hevc")):
        diff = take_slice(vol.hu, plane, index).astype(np.float32) - take_slice(original.hu, plane, index)
        fig = heatmap_figure(diff, plane, spacing, zmin=-limit, zmax=limit, colorscale=DIFF_COLORSCALE,
                             colorbar="ΔHU", unit="HU", title=f"{name} − original (±{limit} HU)")
        col.plotly_chart(fig, key=K + key, width="stretch")

    st.subheader("Per slice")
    hevc_res = read_point_record(hevc["out_dir"])
    fig = go.Figure()
    for res, name in ((ours_res, ours_name), (hevc_res, hevc_name)):
        bits = (res.get("summary") or {}).get("bits_per_frame")
        if bits:
            fig.add_trace(go.Scatter(x=np.arange(1, len(bits) + 1), y=np.asarray(bits) / 1000.0, mode="lines",
                                     name=name))
    fig.update_layout(xaxis_title="axial slice", yaxis_title="kbit", height=300, template="plotly_white",
                      margin=dict(t=30, b=30))
    st.plotly_chart(fig, key=K + "bits", width="stretch")
    if st.toggle("Per-slice vessel IoU (segments both decoded volumes)", key=K + "acc"):
        segmenter = params.get("segmenter", "builtin")
        try:
            with st.spinner("Segmenting the decoded volumes…"):
                if params.get("label"):
                    reference = load_label_cached(params["label"], params["image"])
                    reference = reference[slices[0]:slices[1]] if slices else reference
                else:
                    reference = _decoded_mask(params["image"], segmenter, None, params["image"], None)
                    reference = reference[slices[0]:slices[1]] if slices else reference
                acc = go.Figure()
                for out_dir, name in ((ours["out_dir"], ours_name), (hevc["out_dir"], hevc_name)):
                    mask = _decoded_mask(str(Path(out_dir) / "recon.nii.gz"), segmenter, params.get("label"),
                                         params["image"], slices)
                    values = per_frame_accuracy(reference, mask)
                    acc.add_trace(go.Scatter(x=np.arange(1, len(values) + 1), y=values, mode="lines", name=name))
            acc.update_layout(xaxis_title="axial slice", yaxis_title="vessel IoU", yaxis_range=[0, 1.05], height=300,
                              template="plotly_white", margin=dict(t=30, b=30))
            st.plotly_chart(acc, key=K + "accfig", width="stretch")
        except Exception as exc:  # noqa: BLE001
            show_input_error(exc, "segmentation")


page()
