"""Shared page helpers: the session's workspace, cached loaders and probes, job views.

Only UI glue lives here (session state, Streamlit caches, widgets); algorithms are in
``dmic_core`` (rendering in :mod:`dmic_core.render`, jobs in :mod:`dmic_core.jobs`).

Workspaces: every browser session works in ``<root>/<id>`` where ``root`` is
``$DMIC_WORKSPACE_ROOT`` (default ``~/.dmic/workspaces``) and ``id`` a random 128-bit token kept
in the URL (``?ws=``) so a page reload finds the same workspace and its jobs. Uploads are stored
under neutral names (``image.nii.gz``); original file names stay in the session only. Jobs of all
sessions share one store and one runner in ``<root>/_jobs`` (one global concurrency limit, fair
queueing between sessions); each session sees only its own jobs.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dmic_core.app_actions import start_app_runner
from dmic_core.io import load_label, load_volume  # imported with the page, not on the first upload
from dmic_core.jobs import JobStore, default_workers, runner_alive

_WS_PATTERN = re.compile(r"^[0-9a-f]{32}$")
IMAGE_TYPES = ["nii", "gz", "zip", "nrrd", "mha", "dcm"]  # .dcm: one DICOM file (a single slice)


# --- workspace and session state -----------------------------------------------------------

def workspace_root() -> Path:
    return Path(os.environ.get("DMIC_WORKSPACE_ROOT", Path.home() / ".dmic" / "workspaces")).expanduser()


def jobs_dir() -> Path:
    return workspace_root() / "_jobs"


def init_state() -> dict[str, Any]:
    """The session's state, created once: workspace id (``?ws=``) and this tab's current volume
    (``?vol=``, :func:`dmic_core.app_actions.read_current`), both kept in the URL so a reload finds them."""
    from dmic_core.app_actions import read_current

    ss = st.session_state
    if "ws_id" not in ss:
        wanted = st.query_params.get("ws", "")
        ss.ws_id = wanted if _WS_PATTERN.match(wanted or "") else uuid.uuid4().hex
        ss.current, ss.vol_id = read_current(workspace_root() / ss.ws_id, st.query_params.get("vol"))
    if st.query_params.get("ws") != ss.ws_id:
        st.query_params["ws"] = ss.ws_id
    if ss.get("vol_id") and st.query_params.get("vol") != ss.vol_id:
        st.query_params["vol"] = ss.vol_id
    workspace().mkdir(parents=True, exist_ok=True)
    return {"ws_id": ss.ws_id, "current": ss.current}


def workspace() -> Path:
    return workspace_root() / st.session_state.ws_id


def set_current(image: Path, label: Path | None, name: str, label_name: str | None = None) -> None:
    """Make a volume this tab's current one (kept in the workspace and the tab's URL across reloads)."""
    from dmic_core.app_actions import save_current

    current = {"image": str(image), "label": None if label is None else str(label), "name": name,
               "label_name": label_name}
    st.session_state.vol_id = save_current(workspace(), current)
    st.query_params["vol"] = st.session_state.vol_id
    st.session_state.current = current


def current_volume() -> dict[str, Any] | None:
    return st.session_state.get("current")


def require_volume() -> dict[str, Any]:
    current = current_volume()
    if current is None:
        st.info("No volume yet: upload one on **Upload & inspect**, or run the example on **Home**.")
        st.page_link("pages/upload.py", label="Upload & inspect", icon=":material/upload:")
        st.stop()
    return current


def save_upload(data: bytes, original_name: str, stem: str) -> Path:
    """Store uploaded bytes under a neutral name (``<stem><suffix>``) in a content-addressed folder."""
    lower = original_name.lower()
    suffix = next((s for s in (".nii.gz", ".nii", ".zip", ".nrrd", ".mha", ".dcm") if lower.endswith(s)),
                  Path(lower).suffix or ".bin")
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = workspace() / "uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{suffix}"
    if not path.is_file() or path.stat().st_size != len(data):
        tmp = folder / f".{stem}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


# --- cached loaders ------------------------------------------------------------------------
# Volumes are cache_resource (shared, read-only, never copied): st.cache_data would pickle a
# 140 MB array on every rerun and break the 0.3 s redraw budget. Rendered slices are cache_data.

def _mtime(path: str | Path | None) -> float:
    return 0.0 if not path else Path(path).stat().st_mtime


@st.cache_resource(max_entries=6, show_spinner=False)
def _volume(path: str, mtime: float):
    return load_volume(path)


def load_volume_cached(path: str | Path):
    return _volume(str(path), _mtime(path))


@st.cache_resource(max_entries=6, show_spinner=False)
def _label(path: str, image: str, mtimes: tuple[float, float]) -> np.ndarray:
    return (load_label(path, like=_volume(image, mtimes[1])) > 0).astype(np.uint8)


def load_label_cached(path: str | Path, image: str | Path) -> np.ndarray:
    return _label(str(path), str(image), (_mtime(path), _mtime(image)))


@st.cache_resource(show_spinner=False)
def codec_probe() -> dict[str, str | None]:
    """Codec name -> None when it runs here, else the reason (probed once per server)."""
    from dmic_core.codecs import available_codecs

    return available_codecs()


@st.cache_resource(show_spinner=False)
def segmenter_probe() -> dict[str, str | None]:
    """Which segmenters can run: every named model (its shipped weights, bf16 its CPU), then the label."""
    from dmic_core.segmentation.config import NAMED_WEIGHTS
    from dmic_core.segmentation.registry import named_segmenter_unavailable

    out: dict[str, str | None] = {}  # the models first: they are what a clinician's accuracy means
    for name in NAMED_WEIGHTS:
        try:
            reason = named_segmenter_unavailable(name)
        except Exception as exc:  # noqa: BLE001 - any reason makes it unavailable
            reason = " ".join(str(exc).split())
        out[name] = None if reason is None else reason[:160]
    out["gt"] = None  # the label scoring itself: a rate-only check, explained where it is offered
    return out


@st.cache_resource(show_spinner=False)
def method_probe() -> dict[str, str | None]:
    """Method -> None when it can run here, else why not: every method of the registry runs, DMIC
    only with trained agents to choose from."""
    from dmic_core.methods import METHOD_NAMES

    out: dict[str, str | None] = {}
    for method in METHOD_NAMES:
        reason = None
        if method == "dmic":
            try:
                from dmic_core.assets import shipped_agents

                if not shipped_agents():  # the page always passes the checkpoint chosen among these
                    reason = "no trained DMIC agents shipped yet (assets/)"
            except Exception as exc:  # noqa: BLE001
                reason = f"DMIC agents unavailable ({exc.__class__.__name__})"
        out[method] = reason
    return out


@st.cache_resource(max_entries=2, show_spinner=False)
def _segmenter(name: str):
    from dmic_core.segmentation import load_segmenter

    return load_segmenter(name)


@st.cache_resource(max_entries=4, show_spinner=False)
def _model_mask(image: str, mtime: float, name: str = "builtin") -> np.ndarray:
    return _segmenter(name).segment(_volume(image, mtime))


def model_mask(image: str | Path, name: str = "builtin") -> np.ndarray:
    """The named model's vessel mask of ``image`` (cached per file version and model)."""
    return _model_mask(str(image), _mtime(image), name)


