"""Export: the prediction as a Cloud-Optimized GeoTIFF, the metrics as CSV/JSON, a PNG of the views."""

import json

import streamlit as st

from app import charts, services, views, widgets
from app.state import get_state
from core.classes import get_scheme
from core.io.raster import cog_bytes

state = get_state()
st.title("Export")
a = widgets.require_analysis(state)
ref = widgets.reference_picker(state, a)
result = widgets.comparison(a, ref)
st.markdown(f"Exports the last run: **{a.scene_id}** ({a.source.replace('_', ' ')}) · AOI {a.aoi_km2:,.2f} km² · "
            f"model **{services.bundle_label(a.bundle_path)}**" + (f" · run at {a.finished}" if a.finished else ""))
widgets.run_caption(state, a)
ref_title = services.LABEL_TITLES.get(ref, ref) if ref else None
scheme_name = services.get_bundle(a.bundle_path).card.scheme_name
stem = f"{a.scene_id}_lulc"
st.download_button("Prediction (Cloud-Optimized GeoTIFF, class ids + colour table)",
                   cog_bytes(a.prediction.classes, colormap=get_scheme(scheme_name).colormap()),
                   file_name=f"{stem}.tif", mime="image/tiff")
st.download_button("Confidence (Cloud-Optimized GeoTIFF, float32)", cog_bytes(a.prediction.confidence),
                   file_name=f"{stem}_confidence.tif", mime="image/tiff")
if result is not None:
    st.download_button(f"Metrics against {ref_title} (CSV)", charts.metrics_table(result).to_csv(index=False), file_name=f"{stem}_metrics_{ref}.csv",
                       mime="text/csv")
    st.download_button(f"Metrics against {ref_title} (JSON)", json.dumps({"scene": a.scene_id, "reference": ref, "aoi_km2": a.aoi_km2, "model": a.bundle_path,
                                                                 **result.metrics.to_dict()}, indent=2),
                       file_name=f"{stem}_metrics_{ref}.json", mime="application/json")
pictures = views.panels(a, result, views.composite_options(a)[0], scheme_name, services.reference_scheme(a, ref) if ref else None)
ref_scheme = services.reference_scheme(a, ref) if ref else None
st.download_button("Side-by-side view (PNG, about 2000 px wide, with legends)", views.side_by_side_png(pictures, scheme_name, ref_scheme),
                   file_name=f"{stem}_views.png", mime="image/png")
if a.image.crs is None:
    st.caption("This scene has no georeference: the GeoTIFFs carry a local 10 m grid and no CRS.")
