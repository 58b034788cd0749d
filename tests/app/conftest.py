"""AppTest helpers: a fresh app with cleared caches for every test."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT

MAIN = str(REPO_ROOT / "app" / "main.py")


@pytest.fixture
def app() -> AppTest:
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    st.cache_data.clear()
    st.cache_resource.clear()


def goto(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"../pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_scene(at: AppTest, scene: str, mode: str = "Whole scene", **inputs) -> AppTest:
    at.selectbox(key="scene").set_value(scene).run()
    at.radio(key="aoi_mode").set_value(mode).run()
    for key, value in inputs.items():
        at.text_input(key=key).set_value(value).run() if key == "bbox" else at.text_area(key=key).set_value(value).run()
    at.button(key="run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at
