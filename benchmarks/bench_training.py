"""Training benchmark: throughput (chips/s) of the Lightning training step, or a 2-process DDP run.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py                 # 10 steps of (16, 9, 128, 128)
    .venv/bin/python benchmarks/bench_training.py --steps 2       # quick check
    .venv/bin/python benchmarks/bench_training.py --ddp           # 2-process CPU DDP (gloo) smoke run

Default mode: builds :class:`trainer.module.SegmentationTask` from ``trainer/configs/default.yaml``
and times optimizer steps on random batches exactly as ``training_step`` does them (kornia
augmentation, forward, ``task._loss`` = weighted cross-entropy + Dice, backward, AdamW step), after
2 warm-up steps. Prints chips/s and the equivalent 256 x 256 images/s (chips/s x (chip/256)^2).

``--ddp``: runs ``python -m trainer fit`` with ``trainer.devices=2``, ``trainer.strategy=ddp``,
one epoch of 4 training batches, outputs in a temporary folder, and reports whether it succeeded
and its wall time. It needs the training data and is heavy: do not run it next to another training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CONFIG = "trainer/configs/default.yaml"


def bench_steps(steps: int, batch_size: int, chip: int, warmup: int = 2, seed: int = 0, precision: str = "fp32",
                channels_last: bool = False) -> dict:
    """Time ``steps`` optimizer steps of the training step on random batches.

    ``precision="bf16"``: forward and loss under CPU bf16 autocast (what Lightning's ``bf16-mixed`` does);
    ``channels_last``: model and batches in channels-last memory format.
    """
    from trainer.config import load_config
    from trainer.module import SegmentationTask

    torch.manual_seed(seed)
    cfg = load_config(REPO_ROOT / CONFIG).to_dict()
    bands = cfg["data"]["bands"]
    k = 9
    task = SegmentationTask(
        cfg, in_channels=len(bands), class_names=[f"c{i}" for i in range(k)], class_weights=[1.0] * k
    )
    task.train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    task = task.to(memory_format=fmt)
    o = cfg["optim"]
    opt = torch.optim.AdamW(task.parameters(), lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
    gen = torch.Generator().manual_seed(seed)
    batches = [
        (
            torch.randn(batch_size, len(bands), chip, chip, generator=gen),
            torch.randint(0, k, (batch_size, chip, chip), generator=gen, dtype=torch.int64),
        )
        for _ in range(min(steps + warmup, 4))
    ]

    def step(i: int) -> float:
        x, y = batches[i % len(batches)]
        with torch.no_grad():
            x, ym = task.augment(x, y.unsqueeze(1).float())
            y = ym.squeeze(1).round().long()
        x = x.contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = task._loss(task(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for i in range(warmup):
        step(i)
    times, losses = [], []
    for i in range(steps):
        t0 = time.perf_counter()
        losses.append(step(warmup + i))
        times.append(time.perf_counter() - t0)
    total = sum(times)
    chips_s = steps * batch_size / total
    return {
        "steps": steps,
        "warmup": warmup,
        "batch_size": batch_size,
        "chip_size": chip,
        "bands": len(bands),
        "precision": precision,
        "channels_last": channels_last,
        "arch": cfg["model"]["arch"],
        "encoder": cfg["model"]["encoder"],
        "threads": torch.get_num_threads(),
        "total_s": total,
        "step_s_mean": total / steps,
        "step_s_median": float(np.median(times)),
        "step_s_min": min(times),
        "chips_per_s": chips_s,
        "img256_per_s": chips_s * (chip / 256) ** 2,
        "losses": losses,
    }


def run_ddp(timeout: float) -> dict:
    """One short epoch of ``python -m trainer fit`` on 2 CPU processes (DDP, gloo)."""
    tmp = Path(tempfile.mkdtemp(prefix="lulc_ddp_"))
    cmd = [
        sys.executable,
        "-m",
        "trainer",
        "fit",
        "--config",
        CONFIG,
        "--set",
        "trainer.devices=2",
        "--set",
        "trainer.strategy=ddp",
        "--set",
        "trainer.max_epochs=1",
        "--set",
        f"output.dir={tmp}",
        "--set",
        f"output.bundle_dir={tmp}/bundle",
        "--set",
        "trainer.limit_train_batches=4",
        "--set",
        "trainer.progress_bar=false",
    ]
    print("  $ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, (proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:
        rc, out = None, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
    wall = time.perf_counter() - t0
    bundle_ok = (tmp / "bundle" / "card.json").exists() and (tmp / "bundle" / "model.safetensors").exists()
    shutil.rmtree(tmp, ignore_errors=True)
    tail = [ln for ln in str(out).splitlines() if ln.strip()][-20:]
    return {
        "command": cmd,
        "returncode": rc,
        "success": rc == 0,
        "bundle_written": bundle_ok,
        "wall_s": wall,
        "output_tail": tail,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps (default 10)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chip-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp32-cl", "bf16-cl"],
                   help="precision and memory format of the step, run in turn (-cl: channels_last); default fp32")
    p.add_argument("--rounds", type=int, default=1, help="times each variant runs, interleaved (default 1)")
    p.add_argument("--ddp", action="store_true", help="run a 2-process DDP fit instead (heavy, needs data)")
    p.add_argument("--ddp-timeout", type=float, default=3600.0, help="seconds before the DDP run is stopped")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)

    report: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        }
    }
    if args.ddp:
        print("== DDP smoke run: 2 CPU processes (gloo), 1 epoch, 4 train batches ==")
        try:
            r = run_ddp(args.ddp_timeout)
            report["ddp"] = r
            print(
                f"  success: {r['success']} (exit code {r['returncode']}), bundle written: {r['bundle_written']}, "
                f"wall {r['wall_s']:.1f} s"
            )
            if not r["success"]:
                print("  last output:\n    " + "\n    ".join(r["output_tail"]))
        except Exception as exc:  # noqa: BLE001
            print(f"  DDP run failed to start: {type(exc).__name__}: {exc}")
    else:
        print(
            f"== training step throughput: config {CONFIG}, batch ({args.batch_size}, 9, {args.chip_size}, "
            f"{args.chip_size}), {args.warmup} warm-up + {args.steps} timed steps, {torch.get_num_threads()} threads =="
        )
        try:
            runs: dict[str, list[dict]] = {v: [] for v in args.variants}
            for _ in range(args.rounds):
                for v in args.variants:
                    r = bench_steps(args.steps, args.batch_size, args.chip_size, warmup=args.warmup,
                                    precision=v.split("-")[0], channels_last=v.endswith("-cl"))
                    runs[v].append(r)
                    print(
                        f"  [{v}] model {r['arch']}/{r['encoder']}; step mean {r['step_s_mean']:.2f} s, median "
                        f"{r['step_s_median']:.2f} s, min {r['step_s_min']:.2f} s; {r['chips_per_s']:.2f} chips/s "
                        f"({args.chip_size}x{args.chip_size}) = {r['img256_per_s']:.2f} images/s at 256x256; load "
                        f"{os.getloadavg()[0]:.1f}", flush=True
                    )
            report["train_step"] = runs[args.variants[0]][-1]
            report["variants"] = runs
            if len(args.variants) > 1:
                base = float(np.median([r["step_s_median"] for r in runs[args.variants[0]]]))
                for v in args.variants:
                    med = float(np.median([r["step_s_median"] for r in runs[v]]))
                    print(f"  {v}: median step {med:.3f} s = {base / med:.2f}x the speed of {args.variants[0]}")
        except Exception as exc:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            print(f"  training benchmark failed: {type(exc).__name__}: {exc}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
