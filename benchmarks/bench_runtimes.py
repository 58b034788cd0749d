"""Inference runtimes: PyTorch eager vs ONNX Runtime vs OpenVINO on the CPU (and PyTorch on a GPU).

Run from the repository root::

    .venv/bin/python benchmarks/bench_runtimes.py                       # batch 8 x 9 x 256 x 256, 5 rounds
    .venv/bin/python benchmarks/bench_runtimes.py --batch 4 --rounds 3  # quicker
    .venv/bin/python benchmarks/bench_runtimes.py --json runtimes.json

In one process, on the same random batch of raw reflectance-like values (500..4000) of the
bundle's bands:

1. fp32 matmul throughput (n = 2048, GFLOP/s = 2 n^3 / t, best of 4), the reference.
2. FLOPs of one (1, C, T, T) forward pass (``torch.utils.flop_counter``).
3. For each runtime (``torch`` = :class:`models.bundle.Bundle` eager fp32 channels_last;
   ``torch-bf16`` = the same under CPU bf16 autocast, its FLOP/s compared with the bf16 matmul;
   ``onnxruntime`` and ``openvino`` = :class:`models.runtimes.OnnxForward` on the bundle exported by
   :func:`models.runtimes.export_onnx`), one warm-up call, then ``--rounds`` rounds in which every
   runtime runs the batch once, in turn (so that load from other processes hits all alike):
   images/s (median and best round), achieved GFLOP/s and its fraction of matmul, speed-up over
   torch, and the largest absolute logit difference and label agreement against torch.
4. With a CUDA GPU: PyTorch throughput at batch ``--gpu-batch`` (32) in fp32, and fp16 / bf16
   autocast with channels_last.

All runtimes use every core (their default thread pools).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_inference import bench_matmul, count_flops, make_bundle  # noqa: E402


def torch_logits(bundle, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        t = bundle.normalize(torch.from_numpy(x)).contiguous(memory_format=torch.channels_last)
        return bundle.model(t).float().numpy()


def torch_bf16_logits(bundle, x: np.ndarray) -> np.ndarray:
    """PyTorch eager under CPU bf16 autocast (what ``--precision bf16`` runs)."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        t = bundle.normalize(torch.from_numpy(x)).contiguous(memory_format=torch.channels_last)
        return bundle.model(t).float().numpy()


def bench_gpu(bundle, tile: int, batch: int, rounds: int) -> dict:
    """Images/s of the bundle on CUDA: fp32, fp16 and bf16 autocast, channels_last."""
    dev = torch.device("cuda")
    model = bundle.model.to(dev).to(memory_format=torch.channels_last)
    x = torch.rand(batch, len(bundle.bands), tile, tile, device=dev).contiguous(memory_format=torch.channels_last)
    out = {"device": torch.cuda.get_device_name(0), "batch": batch}
    for name, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            model(x)
            torch.cuda.synchronize()
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                model(x)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        out[name] = batch / float(np.median(times))
    bundle.model.to("cpu")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="models/default")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--gpu-batch", type=int, default=32)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    from models.runtimes import OnnxForward, available_runtimes, export_onnx

    torch.set_grad_enabled(False)
    report: dict = {"batch": args.batch, "tile": args.tile, "threads": torch.get_num_threads()}
    mm = bench_matmul(2048, 4)
    peak = mm["fp32"]["best_gflops"]
    peak_bf16 = mm.get("bf16", {}).get("best_gflops")
    report["matmul_fp32_gflops"] = peak
    report["matmul_bf16_gflops"] = peak_bf16
    report["bf16_native"] = mm["bf16_native"]
    bundle, desc = make_bundle(args.bundle, "fp32")
    flops = count_flops(bundle, args.tile)
    report["flops_per_tile"] = flops
    print(f"{desc}; matmul fp32 {peak:.1f}, bf16 {peak_bf16 or float('nan'):.1f} GFLOP/s (native bf16: {mm['bf16_native']}); {flops / 1e9:.2f} GFLOP per (1,{len(bundle.bands)},{args.tile},{args.tile}) forward")
    x = np.random.default_rng(0).uniform(500, 4000, (args.batch, len(bundle.bands), args.tile, args.tile)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        onnx_file = export_onnx(bundle, Path(tmp) / "model.onnx")
        report["export_s"] = time.perf_counter() - t0
        runs = {"torch": lambda a: torch_logits(bundle, a), "torch-bf16": lambda a: torch_bf16_logits(bundle, a)}
        for rt in available_runtimes():
            if rt != "torch":
                f = OnnxForward(onnx_file, rt)
                runs[rt] = f.logits
        ref = runs["torch"](x)  # warm-up of torch, and the reference logits
        results = {}
        for name, fn in runs.items():
            got = fn(x) if name != "torch" else ref
            results[name] = {"max_abs_logit_diff": float(np.abs(got - ref).max()),
                             "label_agreement": float((got.argmax(1) == ref.argmax(1)).mean()), "times": []}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn(x)
                results[name]["times"].append(time.perf_counter() - t0)
    base = args.batch / float(np.median(results["torch"]["times"]))
    print(f"\n{'runtime':<12} {'img/s med':>9} {'img/s best':>10} {'GFLOP/s':>8} {'of matmul':>9} {'vs torch':>8} {'max|dlogit|':>11} {'labels':>8}")
    for name, r in results.items():
        med = args.batch / float(np.median(r["times"]))
        best = args.batch / float(min(r["times"]))
        gf = med * flops / 1e9
        ref_peak = peak_bf16 if name == "torch-bf16" and peak_bf16 else peak  # same precision's matmul
        r.update(images_s_median=med, images_s_best=best, gflops=gf, fraction_of_matmul=gf / ref_peak, speedup_vs_torch=med / base)
        print(f"{name:<12} {med:9.2f} {best:10.2f} {gf:8.1f} {100 * gf / ref_peak:8.0f}% {med / base:7.2f}x "
              f"{r['max_abs_logit_diff']:11.2e} {100 * r['label_agreement']:7.3f}%")
    report["runtimes"] = results
    if torch.cuda.is_available():
        g = bench_gpu(bundle, args.tile, args.gpu_batch, args.rounds)
        report["gpu"] = g
        print(f"\nGPU {g['device']}, batch {g['batch']}: fp32 {g['fp32']:.0f}, fp16 {g['fp16']:.0f}, bf16 {g['bf16']:.0f} images/s")
    else:
        print("\nno CUDA GPU here: GPU throughput not measured")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
