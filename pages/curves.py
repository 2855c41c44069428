"""Curves: rate vs vessel accuracy (and mIoU, PSNR, HU error) for every method of a job, the BD
table, exports."""

from __future__ import annotations

import streamlit as st

from dmic_core.app_actions import job_warnings
from pages._common import init_state, job_points, pick_job

K = "cur_"
TABS = {"vessel_iou": "Vessel IoU", "dice": "Vessel Dice", "miou": "mIoU", "psnr_hu": "PSNR",
        "hu_err_mean": "HU error in vessels"}


def page() -> None:
    init_state()
    st.title("Curves")
    job = pick_job(K + "job")
    points = job_points(job["id"])
    from dmic_core.evaluation.bd import bd_table
    from dmic_core.evaluation.explain import bd_explanation
    from dmic_core.plotting import display_bd_table, display_points, rate_curves_figure

    for warning in job_warnings(points, job["params"].get("segmenter")):
        st.warning(warning, icon=":material/warning:")
    st.caption("Headline: vessel IoU and Dice of the segmenter on each decoded volume against the reference "
               "(mIoU averages in the background, which is nearly always right, so it moves little). "
               "Up and to the left is better: more accurate vessels for fewer bits.")
    tabs = st.tabs(list(TABS.values()))
    figures = {}
    for tab, metric in zip(tabs, TABS):
        with tab:
            fig = rate_curves_figure(points, y=metric, title=f"{job['params'].get('name', '')}")
            figures[metric] = fig
            st.plotly_chart(fig, key=f"{K}fig_{metric}", width="stretch")
    st.subheader("BD-rate and BD-mIoU against constant-QP HEVC")
    reason = bd_explanation(points, quality="miou")
    if reason is None:
        table = bd_table(points)
        st.dataframe(display_bd_table(table), hide_index=True, key=K + "bd")
    else:
        st.info(reason, icon=":material/info:")
    st.subheader("Points")
    shown = display_points(points)
    st.dataframe(shown, hide_index=True, key=K + "points")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Figure (HTML, vessel IoU)", figures["vessel_iou"].to_html(include_plotlyjs=True),
                       file_name="dmic_curves_vessel_iou.html", mime="text/html", key=K + "html_vessel", on_click="ignore")
    c2.download_button("Figure (HTML, PSNR)", figures["psnr_hu"].to_html(include_plotlyjs=True),
                       file_name="dmic_curves_psnr.html", mime="text/html", key=K + "html_psnr", on_click="ignore")
    c3.download_button("Points (CSV)", shown.to_csv(index=False), file_name="dmic_points.csv", mime="text/csv",
                       key=K + "csv", on_click="ignore")


page()
