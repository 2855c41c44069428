"""Downloads: bitstream, decoded NIfTI, DICOM series, QP map and the results of a job."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from pages._common import init_state, job_points, load_volume_cached, pick_job, show_input_error

K = "dl_"


def _read(path: Path):
    return lambda: path.read_bytes()


def dicom_zip(out_dir: Path, original_image: str, method: str, bits: int) -> bytes:
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
                       key=K + "csv", icon=":material/table:")
    payload = {"job": {k: job[k] for k in ("id", "title", "created_at")},
               "coding": job["params"].get("setup"), "segmenter": job["params"].get("segmenter"),
               "points": json.loads(shown.to_json(orient="records"))}
    c2.download_button("Results (JSON)", json.dumps(payload, indent=2), file_name="dmic_results.json",
                       mime="application/json", key=K + "json", icon=":material/data_object:")

    st.subheader("One rate point")
    index = st.selectbox("Point", list(points.index), key=K + "point",
                         format_func=lambda i: f"{points.loc[i, 'method']} {points.loc[i, 'setting']:g} — "
                                               f"{points.loc[i, 'bpp']:.4f} bpp")
    point = points.loc[index]
    out_dir = Path(point["out_dir"])
    stem = f"dmic_{point['method']}_{point['setting']:g}"
    files = [("Bitstream (HEVC)", "stream.hevc", f"{stem}.hevc", "video/H265"),
             ("Decoded volume (NIfTI)", "recon.nii.gz", f"{stem}_decoded.nii.gz", "application/gzip"),
             ("QP map (NumPy, frames × CTU rows × cols)", "qp_map.npy", f"{stem}_qp_map.npy",
              "application/octet-stream"),
             ("Point result (JSON)", "result.json", f"{stem}_result.json", "application/json")]
    cols = st.columns(len(files) + 1)
    for col, (label, name, download_name, mime) in zip(cols, files):
        path = out_dir / name
        if path.is_file():
            col.download_button(label, _read(path), file_name=download_name, mime=mime, key=f"{K}{name}_{index}")
        else:
            col.caption(f"{label}: not produced")
    try:
        cols[-1].download_button(
            "Decoded volume (DICOM series, zip)",
            lambda: dicom_zip(out_dir, job["params"]["image"], point["method"], int(point["bits"])),
            file_name=f"{stem}_dicom.zip", mime="application/zip", key=f"{K}dicom_{index}")
    except Exception as exc:  # noqa: BLE001
        show_input_error(exc, "decoded volume")
    st.caption("DICOM exports are derived series: ImageType DERIVED\\SECONDARY, LossyImageCompression 01 with the "
               "ratio and method ISO_23008_2 (HEVC), new UIDs, the source geometry, and no patient identifiers.")


page()
