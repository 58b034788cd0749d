"""Train: launch the headless trainer, follow epoch, loss and validation mIoU, stop it."""

import streamlit as st

from app import charts, training
from app.state import get_state

state = get_state()
st.title("Train")
st.caption("Runs `python -m trainer fit` in a separate process; the bundle it writes appears on the Explore and Models pages.")

job = state.job
if job is None or training.status(job) != "running":
    cfgs = training.configs()
    config = st.selectbox("Configuration", cfgs)
    epochs = st.number_input("Epochs", min_value=1, max_value=500, value=5)
    if st.button("Start training", type="primary"):
        state.job = training.launch(config, int(epochs))
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
