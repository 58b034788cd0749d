"""Imports point one way: pages/app -> core, models; trainer -> core, models; core and models
never import streamlit or lightning; models is pure torch; pages do no numerical or I/O work.

One exception: models may ``from core.errors import ...`` (its errors join the one LulcError family)
and nothing else of core; ``core/errors.py`` is a leaf that imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "core": {"streamlit", "lightning", "pytorch_lightning", "app", "pages", "trainer", "models"},
    "models": {"streamlit", "lightning", "pytorch_lightning", "app", "pages", "trainer", "core", "rasterio"},
    "trainer": {"streamlit", "app", "pages"},
    "pages": {"numpy", "rasterio", "torch", "ee", "geemap", "trainer", "lightning"},
}


ALLOWED_FROM = {"models": {"core.errors"}}
"""package -> modules it may import names from (``from M import ...``, exactly M) although M's
top-level package is forbidden to it."""

PROJECT = {"core", "models", "app", "pages", "trainer", "tests"}


def imported_modules(path: Path, allowed_from: set[str] = frozenset()) -> set[str]:
    """Top-level packages ``path`` imports; a ``from M import ...`` with M in ``allowed_from`` is not counted."""
    return _imported(path.read_text(), str(path), allowed_from)


def _imported(source: str, filename: str = "<source>", allowed_from: set[str] = frozenset()) -> set[str]:
    tree = ast.parse(source, filename=filename)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module not in allowed_from:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    files = list((ROOT / package).rglob("*.py"))
    if package != "pages":
        assert files, f"{package}/ has no modules"
    allowed = ALLOWED_FROM.get(package, set())
    bad = {str(f.relative_to(ROOT)): sorted(imported_modules(f, allowed) & FORBIDDEN[package]) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"forbidden imports: {bad}"


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("from core.errors import LulcError", False),
        ("from core.errors import LulcError, BandError as B", False),
        ("def f():\n    from core.errors import AOIError", False),
        ("import core.errors", True),
        ("import core", True),
        ("from core import errors", True),
        ("from core.io.raster import GeoRaster", True),
        ("from core.errors_extra import X", True),
        ("import typing\nif typing.TYPE_CHECKING:\n    from core.inputs.bands import canonical_band", True),
        ("from core.errors import LulcError\nfrom core.aoi import parse_bbox", True),
    ],
)
def test_models_may_import_core_errors_and_nothing_else_of_core(source, forbidden):
    found = _imported(source, allowed_from=ALLOWED_FROM["models"]) & FORBIDDEN["models"]
    assert (found == {"core"}) is forbidden, (source, found)


def test_core_errors_is_a_leaf():
    """core/errors.py imports nothing of the project (so models can import it without pulling in core)."""
    path = ROOT / "core" / "errors.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not relative, relative
    assert not imported_modules(path) & PROJECT, sorted(imported_modules(path) & PROJECT)


def test_only_the_earth_engine_source_imports_ee():
    for f in ROOT.glob("**/*.py"):
        if any(part.startswith((".venv", "site")) for part in f.parts) or f.name == "test_architecture.py" or "tests" in f.parts:
            continue
        if {"ee", "geemap"} & imported_modules(f):
            assert f.relative_to(ROOT).as_posix() == "core/sources/earth_engine/client.py", f


USER_ERROR_LEFT: set[tuple[str, str]] = set()
"""(file, exception) a page may still catch beside LulcError, with its reason: none (the run policy turns a tile
the card cannot run with into a RunPolicyError, a LulcError)."""


def test_pages_catch_one_user_error_type():
    """Pages catch LulcError for what the user caused and Exception (crash log) for bugs, nothing else."""
    files = [*sorted((ROOT / "pages").glob("*.py")), ROOT / "app" / "widgets.py", ROOT / "app" / "main.py"]
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.ExceptHandler):
                types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                for t in types:
                    name = ast.unparse(t) if t is not None else "(bare except)"
                    if name not in {"LulcError", "Exception"} and (rel, name) not in USER_ERROR_LEFT:
                        bad.append(f"{rel}:{node.lineno}: except {name}")
    assert not bad, bad


def test_user_error_classes_are_lulc_errors():
    """Every exception class defined in core, models, app or trainer is a LulcError (one family)."""
    import importlib

    from core.errors import LulcError

    found = []
    for package in ("core", "models", "app", "trainer"):
        for f in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    found.append((".".join(f.relative_to(ROOT).with_suffix("").parts), node.name))
    assert ("models.card", "BundleError") in found and ("core.errors", "LulcError") in found
    bad = []
    for module, name in found:
        cls = getattr(importlib.import_module(module), name)
        if not issubclass(cls, LulcError):
            bad.append(f"{module}.{name}")
    assert not bad, bad
