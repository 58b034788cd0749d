"""The Accuracy & area and Change pages driven with AppTest, and shareable links (query-string state)."""

from __future__ import annotations

import json
import re

import streamlit as st
from streamlit.testing.v1 import AppTest

from app.state import KEY, AppState, apply_query_params, query_params_of
from core.sources.samples import get_scene, scene_grid
from tests.app.conftest import MAIN, goto, run_scene


def test_accuracy_page_area_estimates_with_intervals_calibration_and_html(app):
    run_scene(app, "hungary-2020-08-12", "Whole scene")
    goto(app, "accuracy")
    assert not app.error, [e.value for e in app.error]
    assert any("Demonstration only" in w.value for w in app.warning)
    assert [m.label for m in app.metric][:1] == ["Overall accuracy"]
    assert 0 <= float(app.metric[0].value) <= 1
    charts = {json.loads(c.proto.spec)["layout"]["title"]["text"].split(" (")[0]: json.loads(c.proto.spec) for c in app.get("plotly_chart")}
    area = charts["Class area: map vs good-practice estimate"]
    assert area["data"][1]["error_y"]["visible"] and len(area["data"][1]["x"]) == 9
    assert "Reliability diagram" in charts
    design = app.dataframe[0].value
    assert design["points"].sum() >= 50 and set(design["class"]) >= {"grass", "crops"}
    estimates = app.dataframe[1].value
    assert {"estimated km²", "± 95 % km²", "± 95 % (UA)", "± 95 % (PA)"} <= set(estimates.columns)
    # a stricter target standard error asks for more points
    n_before = design["points"].sum()
    app.number_input(key="target_se").set_value(0.005)
    app.button[0].click().run()  # the form's submit button
    assert app.dataframe[0].value["points"].sum() > n_before
    app.button(key="build_report").click().run()
    assert not app.exception
    html = app.session_state[KEY].report_html
    assert html.startswith("<!DOCTYPE html>") and "Bundle SHA-256" in html and "Olofsson" in html


def test_two_date_page_sankey_from_hungary_labels(app):
    goto(app, "change")
    # only georeferenced scenes with another date on their grid are offered: never the DFC2020 patches,
    # which share a local 256 x 256 grid without being one place; the default pair is one real place
    offered = app.selectbox(key="change_before").options
    assert offered and all(scene_grid(get_scene(s))[0] is not None for s in offered)
    assert not any(s.startswith("dfc2020") for s in offered)
    before = app.selectbox(key="change_before").value
    assert before.split("-")[0] == app.selectbox(key="change_after").value.split("-")[0]
    app.selectbox(key="change_before").set_value("hungary-2020-04-24").run()
    app.selectbox(key="change_after").set_value("hungary-2021-02-18").run()
    app.radio(key="change_maps").set_value("dw").run()
    app.button(key="run_change").click().run()
    assert not app.exception and not app.error
    specs = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
    sankey = next(s for s in specs if s["data"][0]["type"] == "sankey")
    assert len(sankey["data"][0]["node"]["label"]) == 18 and sum(sankey["data"][0]["link"]["value"]) > 5
    labels = [m.label for m in app.metric]
    assert labels == ["Compared area", "Changed", "Changed share"]
    res = app.session_state[KEY].change.result
    assert res.labels == ("2020-04-24", "2021-02-18")
    assert abs(res.net_change()["net_km2"].sum()) < 1e-9
    # Slovenia's dates are offered only with each other: a date 2 always shares the date-1 grid
    app.selectbox(key="change_before").set_value("slovenia-2015-07-31").run()
    assert set(app.selectbox(key="change_after").options) == {"slovenia-2015-08-20", "slovenia-2015-08-30", "slovenia-2015-09-09"}


def test_shared_link_reopens_scene_aoi_model_and_reference():
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.query_params["scene"] = "hungary-2020-08-12"
    at.query_params["bbox"] = "18.22,47.77,18.25,47.79"
    at.query_params["model"] = "models/default"
    at.query_params["reference"] = "dw"
    at.run()
    assert not at.exception
    assert at.selectbox(key="scene").value == "hungary-2020-08-12"
    assert at.radio(key="aoi_mode").value == "Bounding box"
    assert at.text_input(key="bbox").value == "18.22, 47.77, 18.25, 47.79"
    state = at.session_state[KEY]
    assert state.bundle_path.endswith("models/default")
    assert query_params_of(state) == {"scene": "hungary-2020-08-12", "model": "models/default", "reference": "dw",
                                      "bbox": "18.22,47.77,18.25,47.79"}
    # a drawn polygon travels as GeoJSON; a whole scene as aoi=whole
    s = AppState(scene_id="brandenburg-2017-02-16", aoi_mode="Draw on map", aoi_geojson={"type": "Polygon", "coordinates": [[[12.5, 52.4]]]})
    params = query_params_of(s)
    restored, session = AppState(), {}
    apply_query_params(restored, params, session)
    assert restored.aoi_mode == "GeoJSON" and json.loads(session["geojson"]) == s.aoi_geojson
    restored = AppState()
    apply_query_params(restored, {"aoi": "whole", "model": "no/such/bundle"}, {})
    assert restored.aoi_mode == "Whole scene" and restored.bundle_path == AppState().bundle_path


def test_accuracy_page_says_which_classes_are_too_small_for_the_minimum(app):
    # a 0.6 km² box in which the model maps grass and shrub_and_scrub on fewer than 50 compared pixels each
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox="12.58, 52.48, 12.59, 52.487")
    goto(app, "accuracy")
    design = app.dataframe[0].value
    mn = int(app.number_input(key="min_per_class").value)
    small = design[(design["mapped_pixels"] > 0) & (design["mapped_pixels"] < mn)]
    assert len(small) >= 1 and small["all_pixels"].all() and (small["points"] == small["mapped_pixels"]).all()
    big = design[design["mapped_pixels"] >= mn]
    assert (big["points"] >= mn).all() and not big["all_pixels"].any()
    note = next(m.value for m in app.markdown if m.value.startswith("Sample size"))
    assert f"at least {mn} in every mapped class except" in note and "fewer mapped pixels than the minimum" in note
    assert all(f"{c} ({int(p):,} px)" in note for c, p in zip(small["class"], small["mapped_pixels"], strict=True))
    n_eq13 = int(re.search(r"\*\*([\d,]+)\*\* points", note).group(1).replace(",", ""))
    assert design["points"].sum() == n_eq13 and not app.error  # the points the small classes cannot take go to the others
