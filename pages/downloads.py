"""Downloads: bitstream, decoded NIfTI, DICOM series, QP map and the results of a job.

Every button carries its bytes (no deferred callables, which Streamlit drops on the rerun a click
causes: "Deferred file ... not found") and ``on_click="ignore"`` (a click does not rerun the page);
the DICOM series is built by its own button first, then downloaded like the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from dmic_core.app_actions import point_label
from pages._common import init_state, job_points, load_volume_cached, pick_job, show_input_error

K = "dl_"


def dicom_zip(out_dir: Path, method: str, bits: int) -> bytes:
    """The decoded volume as a derived DICOM series (zip), lossy-flagged with its ratio."""
    from dmic_core.export.dicom import dicom_zip_bytes

    decoded = load_volume_cached(out_dir / "recon.nii.gz")
    ratio = decoded.hu.size * 16 / max(int(bits), 1)  # against 16-bit uncompressed storage
    return dicom_zip_bytes(decoded, compression_ratio=ratio, description=f"DMIC {method} decoded")


def page() -> None:
    init_state()
    st.title("Downloads")
    job = pick_job(K + "job")
    points = job_points(job["id"])
    st.subheader("Results of the job")
    shown = points.drop(columns=["out_dir", "task_id"])
    c1, c2 = st.columns(2)
    c1.download_button("Results (CSV)", shown.to_csv(index=False), file_name="dmic_results.csv", mime="text/csv",
                       key=K + "csv", icon=":material/table:", on_click="ignore", width="stretch")
    payload = {"job": {k: job[k] for k in ("id", "title", "created_at")},
               "coding": job["params"].get("setup"), "segmenter": job["params"].get("segmenter"),
               "slices": job["params"].get("slices"), "points": json.loads(shown.to_json(orient="records"))}
    c2.download_button("Results (JSON)", json.dumps(payload, indent=2), file_name="dmic_results.json",
                       mime="application/json", key=K + "json", icon=":material/data_object:", on_click="ignore",
                       width="stretch")

    st.subheader("One rate point")
    index = st.selectbox("Point", list(points.index), key=K + "point",
                         format_func=lambda i: f"{point_label(points.loc[i, 'method'], points.loc[i, 'setting'])}"
                                               f" — {points.loc[i, 'bpp']:.4f} bits/voxel")
    point = points.loc[index]
    out_dir = Path(point["out_dir"])
    stem = f"dmic_{point['method']}_{point['setting']:g}"
    files = [("Bitstream (.hevc)", "stream.hevc", f"{stem}.hevc", "video/H265"),
             ("Decoded (NIfTI)", "recon.nii.gz", f"{stem}_decoded.nii.gz", "application/gzip"),
             ("QP map (.npy)", "qp_map.npy", f"{stem}_qp_map.npy", "application/octet-stream"),
             ("Result (JSON)", "result.json", f"{stem}_result.json", "application/json")]
    cols = st.columns(2)
    for i, (label, name, download_name, mime) in enumerate(files):
        col = cols[i % 2]
        path = out_dir / name
        if path.is_file():
            col.download_button(label, path.read_bytes(), file_name=download_name, mime=mime,
                                key=f"{K}{name}_{index}", on_click="ignore", width="stretch",
                                icon=":material/download:")
        else:
            col.caption(f"{label}: not produced")
    st.caption("QP map: absolute paper QP per 64×64 block, array of frames × block rows × block columns.")
    zip_key = f"{K}dicom_bytes_{job['id']}_{index}"
    if zip_key not in st.session_state:
        if st.button("Build the DICOM series (zip) of the decoded volume", key=f"{K}dicom_build_{index}",
                     icon=":material/folder_zip:"):
            try:
                with st.spinner("Writing the DICOM series…"):
                    st.session_state[zip_key] = dicom_zip(out_dir, point["method"], int(point["bits"]))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_input_error(exc, "decoded volume")
    else:
        st.download_button("Decoded (DICOM series, zip)", st.session_state[zip_key], file_name=f"{stem}_dicom.zip",
                           mime="application/zip", key=f"{K}dicom_{index}", on_click="ignore", width="stretch",
                           icon=":material/download:")
    st.caption("DICOM exports are derived series: ImageType DERIVED\\SECONDARY, LossyImageCompression 01 with the "
               "ratio and method ISO_23008_2 (HEVC), new UIDs, the source geometry, and no patient identifiers.")


page()
