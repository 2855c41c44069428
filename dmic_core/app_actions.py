"""The web app's actions: one library function per thing a user starts from a page.

Pages collect widget values, call one of these and show what it returns; everything an action
assembles (the tasks of a job, its recorded parameters, the background fine-tuning command) lives
here, where tests and other front ends use it without Streamlit. A session is ``owner`` (its
workspace id) with its files under ``workspace``; the jobs of all sessions share one store.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from dmic_core.defaults import COMPARISON_LAMBDAS, COMPARISON_QPS
from dmic_core.jobs import JobStore, TaskSpec, ensure_runner
from dmic_core.jobs.tasks import point_tasks

#: The app's shared runner exits after this many idle seconds (a page restarts it when needed).
RUNNER_IDLE_EXIT_S = 300.0
#: What "Compare on current volume" of a fine-tuned checkpoint runs: DMIC against HEVC, at the
#: rate points :data:`~dmic_core.defaults.COMPARISON_QPS` / ``COMPARISON_LAMBDAS``.
COMPARISON_METHODS = ("hevc", "dmic")
COMPARISON_SETUP = {"codec": "x265", "bit_depth": 12}


def start_app_runner(jobs_dir: str | Path) -> bool:
    """Start the runner of the app's job store unless one is alive; True when this call started it."""
    return ensure_runner(jobs_dir, idle_exit=RUNNER_IDLE_EXIT_S)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def job_title(methods: Sequence[str], name: str, n_points: int, codec: str = "x265",
              slices: tuple[int, int] | None = None, n_frames: int | None = None) -> str:
    """A job's title that tells jobs apart: methods, points, codec, the slab, the volume's name."""
    where = (f"slices {slices[0] + 1}-{slices[1]}" + (f" of {n_frames}" if n_frames else "")) if slices else "all slices"
    return f"{' vs '.join(methods)} · {n_points} points · {codec} · {where} · {name}"[:160]


#: The Compress page's slab choices.
SLAB_CHOICES = ("quick", "all", "custom")


def resolve_slab(choice: str, n_frames: int, custom: str = "") -> tuple[int, int] | None:
    """The Compress page's slice range: ``quick`` the middle :data:`~dmic_core.defaults.APP_QUICK_SLICES`
    frames, ``all`` the whole volume (None), ``custom`` a 1-based inclusive ``first-last`` (e.g.
    ``60-75``, as the viewer's slice numbers read). Raises :class:`DmicInputError` on a bad range."""
    from dmic_core.defaults import APP_QUICK_SLICES
    from dmic_core.errors import DmicInputError

    if choice == "all" or (choice == "quick" and n_frames <= APP_QUICK_SLICES):
        return None
    if choice == "quick":
        start = (n_frames - APP_QUICK_SLICES) // 2
        return start, start + APP_QUICK_SLICES
    if choice != "custom":
        raise ValueError(f"slab choice must be one of {SLAB_CHOICES}, got {choice!r}")
    text = (custom or "").replace("–", "-").replace(" ", "")
    try:
        first, last = (int(v) for v in text.split("-"))
    except ValueError:
        raise DmicInputError(f"slice range must look like first-last (e.g. 60-75), got {custom!r}") from None
    if not 1 <= first <= last <= n_frames:
        raise DmicInputError(f"slice range {first}-{last} is outside the volume's slices 1-{n_frames}")
    return first - 1, last


