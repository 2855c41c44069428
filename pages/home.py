"""Home: what DMIC does, and a one-click example on a generated phantom."""

from __future__ import annotations

import streamlit as st

from pages._common import init_state, set_current, show_input_error, workspace

EXAMPLE_SEED = 7
EXAMPLE_SLICES = 48


def make_example() -> None:
    """Generate a small phantom (volume + vessel label) into the workspace and make it current."""
    from dmic_core.app_actions import write_example_phantom

    image, label_path = write_example_phantom(workspace() / "example", EXAMPLE_SEED, EXAMPLE_SLICES)
    set_current(image, label_path, f"example phantom (seed {EXAMPLE_SEED}, {EXAMPLE_SLICES} slices)", "phantom label")


def page() -> None:
    state = init_state()
    st.title("DMIC Studio")
    st.markdown(
        "DMIC compresses coronary CT angiography as HEVC video of its axial slices, with reinforcement-"
        "learning agents that choose a QP for every frame and a QP offset for every 64×64 block, so bits "
        "go where the coronary arteries are. It is measured by what matters clinically — how well the "
        "vessels can still be segmented (mIoU) at a given rate — against constant-QP HEVC.")
    st.subheader("Try it")
    st.write("Generate a small synthetic CCTA phantom with its vessel label and walk through the flow: "
             "inspect, compress (DMIC vs HEVC), compare, curves, downloads.")
    if st.button("Run the example", type="primary", key="home_example", icon=":material/play_arrow:"):
        with st.spinner("Generating the phantom…"):
            try:
                make_example()
            except Exception as exc:  # noqa: BLE001 - shown in the page
                show_input_error(exc, "example phantom")
                st.stop()
        st.switch_page("pages/upload.py")
    if state["current"]:
        st.success(f"Current volume: {state['current']['name']}")
    st.subheader("The flow")
    cols = st.columns(3)
    cols[0].page_link("pages/upload.py", label="1 · Upload & inspect", icon=":material/upload:")
    cols[1].page_link("pages/compress.py", label="2 · Compress", icon=":material/compress:")
    cols[2].page_link("pages/compare.py", label="3 · Compare", icon=":material/compare:")
    cols[0].page_link("pages/curves.py", label="4 · Curves", icon=":material/show_chart:")
    cols[1].page_link("pages/downloads.py", label="5 · Downloads", icon=":material/download:")
    cols[2].page_link("pages/finetune.py", label="Fine-tune", icon=":material/tune:")
    st.caption("Private by default: your files stay in this session's workspace on the server; no usage "
               "statistics are sent and logs never contain file names.")


page()
