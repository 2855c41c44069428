"""Fine-tune: few-shot tuning of the DMIC agents on labelled volumes (paper II-B).

Thin UI over :mod:`dmic_core.finetune`: the training runs in a detached background process
(:mod:`dmic_core.finetune.background`), the page only starts it, reads its status and training
log, cancels it (a file the process polls) and lets later jobs use its checkpoint.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from dmic_core.app_actions import allowed_data_folder, start_comparison_job, start_finetune_run
from pages._common import (current_volume, fmt_seconds, init_state, segmenter_probe, show_input_error, store,
                           workspace)

K = "ft_"


def ft_dir() -> Path:
    return workspace() / "finetune"


def runs() -> list[Path]:
    root = ft_dir() / "runs"
    if not root.is_dir():
        return []
    return sorted((p / "agents.pt" for p in root.iterdir() if (p / "agents.status.json").is_file()),
                  key=lambda p: p.parent.stat().st_mtime, reverse=True)


# --- data ------------------------------------------------------------------------------------------

def save_pairs(images, labels) -> Path:
    """Uploaded image/label files (matched by sorted name) as an ImageCAS-layout folder."""
    folder = ft_dir() / "data" / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    for i, (img, lab) in enumerate(zip(sorted(images, key=lambda f: f.name), sorted(labels, key=lambda f: f.name))):
        (folder / f"case{i:03d}.img.nii.gz").write_bytes(img.getvalue())
        (folder / f"case{i:03d}.label.nii.gz").write_bytes(lab.getvalue())
    return folder


def data_section() -> dict | None:
    source = st.radio("Labelled training data", ["Generated phantoms", "Upload labelled volumes", "Existing folder"],
                      horizontal=True, key=K + "source")
    if source == "Generated phantoms":
        c1, c2, c3 = st.columns(3)
        seed = c1.number_input("First seed", 7000, 10**6, 7000, key=K + "seed",
                               help="held-out seeds (the segmenter trained on 1000-3009, the agents on 5000+)")
        count = c2.number_input("Volumes", 2, 25, 4, key=K + "count", help="K for training, the rest test/validation")
        slices = c3.number_input("Slices per volume", 9, 300, 33, key=K + "slices")
        return {"kind": "phantoms", "seed": int(seed), "count": int(count), "slices": int(slices)}
    if source == "Upload labelled volumes":
        c1, c2 = st.columns(2)
        images = c1.file_uploader("CT volumes (NIfTI)", type=["nii", "gz"], accept_multiple_files=True, key=K + "img")
        labels = c2.file_uploader("Their coronary labels (same order by name)", type=["nii", "gz"],
                                  accept_multiple_files=True, key=K + "lab")
        if images and labels and len(images) != len(labels):
            st.error(f"{len(images)} volumes but {len(labels)} labels: upload one label per volume.")
            return None
        if images and len(images) < 2:
            st.warning("Upload at least 2 labelled volumes: K (1-5) to tune on and at least one more held out "
                       "to test the tuned agents.")
            return None
        return {"kind": "upload", "images": images, "labels": labels} if images else None
    path = st.text_input("Folder on the server (ImageCAS layout)", key=K + "folder",
                         help="{id}.img.nii.gz + {id}.label.nii.gz pairs, in the server's data folder "
                              "(a relative path is taken inside it)")
    if not path:
        return None
    try:
        folder = allowed_data_folder(path, workspace())
    except Exception as exc:  # noqa: BLE001 - one line, no server paths
        show_input_error(exc, "folder")
        return None
    return {"kind": "folder", "path": str(folder)}


def start_run(data: dict, strategy: str, shots: int, iterations: int, val_volumes: int = 0) -> None:
    if data["kind"] == "upload":
        data = {"kind": "folder", "path": str(save_pairs(data["images"], data["labels"]))}
    out = start_finetune_run(ft_dir(), data, strategy, shots, iterations, val_volumes)
    st.session_state[K + "last"] = str(out)
    st.toast(f"Fine-tuning started ({strategy}, {shots}-shot, {iterations} iterations)")


def settings_form() -> None:
    data = data_section()
    with st.form(K + "form"):
        from dmic_core.agents.strategies import DEFAULT_STRATEGY, STRATEGIES, STRATEGY_NAMES

        c1, c2, c3 = st.columns(3)
        strategy = c1.selectbox("Strategy", STRATEGY_NAMES, index=STRATEGY_NAMES.index(DEFAULT_STRATEGY),
                                key=K + "strategy",
                                help="; ".join(f"{s}: {STRATEGIES[s].summary}" for s in STRATEGY_NAMES))
        shots = c2.selectbox("Shots K", [1, 3, 5], key=K + "shots",
                             help="K labelled volumes to tune on (also the batch size); one more is held out")
        iterations = c3.number_input("Iterations", 1, 5000, 1000, step=100, key=K + "iters",
                                     help="paper: 1000 (1-shot: ~10-30 min on 2 cores incl. the surrogate caches)")
        val_volumes = st.number_input(
            "Validation volumes for model selection", 0, 10, 0, key=K + "val",
            help="0 keeps the last iteration (the paper's protocol). N > 0 scores the agents on N held-out "
                 "validation volumes every 100 iterations and keeps the best iteration (costs N more "
                 "surrogate caches, about 1 min each).")
        submitted = st.form_submit_button("Start fine-tuning", type="primary", icon=":material/play_arrow:")
    if submitted:
        if segmenter_probe().get("builtin"):
            st.error(f"The built-in segmenter is unavailable: {segmenter_probe()['builtin']}")
        elif data is None:
            st.error("Choose the labelled training data first.")
        elif data["kind"] == "phantoms" and data["count"] < shots + 1:
            st.error(f"{shots}-shot tuning needs at least {shots + 1} volumes (one held out for testing).")
        else:
            start_run(data, strategy, int(shots), int(iterations), int(val_volumes))


# --- runs ------------------------------------------------------------------------------------------

def curves(out: Path):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from dmic_core.finetune import read_history

    hist = [h for h in read_history(out) if "reward" in h]
    if not hist:
        return None
    it = [h["iteration"] for h in hist]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["reward (surrogate, training clips)", "losses"])
    fig.add_trace(go.Scatter(x=it, y=[h["reward"] for h in hist], name="reward"), row=1, col=1)
    greedy = [(h["iteration"], h["greedy_reward"]) for h in read_history(out) if "greedy_reward" in h]
    if greedy:
        fig.add_trace(go.Scatter(x=[g[0] for g in greedy], y=[g[1] for g in greedy], name="greedy reward",
                                 mode="lines+markers"), row=1, col=1)
    fig.add_trace(go.Scatter(x=it, y=[h["loss_frame"] for h in hist], name="frame-agent loss"), row=1, col=2)
    fig.add_trace(go.Scatter(x=it, y=[h["loss_ctu"] for h in hist], name="CTU-agent loss"), row=1, col=2)
    fig.update_xaxes(title_text="iteration")
    fig.update_layout(template="plotly_white", height=320, margin=dict(t=40, b=30),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def run_card(out: Path, active_ckpt: str | None) -> None:
    from dmic_core.finetune import FinetuneConfig, request_cancel
    from dmic_core.finetune.background import run_state, set_active_checkpoint, start

    status = run_state(out)
    cfg = status.get("config") or {}
    state = status.get("state", "?")
    what = f"{cfg['strategy']}, {cfg['shots']}-shot" if cfg.get("strategy") else "settings not recorded"
    title = f"{out.parent.name}: {what} — {state}"
    running = state in ("running", "starting")
    with st.expander(title, expanded=running or str(out) == st.session_state.get(K + "last")):
        done, total = status.get("done") or 0, status.get("total") or 1
        phase = status.get("phase", "")
        eta = status.get("eta_s")
        st.progress(min(1.0, done / total) if total else 0.0,
                    text=f"{phase}: {done}/{total}" + (f" · ETA {fmt_seconds(eta)}" if running and eta == eta and eta
                                                       else ""))
        if status.get("error"):
            st.error(status["error"])
        if status.get("note"):
            st.warning(status["note"])
        fig = curves(out)
        if fig is not None:
            st.plotly_chart(fig, width="stretch", key=K + "fig_" + out.parent.name)
        result = status.get("result") or {}
        if result:
            st.caption(f"trainable parameters {result.get('trainable_parameters', 0):,} of "
                       f"{result.get('total_parameters', 0):,}; train cases {result.get('split', {}).get('train')}; "
                       f"held-out test cases {result.get('split', {}).get('test')}")
        b1, b2, b3, b4 = st.columns(4)
        if running and b1.button("Cancel", key=K + "cancel_" + out.parent.name, icon=":material/cancel:"):
            request_cancel(out)
            st.toast("Cancelling: the run stops at its next iteration with a checkpoint")
        if state in ("cancelled", "stopped", "failed") and cfg and b2.button(
                "Resume", key=K + "resume_" + out.parent.name, icon=":material/replay:"):
            start(FinetuneConfig(**cfg), out, resume=True)
            st.rerun()
        if out.is_file() and state in ("done", "cancelled", "stopped"):
            is_active = active_ckpt == str(out)
            if b3.button("Use for later jobs" if not is_active else "In use ✓", key=K + "use_" + out.parent.name,
                         disabled=is_active, icon=":material/check_circle:"):
                set_active_checkpoint(workspace(), out)
                st.rerun()
            current = current_volume()
            if current and b4.button("Compare on current volume", key=K + "job_" + out.parent.name,
                                     help="a DMIC-vs-HEVC job on the current volume with this checkpoint"):
                job = start_comparison_job(store(), st.session_state.ws_id, workspace(), out, current)
                st.toast(f"Job {job} started: see Compress / Curves")


def runs_section() -> None:
    from dmic_core.finetune.background import active_checkpoint, run_state, set_active_checkpoint

    all_runs = runs()
    active = active_checkpoint(workspace())
    if active:
        c1, c2 = st.columns([4, 1])
        c1.success(f"Later DMIC jobs of this session use the tuned agents `{Path(active).parent.name}`.")
        if c2.button("Back to shipped agents", key=K + "unset"):
            set_active_checkpoint(workspace(), None)
            st.rerun()
    if not all_runs:
        st.info("No fine-tuning runs yet. Choose labelled data and a strategy above; the run goes to the "
                "background and its reward and loss curves appear here.")
        return
    live = any(run_state(r).get("state") in ("running", "starting") for r in all_runs)

    @st.fragment(run_every=2.0 if live else None)
    def cards() -> None:
        for out in all_runs:
            run_card(out, active)

    cards()


def page() -> None:
    init_state()
    st.title("Fine-tune")
    st.caption("Few-shot transfer (paper II-B): adapt the pretrained agents to your task with K = 1, 3 or 5 "
               "labelled volumes (plus at least one more, held out to test them), tuning only part of the network. The tuning runs in the background on a surrogate built from "
               "real encodes; numbers you compare afterwards come from real encodes.")
    settings_form()
    st.divider()
    runs_section()


page()
