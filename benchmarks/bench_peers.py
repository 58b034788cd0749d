"""Our streaming ``predict`` against the peers' tiled inference: same U-Net weights, same raster, same tiles.

Run from the repository root (the peers live in their own environment, never the app's)::

    python3 -m venv .venv-peers && .venv-peers/bin/pip install -r benchmarks/requirements-peers.txt
    .venv/bin/python benchmarks/bench_peers.py                      # 4096 x 4096 mosaic
    .venv/bin/python benchmarks/bench_peers.py --size 8192 --json peers.json

One invocation, one machine, one load, so the ratios compare like with like:

* the raster: ``--scene`` (a sample-pack Sentinel-2 scene) mirrored and tiled up to ``--size`` x
  ``--size`` px, written to a temporary folder (deleted at the end), and its top-left
  ``--seam-crop`` square as a second file;
* the network: the default bundle's smp U-Net (``models/default``: ``card.json`` + ``model.safetensors``),
  built in every tool from the same safetensors file, normalised with the card's mean/std (NaN -> 0);
* the tools, each in a fresh process under ``/usr/bin/time -f %M`` (wall time includes start-up and
  model load; peak RSS is the process high-water mark):

  - ``ours`` / ``ours-onnxruntime``: ``python -m trainer predict --checkpoint models/default`` (the
    streaming path; tile and overlap from the card, 256 / 32 px), runtime torch and onnxruntime;
  - ``terratorch``: ``terratorch.tasks.tiled_inference`` on the whole raster as one tensor (as its API
    takes it) with ``crop`` = tile, ``stride`` = tile - overlap, ``delta`` 0, blending and averaging on
    (its defaults), batch 8;
  - ``torchgeo``: a ``RasterDataset`` read through ``GridGeoSampler(size=tile, stride=tile - overlap)``
    and a ``DataLoader(collate_fn=stack_samples)``, each chip's argmax written at its bounds (the
    loop of torchgeo's docs and discussions; later chips overwrite the overlap);
  - ``geoai``: ``geoai.train.semantic_segmentation`` (smp U-Net from a ``.pth`` state dict, window =
    tile, overlap = overlap); it divides the input by 255, so it gets the normalised bands x 255 as a
    float32 GeoTIFF, written inside the timed process;

* seams: every tool also runs on the crop, and so does one whole-crop forward pass of the network
  (``full-frame``, the reference). Reported: label agreement with it over the crop, and the
  disagreement rate in the band within 8 px of the stride lines (x or y a multiple of
  tile - overlap, where every tool's tiles meet) against the rest of the crop.

Prints a Markdown table (and ``--json``). A peer that cannot be imported or run is reported with
the reason instead of a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENE = "virginia-2016-01-12"
BAND_WIDTH = 8


# ----------------------------------------------------------------------------- worker side (peers' venv)

def _network(bundle: Path):
    """The bundle's smp U-Net from card + safetensors, without this project's code."""
    import segmentation_models_pytorch as smp
    import torch
    from safetensors.torch import load_file

    card = json.loads((bundle / "card.json").read_text())
    if card["arch"] != "unet":
        raise SystemExit(f"bench_peers runs smp U-Net bundles, not {card['arch']}")
    net = smp.Unet(encoder_name=card["encoder"], encoder_weights=None, in_channels=len(card["bands"]),
                   classes=len(card["classes"]["classes"]))
    net.load_state_dict({k: v.float() for k, v in load_file(str(bundle / "model.safetensors")).items()})
    net.eval()
    mean = torch.tensor(card["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(card["std"], dtype=torch.float32).view(1, -1, 1, 1)
    ids = [int(c["id"]) for c in card["classes"]["classes"]]

    def forward(x):  # raw (B, C, H, W) -> logits (B, K, H, W)
        with torch.inference_mode():
            return net(torch.nan_to_num((x.float() - mean) / std, nan=0.0))

    return card, forward, ids


def _band_indexes(src, card) -> list[int]:
    names = list(src.descriptions)
    return [names.index(b) + 1 for b in card["bands"]]


def _write_labels(path: str, labels, profile) -> None:
    import rasterio

    prof = dict(profile)
    prof.update(count=1, dtype="uint8", nodata=None, compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **prof) as d:
        d.write(labels.astype("uint8"), 1)


def _worker(tool: str, bundle: Path, inp: str, out: str, tile: int, overlap: int, batch: int) -> None:
    import numpy as np
    import rasterio
    import torch

    card, forward, ids = _network(bundle)
    lut = np.asarray(ids, dtype=np.uint8)
    with rasterio.open(inp) as src:
        profile, bidx = src.profile.copy(), _band_indexes(src, card)
        height, width, transform = src.height, src.width, src.transform
        if tool in ("terratorch", "full-frame"):
            x = torch.from_numpy(src.read(bidx).astype(np.float32))[None]  # the whole raster in memory
    if tool == "full-frame":
        labels = forward(x).argmax(1)[0].numpy()
    elif tool == "terratorch":
        from terratorch.tasks.tiled_inference import tiled_inference

        logits = tiled_inference(forward, x, out_channels=len(ids), crop=tile, stride=tile - overlap, delta=0, padding=False,
                                 batch_size=batch, average_patches=True, blend_overlaps=True)
        labels = logits.argmax(1)[0].numpy()
    elif tool == "torchgeo":
        from torch.utils.data import DataLoader
        from torchgeo.datasets import RasterDataset, stack_samples
        from torchgeo.samplers import GridGeoSampler

        class Scene(RasterDataset):
            filename_glob = Path(inp).name
            is_image = True
            separate_files = False

        ds = Scene(paths=str(Path(inp).parent))
        ds.band_indexes = bidx
        sampler = GridGeoSampler(ds, size=tile, stride=tile - overlap)
        loader = DataLoader(ds, sampler=sampler, batch_size=batch, collate_fn=stack_samples)
        labels = np.zeros((height, width), dtype=np.int64)
        res_x, res_y = transform.a, -transform.e
        for b in loader:
            pred = forward(b["image"]).argmax(1).numpy()
            for p, bounds in zip(pred, b["bounds"], strict=True):
                xs, ys = bounds[0], bounds[1]
                c0 = int(round((xs.start - transform.c) / res_x))
                r0 = int(round((transform.f - ys.stop) / res_y))
                # the sampler steps up from the bottom edge, so its last row of chips can reach past the top
                # (and its last column past the right edge): keep the part inside the raster
                sr, sc = max(0, -r0), max(0, -c0)
                r1, c1 = min(height, r0 + p.shape[0]), min(width, c0 + p.shape[1])
                labels[r0 + sr:r1, c0 + sc:c1] = p[sr:r1 - r0, sc:c1 - c0]
    elif tool == "geoai":
        import rasterio
        from geoai.train import semantic_segmentation

        # geoai divides every pixel by 255 and builds smp.Unet itself from a .pth state dict: give it
        # the card's normalisation as (x - mean) / std * 255 in float32 (written here, inside the timing)
        mean = np.asarray(card["mean"], np.float32)[:, None, None]
        std = np.asarray(card["std"], np.float32)[:, None, None]
        scaled, weights, raw = Path(out + ".in.tif"), Path(out + ".pth"), Path(out + ".raw.tif")
        with rasterio.open(inp) as src:
            a = src.read(bidx).astype(np.float32)
        a = np.nan_to_num((a - mean) / std, nan=0.0) * np.float32(255.0)
        prof = dict(profile, count=a.shape[0], dtype="float32", nodata=None, compress="deflate", tiled=True,
                    blockxsize=256, blockysize=256)
        with rasterio.open(scaled, "w", **prof) as d:
            d.write(a)
        del a
        from safetensors.torch import load_file

        torch.save({k: v.float() for k, v in load_file(str(bundle / "model.safetensors")).items()}, weights)
        semantic_segmentation(str(scaled), str(raw), str(weights), architecture="unet", encoder_name=card["encoder"],
                              num_channels=len(card["bands"]), num_classes=len(ids), window_size=tile, overlap=overlap,
                              batch_size=batch, device=torch.device("cpu"), quiet=True)
        with rasterio.open(raw) as r:
            labels = r.read(1).astype(np.int64)
        for f in (scaled, weights, raw):
            f.unlink(missing_ok=True)
    else:
        raise SystemExit(f"unknown tool {tool}")
    _write_labels(out, lut[labels], profile)


# ----------------------------------------------------------------------------- orchestrator (project venv)

def _mosaic(scene_dir: Path, size: int, path: Path, crop: int, crop_path: Path) -> None:
    import numpy as np
    import rasterio
    with rasterio.open(scene_dir / "image_s2.tif") as s:
        a, prof, names = s.read(), s.profile.copy(), list(s.descriptions)
    while a.shape[1] < size or a.shape[2] < size:  # mirror, so the mosaic has no hard seams of its own
        a = np.concatenate([np.concatenate([a, a[:, :, ::-1]], 2), np.concatenate([a[:, ::-1], a[:, ::-1, ::-1]], 2)], 1)
    a = np.ascontiguousarray(a[:, :size, :size])
    prof.update(width=size, height=size, driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    for p, arr in ((path, a), (crop_path, a[:, :crop, :crop])):
        prof.update(width=arr.shape[2], height=arr.shape[1])
        with rasterio.open(p, "w", **prof) as d:
            d.write(arr)
            for i, n in enumerate(names):
                d.set_band_description(i + 1, n)


def _timed(cmd: list[str], env: dict | None = None, timeout: int = 7200) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env, timeout=timeout,
                       cwd=REPO_ROOT)
    wall = time.perf_counter() - t0
    lines = r.stderr.strip().splitlines()
    if r.returncode:
        why = next((ln for ln in reversed(lines[:-1]) if ln.strip()), "no message")
        return {"error": why.strip()[:200]}
    return {"wall_s": round(wall, 2), "peak_rss_gb": round(int(lines[-1]) / 1024 ** 2, 3)}


def _labels(path: Path):
    import rasterio

    with rasterio.open(path) as s:
        return s.read(1)


def _seams(got, ref, stride: int) -> dict:
    import numpy as np

    h, w = ref.shape
    yy, xx = np.mgrid[:h, :w]
    dy, dx = yy % stride, xx % stride
    near = (np.minimum(dy, stride - dy) < BAND_WIDTH) | (np.minimum(dx, stride - dx) < BAND_WIDTH)
    near &= (yy >= BAND_WIDTH) & (xx >= BAND_WIDTH) & (yy < h - BAND_WIDTH) & (xx < w - BAND_WIDTH)
    inner = ~near
    diff = got != ref
    return {"agreement": round(float(1 - diff.mean()), 5), "edge_disagreement": round(float(diff[near].mean()), 5),
            "interior_disagreement": round(float(diff[inner].mean()), 5)}


def _versions(python: str) -> dict:
    code = ("import json, importlib.metadata as m\nout = {}\nfor p in ('torch', 'terratorch', 'torchgeo', "
            "'segmentation-models-pytorch', 'onnxruntime', 'geoai-py'):\n    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table. Returns the exit code (0; 2 for bad arguments)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="mosaic side in px (default 4096)")
    ap.add_argument("--scene", default=DEFAULT_SCENE, help="sample-pack scene to tile")
    ap.add_argument("--data", default=os.environ.get("LULC_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")))
    ap.add_argument("--bundle", default=str(REPO_ROOT / "models" / "default"))
    ap.add_argument("--peers-python", default=str(REPO_ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--seam-crop", type=int, default=1024, help="side of the crop for the seam comparison (multiple of 32)")
    ap.add_argument("--tools", default="ours,ours-onnxruntime,terratorch,torchgeo,geoai",
                    help="comma-separated subset of ours, ours-onnxruntime, terratorch, torchgeo, geoai")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    card = json.loads((Path(args.bundle) / "card.json").read_text())
    tile = int(card["tile"])
    overlap = int(card.get("metrics", {}).get("overlap", 32))
    if args.worker:
        _worker(args.worker, Path(args.bundle), args.input, args.output, tile, overlap, 8)
        return 0
    if args.seam_crop % 32 or args.seam_crop > args.size:
        print("--seam-crop must be a multiple of 32 and at most --size", file=sys.stderr)
        return 2
    tools = [t for t in args.tools.split(",") if t]
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        tmp = Path(tmp)
        big, crop = tmp / "big" / "mosaic.tif", tmp / "crop" / "crop.tif"
        big.parent.mkdir()
        crop.parent.mkdir()
        _mosaic(Path(args.data) / "samples" / args.scene, args.size, big, args.seam_crop, crop)
        peers_ok = Path(args.peers_python).exists()

        def command(tool: str, inp: Path, out: Path) -> list[str] | None:
            if tool.startswith("ours"):
                rt = tool.split("-", 1)[1] if "-" in tool else "torch"
                return [py, "-m", "trainer", "predict", "--checkpoint", args.bundle, "--input", str(inp),
                        "--output", str(out), "--runtime", rt]
            if not peers_ok:
                return None
            return [args.peers_python, str(Path(__file__).resolve()), "--worker", tool, "--bundle", args.bundle,
                    "--input", str(inp), "--output", str(out)]

        ff = command("full-frame", crop, tmp / "ref.tif") if peers_ok else None
        if ff is None:  # the reference pass needs only torch + smp: run it with the project's python
            ff = [py, str(Path(__file__).resolve()), "--worker", "full-frame", "--bundle", args.bundle,
                  "--input", str(crop), "--output", str(tmp / "ref.tif")]
        ref_run = _timed(ff, env)
        ref = _labels(tmp / "ref.tif") if "error" not in ref_run else None
        if tools and tools[0].startswith("ours"):  # warm the file cache and the ONNX export once, untimed
            _timed(command("ours-onnxruntime" if "ours-onnxruntime" in tools else tools[0], crop, tmp / "warm.tif"), env)
        for tool in tools:
            cmd = command(tool, big, tmp / f"{tool}.tif")
            if cmd is None:
                rows.append({"tool": tool, "error": f"no peers environment at {args.peers_python}"})
                continue
            row = {"tool": tool, **_timed(cmd, env)}
            if "wall_s" in row:
                row["mpx_s"] = round(args.size ** 2 / 1e6 / row["wall_s"], 3)
                seam = _timed(command(tool, crop, tmp / f"{tool}-crop.tif"), env)
                if "error" not in seam and ref is not None:
                    row.update(_seams(_labels(tmp / f"{tool}-crop.tif"), ref, tile - overlap))
                elif "error" in seam:
                    row["seam_error"] = seam["error"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["tool"] == "ours" and "wall_s" in r), None)
    for r in rows:
        if base and "wall_s" in r:
            r["time_vs_ours"] = round(r["wall_s"] / base["wall_s"], 2)
            r["rss_vs_ours"] = round(r["peak_rss_gb"] / base["peak_rss_gb"], 2)
    meta = {"size": args.size, "scene": args.scene, "tile": tile, "overlap": overlap, "cpu": platform.processor() or "",
            "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1),
            "ours_versions": _versions(py), "peers_versions": _versions(args.peers_python) if peers_ok else {}}
    try:
        meta["cpu"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n{args.size} x {args.size} px ({args.size ** 2 / 1e6:.1f} Mpx) of {args.scene}, tile {tile}, overlap {overlap}; "
          f"{meta['cpu']}, {meta['cores']} cores, load {meta['load_avg_1m']}")
    print("| tool | wall s | Mpx/s | peak RSS GB | time / ours | RSS / ours | agreement with full frame | "
          "disagreement near tile edges | elsewhere |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['tool']} | failed: {r['error']} | | | | | | | |")
            continue
        print(f"| {r['tool']} | {r['wall_s']} | {r['mpx_s']} | {r['peak_rss_gb']} | {r.get('time_vs_ours', '')} | "
              f"{r.get('rss_vs_ours', '')} | {r.get('agreement', '')} | {r.get('edge_disagreement', '')} | "
              f"{r.get('interior_disagreement', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "reference": ref_run, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
