"""LULC Explorer: ``streamlit run app/main.py``.

Entry point with ``st.navigation``; each page lives in ``pages/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.navigation import all_pages  # noqa: E402
from app.state import get_state, sync_query_params  # noqa: E402
from core.config import REPO_ROOT, data_dir  # noqa: E402

st.set_page_config(page_title="LULC Explorer", page_icon=":material/satellite_alt:", layout="wide")

navigation = st.navigation(all_pages())
with st.sidebar:
    st.caption(f"Data: `{os.path.relpath(data_dir(), REPO_ROOT.parent)}`")  # no machine path on screen
    st.caption(
        "Sample pack: contains modified Copernicus Sentinel data; Dynamic World labels (Brown et al. 2022); "
        "OSM © OpenStreetMap contributors (ODbL); DFC2020 and Sen1Floods11 (CC-BY-4.0)."
    )
state = get_state()
sync_query_params(state, write=False)  # a shared link restores scene, AOI, model and reference
try:
    navigation.run()
except Exception as exc:  # a bug: one short message and where its details are, never a traceback
    if os.environ.get("LULC_APP_RAISE") == "1":  # the tests see the exception itself
        raise
    from app.services import report_unexpected

    st.error(report_unexpected(exc, f"page {navigation.url_path or 'explore'}", lead="Something went wrong on this page"))
finally:
    sync_query_params(state, write=True, page=navigation.url_path)  # the address bar always reopens this analysis

from app.services import warm_up  # noqa: E402  (after the page is drawn)

warm_up()
