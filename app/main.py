"""LULC Explorer: ``streamlit run app/main.py``.

Entry point with ``st.navigation``; each page lives in ``pages/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.navigation import all_pages  # noqa: E402
from app.state import get_state, sync_query_params  # noqa: E402
from core.config import data_dir  # noqa: E402

st.set_page_config(page_title="LULC Explorer", page_icon=":material/satellite_alt:", layout="wide")

navigation = st.navigation(all_pages())
with st.sidebar:
    st.caption(f"Data: `{data_dir()}`")
    st.caption(
        "Sample pack: contains modified Copernicus Sentinel data; Dynamic World labels (Brown et al. 2022); "
        "OSM © OpenStreetMap contributors (ODbL); DFC2020 and Sen1Floods11 (CC-BY-4.0)."
    )
state = get_state()
sync_query_params(state, write=False)  # a shared link restores scene, AOI, model and reference
try:
    navigation.run()
finally:
    sync_query_params(state, write=True, page=navigation.url_path)  # the address bar always reopens this analysis

from app.services import warm_up  # noqa: E402  (after the page is drawn)

warm_up()
