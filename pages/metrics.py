"""Metrics: per-class IoU, precision/recall/F1, confusion matrix and class areas."""

import streamlit as st

from app import charts, services, widgets
from app.state import get_state
from core.classes import scheme_of

state = get_state()
st.title("Metrics")
a = widgets.require_analysis(state)
ref = widgets.reference_picker(state, a)
widgets.run_caption(state, a)
result = widgets.comparison(a, ref)
if result is None:
    st.stop()
widgets.model_reference_warning(ref)
m = result.metrics
c = st.columns(5)
c[0].metric("mIoU", f"{m.miou:.3f}")
c[1].metric("Overall accuracy", f"{m.overall_accuracy:.3f}")
c[2].metric("Cohen's kappa", f"{m.kappa:.3f}")
c[3].metric("Pixels compared", f"{m.pixels:,}")
c[4].metric("Excluded (no label / no data)", f"{result.excluded_fraction:.1%}")
if result.crosswalk is not None:
    st.caption(f"Compared in the {result.scheme.title} scheme (crosswalk {result.crosswalk.source} → {result.crosswalk.target}).")
if m.averaged_classes is not None and len(m.averaged_classes) < len(m.class_names):
    st.caption(f"mIoU averages the classes the reference can express: {', '.join(m.averaged_classes)}.")
left, right = st.columns(2)
left.plotly_chart(charts.iou_bar(result), width="stretch")
right.plotly_chart(charts.prf_bar(result), width="stretch")
cells = st.radio("Confusion matrix cells", ["share of row", "pixels"], horizontal=True, key="cm_cells")
st.plotly_chart(charts.confusion_heatmap(result, normalize=cells == "share of row"), width="stretch")
st.subheader("Class areas")
compared_km2 = sum(x.predicted_km2 for x in result.areas)
st.caption(f"Over the {compared_km2:,.2f} km² of the AOI's {a.aoi_km2:,.2f} km² where both the prediction and the reference "
           "have a label (pixels the reference leaves unlabelled are not counted). The whole AOI's predicted areas are below.")
st.dataframe(charts.display_table(charts.areas_table(result), 2), hide_index=True, width="stretch")
sch = scheme_of(services.get_bundle(a.bundle_path).card)
st.caption(f"Predicted over the whole AOI ({a.aoi_km2:,.2f} km², every pixel with a prediction):")
st.dataframe(charts.display_table(charts.aoi_areas_table(sch.ids, sch.names, a.prediction.classes.data[0], a.aoi_mask, a.aoi_km2), 2),
                hide_index=True, width="stretch")
st.subheader("Per class")
st.dataframe(charts.display_table(charts.metrics_table(result)), hide_index=True, width="stretch")
