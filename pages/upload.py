"""Upload & inspect: load a CT volume (+ label), three synced views, windows and overlays."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from dmic_core.app_actions import load_button_state
from dmic_core.render import (PLANES, WINDOW_PRESETS, Window, heatmap_figure, orientation_letters, plane_length,
                              render_slice, slice_position_mm, take_slice, volume_facts)
from dmic_core.segmentation.config import NAMED_SUMMARIES
from pages._common import (IMAGE_TYPES, _label, _model_mask, _mtime, _volume, init_state, load_label_cached,
                           load_volume_cached, mark_model_mask, model_mask, model_mask_ready, save_upload,
                           segmenter_probe, set_current, show_input_error)

K = "up_"  # widget key prefix of this page


@st.cache_resource(max_entries=8, show_spinner=False)
def _ctu_map(image: str, mtime: float, mask_src: str, kind: str, a: float, b: float) -> np.ndarray:
    """CTU QP-offset map of the current mask: two-level (fg a, bg b) or a hand-crafted shape."""
    mask = _mask(image, mtime, mask_src)
    if kind == "two-level":
        from dmic_core.maps import mask_ctu_dqp

        return mask_ctu_dqp(mask, int(a), int(b))
    from dmic_core.agents.handcrafted import handcrafted_offsets

    return handcrafted_offsets(mask, kind, strength=float(a))


@st.cache_data(max_entries=32, show_spinner=False)
def _plausibility(image: str, mtime: float, model: str) -> list[str]:
    """Warnings when the scan or a built-in model's mask is outside what the model was made for."""
    from dmic_core.segmentation.plausibility import assess_mask_plausibility

    return assess_mask_plausibility(load_volume_cached(image), _model_mask(image, mtime, model))


def _mask(image: str, mtime: float, mask_src: str) -> np.ndarray | None:
    if mask_src.startswith("label:"):
        path = mask_src[len("label:"):]
        return _label(path, image, (_mtime(path), mtime))
    if mask_src.startswith("model:"):
        return _model_mask(image, mtime, mask_src[len("model:"):])
    return None


@st.cache_data(max_entries=768, show_spinner=False)
def rendered(image: str, mtime: float, plane: str, index: int, level: float, width: float, mask_src: str,
             mask_alpha: float, ctu_key: tuple | None, ctu_alpha: float) -> np.ndarray:
    volume = _volume(image, mtime)
    mask = _mask(image, mtime, mask_src) if mask_alpha > 0 else None
    ctu = _ctu_map(image, mtime, mask_src, *ctu_key) if ctu_key and ctu_alpha > 0 else None
    return render_slice(volume.hu, plane, index, Window(level, width), spacing=volume.spacing, mask=mask,
                        mask_alpha=mask_alpha, ctu_map=ctu, ctu_alpha=ctu_alpha)


def _held(upload) -> tuple[str, str] | None:
    return None if upload is None else (upload.file_id, upload.name)


def _request_load() -> None:
    st.session_state[K + "load_requested"] = True


def upload_section(current: dict | None) -> dict | None:
    """The two uploaders and *Load*. No form: an uploader's value reaches the server only once its
    file is there in full, and Load is enabled only for a selection not loaded yet
    (:func:`dmic_core.app_actions.load_button_state`), so a click while a file is still on its way
    cannot load the file it replaces. Returns the tab's current volume after a load."""
    with st.container(border=True):
        c1, c2 = st.columns(2)
        image = c1.file_uploader("CT volume (NIfTI, DICOM series as .zip or one .dcm file, NRRD, MHA)", type=IMAGE_TYPES,
                                 key=K + "image")
        label = c2.file_uploader("Vessel label (optional, same grid)", type=IMAGE_TYPES, key=K + "label")
        held = (_held(image), _held(label))
        current_image = current["image"] if current else None
        enabled, _ = load_button_state(*held, st.session_state.get(K + "loaded"), current_image)
        error = None
        if st.session_state.pop(K + "load_requested", False) and enabled:  # Load's click (its callback ran first)
            error = _load(image, label)
            current = st.session_state.get("current")
            current_image = current["image"] if current else None
        enabled, hint = load_button_state(*held, st.session_state.get(K + "loaded"), current_image)
        b1, b2 = st.columns([1, 6], vertical_alignment="center")
        b1.button("Load", type="primary", disabled=not enabled, on_click=_request_load, key=K + "load")
        b2.caption(hint)
        if error:
            show_input_error(*error)
    return current


