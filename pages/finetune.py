"""Fine-tune: few-shot tuning of the DMIC agents (arrives with issue 5)."""

from __future__ import annotations

import importlib.util

import streamlit as st

from pages._common import init_state


def page() -> None:
    init_state()
    st.title("Fine-tune")
    if importlib.util.find_spec("dmic_core.finetune") is None:
        st.info("Few-shot tuning of the DMIC agents on your own labelled volumes arrives with issue 5: "
                "upload a few labelled volumes, pick a strategy (frozen features, FC only, full), watch the "
                "reward and loss curves, and use the new checkpoint in later jobs.")
    else:
        st.info("The fine-tuning engine is installed (`dmic_core.finetune`); its page is being built. "
                "Use `dmic finetune` from the command line meanwhile.")


page()
