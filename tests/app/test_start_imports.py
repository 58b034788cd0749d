"""The first paint of the app does not wait for the model stack: Explore's modules import without torch.

torch and segmentation_models_pytorch take about 3 s to import on the 2-core machine; the app imports them
after the Explore page is drawn (app/main.py ``warm_up``). A page module that imports, even for a type
annotation, something that pulls in torch (core.evaluation via torchmetrics, models.bundle) puts those seconds
back on every start (``benchmarks/bench_app_start.py``: 5.8 s with, 3.4 s without, on the 2-core Xeon).
"""

from __future__ import annotations

import ast
import subprocess
import sys

from core.config import REPO_ROOT


def _app_imports(page: str) -> list[str]:
    tree = ast.parse((REPO_ROOT / "pages" / f"{page}.py").read_text())
    mods = set()
    for node in tree.body:  # module level only: imports inside functions run after the first paint
        if isinstance(node, ast.ImportFrom) and node.module == "app":
            mods.update(f"app.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    return sorted(mods)


def test_explore_and_the_entry_point_import_without_torch():
    mods = ["app.navigation", "app.state", "core.config", *_app_imports("explore")]  # app/main.py's, then Explore's
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
            + "".join(f"import {m}\n" for m in mods)
            + "heavy = [m for m in ('torch', 'segmentation_models_pytorch', 'torchmetrics') if m in sys.modules]\n"
            + "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "", f"Explore's imports pull in {out.stdout.strip()} before the first paint: {mods}"
