"""Train: launch the headless trainer, follow epoch, loss and validation mIoU, stop it."""

import streamlit as st

from app import charts, training
from app.state import get_state
from core.errors import LulcError

state = get_state()
st.title("Train")
st.caption("Runs `python -m trainer fit` in a separate process; the bundle it writes appears on the Explore and Models pages.")

job = state.job
if job is None or training.status(job) != "running":
    cfgs = training.configs()
    config = st.selectbox("Configuration", cfgs)
    epochs = st.number_input("Epochs", min_value=1, max_value=500, value=5)
    c1, c2 = st.columns(2)
    loss = c1.selectbox("Loss", ["ce_dice", "focal"], help="weighted cross-entropy + Dice, or focal loss (Lin et al. 2017) + Dice")
    sampling = c2.selectbox("Chip sampling", ["uniform", "balanced"], help="balanced: chips centred on pixels of each class")
    init_from = st.text_input("Initialise from a bundle (folder, optional)", "", help="fine-tune an existing bundle; a new head when the classes differ")
    overrides = training.page_overrides(loss, sampling, init_from)
    try:
        text = training.config_yaml(config, int(epochs), overrides)
    except LulcError as exc:
        st.error(str(exc))
        text = None
    if text is not None:
        with st.expander("Configuration it will run (python -m trainer fit --config this.yaml)"):
            st.code(text, language="yaml")
            st.download_button("Download YAML", text, file_name="train.yaml", mime="text/yaml")
    if st.button("Start training", type="primary", disabled=text is None):
        state.job = training.launch(config, int(epochs), overrides=overrides)
        st.rerun()


@st.fragment(run_every=2.0)
def follow() -> None:
    """Refresh the progress every two seconds while a job exists."""
    j = get_state().job
    if j is None:
        return
    s = training.status(j)
    log = training.progress(j)
    epoch, val_miou = training.latest(log)
    st.write(f"Run `{j.run_dir}` · status **{s}** · epoch {epoch}")
    if val_miou is not None:
        st.metric("Latest validation mIoU", f"{val_miou:.3f}")
    st.plotly_chart(charts.training_curves(log), width="stretch")
    with st.expander("Trainer output"):
        st.code(training.log_tail(j) or "(no output yet)")
    if s == "running":
        if st.button("Stop training"):
            training.stop(j)
            st.rerun()
    elif s == "finished":
        st.success(f"Bundle written to {j.run_dir}/bundle; pick it under Model on the Explore page.")
    elif s == "stopped":
        st.info("Training was stopped; last.ckpt is kept (`python -m trainer fit --config ... --resume` continues it).")
    elif s == "failed":
        st.error("Training failed; see the trainer output.")


follow()
