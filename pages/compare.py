"""Compare: imagery, prediction and reference labels side by side, agreement and confidence."""

import streamlit as st
from streamlit_folium import st_folium

from app import maps, services, views, widgets
from app.state import get_state
from core.classes import get_scheme

state = get_state()
st.title("Compare")
a = widgets.require_analysis(state)
c1, c2 = st.columns(2)
ref = widgets.reference_picker(state, a, c1)
options = views.composite_options(a)
if state.composite not in options:
    state.composite = options[0]
state.composite = c2.selectbox("Imagery", options, index=options.index(state.composite), key="composite")
result = widgets.comparison(a, ref)
model_scheme = services.get_bundle(a.bundle_path).card.scheme_name
ref_scheme = services.reference_scheme(a, ref) if ref else None
widgets.run_caption(state, a)
widgets.model_reference_warning(ref)
if result is not None and result.crosswalk is not None:
    with st.expander(f"Crosswalk applied: {result.crosswalk.source} → {result.crosswalk.target}", expanded=False):
        st.table([{"from": s, "to": t} for s, t in result.crosswalk.table()])
        if result.crosswalk.note:
            st.caption(result.crosswalk.note)

pictures = views.panels(a, result, state.composite, model_scheme, ref_scheme)
cols = st.columns(3)
for i, (title, rgba) in enumerate(pictures.items()):
    with cols[i % 3]:
        st.image(rgba, caption=title, width="stretch")
        if title == "Prediction":
            st.html(views.legend_html(get_scheme(model_scheme)))
        elif title == "Reference":
            st.html(views.legend_html(get_scheme(ref_scheme)))
        elif title == views.AGREEMENT:
            st.html(views.agreement_legend_html())
        elif title == views.CONFIDENCE:
            st.html(views.confidence_legend_html())
if result is not None:
    st.caption(f"{result.excluded_fraction:.1%} of the AOI has no reference label or no prediction and is left out of the metrics.")

if a.image.crs is not None:
    st.subheader("On the map")
    m1, m2 = st.columns(2)
    choices = [k for k in ("Prediction", "Reference", views.AGREEMENT) if k in pictures]
    state.overlay = m1.radio("Overlay", choices, key="overlay", index=choices.index(state.overlay) if state.overlay in choices else 0, horizontal=True)
    state.opacity = m2.slider("Opacity", 0.0, 1.0, state.opacity, 0.05)
    base = next(iter(pictures.values()))  # the imagery composite of the AOI
    fmap = maps.build_map(services.sample_scenes(), selected=a.scene_id, draw=False, aoi_geojson=a.aoi_geojson,
                          overlays=[("Imagery", base, a.image.crs, a.image.transform, 1.0, "imagery"),
                                    (state.overlay, pictures[state.overlay], a.image.crs, a.image.transform, state.opacity)])
    st_folium(fmap, key="compare_map", height=480, use_container_width=True, returned_objects=[])
