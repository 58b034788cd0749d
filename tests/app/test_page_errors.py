"""A bug on a page shows one short message and the path of a crash log, never a traceback; the app stays usable."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.app.conftest import MAIN


def test_a_bug_on_a_page_is_one_message_with_a_log_path(monkeypatch, tmp_path):
    import app.services as services

    monkeypatch.setenv("LULC_APP_RAISE", "0")
    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path / "cache"))

    def broken():
        raise KeyError("a bug in listing bundles")

    monkeypatch.setattr(services, "bundle_paths", broken)
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    at.switch_page("../pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Something went wrong on this page (KeyError" in errors[0], errors
    log = errors[0].split("`")[1]
    assert "a bug in listing bundles" in open(log).read()
    assert "Traceback" not in errors[0]
    monkeypatch.undo()
    at.switch_page("../pages/explore.py").run()  # the next page works
    assert not at.exception and not at.error
