"""Metrics: per-class IoU, precision/recall/F1, confusion matrix and class areas."""

import streamlit as st

from app import charts, services
from app.navigation import page
from app.state import get_state
from core.errors import LulcError

state = get_state()
st.title("Metrics")
a = state.analysis
if a is None:
    st.info("Run the model on the Explore page first.")
    st.page_link(page("explore"), label="Go to Explore", icon="🗺️")
    st.stop()
refs = services.reference_options(a.scene_id)
if state.reference not in refs:
    state.reference = refs[0]
state.reference = st.selectbox("Reference labels", refs, index=refs.index(state.reference), format_func=lambda k: services.LABEL_TITLES.get(k, k))
try:
    result = services.compare_with(a, state.reference)
except LulcError as exc:
    st.error(str(exc))
    st.stop()
m = result.metrics
c = st.columns(5)
c[0].metric("mIoU", f"{m.miou:.3f}")
c[1].metric("Overall accuracy", f"{m.overall_accuracy:.3f}")
c[2].metric("Cohen's kappa", f"{m.kappa:.3f}")
c[3].metric("Pixels compared", f"{m.pixels:,}")
c[4].metric("Excluded (no label / no data)", f"{result.excluded_fraction:.1%}")
if result.crosswalk is not None:
    st.caption(f"Compared in the {result.scheme.title} scheme (crosswalk {result.crosswalk.source} → {result.crosswalk.target}).")
left, right = st.columns(2)
left.plotly_chart(charts.iou_bar(result), width="stretch")
right.plotly_chart(charts.prf_bar(result), width="stretch")
left.plotly_chart(charts.confusion_heatmap(result), width="stretch")
with right:
    st.subheader("Class areas")
    st.dataframe(charts.areas_table(result), hide_index=True, width="stretch")
    st.subheader("Per class")
    st.dataframe(charts.metrics_table(result), hide_index=True, width="stretch")
