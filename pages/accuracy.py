"""Accuracy & area: good-practice sampling design, labelled points, area estimates with 95 % CIs, calibration, report."""

import streamlit as st

from app import analyst, charts, exports, services, widgets
from app.state import get_state
from core.errors import LulcError

state = get_state()
st.title("Accuracy & area")
st.caption("Good-practice accuracy assessment and area estimation (Olofsson et al. 2014): a stratified random sample of "
           "reference points, an error matrix in area proportions, and class areas with 95 % confidence intervals.")
a = widgets.require_analysis(state)
ref = widgets.reference_picker(state, a)
result = widgets.comparison(a, ref)
if result is None:
    st.info("The sampling design needs the map's classes in a scheme with a reference; pick a source with reference labels.")
    st.stop()

st.subheader("1 · Sampling design")
with st.form("design"):
    c = st.columns(4)
    ua = c[0].slider("Anticipated user's accuracy", 0.5, 0.99, 0.8, 0.01, key="ua",
                     help="Expected share of a class's map pixels that are right; sets the sample size (Olofsson et al. 2014 eq. 13)")
    se = c[1].number_input("Target SE of overall accuracy", 0.002, 0.05, 0.01, 0.001, format="%.3f", key="target_se")
    mn = c[2].number_input("Minimum points per class", 2, 500, 50, 1, key="min_per_class")
    seed = c[3].number_input("Random seed", 0, 10_000, 0, 1, key="seed")
    st.form_submit_button("Update design")
d = analyst.design(result, ua, se, int(mn))
pts = analyst.points_table(a, result, d, int(seed))
st.write(f"Sample size for a standard error of {se:.3f} in overall accuracy (eq. 13): **{d.n_total:,}** points; {d.note()}")
st.caption("Strata are the map classes over the compared pixels (those with a reference label), so that every point can be "
           "labelled from the reference in the demonstration below.")
num = st.column_config.NumberColumn
st.dataframe(d.table().round({"weight": 3}), hide_index=True, width="stretch",
             column_config={"mapped_pixels": num("mapped pixels", format="localized"), "weight": num("weight W_i", format="%.3f"),
                            "anticipated_users_accuracy": num("anticipated UA", format="%.2f"), "points": num("points", format="localized"),
                            "all_pixels": st.column_config.CheckboxColumn("all its pixels", help="fewer mapped pixels than the minimum: "
                                                                          "every pixel of the class is a point")})
provenance = exports.provenance_tags(a, state)  # the map's: bundle, weights' SHA-256, version, run policy, input
dl = st.columns(2)
if a.prediction.classes.crs is not None:
    dl[0].download_button("Sample points (GeoPackage)", analyst.points_file(pts, ".gpkg", provenance), file_name=f"{a.scene_id}_points.gpkg",
                          mime="application/geopackage+sqlite3", key="points_gpkg")
dl[1].download_button("Sample points (CSV)", analyst.points_file(pts, ".csv", provenance), file_name=f"{a.scene_id}_points.csv", mime="text/csv",
                      key="points_csv")
st.caption("The points files carry the map's provenance in `lulc_*` columns: model bundle, SHA-256 of its weights, "
           "software version, run policy and input.")

st.subheader("2 · Reference labels of the points")
how = st.radio("Reference", ["Label from the reference raster (demonstration)", "Upload labelled points"], key="label_source",
               horizontal=True)
labelled = None
source = ""
if how.startswith("Upload"):
    up = st.file_uploader("Labelled points (CSV or GeoPackage with map_class and a reference column)", type=["csv", "gpkg"], key="points_upload")
    col = st.text_input("Reference column", "reference_class", key="reference_column")
    if up is not None:
        try:
            labelled = analyst.read_uploaded_points(up.name, up.getvalue(), col)
            source = f"labelled points from {up.name} ({len(labelled)} points)"
        except LulcError as exc:
            st.error(str(exc))
        except Exception as exc:  # a bug, not the user's file: short message, traceback in a log
            st.error(services.report_unexpected(exc, f"reading points {up.name}"))
