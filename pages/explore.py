"""Explore: pick a source and a scene, give an AOI (draw, GeoJSON, bounding box or whole scene), run the model."""

import datetime as dt

import streamlit as st
from streamlit_folium import st_folium

from app import earth_engine, maps, services, widgets
from app.navigation import page
from app.state import get_state
from core.config import data_dir
from core.errors import LulcError

state = get_state()
st.title("LULC Explorer")
st.caption("Land-cover segmentation of Sentinel-2 imagery with a U-Net, compared with reference labels.")

scenes = services.sample_scenes()
ids = [s.id for s in scenes]
if state.scene_id not in ids:
    state.scene_id = ids[0]
by_id = {s.id: s for s in scenes}

left, right = st.columns([3, 2], gap="large")
with right:
    source = st.radio("Source", ["Sample pack", "Earth Engine", "Upload GeoTIFF"], horizontal=True, key="source",
                      help="Earth Engine fetches imagery and labels for an AOI anywhere; it needs credentials (see README)")
    use_ee = False
    ee_layers_on = False
    upload = None
    if source == "Upload GeoTIFF":
        file = st.file_uploader(f"GeoTIFF with band descriptions (B2, B3, …), a Sentinel-2 .SAFE zip or a STAC Item, up to "
                                f"{services.MAX_UPLOAD_MB} MB", type=["tif", "tiff", "zip", "json"], key="upload")
        if file is not None:
            try:
                upload = services.load_upload(file.name, file.getvalue())
            except LulcError as exc:
                st.error(str(exc))
            except Exception as exc:  # a bug, not the user's file: short message, traceback in a log
                st.error(services.report_unexpected(exc, f"reading upload {file.name}"))
            else:
                st.caption(f"{file.name}: {upload.height:,} × {upload.width:,} px · {upload.crs} · "
                           f"{services.upload_area_note(upload)} · bands {', '.join(str(b) for b in upload.band_names)}")
        up_order = st.selectbox("Band order", [*services.BAND_ORDER_PRESETS, "Custom"], key="upload_band_order",
                                help="For files without band descriptions (or with wrong ones): the bands in file order")
        up_bands = services.BAND_ORDER_PRESETS.get(up_order)
        if up_order == "Custom":
            up_bands = st.text_input("Band names in file order", key="upload_bands", placeholder="B2,B3,B4,B8,B11,B12") or None
        up_offset = st.radio("Radiometric offset", ["auto", "0", "1000"], horizontal=True, key="upload_offset",
                             help="Products of processing baseline 04.00 or later (from 25 January 2022) store reflectance x 1e4 "
                                  "+ 1000. auto reads the file's metadata, else tests the pixels and asks when it cannot tell.")
    if source == "Earth Engine":
        problems = services.earth_engine_problems()
        if problems:
            st.warning("Earth Engine is not configured on this machine, so the sample pack stays in use. To configure it:\n\n"
                       + "\n".join(f"- {p}" for p in problems) + "\n\nSee the README section 'Earth Engine'.")
        else:
            use_ee = True
    if source == "Upload GeoTIFF":
        scene = None
    elif use_ee:
        d = st.date_input("Dates (Sentinel-2 median composite of clear pixels)",
                          value=(dt.date.fromisoformat(state.ee_start), dt.date.fromisoformat(state.ee_end)), key="ee_dates")
        if isinstance(d, tuple) and len(d) == 2:
            state.ee_start, state.ee_end = d[0].isoformat(), d[1].isoformat()
        state.ee_cloud = st.slider("Cloud Score+ threshold (higher masks more)", 0.3, 0.9, state.ee_cloud, 0.05, key="ee_cloud")
        ee_layers_on = st.toggle("Earth Engine layers on the map (composite, Dynamic World, WorldCover)", key="ee_layers",
                                 help="Drawn by Earth Engine for the AOI and dates, before anything is downloaded; needs internet")
        scene = None
    else:
        state.scene_id = st.selectbox(
            "Scene", ids, index=ids.index(state.scene_id), key="scene",
            format_func=lambda i: f"{i}" + ("" if by_id[i].georeferenced else " (no georeference)"),
        )
        scene = by_id[state.scene_id]
        st.caption(f"{scene.title} · {scene.height} × {scene.width} px · bands {', '.join(scene.bands)} · labels {', '.join(scene.labels)}")
    bundles = services.bundle_paths()
    skipped = services.skipped_bundles()
    if skipped:
        st.warning(f"{len(skipped)} model bundle(s) left out of the list because their card cannot be used: "
                   + "; ".join(f"{p}: {why}" for p, why in skipped[:3]) + ("; …" if len(skipped) > 3 else ""))
    if not bundles:
        st.error("No usable model bundle found in models/ or runs/. Train one on the Train page.")
        st.stop()
    if state.bundle_path not in bundles:
        state.bundle_path = bundles[0]
    state.bundle_path = st.selectbox("Model", bundles, index=bundles.index(state.bundle_path), format_func=services.bundle_label, key="bundle")
    bf16 = st.toggle("bf16 precision", value=state.precision == "bf16", key="bf16",
                     help="Faster on CPUs with native bf16 (AVX-512 BF16, AMX), but some labels differ from the fp32 reference "
                     "that `python -m trainer predict` makes by default. Off: fp32.")
    state.precision = "bf16" if bf16 else "fp32"
    georeferenced = scene is None or scene.georeferenced
    modes = ["Draw on map", "GeoJSON", "Bounding box"] + ([] if use_ee else ["Whole scene"]) if georeferenced else ["Whole scene"]
    if state.aoi_mode not in modes:
        state.aoi_mode = modes[0] if use_ee else modes[-1]
    if state.draw_pending and "Draw on map" in modes:  # a rectangle was drawn while another mode was chosen
        st.session_state["aoi_mode"] = state.aoi_mode = "Draw on map"
        state.draw_pending = False
    state.aoi_mode = st.radio("Area of interest", modes, index=modes.index(state.aoi_mode), horizontal=True, key="aoi_mode")
    if state.aoi_mode == "GeoJSON":
        text = st.text_area("Paste GeoJSON (lon/lat)", height=120, key="geojson", placeholder='{"type": "Polygon", "coordinates": [...]}')
        geojson_file = st.file_uploader("…or upload a .geojson file", type=["geojson", "json"], key="geojson_file")
        if geojson_file is not None:
            text = geojson_file.getvalue().decode("utf-8", errors="replace")
        state.aoi_geojson = text or None
    elif state.aoi_mode == "Bounding box":
        state.bbox_text = st.text_input("West, south, east, north (degrees)", value=state.bbox_text, key="bbox",
                                        placeholder="12.55, 52.47, 12.62, 52.51")
    elif state.aoi_mode == "Draw on map":
        st.caption("Draw a rectangle or polygon on the map (toolbar at its left).")
    st.caption(f"AOI limit: {services.MAX_AOI_KM2:.0f} km².")
    if upload is not None:
        grid = (upload.crs, upload.transform, upload.height, upload.width)
    elif scene is not None and scene.georeferenced:
        grid = (*services.scene_grid(scene), scene.height, scene.width)
    else:
        grid = ()
    preview = services.preview_aoi(state, *grid) if georeferenced else None
    if preview is not None:
        (st.caption if preview.ok else st.warning)(preview.note)
    item = upload.meta.get("name") if upload is not None else (f"{state.ee_start}..{state.ee_end}" if use_ee else state.scene_id)
    selection = services.selection_of(state, source if source != "Earth Engine" or use_ee else "Sample pack", item)
    state.selection = selection
    waiting = source == "Upload GeoTIFF" and upload is None
    why = "Upload a readable GeoTIFF above first." if waiting else None
    if st.button("Run model", type="primary", width="stretch", key="run", disabled=waiting, help=why):
        def run(step):
            """The model on the chosen source (upload, Earth Engine or sample pack), ``step`` per tile."""
            if upload is not None:
                return services.run_upload(state, upload, step, offset=up_offset, bands=up_bands)
            return services.run_earth_engine(state, step) if use_ee else services.run_analysis(state, step)

        a, bar = widgets.with_progress("Running the model…", run, "Run model")
        if a is None:
            state.analysis = None  # the error replaces the result it belongs to
        else:
            a.selection, a.finished = selection, dt.datetime.now().strftime("%H:%M:%S")
            bar.progress(1.0, text=f"Done: {a.aoi_km2:.2f} km² in {a.seconds:.1f} s")
            st.success(f"Predicted {a.aoi_km2:.2f} km² of {a.scene_id}. See Compare and Metrics.")
    if waiting:
        st.caption(f"Run model is off: {why}")
    if source == "Earth Engine" and st.button("Dry run: show the Earth Engine requests", key="ee_dry_run", width="stretch",
                                              help="The collections, filters, tiles and bytes Run model would request; needs no credentials"):
        try:
            st.json(earth_engine.dry_run(state), expanded=1)
        except LulcError as exc:
            st.error(str(exc))
    current = state.analysis is not None and state.analysis.selection == selection
    if current:
        decision = services.input_decision(state.analysis)
        policy = services.run_policy(state.analysis)
        if decision is not None:
            st.caption(f"Input of {state.analysis.scene_id}: {decision.summary()}")
        if policy is not None:
            st.caption(f"Run: {policy.summary()}")
        for w in (policy.warnings if policy is not None else decision.warnings if decision is not None else ()):
            st.warning(w)
        st.page_link(page("compare"), label="Compare prediction and labels", icon=":material/compare:")
        st.page_link(page("metrics"), label="Metrics", icon=":material/bar_chart:")
    elif state.analysis is None and state.from_link and source == "Sample pack":
        st.info("Opened from a link: the scene, AOI and model above come from it. Press Run model to make that analysis.")
    elif state.analysis is not None:
        st.info(f"Last run: {state.analysis.describe()}. It was made from another selection, so it is not on the map; "
                "Compare, Metrics and Export still show it. Press Run model for the selection above.")

