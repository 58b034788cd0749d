"""Issue 18 benchmarks: fusion vs Sentinel-2 only, focal vs CE + Dice, balanced vs uniform sampling, fp32 vs bf16 training.

Run from the repository root (heavy: about 20 short fits; run it alone, ``nice`` it on a shared machine)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_own_data.py --epochs 6 --fusion-epochs 20 --json own_data.json
    .venv/bin/python benchmarks/bench_own_data.py --epochs 1 --fusion-epochs 1 --seeds 42   # quick check (8 fits)

Every arm of a comparison is the same config with one setting changed, the same seeds, the same number of epochs
(``trainer.patience`` = epochs, so no arm stops early) and the same chip budget per epoch:

- ``fusion``: ``trainer/configs/fusion.yaml`` (B2, B3, B4, B8, B11, B12, VV, VH) against the same config with the six
  optical bands only. Scored on the held-out test blocks of the radar scenes (only Sen1Floods11 Spain has test blocks:
  the DFC2020 patches are whole-scene training data in that config): water IoU against Sen1Floods11's hand labels
  (``labels_water.tif``, the Dynamic World -> water crosswalk of the card's held-out results) and mIoU against
  Dynamic World.
- ``loss_sampling``: ``trainer/configs/wales.yaml`` (Aberystwyth, rsgislib's 4-class map from its class file), a
  ``trainer sweep`` over ``loss.name=ce_dice,focal`` x ``data.sampling=uniform,balanced`` x seeds. ``balanced`` draws
  ``chips_per_class`` = 32 chips per class, 128 chips for the 4 classes: the same count as the uniform grid
  (128 training chips), so both see the same number of chips an epoch. Scored on the held-out test blocks: IoU of
  the rarest classes of the training blocks (by pixel count) and mIoU.
- ``precision``: the same wales config, a ``trainer sweep`` over seeds x ``trainer.precision=32-true,bf16-mixed``
  (Lightning's bf16 autocast; on the CPU, ``torch.autocast("cpu", torch.bfloat16)``), the arms alternating so
  that a change in the machine's load falls on both: fit seconds per epoch (the card's ``fit_seconds`` /
  epochs run: training plus the validation pass of each epoch) and the last epoch's validation mIoU.

Prints one table per comparison; ``--json PATH`` writes every run's figures. On a machine shared with other jobs, run it
with ``OMP_NUM_THREADS=1``: with more torch threads than free cores the threads wait on each other (measured on 2 shared
cores at load 8: 170 s for one wales epoch with 2 threads, 21 s with 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

FUSION = "trainer/configs/fusion.yaml"
WALES = "trainer/configs/wales.yaml"
OPTICAL = "[B2,B3,B4,B8,B11,B12]"


def _card(bundle: str | Path) -> dict:
    return json.loads((Path(bundle) / "card.json").read_text())


def _last_val_miou(run_dir: Path) -> float | None:
    """The last epoch's ``val_miou`` from the run's Lightning CSV log (``<run>/logs/version_*/metrics.csv``)."""
    logs = sorted(run_dir.glob("logs/version_*/metrics.csv"))
    if not logs:
        return None
    vals = [float(r["val_miou"]) for r in csv.DictReader(open(logs[-1])) if r.get("val_miou")]
    return vals[-1] if vals else None


def _iou(result: dict, name: str) -> float | None:
    cls = (result["metrics"].get("per_class") or {}).get(name) or {}
    return cls.get("iou")


def _common(epochs: int) -> list[str]:
    return [f"trainer.max_epochs={epochs}", f"trainer.patience={epochs}", "trainer.progress_bar=false"]


def bench_fusion(out: Path, epochs: int, seeds: list[int]) -> list[dict]:
    """S2 + VV/VH vs S2 only (fusion.yaml), water IoU on Sen1Floods11's held-out blocks against its hand labels."""
    from trainer.config import load_config
    from trainer.fit import fit

    rows = []
    for seed in seeds:
        for arm, extra in (("S2+S1 (8 bands)", []), ("S2 only (6 bands)", [f"data.bands={OPTICAL}"])):
            name = f"fusion_{'s2s1' if not extra else 's2'}_seed{seed}"
            cfg = load_config(REPO_ROOT / FUSION, [*_common(epochs), f"seed={seed}", *extra, f"output.dir={out / name}",
                                                    f"output.bundle_dir={out / name / 'bundle'}"])
            t0 = time.perf_counter()
            bundle = fit(cfg)
            wall = time.perf_counter() - t0
            card = _card(bundle)
            held = card["metrics"]["held_out"]
            water = next(r for r in held if r["scene"].startswith("sen1floods11") and r["labels"] == "water")
            dw = next(r for r in held if r["scene"].startswith("sen1floods11") and r["labels"] == "dw")
            rows.append({"arm": arm, "seed": seed, "epochs": card["training"]["epochs_run"],
                         "water_iou": _iou(water, "water"), "water_miou": water["metrics"]["miou"],
                         "water_test_pixels": water["metrics"]["pixels"], "dw_miou": dw["metrics"]["miou"],
                         "best_val_miou": card["training"]["best_val_miou"], "fit_seconds": card["training"]["run"]["fit_seconds"],
                         "wall_seconds": round(wall, 1), "windows": water["windows"]})
            print(rows[-1], flush=True)
    return rows