else:
    labelled = analyst.demo_labels(pts, result)
    col = "reference_class"
    source = (f"DEMONSTRATION: {len(labelled)} sample points labelled from the {services.LABEL_TITLES.get(ref, ref)} raster, "
              "not by interpretation")
    st.warning("Demonstration only: the points take their reference class from a reference *map*, not from interpretation "
               "of imagery. Download the points, label them, and upload them for publishable numbers.")

est = None
if labelled is not None:
    try:
        est = analyst.estimate(a, result, labelled, col)
    except LulcError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug: short message, traceback in a log file
        st.error(services.report_unexpected(exc, "area estimate"))
if est is not None:
    st.subheader("3 · Estimates with 95 % confidence intervals")
    m = st.columns(3)
    m[0].metric("Overall accuracy", f"{est.overall:.3f}", help=f"± {est.overall_ci:.3f} (95 % CI)")
    m[1].metric("95 % CI of OA", f"± {est.overall_ci:.3f}")
    m[2].metric("Points", f"{int(est.counts.sum()):,}")
    st.plotly_chart(analyst.area_chart(est, result.scheme.colors), width="stretch", key="area_chart")
    short = {"points": "points", "mapped_km2": "mapped km²", "estimated_km2": "estimated km²", "ci95_km2": "± 95 % km²",
             "users_accuracy": "user's acc.", "users_ci95": "± 95 % (UA)", "producers_accuracy": "producer's acc.",
             "producers_ci95": "± 95 % (PA)"}
    st.dataframe(charts.display_table(est.table(), 3).rename(columns=short), hide_index=True, width="stretch")
    st.caption("Mapped: pixel-counted area of the map class; estimated: the good-practice area estimate with its 95 % interval; "
               "user's and producer's accuracy with their 95 % intervals (– where a class has no point). The CSV below has the full column names.")
    st.plotly_chart(analyst.error_matrix_chart(est), width="stretch", key="error_matrix")
    st.caption("Error matrix of estimated area proportions p_ij (eq. 4). Colour: proportion on a log scale; row sums are the "
               "mapped area shares W_i, column sums the estimated shares. The estimates CSV has every number.")
    st.download_button("Estimates (CSV)", est.table().to_csv(index=False), file_name=f"{a.scene_id}_area_estimates.csv", mime="text/csv",
                       key="estimates_csv")

st.subheader("Calibration of the confidence map")
ece, bins = analyst.reliability(a, result)
temperature = float(getattr(services.get_bundle(a.bundle_path).card, "temperature", 1.0))
st.plotly_chart(analyst.reliability_chart(bins, ece, temperature), width="stretch", key="reliability_chart")
st.caption(f"Expected calibration error {ece:.3f} against {services.LABEL_TITLES.get(ref, ref)} on the compared pixels; "
           f"the model card's temperature is {temperature:.2f}" + (" (not fitted: train with `fit` to calibrate)." if temperature == 1.0 else "."))

st.subheader("Report and polygons")
r = st.columns(2)
if r[0].button("Build HTML report", key="build_report"):
    with st.spinner("Drawing maps and charts…"):
        state.report_html = analyst.report_html(a, result, ref, est, source, state.change if state.change and
                                                state.change.after == a.scene_id else None)
if state.report_html:
    r[0].download_button("Download report (HTML)", state.report_html, file_name=f"{a.scene_id}_report.html", mime="text/html",
                         key="report_download")
mmu = r[1].number_input("Minimum mapping unit (ha)", 0.0, 100.0, 0.5, 0.1, key="mmu")
if a.prediction.classes.crs is not None and r[1].button("Build polygons", key="build_polygons"):
    data, n = analyst.polygons_gpkg(a, mmu, provenance)
    r[1].download_button(f"Polygons (GeoPackage, {n} polygons)", data, file_name=f"{a.scene_id}_lulc.gpkg",
                         mime="application/geopackage+sqlite3", key="polygons_download")
