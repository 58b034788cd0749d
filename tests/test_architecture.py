"""Imports point one way: pages/app -> core, models; trainer -> core, models; core and models
never import streamlit or lightning; models is pure torch; pages do no numerical or I/O work."""

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


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    files = list((ROOT / package).rglob("*.py"))
    if package != "pages":
        assert files, f"{package}/ has no modules"
    bad = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN[package]) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"forbidden imports: {bad}"


def test_only_the_earth_engine_source_imports_ee():
    for f in ROOT.glob("**/*.py"):
        if ".venv" in f.parts or f.name == "test_architecture.py" or "tests" in f.parts:
            continue
        if {"ee", "geemap"} & imported_modules(f):
            assert f.relative_to(ROOT).as_posix() == "core/sources/earth_engine.py", f