def codec_choices(available: Sequence[str]) -> dict[str, str]:
    """The Compress page's engines, HM first when it is built (the paper's reference encoder), each
    labelled with what ``bench/results/codec_hm_*.json`` measured (x265's speed-up and BD-rate
    cost against HM on the same volumes); a missing benchmark leaves the plain name."""
    import json

    from dmic_core.defaults import REPO_ROOT

    speedups, costs = [], []
    for path in sorted((REPO_ROOT / "bench" / "results").glob("codec_hm_*.json")):
        try:
            rows = {(r["codec"], r["map"]): r for r in json.loads(path.read_text())["summary"]}
            hm, x265 = rows[("HM", "none")], rows[("x265 slow", "none")]
        except (OSError, ValueError, KeyError):
            continue
        speedups.append(hm["mean_encode_s"] / x265["mean_encode_s"])
        costs.append(x265["bd_rate_vs_hm_pct"])
    labels = {"hm": "HM 16.25 (reference encoder, as in the paper)", "x265": "x265"}
    if speedups:
        labels["x265"] = (f"x265 (fast: {min(speedups):.0f}-{max(speedups):.0f}x less encode time than HM, "
                          f"{min(costs):+.0f}..{max(costs):+.0f}% BD-rate against it; docs/codec.md)")
    order = [c for c in ("hm", "x265") if c in available] + [c for c in available if c not in ("hm", "x265")]
    return {c: labels.get(c, c) for c in order}


#: What the methods protect: the model's segmentation of the original, or the user's label/mask.
PROTECT_CHOICES = {"model": "the model's segmentation", "label": "my uploaded label/mask"}


def compress_tasks(job_dir: Path, current: dict[str, Any], methods: Sequence[str], qps: Sequence[float],
                   lambdas: Sequence[float], setup: dict[str, Any], segmenter: str,
                   agents: str | None = None, protect: str = "model") -> list[TaskSpec]:
    """One ``point`` task per (method, setting) of the sweep's own point list, outputs under ``job_dir``.

    ``agents``: DMIC's checkpoint (None: the sweep's default agents); only DMIC tasks carry it.
    ``protect``: ``"label"`` makes the uploaded label the region the methods protect (their CTU maps)
    instead of the model's segmentation of the original; accuracy is measured against it either way.
    """
    from dmic_core.methods import default_specs

    if protect not in PROTECT_CHOICES:
        raise ValueError(f"protect must be one of {list(PROTECT_CHOICES)}, got {protect!r}")
    if protect == "label" and not current.get("label"):
        from dmic_core.errors import DmicInputError

        raise DmicInputError("no label or mask is loaded to protect; upload one on the Upload page")
    params = {"label": current.get("label"), "segmenter": segmenter, "setup": setup,
              "roi": current.get("label") if protect == "label" else None}
    return point_tasks(current["image"], default_specs(methods, qps, lambdas), job_dir, params,
                       {"agents": agents} if agents else None)


def start_compress_job(store: JobStore, owner: str, workspace: Path, current: dict[str, Any],
                       methods: Sequence[str], qps: Sequence[float], lambdas: Sequence[float],
                       setup: dict[str, Any], segmenter: str, agents: str | None = None,
                       slices: tuple[int, int] | None = None, n_frames: int | None = None,
                       protect: str = "model") -> tuple[str, int]:
    """Compress page, "Start job": queue the chosen methods and rate points on the current volume and
    make sure the runner is up. Returns the job id and its number of tasks.

    ``slices``: a slab ``(start, stop)`` of axial frames (0-based, stop exclusive) instead of the
    whole volume (``n_frames``, when given, names it in the title).
    """
    job_id = new_job_id()
    tasks = compress_tasks(Path(workspace) / "jobs" / job_id, current, methods, sorted(qps), sorted(lambdas),
                           setup, segmenter, agents, protect)
    if slices is not None:
        for task in tasks:
            task.params["slices"] = [int(slices[0]), int(slices[1])]
    title = job_title(methods, current["name"], len(tasks), setup.get("codec", "x265"), slices, n_frames)
    store.create_job(owner, tasks, job_id=job_id, title=title,
                     params={"image": current["image"], "label": current.get("label"), "name": current["name"],
                             "segmenter": segmenter, "setup": setup, "methods": list(methods), "protect": protect,
                             "slices": None if slices is None else [int(slices[0]), int(slices[1])]})
    start_app_runner(store.workspace)
    return job_id, len(tasks)


