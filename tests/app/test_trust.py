"""Issue 19: what is shown belongs to the current selection; AOIs are shown and refused in words; cards in words."""

from __future__ import annotations

import re

from app.state import KEY
from tests.app.conftest import goto, run_scene

SMALL = "12.56, 52.465, 12.633, 52.51"


def _texts(at, kinds=("markdown", "caption", "success", "info", "warning", "error")):
    return [(k, str(e.value)) for k in kinds for e in getattr(at, k)]


def test_a_scene_switch_leaves_no_caption_of_the_old_run(app):
    run_scene(app, "newzealand-2020-10-02")
    assert any("newzealand" in v for k, v in _texts(app) if k in ("success", "caption"))
    app.selectbox(key="scene").set_value("hungary-2020-08-12").run()
    stale = [v for k, v in _texts(app) if "newzealand" in v and re.search(r"Input of|Predicted|Done", v)]
    assert not stale
    assert any(v.startswith("Last run: newzealand") for k, v in _texts(app) if k == "info")
    assert not app.get("page_link") or all("Compare" not in str(p.proto) for p in app.get("page_link"))


def test_an_error_replaces_the_result(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    assert app.session_state[KEY].analysis is not None
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox="0.1, 0.1, 0.2, 0.2")
    assert app.error and "the bounding box you typed" in app.error[0].value and "type it over" in app.error[0].value
    assert app.session_state[KEY].analysis is None
    assert not any("Input of" in v for _, v in _texts(app))


def test_an_oversized_box_is_refused_with_its_area_and_never_clipped(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox="11.9, 52.1, 13.3, 52.9")
    msg = app.error[0].value
    assert re.search(r"covers [\d,]{5,} km²; the limit is 150 km²", msg) and "you typed" in msg
    assert not app.success and app.session_state[KEY].analysis is None


def test_a_typed_box_is_drawn_with_its_area_before_run(app):
    app.radio(key="aoi_mode").set_value("Bounding box").run()
    app.text_input(key="bbox").set_value(SMALL).run()
    notes = [c.value for c in app.caption if c.value.startswith("AOI (the bounding box you typed)")]
    assert notes and "km²" in notes[0] and "inside the data" in notes[0]
    html = str(app.get("component_instance")[0].proto)
    assert "12.633" in html  # the box is on the map
    app.text_input(key="bbox").set_value("11.9, 52.1, 13.3, 52.9").run()
    assert any("the limit is 150 km²" in w.value for w in app.warning)


def test_models_page_in_words(app):
    goto(app, "models")
    for k, v in _texts(app, ("markdown", "caption", "text")):
        assert not re.search(r"\{'|\bNone\b|\d\.\d{7,}", v), (k, v)
    for df in app.dataframe:
        assert not re.search(r"\bNone\b|\d\.\d{4,}", df.value.to_string())
    body = " ".join(m.value for m in app.markdown)
    assert "Optional bands" in body and "agreement without it" in body and "Processing levels seen in training: L1C, L2A" in body
    assert "Chips of 64 px: 528 train" in body and "with none encoder" not in body


def _heatmap(at):
    import json

    return next(d for c in at.get("plotly_chart") for d in json.loads(c.proto.spec)["data"] if d["type"] == "heatmap")


