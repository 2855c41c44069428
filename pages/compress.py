"""Compress: pick methods, codec and rate points; run them as a background job; watch, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.app_actions import (PROTECT_CHOICES, SLAB_CHOICES, codec_choices, resolve_slab,
                                   start_compress_job, task_status_text)
from dmic_core.defaults import (APP_LAMBDAS, APP_QPS, APP_QUICK_SLICES, BIT_DEPTHS, LAMBDA_GRID, QP_GRID,
                                default_window)
from dmic_core.segmentation.config import NAMED_SUMMARIES
from pages._common import (codec_probe, fmt_seconds, init_state, load_volume_cached, method_probe, my_jobs,
                           require_volume, runner_running, segmenter_probe, show_input_error, start_runner, store,
                           workers, workspace)

K = "cmp_"
SEGMENTER_NAMES = {**{name: f"{name} ({summary})" for name, summary in NAMED_SUMMARIES.items()},
                   "gt": "gt (label only: no accuracy, rate/HU check)"}


def agent_choices() -> dict[str, str]:
    """Label -> checkpoint: the agents tuned on the Fine-tune page (if chosen there), then the shipped ones."""
    from dmic_core.assets import shipped_agents
    from dmic_core.finetune.background import active_checkpoint

    choices = {}
    active = active_checkpoint(workspace())
    if active:
        choices[f"tuned on the Fine-tune page ({Path(active).parent.name})"] = active
    for name, path, text in shipped_agents():
        choices[f"{name}: {text}"] = str(path)
    return choices


def settings(current: dict) -> None:
    try:
        n_frames = load_volume_cached(current["image"]).n_frames
    except Exception as exc:  # noqa: BLE001
        show_input_error(exc, "volume")
        return
    methods_ok = method_probe()
    codecs = codec_probe()
    segs = segmenter_probe()
    usable_methods = [m for m, r in methods_ok.items() if r is None]
    with st.form(K + "form"):
        c1, c2 = st.columns(2)
        default_methods = [m for m in ("dmic", "hevc") if m in usable_methods] or usable_methods[:1]
        methods = c1.multiselect("Methods", usable_methods, default=default_methods, key=K + "methods",
                                 help="DMIC: the RL agents; hevc: constant-QP HEVC (HM low-delay-P QPs); "
                                      f"{'/'.join(HANDCRAFTED)}: hand-crafted CTU maps; ratecontrol: x265 "
                                      "rate control at the HEVC anchor's rate")
        codec_labels = codec_choices([c for c, r in codecs.items() if r is None] or ["x265"])
        codec = c2.selectbox("Codec", list(codec_labels), format_func=codec_labels.get, key=K + "codec",
                             help="HM is preselected when it is built (scripts/setup.sh --with-hm)")
        c3, c4 = st.columns(2)
        qps = c3.multiselect("Base QPs (HEVC, hand-crafted QP_I, rate-control anchors)", list(QP_GRID),
                             default=list(APP_QPS), key=K + "qps")
        lambdas = c4.multiselect("DMIC λ (weight of accuracy against bits)", list(LAMBDA_GRID),
                                 default=list(APP_LAMBDAS), key=K + "lambdas",
                                 help="DMIC's agents minimise bits + λ × accuracy loss. A higher λ makes "
                                      "accuracy dearer, so the agents spend more bits: higher λ = higher rate "
                                      "and better vessels; λ 0 = fewest bits. λ plays the part the base QP "
                                      "plays for HEVC, in the opposite direction.")
        c5, c6 = st.columns(2)
        bit_depth = c5.selectbox("Bit depth", sorted(BIT_DEPTHS, reverse=True), key=K + "bit_depth",
                                 help="HU window coded: " + "; ".join(
                                     f"{b} bits {default_window(b)[0]:g}..{default_window(b)[1] - 1:g}"
                                     for b in sorted(BIT_DEPTHS, reverse=True))
                                      + ". A paper QP means the same HU step at every depth")
        seg_names = [s for s, r in segs.items() if r is None and (s != "gt" or current.get("label"))]
        if not seg_names:
            st.warning("No segmenter can score this volume: the built-in model is missing and there is no label.")
        segmenter = c6.selectbox("Segmenter for vessel accuracy", seg_names or ["builtin"], key=K + "segmenter",
                                 format_func=SEGMENTER_NAMES.get,
                                 help="The model segments each decoded volume; it is scored against your "
                                      "uploaded label, or without one against its own segmentation of the "
                                      "original. " + "; ".join(f"{n}: {t}" for n, t in NAMED_SUMMARIES.items())
                                      + ". gt: no model, the uploaded label stands in "
                                      "for the segmentation, so accuracy is 1.0 at every rate by construction: "
                                      "a quick rate/HU-error check, not an accuracy.")
        c7, c8 = st.columns(2)
        slab_names = {"quick": f"quick run: the middle {APP_QUICK_SLICES} slices", "all": f"all {n_frames} slices",
                      "custom": "custom range"}
        slab = c7.selectbox("Slices", list(SLAB_CHOICES), format_func=slab_names.get, key=K + "slab",
                            help="Code a slab of axial slices instead of the whole volume (the CLI's --slices)")
        custom = c8.text_input("Custom range (first-last, as the viewer numbers slices)", value="",
                               placeholder=f"e.g. 1-{min(n_frames, 32)}", key=K + "slab_range")
        protect = "model"
        if current.get("label"):
            protect = st.radio("Region to protect (where the methods keep quality)", list(PROTECT_CHOICES),
                               format_func=PROTECT_CHOICES.get, horizontal=True, key=K + "protect",
                               help="The built-in model's segmentation of the original, or your uploaded "
                                    "label/mask: choose the label when the Upload page warns that the "
                                    "model's mask is unlikely to be right on this scan.")
        choices = agent_choices()
        agents_label = st.selectbox("DMIC agents", list(choices) or ["(none)"], key=K + "agents",
                                    help="which trained agents choose the QPs; results of each in "
                                         "docs/results/ and the model cards in assets/")
        submitted = st.form_submit_button("Start job", type="primary", icon=":material/play_arrow:")
    unavailable = {m: r for m, r in methods_ok.items() if r is not None}
    if unavailable:
        st.caption("Not available yet: " + "; ".join(f"{m} ({r})" for m, r in unavailable.items()))
    if codecs.get("hm"):
        st.caption(f"HM: {codecs['hm']}")
    if not submitted:
        return
    if not methods or (not qps and any(m != "dmic" for m in methods)) or ("dmic" in methods and not lambdas):
        st.error("Choose at least one method and its rate points.")
        return
    try:
        slices = resolve_slab(slab, n_frames, custom)
    except Exception as exc:  # noqa: BLE001 - a bad range is one line in the page
        show_input_error(exc, "slice range")
        return
    setup = {"codec": codec, "bit_depth": int(bit_depth), "window": list(default_window(int(bit_depth)))}
    job_id, n_tasks = start_compress_job(store(), st.session_state.ws_id, workspace(), current, methods, qps,
                                         lambdas, setup, segmenter, choices.get(agents_label), slices=slices,
                                         n_frames=n_frames, protect=protect)
    st.session_state.last_job = job_id
    st.toast(f"Job started: {n_tasks} rate points")


def job_card(job: dict) -> None:
    progress = store().job_progress(job["id"], workers=workers())
    counts = progress["counts"]
    active = counts["queued"] + counts["running"] > 0
    total = progress["total"] or 1
    with st.expander(f"{job['title']} — {progress['status']}", expanded=active):
        st.caption(f"Started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job['created_at']))}")
        # the bar shows finished work: cancelled and failed tasks are not "done"
        fraction = progress["fraction"] if active else counts["done"] / total
        parts = [f"{counts['done']}/{progress['total']} done"]
        parts += [f"{counts[k]} {k}" for k in ("running", "queued", "failed", "cancelled") if counts[k]]
        st.progress(min(1.0, fraction), text=" · ".join(parts)
                    + (f" · ETA {fmt_seconds(progress['eta_seconds'])}" if active else ""))
        for task in store().tasks(job["id"]):
            text, frac = task_status_text(task)
            if frac is not None:
                st.progress(frac, text=text)
            else:
                st.caption(text)
        b1, b2, b3 = st.columns(3)
        if active and b1.button("Cancel", key=f"{K}cancel_{job['id']}", icon=":material/cancel:"):
            store().cancel_job(job["id"])
            st.rerun()
        redo = " and ".join(k for k in ("failed", "cancelled") if counts[k])
        if not active and redo and b2.button(f"Run {redo} points again", key=f"{K}retry_{job['id']}"):
            store().retry_failed(job["id"])
            start_runner()
            st.rerun()
        if not active and b3.button("Remove from list", key=f"{K}delete_{job['id']}"):
            store().delete_job(job["id"])
            st.rerun()


def jobs_section() -> None:
    jobs = my_jobs()
    active = any(j["status"] in ("queued", "running") for j in jobs)
    if active and not runner_running():
        start_runner()  # e.g. after a machine restart: queued work resumes when the page is opened

    @st.fragment(run_every=1.0 if active else None)
    def live() -> None:
        current_jobs = my_jobs()
        if not current_jobs:
            st.caption("No jobs yet.")
            return
        for job in current_jobs:
            job_card(job)
        if any(j["status"] in ("queued", "running") for j in current_jobs) != active:
            st.rerun()

    live()


def page() -> None:
    init_state()
    st.title("Compress")
    current = require_volume()
    st.caption(f"Volume: **{current['name']}** · jobs run in the background (up to {workers()} at a time on this "
               "server) and survive page reloads and server restarts.")
    settings(current)
    st.subheader("Jobs")
    jobs_section()


page()