with left:
    basemap = st.selectbox("Basemap", ["No basemap (offline)", *maps.BASEMAPS], help="Basemap tiles need internet", key="basemap")
    overlays = []
    if scene is not None and scene.georeferenced:
        rgba, crs, transform = services.scene_preview(scene.id, str(data_dir()))
        overlays.append(("Sentinel-2 true colour", rgba, crs, transform, 1.0, "imagery"))
    if upload is not None and upload.crs is not None:
        try:
            overlays.append((f"Upload {upload.meta.get('name')} (true colour)", services.upload_preview(upload), upload.crs,
                             upload.transform, 1.0, "imagery"))
        except LulcError:
            pass  # no B2/B3/B4 to paint: the footprint is still outlined
    a = state.analysis if current else None
    if a is not None and a.image.crs is not None:
        overlays.append(("Prediction", services.prediction_rgba(a), a.image.crs, a.image.transform, 0.8))
    if preview is not None and preview.geojson is not None:
        aoi_geo = preview.geojson
    elif upload is not None and upload.crs is not None:
        aoi_geo = services.footprint_geojson(upload)
    else:
        aoi_geo = a.aoi_geojson if a else None
    ee_tiles = []
    if use_ee and ee_layers_on:
        try:
            ee_tiles = earth_engine.map_layers(state)
        except LulcError as exc:
            st.warning(f"No Earth Engine layers: {exc}")
    fmap = maps.build_map(scenes, selected=scene.id if scene is not None else None, overlays=overlays, aoi_geojson=aoi_geo,
                          basemap=None if basemap.startswith("No basemap") else basemap, draw=georeferenced, tile_layers=ee_tiles)
    out = st_folium(fmap, key="explore_map", height=560, use_container_width=True, returned_objects=["last_active_drawing"])
    drawing = (out or {}).get("last_active_drawing")
    if drawing and drawing.get("geometry"):
        if state.aoi_mode != "Draw on map" or state.aoi_geojson != drawing["geometry"]:
            state.aoi_geojson = drawing["geometry"]
            if state.aoi_mode != "Draw on map":
                state.draw_pending = True
                st.rerun()
        st.caption("AOI drawn (area and fit beside the map); press Run model.")
