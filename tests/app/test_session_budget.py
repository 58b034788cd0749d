"""Bounded memory per session (issue 22): a session keeps its current analysis and newest result; older results
beyond ``$LULC_SESSION_MB`` are dropped with a notice, and the app's caches of arrays have limits."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from app.state import AppState, keep_within_budget, nbytes, session_budget_mb
from core.config import REPO_ROOT

MB = 2**20


@dataclass
class Held:
    """A result standing in for a page's (an app dataclass holding arrays, maybe an analysis)."""

    data: np.ndarray
    analysis: object = None


def _mb(n: int) -> np.ndarray:
    return np.zeros(n * MB, np.uint8)


def test_an_older_result_is_dropped_beyond_the_budget_and_a_stale_one_first():
    state, session = AppState(), {"small": "a widget value"}
    a1 = Held(_mb(50))
    state.analysis = a1
    assert keep_within_budget(state, session, 160) == []
    session["correct_work"] = Held(_mb(60), analysis=a1)  # the Correct page's work on the first analysis
    assert keep_within_budget(state, session, 160) == []
    state.change = Held(_mb(40))
    assert keep_within_budget(state, session, 160) == []  # 50 + 60 + 40 MB: within 160
    assert state.kept["session:correct_work"][2] == 60 * MB  # the analysis it shares is counted once, for the analysis
    state.analysis = Held(_mb(50))  # a new Explore run: the work now holds the old analysis alone (110 MB)
    dropped = keep_within_budget(state, session, 160)
    assert dropped == ["the Correct page's feature cache and rounds (110 MB)"]
    assert "correct_work" not in session and state.change is not None and session["small"] == "a widget value"
    assert "160 MB memory budget" in state.memory_notice and "run it again" in state.memory_notice
    assert sum(v[2] for v in state.kept.values()) == 90 * MB


def test_the_current_analysis_and_the_newest_result_always_stay():
    state, session = AppState(), {}
    state.analysis = Held(_mb(30))
    keep_within_budget(state, session, 10)
    session["correct_work"] = Held(_mb(30), analysis=state.analysis)
    assert keep_within_budget(state, session, 10) == [] and "correct_work" in session  # newest: kept above the budget
    state.report_html = "x" * (5 * MB)
    assert keep_within_budget(state, session, 10) == ["the Correct page's feature cache and rounds (30 MB)"]
    assert state.analysis is not None and state.report_html is not None


def test_nbytes_counts_arrays_once_and_the_budget_comes_from_the_environment(monkeypatch):
    a = _mb(3)
    assert nbytes(Held(a, analysis=[a, {"k": a[:10]}])) == 3 * MB  # a view counts its base's size, once
    monkeypatch.setenv("LULC_SESSION_MB", "256")
    assert session_budget_mb() == 256
    monkeypatch.setenv("LULC_SESSION_MB", "lots")
    assert session_budget_mb() == 1024


def test_the_app_drops_an_older_result_with_a_notice(app, monkeypatch):
    monkeypatch.setenv("LULC_SESSION_MB", "4")
    app.session_state["correct_work"] = Held(_mb(3))
    app.run()
    assert not app.toast and "correct_work" in app.session_state
    app.session_state["_ee_layer_cache"] = {"layer": _mb(3)}
    app.run()
    assert not app.exception
    assert "correct_work" not in app.session_state and "_ee_layer_cache" in app.session_state
    assert any("4 MB memory budget" in t.value and "Correct page" in t.value for t in app.toast)


def _cached_functions(path):
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for dec in fn.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") in ("cache_data", "cache_resource"):
                    yield fn.name, {k.arg for k in dec.keywords}


def test_caches_that_hold_models_or_arrays_have_a_limit():
    """A server where users pick many bundles or scenes must not keep every one (the models are loaded once per
    process and precision, up to the limit)."""
    singletons = {"warm_up", "earth_engine_adapter", "scenes"}  # one thread, one client, the list of scenes
    found = {}
    for path in [*(REPO_ROOT / "app").glob("*.py")]:
        found.update(dict(_cached_functions(path)))
    assert "get_bundle" in found
    unbounded = sorted(n for n, kw in found.items() if n not in singletons and not kw & {"max_entries", "ttl"})
    assert not unbounded, f"caches without max_entries or ttl: {unbounded}"
