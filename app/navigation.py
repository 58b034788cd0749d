"""The app's pages as ``st.Page`` objects, shared by the entry point and by links between pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"
_SPEC = {
    "explore": ("Explore", ":material/map:"),
    "compare": ("Compare", ":material/compare:"),
    "correct": ("Correct", ":material/edit_location_alt:"),
    "metrics": ("Metrics", ":material/bar_chart:"),
    "accuracy": ("Accuracy & area", ":material/straighten:"),
    "change": ("Change", ":material/compare_arrows:"),
    "export": ("Export", ":material/download:"),
    "train": ("Train", ":material/model_training:"),
    "models": ("Models", ":material/inventory_2:"),
}


def page(name: str) -> st.Page:
    """The ``st.Page`` of ``pages/<name>.py``."""
    title, icon = _SPEC[name]
    return st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon, default=name == "explore", url_path=name)


def all_pages() -> list[st.Page]:
    """Every page in menu order."""
    return [page(n) for n in _SPEC]
