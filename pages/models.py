"""Models: the available bundles and their cards (bands, classes, training data, metrics)."""

import streamlit as st

from app import services, views
from core.classes import get_scheme
from core.errors import LulcError
from models.card import read_card

st.title("Models")
for rel, why in services.skipped_bundles():
    st.warning(f"{rel} is left out of the model lists: {why}")
for path in services.bundle_paths():
    try:
        card = read_card(path)
        scheme = get_scheme(card.scheme_name)  # a card may name a scheme this version does not know
    except LulcError as exc:
        st.error(f"{path}: {exc}")
        continue
    with st.expander(services.bundle_label(path), expanded=path == services.bundle_paths()[0]):
        st.write(f"**{card.arch}** with **{card.encoder}** encoder · tile {card.tile} px · GSD {card.gsd_m:g} m · created {card.created}")
        st.write("Bands: " + ", ".join(f"`{b}`" for b in card.bands))
        st.html(views.legend_html(scheme))
        t = card.training
        if t:
            st.write(f"Trained on {', '.join(t.get('data', []))} with {t.get('labels')} labels; chips {t.get('chips')}; "
                     f"epochs {t.get('epochs_run')}; best validation mIoU {t.get('best_val_miou')}")
        rows = [
            {"scene": r["scene"], "reference": r["labels"], "evaluated on": r["windows"], "mIoU": r["metrics"]["miou"],
             "OA": r["metrics"]["overall_accuracy"],
             "baseline (labels) mIoU": r.get("baseline", {}).get("metrics", {}).get("miou"),
             "baseline OA": r.get("baseline", {}).get("metrics", {}).get("overall_accuracy")}
            for r in card.metrics.get("held_out", [])
        ]
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch")
        if card.notes:
            st.caption(card.notes)