def start_comparison_job(store: JobStore, owner: str, workspace: Path, checkpoint: Path,
                         current: dict[str, Any]) -> str:
    """Fine-tune page, "Compare on current volume": DMIC with ``checkpoint`` against HEVC on the
    current volume, scored by the built-in segmenter. Returns the job id."""
    from dmic_core.methods import default_specs

    job_id = new_job_id()
    job_dir = Path(workspace) / "jobs" / job_id
    params = {"label": current.get("label"), "segmenter": "builtin", "setup": dict(COMPARISON_SETUP),
              "options": {"agents": str(checkpoint)}}
    specs = default_specs(list(COMPARISON_METHODS), list(COMPARISON_QPS), list(COMPARISON_LAMBDAS))
    tasks = point_tasks(current["image"], specs, job_dir, params)
    store.create_job(owner, tasks, job_id=job_id,
                     title=f"dmic (tuned {checkpoint.parent.name}), hevc on {current['name']}"[:120],
                     params={"image": current["image"], "label": current.get("label"), "name": current["name"],
                             "segmenter": "builtin", "setup": params["setup"], "methods": list(COMPARISON_METHODS),
                             "agents": str(checkpoint)})
    start_app_runner(store.workspace)
    return job_id


def start_finetune_run(ft_dir: Path, data: dict[str, Any], strategy: str, shots: int, iterations: int,
                       val_volumes: int = 0) -> Path:
    """Fine-tune page, "Start fine-tuning": a detached tuning run; returns its checkpoint path.

    ``data``: ``{"kind": "phantoms", "seed", "count", "slices"}`` (generated first, in the same
    background process) or ``{"kind": "folder", "path"}`` (an ImageCAS-layout folder).
    """
    from dmic_core.finetune import FinetuneConfig
    from dmic_core.finetune.background import start

    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    out = Path(ft_dir) / "runs" / run_id / "agents.pt"
    pre: list[list[str]] = []
    if data["kind"] == "phantoms":
        folder = Path(ft_dir) / "data" / f"phantoms-{data['seed']}-{data['count']}-{data['slices']}"
        pre.append(["phantom", "--seed", str(data["seed"]), "--count", str(data["count"]), "--slices",
                    str(data["slices"]), "--out", str(folder)])
    else:
        folder = Path(data["path"])
    cfg = FinetuneConfig(data=str(folder), shots=shots, strategy=strategy, iterations=iterations,
                         val_volumes=val_volumes)
    start(cfg, out, before=pre)
    return out


def write_example_phantom(folder: Path, seed: int, n_slices: int) -> tuple[Path, Path]:
    """Home page, "Run the example": a small phantom and its vessel label as NIfTI in ``folder``."""
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io import save_nifti

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume, label = generate_phantom(seed, n_slices=n_slices)
    image = save_nifti(volume, volume.hu, folder / "image.nii.gz")
    label_path = save_nifti(volume, label.astype("uint8"), folder / "label.nii.gz")
    return image, label_path


# --- what the pages show -------------------------------------------------------------------------

POINTS_COLUMNS = ("method", "setting", "bits", "bpp", "vessel_iou", "dice", "miou", "psnr_hu", "hu_err_mean",
                  "hu_err_max", "seconds", "task_id", "out_dir")


def read_point_record(out_dir: str | Path) -> dict[str, Any]:
    """A point's ``result.json`` ({} when missing or unreadable)."""
    import json

    try:
        return json.loads((Path(out_dir) / "result.json").read_text())
    except (OSError, ValueError):
        return {}


def job_points(store: JobStore, job_id: str) -> "Any":
    """The finished points of a job (one row per done task): rate, vessel IoU, Dice, mIoU, PSNR and
    the absolute HU error inside the reference vessel mask (mean, max; from each ``result.json``)."""
    import pandas as pd

    from dmic_core.evaluation.explain import vessel_hu_errors

    rows = []
    for t in store.tasks(job_id, status="done"):
        s = t["summary"] or {}
        errors = vessel_hu_errors(read_point_record(t["out_dir"])) if t["out_dir"] else vessel_hu_errors(None)
        rows.append({"method": t["method"], "setting": t["setting"], "bits": s.get("bits"), "bpp": s.get("bpp"),
                     "vessel_iou": s.get("vessel_iou"), "dice": s.get("dice"), "miou": s.get("miou"),
                     "psnr_hu": s.get("psnr_hu"), **errors, "seconds": s.get("seconds"), "task_id": t["id"],
                     "out_dir": t["out_dir"]})
    return pd.DataFrame(rows, columns=list(POINTS_COLUMNS))


