"""Peak memory of a full-frame pass of the Dynamic World port, per input pixel.

The run policy (:mod:`core.inference.policy`) runs networks that take any size over the whole input in one
pass when the pass fits ``FULL_FRAME_MAX_BYTES``, estimated with ``FULL_FRAME_BYTES_PER_PIXEL``. This
script measures that figure: each size runs in a fresh process (so the high-water mark is that pass's),
and prints the growth of the peak resident set over the forward pass, divided by H x W.

    .venv/bin/python benchmarks/bench_full_frame.py --sizes 512x512 1024x1024 1024x2048
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from models.bundle import load_bundle
dw = load_bundle({bundle!r})
h, w = {h}, {w}
x = np.random.default_rng(0).uniform(500, 3000, (1, len(dw.bands), h, w)).astype(np.float32)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); dw(x); dt = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{{h}} x {{w}}: peak RSS {{r1 / 1024:.0f}} MiB, growth {{(r1 - r0) / 1024:.0f}} MiB, "
      f"{{(r1 - r0) * 1024 / (h * w):.0f}} bytes/px, {{dt:.1f}} s")
"""


def main() -> int:
    """Measure each size in a subprocess and print one line per size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(ROOT / "models" / "dynamicworld"))
    p.add_argument("--sizes", nargs="+", default=["512x512", "1024x1024", "1024x2048"], help="HxW in pixels")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}; bundle {args.bundle}")
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        code = CHILD.format(root=str(ROOT), bundle=args.bundle, h=h, w=w)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
