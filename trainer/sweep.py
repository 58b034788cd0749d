"""``python -m trainer sweep``'s work: one fit per combination of a few settings, a table of the results.

``--grid loss.name=ce_dice,focal --grid optim.lr=1e-3,3e-4`` gives four runs (the product of the grids), each a
:func:`trainer.fit.fit` of the base config with those values set (as ``--set`` would) and its own output folder
``<out>/<run name>``. The table (``sweep.csv`` and ``sweep.md`` in ``<out>``) lists each run's settings, best
validation mIoU, held-out test mIoU (the first held-out result of its card) and fit time.
"""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import yaml

from trainer.config import load_config

__all__ = ["parse_grid", "combinations", "sweep", "markdown_table"]


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["loss.name=ce_dice,focal"]`` -> ``[("loss.name", ["ce_dice", "focal"])]``.

    Raises:
        ValueError: A spec without ``=`` or without values, or a key given twice (one sentence).
    """
    out: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ValueError(f"--grid {spec!r} must look like section.key=value1,value2")
        if key.strip() in dict(out):
            raise ValueError(f"--grid names {key.strip()} twice; give all its values in one --grid")
        out.append((key.strip(), vals))
    return out


def combinations(grid: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination as a list of ``key=value`` overrides."""
    keys = [k for k, _ in grid]
    return [[f"{k}={v}" for k, v in zip(keys, combo, strict=True)] for combo in itertools.product(*(v for _, v in grid))]


def _run_name(overrides: list[str]) -> str:
    return "_".join(o.split(".")[-1].replace("=", "-") for o in overrides) or "base"


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def sweep(config: str | Path, grid_specs: list[str], out: str | Path, *, overrides: list[str] | None = None,
          offset: str | int | None = "auto") -> list[dict]:
    """Run one fit per combination and write ``sweep.csv`` and ``sweep.md`` in ``out``.

    Every combination's config is validated before the first fit starts, so a bad value stops the sweep at once.

    Returns:
        One row per run: the grid values, ``val_miou``, ``test_miou``, ``fit_seconds``, ``bundle``.
    """
    import json

    from trainer.fit import fit

    out = Path(out)
    grid = parse_grid(grid_specs)
    combos = combinations(grid)
    cfgs = []
    for combo in combos:
        name = _run_name(combo)
        cfgs.append((combo, load_config(config, [*(overrides or []), *combo, f"output.dir={out / name}",
                                                  f"output.bundle_dir={out / name / 'bundle'}"])))
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.yaml").write_text(yaml.safe_dump({"config": str(config), "grid": dict(grid), "overrides": overrides or []}))
    rows: list[dict] = []
    for combo, cfg in cfgs:
        t0 = time.perf_counter()
        bundle = fit(cfg, offset=offset)
        seconds = time.perf_counter() - t0
        card = json.loads((Path(bundle) / "card.json").read_text()) if bundle else {}
        held = (card.get("metrics") or {}).get("held_out") or []
        test = held[0]["metrics"]["miou"] if held else None
        val = (card.get("training") or {}).get("best_val_miou")
        rows.append({**{k: v.split("=", 1)[1] for k, v in zip([k for k, _ in grid], combo, strict=True)},
                     "val_miou": None if val is None else round(float(val), 4),
                     "test_miou": None if test is None else round(float(test), 4),
                     "fit_seconds": round(seconds, 1), "bundle": str(bundle)})
        _write_tables(rows, out)  # after each run, so a stopped sweep keeps what it measured
    return rows


def _write_tables(rows: list[dict], out: Path) -> None:
    from core.io.outputs import atomic_path

    with atomic_path(out / "sweep.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with atomic_path(out / "sweep.md") as tmp:
        Path(tmp).write_text(markdown_table(rows))
