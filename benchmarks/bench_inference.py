"""Inference benchmark: machine throughput, tiled inference speed and memory, overhead, FLOPs, bf16.

Run from the repository root::

    .venv/bin/python benchmarks/bench_inference.py                      # full run (4096 and 16384)
    .venv/bin/python benchmarks/bench_inference.py --sizes 512 1024 --batch-size 2   # quick check
    .venv/bin/python benchmarks/bench_inference.py --json bench.json    # also write the figures

Parts (each runs on its own; a failure prints a message and the others go on):

1. Matmul throughput of square n x n matrices in fp32 and bf16 (GFLOP/s = 2 n^3 / t), and
   whether oneDNN reports native bf16.
2. Streaming tiled inference (:func:`core.inference.streaming.predict_geotiff`) of the bundle on synthetic
   9-band uint16 GeoTIFFs of N x N pixels, each in a separate subprocess so that peak RSS is its
   own: pixels/s, km^2/s at 10 m, wall time, peak RSS. Target: peak RSS of 16384 within 10 % of
   4096 (memory does not grow with the raster).
3. Naive baseline on the smallest N (whole raster in memory, non-overlapping tiles, no blending),
   also in a subprocess. Target: tiled wall time <= 1.3 x naive.
4. FLOPs of one forward pass on a (1, 9, T, T) tile (``torch.utils.flop_counter``) and the
   achieved FLOP/s of tiled inference as a fraction of matmul throughput. Target: >= 50 %.
5. bf16 vs fp32: argmax agreement on one random batch and the speed of each.

Rasters are written window by window into a temporary folder (never whole in memory) and deleted.
If the bundle folder (default ``models/default``) holds no bundle, a randomly initialised
U-Net/ResNet-18 with the same bands and classes is used instead (same cost per tile).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
PIXEL_M2 = 100.0  # 10 m GSD
TARGET_MEM_RATIO = 1.10
TARGET_OVERHEAD = 1.3
TARGET_FLOP_FRACTION = 0.5


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def bf16_native() -> bool | str:
    """Whether oneDNN reports native bf16 support (or the error text)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__}: {exc})"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_bundle(path: str, precision: str):
    """Load the bundle at ``path``; fall back to a random U-Net/ResNet-18 if there is none.

    Returns:
        (bundle, description)

    """
    from models.bundle import Bundle, BundleError, ModelCard, load_bundle

    try:
        return load_bundle(path, precision=precision), f"bundle {path}"
    except (BundleError, FileNotFoundError, OSError) as exc:
        reason = str(exc).splitlines()[0]
    from models.registry import create_model

    torch.manual_seed(0)
    card = ModelCard(
        name="random",
        arch="unet",
        encoder="resnet18",
        bands=list(BANDS),
        mean=[0.0] * 9,
        std=[1.0] * 9,
        classes={
            "name": "dynamic_world",
            "title": "DW",
            "ignore_index": 255,
            "classes": [{"id": i, "name": f"c{i}", "color": "#000000"} for i in range(9)],
        },
    )
    model = create_model("unet", "resnet18", in_channels=9, num_classes=9)
    return Bundle(model, card, precision=precision), f"random unet/resnet18 (no bundle: {reason})"


