"""Change: two dates of one grid -> change map, from-to matrix (km² and %), Sankey diagram, net change, downloads."""

import streamlit as st

from app import analyst, charts, services, views
from app.state import get_state
from core.classes import get_scheme
from core.errors import LulcError
from core.io.raster import cog_bytes

state = get_state()
st.title("Change")
st.caption("Two class maps of the same grid at two dates: where the class changed, a from-to matrix, a Sankey diagram "
           "and the net change per class. Map areas are pixel counts: for publishable change areas, sample the change "
           "map on the Accuracy & area page.")
scenes = [s.id for s in services.sample_scenes()]
groups = {sid: analyst.same_grid_scenes(sid) for sid in scenes}
multi = [sid for sid in scenes if len(groups[sid]) > 1]
if not multi:
    st.info("No two sample scenes share a grid.")
    st.stop()
c = st.columns(3)
before = c[0].selectbox("Date 1", multi, key="change_before")
options = [s for s in groups[before] if s != before]
after = c[1].selectbox("Date 2", options, index=len(options) - 1, key="change_after")
maps = c[2].radio("Maps", ["model", "dw"], format_func=lambda m: "Model prediction" if m == "model" else "Dynamic World labels",
                  key="change_maps", horizontal=True)
if st.button("Compute change", key="run_change", type="primary"):
    bar = st.progress(0.0, "Starting…")
    try:
        state.change = analyst.run_change(before, after, maps, state.bundle_path, lambda f, t: bar.progress(f, t))
    except LulcError as exc:
        st.error(str(exc))
    bar.empty()
run = state.change
if run is None:
    st.stop()
res = run.result
st.caption(f"{run.before} → {run.after} · {'model ' + services.bundle_label(run.bundle_path) if run.maps == 'model' else 'Dynamic World labels'}")
m = st.columns(3)
m[0].metric("Compared area", f"{res.total_km2:.3f} km²")
m[1].metric("Changed", f"{res.changed_km2:.3f} km²")
m[2].metric("Changed share", f"{100 * res.changed_km2 / max(res.total_km2, 1e-12):.1f} %")
left, right = st.columns([2, 3])
with left:
    st.image(analyst.change_picture(run), caption="New class where the class changed (transparent: unchanged)", width="stretch")
    try:
        legend = get_scheme(services.get_bundle(run.bundle_path).card.scheme_name if run.maps == "model" else "dynamic_world")
    except LulcError:
        legend = None
    if legend is not None:
        st.html(views.legend_html(legend))
right.plotly_chart(analyst.sankey(res), width="stretch", key="sankey")
st.plotly_chart(analyst.net_change_chart(res), width="stretch", key="net_change")
unit = st.radio("From-to matrix in", ["km2", "%"], format_func=lambda u: "km²" if u == "km2" else "% of the compared area",
                horizontal=True, key="change_unit")
st.plotly_chart(analyst.change_matrix_chart(res, unit), width="stretch", key="change_matrix")
st.caption("Colour: area on a log scale (small transitions stay visible); the diagonal is the unchanged area. "
           "Every transition is in the Transitions CSV below.")
net = res.net_change()
st.caption("Net change per class: km² to 3 decimals, net % of the date-1 area (– where the class was absent at date 1).")
shown = charts.display_table(net.drop(columns="net_pct"), 3).rename(columns=lambda c: f"km² {c[:-4]}" if c.endswith("_km2") else c)
shown["net %"] = charts.display_table(net[["net_pct"]], 1)["net_pct"]
st.dataframe(shown, hide_index=True, width="stretch")
d = st.columns(2)
d[0].download_button("Change map (COG, from×K+to codes)", cog_bytes(res.change_map), file_name=f"change_{run.before}_{run.after}.tif",
                     mime="image/tiff", key="change_cog")
d[1].download_button("Transitions (CSV)", res.transitions().to_csv(index=False), file_name=f"change_{run.before}_{run.after}.csv",
                     mime="text/csv", key="change_csv")
