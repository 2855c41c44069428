"""DMIC Studio: the web app's entry point (navigation only; every page lives in ``pages/``).

Run with ``streamlit run app.py`` (or ``scripts/run.sh``). The navigation is built inside
:func:`run` so tests can drive it (as Streamlit's own ``hello`` app does).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "pages"
#: The browser-tab icon, served by the app itself: a ``:material/...:`` or emoji page icon makes
#: the browser fetch it from an outside font or CDN server on every page load.
ICON = Path(__file__).resolve().parent / "assets" / "app_icon.png"


def run() -> None:
    st.set_page_config(page_title="DMIC Studio", page_icon=str(ICON), layout="wide")
    page = st.navigation({
        "DMIC Studio": [
            st.Page(PAGES_DIR / "home.py", title="Home", icon=":material/home:", default=True),
            st.Page(PAGES_DIR / "upload.py", title="Upload & inspect", icon=":material/upload:"),
            st.Page(PAGES_DIR / "compress.py", title="Compress", icon=":material/compress:"),
            st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/compare:"),
            st.Page(PAGES_DIR / "curves.py", title="Curves", icon=":material/show_chart:"),
            st.Page(PAGES_DIR / "finetune.py", title="Fine-tune", icon=":material/tune:"),
            st.Page(PAGES_DIR / "downloads.py", title="Downloads", icon=":material/download:"),
        ]
    })
    st.sidebar.caption("DMIC Studio · diagnosis-oriented CCTA compression")
    page.run()


if __name__ == "__main__":
    run()
