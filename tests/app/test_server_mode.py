"""The deployment settings a shared server relies on (docs/server.md): the project's Streamlit config binds to
localhost, keeps XSRF protection on and refuses cross-origin requests (``enableCORS = true``), and sets the same upload limit as the app enforces; the data and
runs folders come from the environment only."""

from __future__ import annotations

import tomllib

from core.config import REPO_ROOT, data_dir, runs_dir

CONFIG = REPO_ROOT / ".streamlit" / "config.toml"


def test_streamlit_config_is_safe_for_a_shared_server():
    server = tomllib.loads(CONFIG.read_text())["server"]
    assert server["address"] == "localhost"
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True  # Streamlit's CORS protection on: cross-origin requests refused


def test_the_upload_limit_is_the_one_the_app_enforces():
    from app.services import MAX_UPLOAD_MB

    assert tomllib.loads(CONFIG.read_text())["server"]["maxUploadSize"] == MAX_UPLOAD_MB


def test_streamlit_reads_these_settings():
    """Streamlit itself (not only this test's parser) takes the project's config file."""
    from streamlit import config

    config._config_options = None  # re-read the files from the repository root
    import os

    cwd = os.getcwd()
    try:
        os.chdir(REPO_ROOT)
        config.get_config_options(force_reparse=True)
        assert config.get_option("server.enableXsrfProtection") is True
        assert config.get_option("server.enableCORS") is True
        assert config.get_option("server.address") == "localhost"
    finally:
        os.chdir(cwd)
        config.get_config_options(force_reparse=True)


def test_data_and_runs_folders_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LULC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LULC_RUNS_DIR", str(tmp_path / "runs"))
    assert data_dir() == (tmp_path / "data").resolve() and runs_dir() == (tmp_path / "runs").resolve()
    monkeypatch.delenv("LULC_RUNS_DIR")
    assert runs_dir() == (REPO_ROOT / "runs").resolve()