def test_metrics_are_readable_and_say_which_pixels_they_cover(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    goto(app, "metrics")
    app.selectbox(key="reference").set_value("osm").run()
    captions = " ".join(c.value for c in app.caption)
    assert "where both the prediction and the reference have a label" in captions and "Last run on Explore: brandenburg" in captions
    cm = _heatmap(app)
    assert cm["textfont"]["size"] >= 14 and any(t.endswith("%") for row in cm["text"] for t in row)
    app.radio(key="cm_cells").set_value("pixels").run()
    cm = _heatmap(app)
    assert not any(t.endswith("%") for row in cm["text"] for t in row)
    for df in app.dataframe:
        text = df.value.to_string()
        assert "None" not in text and not re.search(r"\d\.\d{4,}", text)
    assert "predicted km² (whole AOI)" in app.dataframe[1].value.columns


def test_compare_export_name_the_run_and_flag_a_moved_selection(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    goto(app, "compare")
    assert "Agreement (blue) / disagreement (orange)" in app.radio(key="overlay").options
    goto(app, "explore")
    app.selectbox(key="scene").set_value("hungary-2020-08-12").run()
    goto(app, "export")
    assert any("Exports the last run: **brandenburg-2017-02-16**" in m.value for m in app.markdown)
    assert any("has changed since this run" in i.value for i in app.info)
    labels = [b.label for b in app.get("download_button")]
    assert any("Metrics against Dynamic World (CSV)" == x for x in labels)


def test_agreement_palette_is_colour_blind_safe():
    import numpy as np

    from core.products.render import AGREEMENT_COLOURBLIND, agreement_rgba

    a = agreement_rgba(np.array([[0, 1]]), np.array([[0, 2]]), colours=AGREEMENT_COLOURBLIND)
    assert tuple(a[0, 0, :3]) == (0, 114, 178) and tuple(a[0, 1, :3]) == (230, 159, 0)


def test_the_query_string_follows_the_user_across_pages(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    for name in ("compare", "metrics", "export", "models"):
        goto(app, name)
        assert app.query_params.get("scene") in ("brandenburg-2017-02-16", ["brandenburg-2017-02-16"]), name
        assert "bbox" in app.query_params, name


def test_the_report_area_is_the_aois_not_its_bounding_window(app):
    run_scene(app, "brandenburg-2017-02-16", "GeoJSON", geojson='{"type": "Polygon", "coordinates": '
              '[[[12.56, 52.465], [12.62, 52.465], [12.56, 52.505], [12.56, 52.465]]]}')  # a triangle: half its window
    a = app.session_state[KEY].analysis
    goto(app, "accuracy")
    app.button(key="build_report").click().run()
    html = app.session_state[KEY].report_html
    got = float(re.search(r"([\d.]+) km² \(pixels with a class inside the AOI\)", html).group(1))
    assert abs(got - a.aoi_km2) < 0.03 * a.aoi_km2


def test_export_png_is_print_size_with_legends(app):
    import io

    from PIL import Image

    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    goto(app, "export")
    png = next(b for b in app.get("download_button") if "PNG" in b.label)
    assert "with legends" in png.label
    a = app.session_state[KEY].analysis
    from app import services, views

    pictures = views.panels(a, services.compare_with(a, "dw"), views.composite_options(a)[0], "dynamic_world", "dynamic_world")
    img = Image.open(io.BytesIO(views.side_by_side_png(pictures, "dynamic_world", "dynamic_world")))
    assert 1900 <= img.width <= 2100


def _param(at, key):
    v = at.query_params.get(key)
    return v[0] if isinstance(v, list) else v


def test_an_analysis_page_links_to_the_run_it_shows_not_to_a_newer_selection(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    app.selectbox(key="scene").set_value("hungary-2020-08-12").run()
    assert _param(app, "scene") == "hungary-2020-08-12"  # Explore: the selection on screen
    for name in ("compare", "metrics", "accuracy", "export"):
        goto(app, name)
        assert _param(app, "scene") == "brandenburg-2017-02-16", name  # the run the page shows
        assert _param(app, "bbox") == SMALL.replace(" ", ""), name


def test_a_link_to_compare_in_a_fresh_session_restores_the_selection_and_runs_it_there():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import MAIN

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)
    for k, v in {"scene": "brandenburg-2017-02-16", "bbox": SMALL.replace(" ", ""), "model": "models/default", "reference": "osm"}.items():
        at.query_params[k] = v
    at.run()
    assert any("Opened from a link" in i.value for i in at.info)  # Explore says so too
    goto(at, "compare")
    note = next(i.value for i in at.info if i.value.startswith("This link opens"))
    assert "brandenburg-2017-02-16" in note and "12.56, 52.465, 12.633, 52.51" in note and "Press Run model" in note
    assert not at.get("imgs") and at.session_state[KEY].analysis is None
    at.button(key="run_link").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    a = at.session_state[KEY].analysis
    assert a is not None and a.scene_id == "brandenburg-2017-02-16" and 5 < a.aoi_km2 < 40
    assert at.selectbox(key="reference").value == "osm"  # the link's reference
    assert any(c.value.startswith("Last run on Explore: brandenburg-2017-02-16") for c in at.caption)
    assert not any(i.value.startswith("This link opens") for i in at.info)
    assert not any("has changed since this run" in i.value for i in at.info)
    assert _param(at, "scene") == "brandenburg-2017-02-16" and _param(at, "reference") == "osm"
    goto(at, "explore")  # Explore shows the same run as current, not as "the last run"
    assert any(c.value.startswith("Input of brandenburg-2017-02-16") for c in at.caption)
    st.cache_data.clear()
    st.cache_resource.clear()


def test_no_table_on_any_page_holds_an_empty_cell_or_a_long_float(app):
    # the browser test reads table cells from glide-data-grid's accessible DOM copy, where a missing value is blank
    # (the canvas draws "None"): here every st.dataframe's data is checked instead
    import numpy as np

    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=SMALL)
    seen = 0
    for name in ("compare", "metrics", "accuracy", "change", "export", "models"):
        goto(app, name)
        if name == "change":
            app.selectbox(key="change_before").set_value("hungary-2020-04-24").run()
            app.radio(key="change_maps").set_value("dw").run()
            app.button(key="run_change").click().run()
        for df in app.dataframe:
            v = df.value
            seen += 1
            assert not v.isna().any().any(), (name, v[v.isna().any(axis=1)].to_string())
            for c in v.columns:
                if v[c].dtype.kind == "f":
                    assert np.allclose(v[c], v[c].round(4)), (name, c)
                else:
                    assert not v[c].astype(str).str.contains(r"\bNone\b|\d\.\d{5,}|\{'").any(), (name, c)
    assert seen >= 8
