"""Correct: label points or polygons where the map is wrong, retrain the model's last layer, compare rounds, export."""

import functools

import streamlit as st
from streamlit_folium import st_folium

from app import correction, services, views, widgets
from app.state import get_state
from core.errors import LulcError

state = get_state()
st.title("Correct")
st.caption("Pick a class, click points (or draw polygons) where the map is wrong, and press Retrain: the model's network stays "
           "frozen and only its last layer is refit on your points plus samples of its own map, so classes you do not touch keep "
           "their extent. Each round is a checkpoint you can go back to.")
a = widgets.require_analysis(state)
widgets.run_caption(state, a)

work = correction.get_work(a)
if work is None:
    work, bar = widgets.with_progress("Caching the model's features of every pixel of the AOI (once per analysis)…",
                                    lambda step: correction.prepare(a, step), "Correct: feature cache",
                                    lambda done, total: f"Caching features: pass {done} of {total}")
    if work is None:
        st.stop()
    bar.empty()
st.caption(f"Feature cache: {work.cache.nbytes / 1e6:,.0f} MB for {work.cache.shape[0]:,} × {work.cache.shape[1]:,} px, "
           f"built in {work.cache_seconds:.1f} s.")


def act(fn, *args, done: str | None = None):
    """Run one action of the page; a user error is one sentence and changes nothing."""
    try:
        result = fn(work, *args)
    except LulcError as exc:
        st.session_state["correct_message"] = ("error", str(exc))
        return None
    except Exception as exc:  # a bug: short message, traceback in a log file
        st.session_state["correct_message"] = ("error", services.report_unexpected(exc, f"Correct: {fn.__name__}"))
        return None
    if done:
        st.session_state["correct_message"] = ("success", done.replace("{result}", str(result)))
    return result


