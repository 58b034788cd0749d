"""Distributed block prediction: 1 vs 2 Dask workers vs single-process streaming, and resume.

Run from the repository root::

    .venv/bin/python benchmarks/bench_distributed.py                         # N = 4032, blocks of 2016 px
    .venv/bin/python benchmarks/bench_distributed.py --size 8064 --block-size 4032 --json out.json
    .venv/bin/python benchmarks/bench_distributed.py --size 1344 --block-size 672 --skip resume   # quick

All parts run in one invocation on one synthetic 9-band uint16 GeoTIFF of N x N pixels (written
strip by strip to a temporary folder, deleted at the end), so the ratios compare runs measured
on the same machine under the same load:

1. ``single``: :func:`core.inference.streaming.predict_geotiff` in a fresh subprocess (the streaming path
   of ``predict``): wall time (model load excluded), Mpx/s, peak RSS.
2. ``dask-1`` and ``dask-2``: :func:`core.inference.blocks.predict_distributed` on a LocalCluster of 1
   and 2 worker processes (``cores / workers`` torch threads each): wall time including cluster
   start and one model load per worker, Mpx/s, peak RSS of each worker (``getrusage`` high-water
   mark reported by its tasks), tiles computed (halo included). Overhead = wall / single wall.
3. ``resume``: ``python -m trainer predict --engine dask --workers 2`` run clean (timed), then
   again in a fresh blocks folder killed with SIGKILL (whole process group, workers included) once
   half the blocks are in the manifest, then rerun: time of the resumed run / clean run, and
   the blocks it redid.

Output sizes that are multiples of the block size avoid sliver blocks; block sizes are rounded
to a multiple of the tile stride (tile - overlap).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from bench_inference import run_child, write_synthetic  # noqa: E402


def bench_dask(src: Path, out: Path, args, workers: int) -> dict:
    """One distributed run on a fresh LocalCluster of ``workers`` processes."""
    from core.classes import scheme_of
    from core.inference.block_sources import RasterSource
    from core.inference.blocks import block_grid_summary, local_workers, predict_distributed
    from core.inference.policy import plan_run
    from models.bundle import read_card
    from models.runtimes import ForwardFactory, onnx_path_for

    card = read_card(args.bundle)
    policy = plan_run(card, args.size, args.size, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                      runtime=args.runtime)
    n_blocks = block_grid_summary(args.size, args.size, block_size=args.block_size, tile=args.tile, overlap=args.overlap)["n_blocks"]
    threads = max(1, (os.cpu_count() or 1) // local_workers(workers, n_blocks))  # as predict_dask divides the cores
    onnx = str(onnx_path_for(args.bundle)) if args.runtime != "torch" else None
    factory = ForwardFactory(str(Path(args.bundle).resolve()), runtime=args.runtime, precision="fp32", threads=threads,
                             onnx_path=onnx)
    t0 = time.perf_counter()
    res = predict_distributed(
        RasterSource(str(src), tuple(card.bands)), factory, out, num_classes=card.num_classes,
        class_ids=[int(c["id"]) for c in card.classes["classes"]], colormap=scheme_of(card).colormap(),
        policy=policy, block_size=args.block_size, workers=workers,
    )
    wall = time.perf_counter() - t0
    per_worker: dict[int, float] = {}
    for s in res.stats:
        per_worker[s["pid"]] = max(per_worker.get(s["pid"], 0.0), s["peak_rss_mb"])
    g = block_grid_summary(args.size, args.size, block_size=args.block_size, tile=args.tile, overlap=args.overlap)
    return {"workers": workers, "threads_per_worker": threads, "wall_s": wall, "mpx_s": args.size**2 / wall / 1e6,
            "blocks": res.n_blocks, "block_size": res.block_size, "tiles": g["tiles_blocks"],
            "halo_overhead": g["halo_overhead"], "block_seconds": sorted(s["seconds"] for s in res.stats),
            "peak_rss_per_worker_mib": sorted(per_worker.values())}


def bench_resume(src: Path, tmp: Path, args) -> dict:
    """Clean CLI run, a run killed at 50 % of the blocks, and its resumption."""
    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "trainer", "predict", "--checkpoint", args.bundle, "--input", str(src),
                "--output", str(out), "--engine", "dask", "--workers", "2", "--block-size", str(args.block_size),
                "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
                "--runtime", args.runtime, "--precision", "fp32", "--offset", "0"]  # synthetic DN: no +1000 offset

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd(tmp / "clean.tif"), capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if r.returncode != 0:
        raise SystemExit(f"the CLI run failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else '?'}")
    clean = time.perf_counter() - t0
    out = tmp / "killed.tif"
    manifest = tmp / "killed.tif.blocks" / "manifest.json"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT, env=env,
                            start_new_session=True)
    t0 = time.perf_counter()
    n_total = None
    done = 0
    while proc.poll() is None:
        try:
            m = json.loads(manifest.read_text())
            done = len(m["blocks"])
            from core.inference.blocks import plan_blocks

            n_total = n_total or len(plan_blocks(args.size, args.size, block_size=args.block_size, tile=args.tile,
                                                 overlap=args.overlap)[1])
            if done * 2 >= n_total:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    proc.wait()
    killed_after = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = subprocess.run(cmd(out), check=True, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    resumed = time.perf_counter() - t0
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("resumed:")), "")
    import rasterio

    with rasterio.open(tmp / "clean.tif") as a, rasterio.open(out) as b:
        same = float((a.read(1) == b.read(1)).mean())
    return {"clean_s": clean, "killed_after_s": killed_after, "blocks_done_at_kill": done, "blocks": n_total,
            "resumed_s": resumed, "resumed_over_clean": resumed / clean, "resume_line": line, "labels_equal_clean": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4032, help="raster side N in pixels (default 4032)")
    p.add_argument("--block-size", type=int, default=2016, help="block side in pixels (default 2016 = 9 strides)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bundle", default="models/default")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime", "openvino"])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (default 1 2)")
    p.add_argument("--skip", nargs="*", default=[], help="parts to leave out: single, dask<N> (e.g. dask1), resume")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    report: dict = {"size": args.size, "cores": os.cpu_count(), "runtime": args.runtime}
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "in.tif"
        print(f"writing a {args.size} x {args.size} x 9 uint16 raster ...", flush=True)
        write_synthetic(src, args.size)
        if "single" not in args.skip:
            r = run_child({"mode": "tiled", "bundle": args.bundle, "precision": "fp32", "tile": args.tile,
                           "overlap": args.overlap, "batch_size": args.batch_size, "src": str(src), "dst": str(tmp / "single.tif")})
            r["mpx_s"] = args.size**2 / r["wall_s"] / 1e6
            report["single"] = r
            print(f"single process: {r['wall_s']:.1f} s (model load {r['load_s']:.1f} s excluded), {r['mpx_s']:.3f} Mpx/s, "
                  f"{r['n_tiles']} tiles, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        for w in args.workers:
            if f"dask{w}" in args.skip:
                continue
            r = bench_dask(src, tmp / f"dask{w}.tif", args, w)
            report[f"dask{w}"] = r
            print(f"dask, {w} worker(s) x {r['threads_per_worker']} thread(s): {r['wall_s']:.1f} s, {r['mpx_s']:.3f} Mpx/s, "
                  f"{r['blocks']} blocks of {r['block_size']} px, {r['tiles']} tiles (halo x{r['halo_overhead']:.2f}), "
                  f"peak RSS per worker {', '.join(f'{m:.0f}' for m in r['peak_rss_per_worker_mib'])} MiB", flush=True)
        if "single" in report:
            import rasterio

            with rasterio.open(tmp / "single.tif") as a:
                ref = a.read(1)
            for w in args.workers:
                if f"dask{w}" in report:
                    with rasterio.open(tmp / f"dask{w}.tif") as b:
                        report[f"dask{w}"]["labels_equal_single"] = float((b.read(1) == ref).mean())
                    report[f"dask{w}"]["overhead_vs_single"] = report[f"dask{w}"]["wall_s"] / report["single"]["wall_s"]
        if "dask1" in report and "dask2" in report:
            report["speedup_2_vs_1"] = report["dask1"]["wall_s"] / report["dask2"]["wall_s"]
        if "resume" not in args.skip:
            r = bench_resume(src, tmp, args)
            report["resume"] = r
            print(f"resume: clean run {r['clean_s']:.1f} s; killed after {r['blocks_done_at_kill']}/{r['blocks']} blocks "
                  f"({r['killed_after_s']:.1f} s); resumed run {r['resumed_s']:.1f} s = {r['resumed_over_clean']:.2f} x clean "
                  f"[{r['resume_line']}]; labels equal to the clean run: {r['labels_equal_clean']:.5f}", flush=True)
    print("\nsummary")
    for w in args.workers:
        r = report.get(f"dask{w}")
        if r and "overhead_vs_single" in r:
            print(f"  dask {w} worker(s): wall {r['overhead_vs_single']:.2f} x single process; labels equal {r['labels_equal_single']:.5f}")
    if "speedup_2_vs_1" in report:
        print(f"  2 workers vs 1: {report['speedup_2_vs_1']:.2f} x throughput")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