class TimedForward:
    """Wraps a bundle callable and sums the time spent in it."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.seconds = 0.0
        self.calls = 0
        self.tiles = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.fn(x)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.tiles += x.shape[0]
        return out


def write_synthetic(path: Path, n: int, seed: int = 0, strip: int = 256) -> float:
    """Write an n x n, 9-band uint16 tiled GeoTIFF strip by strip; returns seconds taken."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "height": n,
        "width": n,
        "count": 9,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 5800000.0, 10.0, 10.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    # random-ish: a smooth per-band gradient plus noise, kept in 500..4000
    cols = np.linspace(0.0, 1.0, n, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        ds.descriptions = tuple(BANDS)
        for r0 in range(0, n, strip):
            h = min(strip, n - r0)
            rows = (np.arange(r0, r0 + h, dtype=np.float32) / n)[:, None]
            base = 500.0 + 2500.0 * (0.5 * rows + 0.5 * cols[None, :])  # (h, n)
            noise = rng.integers(0, 1000, size=(9, h, n), dtype=np.uint16)
            data = (base[None].astype(np.uint16) + noise).clip(500, 4000).astype(np.uint16)
            ds.write(data, window=Window(0, r0, n, h))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# workers (run in a child process)
# --------------------------------------------------------------------------------------------


def worker(spec: dict) -> dict:
    """Body of a child process: one tiled or naive run; returns its figures."""
    torch.set_grad_enabled(False)
    t_load = time.perf_counter()
    b, desc = make_bundle(spec["bundle"], spec["precision"])
    load_s = time.perf_counter() - t_load
    tile, bs = spec["tile"], spec["batch_size"]
    # warm up oneDNN kernels so the first batch does not count its set-up
    b(np.full((min(bs, 2), len(b.bands), tile, tile), 1000.0, dtype=np.float32))
    rss_ready = peak_rss_mib()
    fwd = TimedForward(b)
    out: dict = {"bundle": desc, "precision": b.precision, "load_s": load_s, "threads": torch.get_num_threads()}
    if spec["mode"] == "tiled":
        import rasterio

        from core.inference.policy import plan_run
        from core.inference.streaming import predict_geotiff

        with rasterio.open(spec["src"]) as ds:
            h, w = ds.height, ds.width
        policy = plan_run(b.card, h, w, tile=tile, overlap=spec["overlap"], batch_size=bs, runtime="torch")
        t0 = time.perf_counter()
        predict_geotiff(spec["src"], spec["dst"], fwd, policy, bands=b.bands, num_classes=b.num_classes, class_ids=b.class_ids)
        wall = time.perf_counter() - t0
        out.update(n_tiles=fwd.tiles)
    else:  # naive
        import rasterio

        t0 = time.perf_counter()
        with rasterio.open(spec["src"]) as src:
            names = list(src.descriptions)
            idx = [names.index(bn) + 1 for bn in b.bands]
            data = src.read(idx)  # whole raster, uint16 (C, H, W)
        read_s = time.perf_counter() - t0
        _, h, w = data.shape
        lut = np.asarray(b.class_ids, dtype=np.uint8)
        classes = np.empty((h, w), dtype=np.uint8)
        origins = [(r, c) for r in range(0, h, tile) for c in range(0, w, tile)]
        for i in range(0, len(origins), bs):
            chunk = origins[i : i + bs]
            x = np.zeros((len(chunk), data.shape[0], tile, tile), dtype=np.float32)
            for j, (r, c) in enumerate(chunk):
                part = data[:, r : r + tile, c : c + tile]
                x[j, :, : part.shape[1], : part.shape[2]] = part
            probs = fwd(x)
            cls = lut[probs.argmax(axis=1)]
            for j, (r, c) in enumerate(chunk):
                hh, ww = min(tile, h - r), min(tile, w - c)
                classes[r : r + hh, c : c + ww] = cls[j, :hh, :ww]
        wall = time.perf_counter() - t0
        out.update(
            n_tiles=len(origins), read_s=read_s, checksum=int(classes[:: max(1, h // 64), :: max(1, w // 64)].sum())
        )
    out.update(
        wall_s=wall,
        forward_s=fwd.seconds,
        forward_tiles=fwd.tiles,
        rss_ready_mib=rss_ready,
        peak_rss_mib=peak_rss_mib(),
    )
    return out


def run_child(spec: dict, timeout: float | None = None) -> dict:
    """Run :func:`worker` in a fresh interpreter; parse its RESULT line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    raise RuntimeError(f"child exited with {proc.returncode}:\n    " + "\n    ".join(tail))


# --------------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------------


def bench_matmul(n: int, repeats: int) -> dict:
    """GFLOP/s of an n x n matmul in fp32 and bf16 (best and median of ``repeats``)."""
    res: dict = {"n": n, "repeats": repeats, "bf16_native": bf16_native()}
    flop = 2.0 * n**3
    for name, dtype, reps in (("fp32", torch.float32, repeats), ("bf16", torch.bfloat16, max(1, repeats // 2))):
        try:
            a = torch.randn(n, n, dtype=dtype)
            b = torch.randn(n, n, dtype=dtype)
            torch.matmul(a, b)  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                torch.matmul(a, b)
                times.append(time.perf_counter() - t0)
            res[name] = {
                "best_gflops": flop / min(times) / 1e9,
                "median_gflops": flop / float(np.median(times)) / 1e9,
                "times_s": times,
            }
        except Exception as exc:  # noqa: BLE001
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return res


def count_flops(bundle, tile: int) -> float:
    """FLOPs of one forward pass of ``bundle.model`` on a (1, C, tile, tile) input."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, len(bundle.bands), tile, tile).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        bundle.model(x)
    return float(fc.get_total_flops())


def bench_bf16(model, card, tile: int, batch: int) -> dict:
    """Argmax agreement fp32 vs bf16 on one random batch, and the time of each."""
    from models.bundle import Bundle

    rng = np.random.default_rng(1)
    x = rng.uniform(500, 4000, size=(batch, len(card.bands), tile, tile)).astype(np.float32)
    res: dict = {"batch": batch, "tile": tile}
    preds = {}
    for prec in ("fp32", "bf16"):
        b = Bundle(model, card, precision=prec)
        b(x[:1])  # warm-up
        t0 = time.perf_counter()
        p = b(x)
        dt = time.perf_counter() - t0
        preds[prec] = p.argmax(axis=1)
        res[prec] = {"seconds": dt, "tiles_per_s": batch / dt, "mpix_per_s": batch * tile * tile / dt / 1e6}
    res["agreement"] = float((preds["fp32"] == preds["bf16"]).mean())
    res["bf16_slowdown"] = res["bf16"]["seconds"] / res["fp32"]["seconds"]
    return res


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def fmt(v, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384], help="raster sides N (default 4096 16384)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--bundle", default="models/default", help="bundle folder (random model if absent)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--matmul-n", type=int, default=2048, help="matmul side (default 2048)")
    p.add_argument("--matmul-repeats", type=int, default=4)
    p.add_argument("--bf16-batch", type=int, default=2, help="batch for the bf16 check (default 2)")
    p.add_argument(
        "--skip", nargs="*", default=[], choices=["matmul", "tiled", "naive", "flops", "bf16"], help="parts to skip"
    )
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker is not None:
        res = worker(json.loads(args._worker))
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    sizes = sorted(set(args.sizes))
    bundle_path = args.bundle if os.path.isabs(args.bundle) else str(REPO_ROOT / args.bundle)
    report: dict = {
        "settings": {
            "sizes": sizes,
            "tile": args.tile,
            "overlap": args.overlap,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "bundle": args.bundle,
            "matmul_n": args.matmul_n,
            "matmul_repeats": args.matmul_repeats,
            "bf16_batch": args.bf16_batch,
        },
        "machine": {
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }
    print("== settings ==")
    for k, v in report["settings"].items():
        print(f"  {k:15s} {v}")
    for k, v in report["machine"].items():
        print(f"  {k:15s} {v}")

    # ---- 1. matmul --------------------------------------------------------------------------
    mm = None
    if "matmul" not in args.skip:
        print(f"\n== 1. matmul throughput ({args.matmul_n}x{args.matmul_n}) ==")
        try:
            mm = bench_matmul(args.matmul_n, args.matmul_repeats)
            report["matmul"] = mm
            print(f"  bf16 native (oneDNN): {mm['bf16_native']}")
            for prec in ("fp32", "bf16"):
                r = mm[prec]
                if "error" in r:
                    print(f"  {prec}: failed: {r['error']}")
                else:
                    print(f"  {prec}: best {r['best_gflops']:8.1f} GFLOP/s   median {r['median_gflops']:8.1f} GFLOP/s")
        except Exception as exc:  # noqa: BLE001
            print(f"  matmul benchmark failed: {type(exc).__name__}: {exc}")

    # ---- parent-side bundle (FLOPs, bf16 check) -----------------------------------------------
    bundle = desc = None
    try:
        bundle, desc = make_bundle(bundle_path, args.precision)
        report["bundle"] = {
            "description": desc,
            "precision_used": bundle.precision,
            "arch": bundle.card.arch,
            "encoder": bundle.card.encoder,
        }
        print(f"\n  model: {desc}; precision used: {bundle.precision}")
    except Exception as exc:  # noqa: BLE001
        print(f"\n  could not build the model: {type(exc).__name__}: {exc}")

    # ---- 4a. FLOPs per tile -------------------------------------------------------------------
    flops_tile = None
    if bundle is not None and "flops" not in args.skip:
        try:
            flops_tile = count_flops(bundle, args.tile)
            report["flops_per_tile"] = flops_tile
            print(f"  FLOPs per (1,{len(bundle.bands)},{args.tile},{args.tile}) forward: {flops_tile / 1e9:.2f} GFLOP")
        except Exception as exc:  # noqa: BLE001
            print(f"  FLOP count failed: {type(exc).__name__}: {exc}")

    # ---- 2./3. tiled and naive runs -----------------------------------------------------------
    tiled: dict[int, dict] = {}
    naive = None
    tmp = Path(tempfile.mkdtemp(prefix="lulc_bench_"))
    base_spec = {
        "bundle": bundle_path,
        "precision": args.precision,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
    }
    try:
        for n in sizes:
            if "tiled" in args.skip and ("naive" in args.skip or n != sizes[0]):
                continue
            src = tmp / f"synthetic_{n}.tif"
            try:
                gen_s = write_synthetic(src, n)
                print(
                    f"\n  wrote synthetic {n}x{n}x9 uint16 raster in {gen_s:.1f} s "
                    f"({src.stat().st_size / 2**20:.0f} MiB)"
                )
            except Exception as exc:  # noqa: BLE001
                print(f"\n  could not write the {n}x{n} raster: {type(exc).__name__}: {exc}")
                continue
            try:
                if "tiled" not in args.skip:
                    print(f"  tiled inference N={n} ...", flush=True)
                    try:
                        r = run_child(
                            {**base_spec, "mode": "tiled", "src": str(src), "dst": str(tmp / f"pred_{n}.tif")}
                        )
                        r["pixels_per_s"] = n * n / r["wall_s"]
                        r["km2_per_s"] = n * n * PIXEL_M2 / 1e6 / r["wall_s"]
                        tiled[n] = r
                        print(
                            f"    {r['wall_s']:.1f} s, {r['pixels_per_s'] / 1e6:.3f} Mpx/s, "
                            f"peak RSS {r['peak_rss_mib']:.0f} MiB"
                        )
                    except Exception as exc:  # noqa: BLE001
                        print(f"    tiled run N={n} failed: {type(exc).__name__}: {exc}")
                if n == sizes[0] and "naive" not in args.skip:
                    print(f"  naive baseline N={n} ...", flush=True)
                    try:
                        naive = run_child({**base_spec, "mode": "naive", "src": str(src)})
                        naive["n"] = n
                        naive["pixels_per_s"] = n * n / naive["wall_s"]
                        naive["km2_per_s"] = n * n * PIXEL_M2 / 1e6 / naive["wall_s"]
                        print(
                            f"    {naive['wall_s']:.1f} s, {naive['pixels_per_s'] / 1e6:.3f} Mpx/s, "
                            f"peak RSS {naive['peak_rss_mib']:.0f} MiB"
                        )
                    except Exception as exc:  # noqa: BLE001
                        print(f"    naive run N={n} failed: {type(exc).__name__}: {exc}")
            finally:
                for f in (src, tmp / f"pred_{n}.tif"):
                    f.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["tiled"] = {str(k): v for k, v in tiled.items()}
    report["naive"] = naive

    # ---- tables -------------------------------------------------------------------------------
    if tiled:
        print("\n== 2. tiled streaming inference (predict_geotiff) ==")
        hdr = f"  {'N':>6} {'tiles':>6} {'wall s':>8} {'fwd s':>8} {'Mpx/s':>8} {'km2/s':>8} {'RSS ready':>10} {'peak RSS':>9} {'delta':>7}"
        print(hdr + "   (RSS in MiB; delta = peak - RSS after model load)")
        for n, r in tiled.items():
            print(
                f"  {n:>6} {r['n_tiles']:>6} {r['wall_s']:>8.1f} {r['forward_s']:>8.1f} {r['pixels_per_s'] / 1e6:>8.3f} "
                f"{r['km2_per_s']:>8.3f} {r['rss_ready_mib']:>10.0f} {r['peak_rss_mib']:>9.0f} "
                f"{r['peak_rss_mib'] - r['rss_ready_mib']:>7.0f}"
            )
        if len(tiled) >= 2:
            lo, hi = (4096, 16384) if {4096, 16384} <= set(tiled) else (min(tiled), max(tiled))
            ratio = tiled[hi]["peak_rss_mib"] / tiled[lo]["peak_rss_mib"]
            ok = ratio <= TARGET_MEM_RATIO
            report["memory_ratio"] = {"large": hi, "small": lo, "ratio": ratio, "target": TARGET_MEM_RATIO, "pass": ok}
            print(
                f"  peak RSS ratio {hi} vs {lo}: {ratio:.3f}  (target <= {TARGET_MEM_RATIO:.2f}: {'PASS' if ok else 'FAIL'})"
            )

    if naive:
        n = naive["n"]
        print(f"\n== 3. naive baseline (whole raster in memory, non-overlapping tiles) N={n} ==")
        print(
            f"  tiles {naive['n_tiles']}, wall {naive['wall_s']:.1f} s (read {naive['read_s']:.1f} s, forward "
            f"{naive['forward_s']:.1f} s), {naive['pixels_per_s'] / 1e6:.3f} Mpx/s, "
            f"{naive['km2_per_s']:.3f} km2/s, peak RSS {naive['peak_rss_mib']:.0f} MiB"
        )
        try:
            from core.inference.tiling import TileGrid

            n_grid = TileGrid(n, n, args.tile, args.overlap).n_tiles
            n_plain = math.ceil(n / args.tile) ** 2
            ov: dict = {"n": n, "grid_tiles": n_grid, "plain_tiles": n_plain, "compute_ratio": n_grid / n_plain}
            print(f"  compute ratio (tiled grid {n_grid} tiles / non-overlapping {n_plain}): {n_grid / n_plain:.3f}")
            per_n = {m: TileGrid(m, m, args.tile, args.overlap).n_tiles / math.ceil(m / args.tile) ** 2 for m in sizes}
            limit = (args.tile / (args.tile - args.overlap)) ** 2
            ov["compute_ratio_by_n"] = {str(m): v for m, v in per_n.items()}
            ov["compute_ratio_limit"] = limit
            print(
                "  compute ratio by N: "
                + ", ".join(f"{m}: {v:.3f}" for m, v in per_n.items())
                + f"; large-N limit (T/(T-O))^2 = {limit:.3f}"
            )
            if n in tiled:
                t = tiled[n]
                ov["wall_ratio"] = t["wall_s"] / naive["wall_s"]
                ov["forward_ratio"] = t["forward_s"] / naive["forward_s"]
                ov["pass"] = ov["wall_ratio"] <= TARGET_OVERHEAD
                print(
                    f"  overlap overhead (tiled wall / naive wall): {ov['wall_ratio']:.3f}  "
                    f"(target <= {TARGET_OVERHEAD}: {'PASS' if ov['pass'] else 'FAIL'}); "
                    f"forward-time ratio {ov['forward_ratio']:.3f}"
                )
            report["overhead"] = ov
        except Exception as exc:  # noqa: BLE001
            print(f"  overhead computation failed: {type(exc).__name__}: {exc}")

    # ---- 4b. achieved FLOP/s -------------------------------------------------------------------
    if flops_tile and tiled:
        print("\n== 4. achieved FLOP/s of tiled inference ==")
        rows = []
        for n, r in tiled.items():
            prec = r["precision"]
            peak = (mm or {}).get(prec, {}).get("best_gflops")
            achieved = flops_tile * r["n_tiles"] / r["wall_s"] / 1e9
            fwd_only = flops_tile * r["n_tiles"] / r["forward_s"] / 1e9 if r["forward_s"] else None
            frac = achieved / peak if peak else None
            rows.append(
                {
                    "n": n,
                    "precision": prec,
                    "achieved_gflops": achieved,
                    "forward_only_gflops": fwd_only,
                    "matmul_gflops": peak,
                    "fraction": frac,
                    "pass": None if frac is None else frac >= TARGET_FLOP_FRACTION,
                }
            )
            print(
                f"  N={n:>6} [{prec}] {achieved:8.1f} GFLOP/s over wall ({fmt(fwd_only, '.1f')} over forward only); "
                f"matmul {fmt(peak, '.1f')} GFLOP/s -> {fmt(None if frac is None else 100 * frac, '.0f')} % "
                f"(target >= {100 * TARGET_FLOP_FRACTION:.0f} %: "
                f"{'-' if frac is None else ('PASS' if frac >= TARGET_FLOP_FRACTION else 'FAIL')})"
            )
        report["achieved_flops"] = rows

    # ---- 5. bf16 check -------------------------------------------------------------------------
    if bundle is not None and "bf16" not in args.skip:
        print(f"\n== 5. bf16 vs fp32 (batch {args.bf16_batch} of {args.tile}x{args.tile}) ==")
        try:
            r = bench_bf16(bundle.model, bundle.card, args.tile, args.bf16_batch)
            report["bf16"] = r
            print(
                f"  fp32: {r['fp32']['seconds']:.2f} s ({r['fp32']['tiles_per_s']:.2f} tiles/s)   "
                f"bf16: {r['bf16']['seconds']:.2f} s ({r['bf16']['tiles_per_s']:.2f} tiles/s)   "
                f"bf16 slowdown x{r['bf16_slowdown']:.1f}"
            )
            print(f"  argmax agreement fp32 vs bf16: {100 * r['agreement']:.2f} % of pixels")
        except Exception as exc:  # noqa: BLE001
            print(f"  bf16 check failed: {type(exc).__name__}: {exc}")

    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
            print(f"\nwrote {args.json}")
        except Exception as exc:  # noqa: BLE001
            print(f"\ncould not write {args.json}: {exc}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