def model_mask_ready(image: str | Path, name: str = "builtin") -> bool:
    return bool(st.session_state.get(f"seg::{name}::{image}::{_mtime(image)}"))


def mark_model_mask(image: str | Path, name: str = "builtin") -> None:
    st.session_state[f"seg::{name}::{image}::{_mtime(image)}"] = True


# --- jobs ----------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _store(path: str) -> JobStore:
    return JobStore(path)


def store() -> JobStore:
    return _store(str(jobs_dir()))


def start_runner() -> None:
    start_app_runner(jobs_dir())


def runner_running() -> bool:
    return runner_alive(jobs_dir())


def my_jobs() -> list[dict[str, Any]]:
    return store().jobs(owner=st.session_state.ws_id)


def job_points(job_id: str) -> pd.DataFrame:
    """The finished points of a job (:func:`dmic_core.app_actions.job_points`)."""
    from dmic_core.app_actions import job_points as _job_points

    return _job_points(store(), job_id)


def job_label(job: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(job["created_at"]))
    return f"{job['title'] or 'job'} · {when} · {job['status']}"


def pick_job(key: str, need_done: bool = True) -> dict[str, Any]:
    """A selectbox of this session's jobs (with finished points); stops the page when none."""
    jobs = [j for j in my_jobs() if not need_done or j["counts"]["done"] > 0]
    if not jobs:
        st.info("No finished rate points yet: start a job on **Compress**.")
        st.page_link("pages/compress.py", label="Compress", icon=":material/compress:")
        st.stop()
    ids = [j["id"] for j in jobs]
    default = st.session_state.get("last_job")
    index = ids.index(default) if default in ids else 0
    chosen = st.selectbox("Job", ids, index=index, key=key,
                          format_func=lambda i: job_label(next(j for j in jobs if j["id"] == i)))
    st.session_state.last_job = chosen
    return next(j for j in jobs if j["id"] == chosen)


def show_input_error(exc: Exception, what: str = "file", stored: str | Path | None = None,
                     name: str | None = None) -> None:
    """One line in the page for a bad input, never a traceback nor a server path; the file is named
    as the user named it (:func:`dmic_core.app_actions.public_error`)."""
    from dmic_core.app_actions import public_error

    st.error(public_error(exc, what, stored, name))


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def workers() -> int:
    return default_workers()
