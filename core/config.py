"""Settings shared by the app and the trainer.

The data directory defaults to the sample pack beside the repository (``../shared/data``) and can
be changed with the environment variable ``LULC_DATA_DIR``. Files there are read in place, never
copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding ``core/``)."""

DATA_DIR_ENV = "LULC_DATA_DIR"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_BUNDLE_DIR = REPO_ROOT / "models" / "default"
DW_BUNDLE_DIR = REPO_ROOT / "models" / "dynamicworld"
"""The Dynamic World port: the app's local Dynamic World reference, the trainer's comparison model, and the
network on whose features a correction to classes of the user's own estimates the scene's class priors when the
base is another network (:func:`core.correction.session.fit_correction`)."""


def data_dir() -> Path:
    """Return the data directory: ``$LULC_DATA_DIR`` if set, else ``../shared/data``.

    Returns:
        Absolute path of the folder that holds ``samples/<scene-id>/``. It may not exist; the
        sample source raises :class:`core.errors.SceneNotFoundError` with this path if so.
    """
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().resolve() if env else DEFAULT_DATA_DIR.resolve()


RUNS_DIR_ENV = "LULC_RUNS_DIR"


def runs_dir() -> Path:
    """Return the folder of training runs and saved corrections: ``$LULC_RUNS_DIR`` if set, else ``<repo>/runs``.

    On a shared server it comes from the environment only (never from the browser), like :func:`data_dir`.

    Returns:
        Absolute path; it may not exist yet (writers create it).
    """
    env = os.environ.get(RUNS_DIR_ENV)
    return Path(env).expanduser().resolve() if env else (REPO_ROOT / "runs").resolve()
