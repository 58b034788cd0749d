"""Export: the prediction as ``predict`` writes it (COG, class names, QGIS styles, STAC Item, provenance), metrics, a PNG."""

import json

import streamlit as st

from app import charts, exports, services, views, widgets
from app.state import get_state

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
stem = exports.export_stem(a)

st.subheader("Maps")
files = exports.map_files(a, state)
st.download_button("Class map for QGIS and ArcGIS (.zip: Cloud-Optimized GeoTIFF, class-name table, QML styles, "
                   "confidence, STAC Item)", exports.zip_bytes(files), file_name=f"{stem}.zip", mime="application/zip",
                   key="export_map_zip", on_click="ignore")
st.caption(f"Unzip into one folder and open `{stem}.tif`: QGIS applies `{stem}.qml` (class names and colours) and "
           f"GDAL, QGIS and ArcGIS read the class names from `{stem}.tif.aux.xml`. `{stem}.json` is a STAC Item of the files "
           "with the model's SHA-256, the run policy and the input; every GeoTIFF carries the same provenance in its tags.")
c = st.columns(2)
c[0].download_button("Class map only (Cloud-Optimized GeoTIFF: class ids, colour table, provenance tags; no class names)",
                     files[f"{stem}.tif"], file_name=f"{stem}.tif", mime="image/tiff", key="export_map_tif", on_click="ignore")
c[1].download_button("Confidence (.zip: float32 Cloud-Optimized GeoTIFF and its QML colour ramp)",
                     exports.zip_bytes({n: files[n] for n in (f"{stem}_confidence.tif", f"{stem}_confidence.qml")}),
                     file_name=f"{stem}_confidence.zip", mime="application/zip", key="export_confidence_zip", on_click="ignore")
if st.button("Compute per-class probabilities (runs the model again on this AOI)", key="export_probabilities"):
    probs, bar = widgets.with_progress("Predicting class probabilities…", lambda step: exports.probabilities_tif(a, state, step),
                                       "per-class probabilities for the Export page")
    if probs is not None:
        bar.empty()
        st.download_button("Per-class probabilities (Cloud-Optimized GeoTIFF: one uint8 band per class, probability x 250, "
                           "255 = no data)", probs, file_name=f"{stem}_probabilities.tif", mime="image/tiff",
                           key="export_probabilities_tif", on_click="ignore")

st.subheader("Numbers and pictures")
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
