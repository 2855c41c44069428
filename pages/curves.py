"""Curves: rate vs mIoU and vs PSNR for every method of a job, the BD table, exports."""

from __future__ import annotations

import streamlit as st

from pages._common import init_state, job_points, pick_job

K = "cur_"


def page() -> None:
    init_state()
    st.title("Curves")
    job = pick_job(K + "job")
    points = job_points(job["id"])
    from dmic_core.plotting import rate_curves_figure
    from dmic_core.evaluation.bd import bd_table

    tabs = st.tabs(["bpp vs mIoU", "bpp vs PSNR"])
    figures = {}
    for tab, metric in zip(tabs, ("miou", "psnr_hu")):
        with tab:
            fig = rate_curves_figure(points, y=metric, title=f"{job['params'].get('name', '')}")
            figures[metric] = fig
            st.plotly_chart(fig, key=f"{K}fig_{metric}", width="stretch")
    st.subheader("BD-rate and BD-mIoU against constant-QP HEVC")
    if (points["method"] == "hevc").sum() >= 2 and points["method"].nunique() > 1:
        try:
            table = bd_table(points)
            st.dataframe(table, hide_index=True, key=K + "bd")
        except Exception as exc:  # noqa: BLE001 - e.g. too few points for a fit
            st.warning(f"BD table unavailable: {' '.join(str(exc).split())[:200]}")
    else:
        st.info("BD numbers need at least two HEVC points and one other method.")
    st.subheader("Points")
    shown = points.drop(columns=["out_dir", "task_id"])
    st.dataframe(shown, hide_index=True, key=K + "points")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Figure (HTML, mIoU)", lambda: figures["miou"].to_html(include_plotlyjs=True),
                       file_name="dmic_curves_miou.html", mime="text/html", key=K + "html_miou")
    c2.download_button("Figure (HTML, PSNR)", lambda: figures["psnr_hu"].to_html(include_plotlyjs=True),
                       file_name="dmic_curves_psnr.html", mime="text/html", key=K + "html_psnr")
    c3.download_button("Points (CSV)", shown.to_csv(index=False), file_name="dmic_points.csv", mime="text/csv",
                       key=K + "csv")


page()