def _rarest(n: int = 3) -> list[str]:
    """The ``n`` rarest classes of the wales labels (pixel counts over the whole label file)."""
    import numpy as np

    from core.io.raster import read_raster
    from core.sources.files import resolve_scheme
    from trainer.config import load_config

    pair = load_config(REPO_ROOT / WALES).data.files[0]
    scheme = resolve_scheme(pair.scheme, REPO_ROOT)
    lab = scheme.to_index(read_raster(REPO_ROOT / pair.labels).data[0])
    counts = np.bincount(lab[lab != 255].ravel(), minlength=len(scheme.names))
    return [scheme.names[i] for i in np.argsort(counts)[:n]]


def bench_loss_sampling(out: Path, epochs: int, seeds: list[int]) -> list[dict]:
    """``trainer sweep`` over loss x sampling x seed on wales.yaml; rarest classes' IoU and mIoU on the test blocks."""
    from trainer.sweep import sweep

    rare = _rarest()
    rows = sweep(REPO_ROOT / WALES, ["loss.name=ce_dice,focal", "data.sampling=uniform,balanced", "seed=" + ",".join(map(str, seeds))],
                 out / "loss_sampling", overrides=_common(epochs))
    table = []
    for r in rows:
        card = _card(r["bundle"])
        held = card["metrics"]["held_out"][0]
        table.append({"loss": r["loss.name"], "sampling": r["data.sampling"], "seed": int(r["seed"]), "test_miou": r["test_miou"],
                      **{f"iou_{c}": _iou(held, c) for c in rare}, "best_val_miou": r["val_miou"],
                      "train_chips": card["training"]["chips"]["train"], "fit_seconds": r["fit_seconds"]})
        print(table[-1], flush=True)
    return table


def bench_precision(out: Path, epochs: int, seeds: list[int]) -> list[dict]:
    """``trainer sweep`` over seed x precision (fp32, bf16 autocast) on wales.yaml: seconds per epoch, last validation mIoU."""
    from trainer.sweep import sweep

    rows = sweep(REPO_ROOT / WALES, ["seed=" + ",".join(map(str, seeds)), "trainer.precision=32-true,bf16-mixed"],
                 out / "precision", overrides=_common(epochs))
    table = []
    for r in rows:
        card = _card(r["bundle"])
        run = card["training"]
        table.append({"precision": r["trainer.precision"], "seed": int(r["seed"]), "epochs": run["epochs_run"],
                      "s_per_epoch": round(run["run"]["fit_seconds"] / max(1, run["epochs_run"]), 2),
                      "last_val_miou": _last_val_miou(Path(r["bundle"]).parent), "best_val_miou": r["val_miou"],
                      "test_miou": r["test_miou"]})
        print(table[-1], flush=True)
    return table


def _print(title: str, rows: list[dict]) -> None:
    from trainer.sweep import markdown_table

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) and abs(v) < 1.5 else v

    print(f"\n## {title}\n")
    print(markdown_table([{k: fmt(v) for k, v in r.items()} for r in rows]))


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs of every wales fit (loss_sampling, precision; default 6)")
    ap.add_argument("--fusion-epochs", type=int, default=20, help="epochs of every fusion fit (about 10 batches an epoch; default 20)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7], help="seeds; every arm runs each (default 42 7)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["fusion", "loss_sampling", "precision"])
    ap.add_argument("--out", help="folder for the runs (default: a temporary folder, deleted)")
    ap.add_argument("--json", help="write all figures as JSON here")
    args = ap.parse_args(argv)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_own_data_")
    out = Path(args.out or tmp.name)
    from trainer.fit import machine_description

    result = {"machine": machine_description(), "platform": platform.platform(), "load_avg_start": os.getloadavg(),
              "epochs": args.epochs, "fusion_epochs": args.fusion_epochs, "seeds": args.seeds}
    t0 = time.perf_counter()
    for part, fn in (("fusion", bench_fusion), ("loss_sampling", bench_loss_sampling), ("precision", bench_precision)):
        if part not in args.skip:
            result[part] = fn(out, args.fusion_epochs if part == "fusion" else args.epochs, args.seeds)
            _print(part, result[part])
    result["load_avg_end"] = os.getloadavg()
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\nmachine: {result['machine']}; load average {result['load_avg_start']} -> {result['load_avg_end']}; "
          f"{result['wall_seconds']} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