def job_warnings(points: "Any", segmenter: str | None = None) -> list[str]:
    """Plain-words warnings on a job's accuracy numbers: scored by the label itself (``gt``), or a
    label and a model that do not describe the same structure."""
    from dmic_core.evaluation.explain import agreement_warning

    if segmenter == "gt":
        return ["Scored with gt: the uploaded label stands in for the segmenter, so vessel IoU, Dice and mIoU "
                "are 1.0 at every rate by construction. Only rate, PSNR and the HU errors mean something here; "
                "run the job with the built-in model for accuracy."]
    if points is None or len(points) == 0:
        return []
    record = read_point_record(points["out_dir"].iloc[0])
    warning = agreement_warning(points, record.get("original_scores"), record.get("reference"))
    return [warning] if warning else []


def point_label(method: str, setting: float) -> str:
    """``HEVC QP 27``, ``DMIC λ 10``: a point named by its method and the knob it turns."""
    short = {"hevc": "HEVC", "dmic": "DMIC", "ratecontrol": "rate control"}.get(method, method)
    return f"{short} {'λ' if method == 'dmic' else 'QP'} {float(setting):g}"


def task_status_text(task: dict[str, Any]) -> tuple[str, float | None]:
    """One line for a task on the Compress page and, while it runs, its progress fraction.

    Once every frame is coded the task is still segmenting and scoring the decoded volume: the line
    says so instead of sitting at "frame N/N"."""
    label = point_label(task["method"], task["setting"])
    if task["status"] == "running":
        done, total = task["progress_done"] or 0, task["progress_total"] or 0
        if total and done >= total:
            return f"{label}: all {total} frames coded; segmenting and scoring the decoded volume…", 1.0
        return (f"{label}: coding frame {done}/{total or '?'}"
                + (f" (attempt {task['attempts']})" if (task["attempts"] or 0) > 1 else ""),
                done / total if total else 0.0)
    s = task.get("summary") or {}
    if task["status"] == "done" and s:
        def num(key: str, fmt: str) -> str:
            value = s.get(key)
            return "n/a" if value is None else format(float(value), fmt)
        return (f"{label}: **done** — {num('bpp', '.4f')} bits/voxel, vessel IoU {num('vessel_iou', '.3f')}, "
                f"Dice {num('dice', '.3f')} (mIoU {num('miou', '.4f')}), PSNR {num('psnr_hu', '.1f')} dB", None)
    if task["status"] == "queued":
        return f"{label}: queued", None
    return f"{label}: **{task['status']}**" + (f" — {task['error']}" if task.get("error") else ""), None


def _code(name: str) -> str:
    """A user's file name as inline code, so Markdown never reads ``*`` or ``_`` in it as emphasis."""
    return "`" + name.replace("`", "'") + "`"


#: What an Upload-page uploader holds on the server: (Streamlit's file id, the user's file name).
Upload = tuple[str, str]


def load_button_state(image: Upload | None, label: Upload | None, loaded: tuple[Any, ...] | None,
                      current_image: str | None) -> tuple[bool, str]:
    """Whether the Upload page's *Load* is enabled, and the line shown under it.

    ``image`` and ``label`` are what the two uploaders hold on the server. Streamlit gives an uploader
    outside a form its new value only once the file has been received in full, so a file still being
    uploaded reads as ``None`` (a first file) or as the file it replaces. ``loaded`` is the
    ``(image file id, label file id, stored image path)`` the last *Load* used; ``current_image`` the
    tab's current volume. Load is enabled only for a complete selection that is not the loaded one:
    a click while a replacement is on its way can never load the file it replaces again (the page
    used to submit a form whose uploader still held the old file)."""
    if image is None:
        return False, "Load is enabled once the CT volume's upload has finished."
    names = _code(image[1]) + (f" with the label {_code(label[1])}" if label else " (no label)")
    key = (image[0], label[0] if label else None)
    if loaded is not None and tuple(loaded[:2]) == key and loaded[2] == current_image:
        return False, f"Loaded: {names}. Choose another file to load a new volume."
    return True, f"Ready to load: {names}."


