"""Batch prediction: one ``predict`` over a folder of N small files vs one process per file.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batch_predict.py                 # 50 files of 128 x 128 px
    .venv/bin/python benchmarks/bench_batch_predict.py --files 50 --per-process 10 --json batch.json

The files are crops of the sample pack's Brandenburg scene (13 bands, uint16 DN, band
descriptions), written to a temporary folder and deleted afterwards. Two ways are timed, each as
real ``python -m trainer predict`` processes:

1. batch: one process, ``--input <folder> --output <folder>``: the model is loaded once.
2. per file: one process per file, ``--input f.tif --output f_classes.tif``, for the first
   ``--per-process`` files (each process imports torch and loads the model again; timing a subset
   keeps the run short on a shared machine, the time per file is the mean over that subset).

Printed: wall time and CPU time (user + system of the child processes) per file, and the ratios
per-file / batch. CPU time is the figure to compare on a shared, loaded machine, where wall time
mostly measures waiting. Both ways write identical class maps (checked on the subset).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]


def make_files(data_dir: Path, folder: Path, n: int, size: int) -> list[Path]:
    src = data_dir / "samples" / "brandenburg-2017-02-16" / "image_s2.tif"
    out = []
    with rasterio.open(src) as s:
        prof = s.profile.copy()
        for k in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "predictor"):
            prof.pop(k, None)
        cols, rows = s.width // size, s.height // size
        for i in range(n):
            r, c = (i // cols) % rows, i % cols
            win = Window(c * size, r * size, size, size)
            p = folder / f"crop{i:03d}.tif"
            with rasterio.open(p, "w", **dict(prof, driver="GTiff", width=size, height=size, transform=s.window_transform(win))) as d:
                d.write(s.read(window=win))
                d.descriptions = s.descriptions
            out.append(p)
    return out


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one ``python -m trainer predict`` process."""
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "trainer", "predict", *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode != 0:
        raise SystemExit(f"predict failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--size", type=int, default=128, help="side of each file in pixels (default 128)")
    p.add_argument("--per-process", type=int, default=10, help="files timed one process each (default 10)")
    p.add_argument("--bundle", default="models/default")
    p.add_argument("--data-dir", default=os.environ.get("LULC_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--json", help="also write the figures as JSON")
    a = p.parse_args()
    common = ["--checkpoint", a.bundle, "--tile", str(a.size), "--overlap", "0", "--precision", "fp32"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        files = make_files(Path(a.data_dir), tmp / "in", a.files, a.size)
        batch, batch_cpu = run([*common, "--input", str(tmp / "in"), "--output", str(tmp / "batch")])
        k = min(a.per_process, len(files))
        single = single_cpu = 0.0
        for f in files[:k]:
            w, c = run([*common, "--input", str(f), "--output", str(tmp / "single" / f"{f.stem}_classes.tif")])
            single, single_cpu = single + w, single_cpu + c
        for f in files[:k]:
            with rasterio.open(tmp / "batch" / f"{f.stem}_classes.tif") as x, rasterio.open(tmp / "single" / f"{f.stem}_classes.tif") as y:
                assert np.array_equal(x.read(), y.read()), f"{f.name}: batch and per-process outputs differ"
    fig = {
        "files": len(files), "size_px": a.size, "cpu_count": os.cpu_count(),
        "batch_wall_s": round(batch, 2), "batch_s_per_file": round(batch / len(files), 3),
        "per_process_files": k, "per_process_s_per_file": round(single / k, 3),
        "ratio_per_process_over_batch": round((single / k) / (batch / len(files)), 1),
        "batch_cpu_s_per_file": round(batch_cpu / len(files), 3), "per_process_cpu_s_per_file": round(single_cpu / k, 3),
        "cpu_ratio_per_process_over_batch": round((single_cpu / k) / (batch_cpu / len(files)), 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print(f"{len(files)} files of {a.size} x {a.size} px, 13 bands")
    print(f"batch (one process, model loaded once): {batch:.1f} s, {batch / len(files):.3f} s per file")
    print(f"one process per file ({k} files timed):   {single / k:.3f} s per file")
    print(f"per-file cost ratio: {fig['ratio_per_process_over_batch']}x wall, {fig['cpu_ratio_per_process_over_batch']}x CPU "
          f"(CPU s per file: batch {fig['batch_cpu_s_per_file']}, per process {fig['per_process_cpu_s_per_file']}; "
          f"load average {fig['load_average_1min']} on {os.cpu_count()} cores)")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=2) + "\n")


if __name__ == "__main__":
    main()