def _load(image, label) -> tuple | None:
    """Save and read the held uploads and make them the tab's current volume; the error to show otherwise."""
    started = time.perf_counter()
    image_path = None
    try:
        image_path = save_upload(image.getvalue(), image.name, "image")
        load_volume_cached(image_path)
    except Exception as exc:  # noqa: BLE001 - bad uploads are shown, never raised
        return exc, "volume", image_path, image.name
    label_path = None
    if label is not None:
        try:
            label_path = save_upload(label.getvalue(), label.name, "label")
            load_label_cached(label_path, image_path)
        except Exception as exc:  # noqa: BLE001
            return exc, "label", label_path, label.name
    set_current(image_path, label_path, image.name, None if label is None else label.name)
    st.session_state[K + "loaded"] = (image.file_id, None if label is None else label.file_id, str(image_path))
    st.session_state[K + "loaded_in"] = time.perf_counter() - started
    return None


def viewer(current: dict) -> None:
    image = current["image"]
    try:
        volume = load_volume_cached(image)
    except Exception as exc:  # noqa: BLE001
        show_input_error(exc, "volume")
        return
    mtime = _mtime(image)
    st.subheader(f"{current['name']}")
    controls, facts = st.columns([3, 2])
    with controls:
        c1, c2, c3 = st.columns(3)
        preset = c1.selectbox("Window", [*WINDOW_PRESETS, "custom"], key=K + "window")
        if preset == "custom":
            level = c2.number_input("Level (HU)", value=300.0, step=10.0, key=K + "level")
            width = c3.number_input("Width (HU)", value=900.0, min_value=1.0, step=10.0, key=K + "width")
        else:
            level, width = WINDOW_PRESETS[preset]
            c2.metric("Level", f"{level:.0f} HU")
            c3.metric("Width", f"{width:.0f} HU")
        m1, m2 = st.columns(2)
        sources = {"none": "none"}
        if current.get("label"):
            sources[f"label:{current['label']}"] = "uploaded label"
        models = {name: reason for name, reason in segmenter_probe().items() if name in NAMED_SUMMARIES}
        for name in models:
            if model_mask_ready(image, name):
                sources[f"model:{name}"] = f"model: {name}"
        mask_src = m1.selectbox("Vessel mask", list(sources), format_func=sources.get,
                                index=1 if len(sources) > 1 else 0, key=K + "mask_src")
        mask_alpha = m2.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key=K + "mask_alpha")
        runnable = [n for n, reason in models.items() if reason is None and f"model:{n}" not in sources]
        if runnable:
            s1, s2 = st.columns([2, 1])
            model = s1.selectbox("Vessel model", runnable, key=K + "seg_model",
                                 format_func=lambda n: f"{n} ({NAMED_SUMMARIES[n]})",
                                 help="The model whose mask to overlay: the one a Compress job protects and "
                                      "scores with is chosen there, so look at the same one here.")
            if s2.button("Segment vessels", key=K + "segment"):
                with st.spinner(f"Segmenting with {model}…"):
                    model_mask(image, model)
                mark_model_mask(image, model)
                st.rerun()
        elif not any(f"model:{n}" in sources for n in models):
            reasons = "; ".join(f"{n}: {r}" for n, r in models.items() if r)
            st.caption(f"Built-in segmenters unavailable: {reasons}")
        if mask_src.startswith("model:"):
            for warning in _plausibility(image, mtime, mask_src[len("model:"):]):
                st.warning(warning)
        ctu_key = None
        ctu_alpha = 0.0
        if mask_src != "none":
            g1, g2, g3, g4 = st.columns(4)
            from dmic_core.agents.handcrafted import HANDCRAFTED

            kinds = ["off", "two-level", *HANDCRAFTED]
            kind = g1.selectbox("CTU QP-offset map", kinds, key=K + "ctu_kind")
            if kind == "two-level":
                a = g2.number_input("Vessel CTUs ΔQP", -10, 10, 0, key=K + "fg")
                b = g3.number_input("Other CTUs ΔQP", -10, 25, 6, key=K + "bg")
            elif kind != "off":
                a = g2.slider("Strength", 0.0, 1.0, 1.0, 0.1, key=K + "strength")
                b = 0
            if kind != "off":
                ctu_alpha = g4.slider("Map opacity", 0.0, 1.0, 0.35, 0.05, key=K + "ctu_alpha")
                ctu_key = (kind, float(a), float(b))
                st.caption("Vessel mask: green. CTU colours: blue = finer quantisation (negative ΔQP), red = coarser; "
                           "yellow lines are 64×64 CTU borders.")
    with facts:
        rows = volume_facts(volume.hu, volume.spacing)
        rows["format"] = str(volume.source.get("format", "?"))
        if current.get("label"):
            rows["label"] = current.get("label_name") or "yes"
        st.table({"fact": list(rows), "value": [str(v) for v in rows.values()]})
        if st.session_state.get(K + "loaded_in"):
            st.caption(f"Loaded in {st.session_state[K + 'loaded_in']:.2f} s")

    @st.fragment
    def views() -> None:
        cols = st.columns(3)
        indices = {}
        for col, plane in zip(cols, PLANES):
            n = plane_length(volume.shape, plane)
            with col:
                # 1-based like the caption and the Compress page's slice ranges
                number = st.slider(f"{plane.capitalize()} slice", 1, n, n // 2 + 1, key=f"{K}{plane}_idx")
                index = indices[plane] = number - 1
                try:
                    rgb = rendered(image, mtime, plane, index, float(level), float(width), mask_src,
                                   float(mask_alpha), ctu_key, float(ctu_alpha))
                except Exception as exc:  # noqa: BLE001 - e.g. a map that cannot be built
                    show_input_error(exc, "overlay")
                    rgb = rendered(image, mtime, plane, index, float(level), float(width), "none", 0.0, None, 0.0)
                letters = orientation_letters(plane)
                st.image(rgb, caption=f"{plane} {number}/{n} · {slice_position_mm(plane, index, volume.spacing):.1f} mm"
                                      f" · top {letters['top']}, bottom {letters['bottom']}, left {letters['left']}, "
                                      f"right {letters['right']}", width="stretch", clamp=True)
        readout = st.selectbox("HU and mm under the cursor (interactive view)", [*PLANES, "off"], key=K + "readout",
                               help="Shows the chosen plane, at its slider's slice, as an interactive image: "
                                    "hover for HU and the position in mm")
        if readout != "off":
            index = indices[readout]
            where = (f"{readout} {index + 1}/{plane_length(volume.shape, readout)} at "
                     f"{slice_position_mm(readout, index, volume.spacing):.1f} mm")
            fig = heatmap_figure(take_slice(volume.hu, readout, index), readout, volume.spacing,
                                 zmin=float(level) - float(width) / 2, zmax=float(level) + float(width) / 2,
                                 colorbar="HU", title=f"{where} · hover for HU and mm", height=520, hover_note=where)
            st.plotly_chart(fig, key=K + "readout_fig", width="stretch")

    views()


def page() -> None:
    state = init_state()
    st.title("Upload & inspect")
    current = upload_section(st.session_state.get("current") or state["current"])
    if current is None:
        st.info("Upload a CT volume above, or run the example from **Home**.")
        return
    viewer(current)


page()
