"""Models: the available bundles and their cards (bands, classes, training data, metrics), in words."""

import streamlit as st

from app import services, views
from core.classes import get_scheme
from core.errors import LulcError

st.title("Models")
for rel, why in services.skipped_bundles():
    st.warning(f"{rel} is left out of the model lists: {why}")
paths = services.bundle_paths()
for path in paths:
    try:
        card = services.read_card(path)
        scheme = get_scheme(card.scheme_name)  # a card may name a scheme this version does not know
    except LulcError as exc:
        st.error(f"{path}: {exc}")
        continue
    with st.expander(services.bundle_label(path), expanded=path == paths[0]):
        for line in views.card_facts(card):
            st.markdown(line)
        st.markdown(f"Classes ({scheme.title}):")
        st.html(views.legend_html(scheme))
        for title, rows in views.card_tables(card).items():
            st.markdown(f"**{title}**")
            st.dataframe(rows, hide_index=True, width="stretch")
        if card.notes:
            st.caption(card.notes)
        if card.license:
            st.caption(f"Licence: {card.license}")