left, right = st.columns([3, 2], gap="large")
with right:
    classes = work.classes
    if st.session_state.get("correct_pick") in classes:  # a class just added is the one picked
        st.session_state["correct_class"] = st.session_state.pop("correct_pick")
    name = st.selectbox("Class to label", classes, key="correct_class",
                        format_func=lambda c: f"{c}" + (" (your class)" if c in work.added else ""))
    st.html(views.swatches_html((c, work.colors[c]) for c in classes))
    tool = st.radio("On the map", ["Click points", "Draw polygons"], horizontal=True, key="correct_tool",
                    help=f"A polygon adds {correction.POLYGON_SAMPLE} random pixels of its inside (fewer when it is smaller)")
    if any(c in work.added for c in {s.name for s in work.samples}):
        st.caption("You use a class of your own, so the new map has exactly the classes you labelled: label every class it should show.")
        if work.prior_note:
            st.caption(work.prior_note)
    else:
        st.caption("Labelling only the model's classes corrects the map within its classes; classes you do not label keep their extent.")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    latlon = c1.text_input("…or type a point: latitude, longitude", key="correct_latlon", placeholder="52.49, 12.60")
    if c2.button("Add point", key="correct_add_point"):
        lat_lon = act(lambda w, t: correction.parse_latlon(t), latlon)
        if lat_lon is not None:
            act(correction.add_point, *lat_lon, name, done="Added a point of " + name + ".")
    with st.expander("Add a class or merge two classes"):
        n1, n2, n3 = st.columns([3, 1, 2], vertical_alignment="bottom")
        new_name = n1.text_input("New class name", key="correct_new_name")
        new_color = n2.color_picker("Colour", "#ff7f00", key="correct_new_color")
        if n3.button("Add class", key="correct_add_class"):
            added = act(correction.add_class, new_name, new_color, done="Added class {result}; it is picked for labelling.")
            if added is not None:
                st.session_state["correct_pick"] = added
                st.rerun()
        m1, m2, m3 = st.columns([2, 2, 2], vertical_alignment="bottom")
        src = m1.selectbox("Merge", classes, key="correct_merge_from")
        dst = m2.selectbox("into", classes, index=min(1, len(classes) - 1), key="correct_merge_into")
        if m3.button("Merge", key="correct_merge"):
            if act(correction.merge_classes, src, dst, done=f"Merged {src} into {dst} ({{result}} point(s) relabelled); Retrain to see it.") is not None:
                st.rerun()  # the class list above changed
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Undo", key="correct_undo", width="stretch", help="Remove the last point or polygon"):
        act(correction.undo, done="Removed {result} point(s).")
    if b2.button("Clear", key="correct_clear", width="stretch", help="Remove every point and polygon (rounds stay)"):
        act(correction.clear, done="Cleared the points.")
    if b3.button("Suggest", key="correct_suggest", width="stretch",
                 help="The pixels where the map is least sure (smallest margin between its two most likely classes), spread out"):
        act(correction.suggest, done="{result} suggested points are circled in white on the map: click them and label them.")
    if b4.button("Retrain", key="correct_retrain", type="primary", width="stretch"):
        with st.spinner("Fitting the last layer and making the new map…"):
            act(correction.retrain, done="Round ready.")
    msg = st.session_state.pop("correct_message", None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(msg[1])
    table = correction.counts_table(work)
    if table:
        st.dataframe(table, hide_index=True, width="stretch", key="correct_counts")
        st.caption(f"{len(work.samples):,} point(s), {len(work.polygons)} polygon(s); at most {correction.MAX_POINTS:,} points.")
    else:
        st.caption("No corrections yet.")
    titles = [cp.title for cp in work.checkpoints]
    if st.session_state.get("correct_round_count") != len(titles) or st.session_state.get("correct_round") not in titles:
        st.session_state["correct_round"], st.session_state["correct_round_count"] = titles[-1], len(titles)  # a new round is shown
    shown = st.radio("Checkpoints", titles, horizontal=True, key="correct_round",
                     help="The base model and every round; go back to one to drop the rounds after it")
    if shown != titles[-1] and st.button(f"Go back to {shown}", key="correct_go_back"):
        act(correction.go_back, titles.index(shown), done=f"Back at {shown}; later rounds were dropped.")
        st.rerun()

with left:
    fmap = correction.build_map(work, polygons=tool == "Draw polygons")
    out = st_folium(fmap, key="correct_map", height=560, use_container_width=True,
                    returned_objects=["last_active_drawing"] if tool == "Draw polygons" else ["last_clicked"])
    try:
        if correction.handle_map(work, out, name):
            st.rerun()
    except LulcError as exc:
        st.error(str(exc))

cp = work.current
if cp.round is not None:
    before = work.checkpoints[-2]
    st.subheader(f"{before.title} → {cp.title}")
    changed, share = correction.changed_share(before, cp)
    st.caption(f"{share:.1%} of the AOI's pixels changed class ({int(changed.sum()):,} px); fit and new map in {cp.seconds:.2f} s.")
    p1, p2, p3 = st.columns(3)
    p1.image(correction.paint(work, before), caption=f"Before: {before.title}", width="stretch")
    p2.image(correction.paint(work, cp), caption=f"After: {cp.title}", width="stretch")
    p3.image(correction.changed_rgba(work, before, cp), caption="Changed pixels (magenta)", width="stretch")
    t1, t2 = st.columns(2)
    with t1:
        st.markdown("**Area per class**")
        st.dataframe(correction.area_table(work, before, cp), hide_index=True, width="stretch")
    with t2:
        st.markdown("**Agreement with your held-back points**")
        agreement = correction.agreement_table(cp.round)
        if agreement:
            st.dataframe(agreement, hide_index=True, width="stretch")
        else:
            st.caption("No point was held back yet: a class needs 5 points or more.")
        st.caption("10 % of each class's points (of classes with 5 or more) are held back from the fit and checked against the new "
                   "map. This is not an accuracy estimate: your points are not a probability sample; the Accuracy & area page gives one.")

st.subheader("Export")
e1, e2, e3, e5, e4 = st.columns(5)
stem = f"{a.scene_id}_corrections"
if work.samples:
    e1.download_button("Corrections (GeoPackage)", correction.points_gpkg_bytes(work), file_name=f"{stem}.gpkg",
                       mime="application/geopackage+sqlite3", key="correct_dl_gpkg")
    e2.download_button("Corrections (CSV lon,lat,class)", correction.points_csv_bytes(work), file_name=f"{stem}.csv", mime="text/csv",
                       key="correct_dl_csv")
if cp.round is not None:
    e3.download_button(f"Corrected map, {cp.title} (COG)", correction.map_cog_bytes(work), file_name=f"{a.scene_id}_corrected.tif",
                       mime="image/tiff", key="correct_dl_cog")
    e5.download_button(f"Corrected map for QGIS, {cp.title} (zip: COG, class names, .qml, STAC Item)",
                       functools.partial(correction.map_package_bytes, work, cp, state), file_name=f"{a.scene_id}_corrected.zip",
                       mime="application/zip", key="correct_dl_zip")
    if e4.button("Save corrected model", key="correct_save", help="Writes a bundle into runs/, named by date; Explore lists it under Model"):
        saved = act(correction.save_bundle)
        if saved is not None:
            st.success(f"Saved {saved} (model, card, and the corrections it was fitted on). Pick it under Model on Explore; "
                       f"`python -m trainer finetune --points {saved}/corrections.csv` reproduces it.")
    msg = st.session_state.pop("correct_message", None)
    if msg:
        st.error(msg[1])
else:
    st.caption("Retrain once to export the corrected map and model.")