_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[/\\][^\s/\\:'\"()\[\],;]+){2,}")


def public_error(exc: BaseException, what: str = "file", stored: str | Path | None = None,
                 name: str | None = None) -> str:
    """One line for the page about a failed read, naming the file as the user named it and leaking
    no server path: ``stored`` (the neutral name the upload was saved under, e.g.
    ``.../uploads/<hash>/image.nii.gz``) reads as ``name`` (``notes.nii.gz``), and any other
    absolute path is cut to its last part."""
    from dmic_core.errors import DmicInputError

    if isinstance(exc, DmicInputError):
        text = str(exc)
    else:
        text = f"Could not read the {what}: {exc.__class__.__name__}: {exc}"
    if stored is not None and name:
        stored = Path(stored)
        text = text.replace(str(stored), name)
        text = re.sub(rf"(?<![\w.-]){re.escape(stored.name)}(?![\w-])", lambda _m: name, text)
    text = _ABS_PATH.sub(lambda m: Path(m.group().replace("\\", "/")).name, text)
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "..."


# --- the current volume of a browser tab ---------------------------------------------------------
# A session's workspace (``?ws=`` in the URL) is shared by the tabs of one browser that carry the
# same URL; each tab's *current volume* is its own: ``?vol=<id>`` in the tab's URL names a record
# ``volumes/<id>.json`` of the workspace, so a reload gets that tab's volume back. ``current.json``
# (the volume loaded last in the workspace) is only what a tab without ``?vol=`` starts with.

_VOL_ID = re.compile(r"^[0-9a-f]{16}$")


def save_current(workspace: Path, current: dict[str, Any]) -> str:
    """Record ``current`` (image, label, names) for a tab; returns its id for the URL (``?vol=``)."""
    import hashlib
    import json

    key = json.dumps([current.get("image"), current.get("label"), current.get("name")])
    vol_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(workspace) / "volumes"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder / f"{vol_id}.json", Path(workspace) / "current.json"):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(current))
        tmp.replace(path)
    return vol_id


def read_current(workspace: Path, vol_id: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """A tab's current volume: the record ``vol_id`` names, else the workspace's last loaded volume;
    (None, None) when there is none or its image is gone."""
    import json

    candidates = []
    if vol_id and _VOL_ID.match(vol_id):
        candidates.append((Path(workspace) / "volumes" / f"{vol_id}.json", vol_id))
    candidates.append((Path(workspace) / "current.json", None))
    for path, vid in candidates:
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if Path(current.get("image", "")).is_file():
            return current, vid or save_current(workspace, current)
    return None, None


def allowed_data_folder(path: str, workspace: Path, roots: Sequence[str | Path] | None = None) -> Path:
    """The Fine-tune page's "Existing folder": only a folder inside the session's workspace or the
    server's data roots (``$DMIC_DATA_ROOTS``, ``os.pathsep``-separated; default the shared data folder)
    -- never any path of the server. Raises :class:`DmicInputError` naming the allowed places."""
    import os

    from dmic_core.defaults import shared_data_dir
    from dmic_core.errors import DmicInputError

    if roots is None:
        env = os.environ.get("DMIC_DATA_ROOTS", "")
        roots = [r for r in env.split(os.pathsep) if r] or [shared_data_dir()]
    allowed = [Path(workspace).resolve(), *(Path(r).expanduser().resolve() for r in roots)]
    target = Path(path).expanduser()
    if not target.is_absolute():
        target = allowed[-1] / target  # relative: inside the data root
    target = target.resolve()
    if not any(target == a or a in target.parents for a in allowed):
        raise DmicInputError("only folders under the server's data folder (or uploaded here) can be used; "
                             "ask the administrator to add yours to DMIC_DATA_ROOTS")
    if not target.is_dir():
        raise DmicInputError("no such folder under the server's data folder")
    return target
