"""Command line of the headless trainer.

Examples::

    python -m trainer fit --config trainer/configs/default.yaml
    python -m trainer fit --config trainer/configs/default.yaml --resume
    python -m trainer evaluate --checkpoint models/default --scene brandenburg-2017-02-16 --labels dw
    python -m trainer predict --checkpoint models/default --input in.tif --output out.tif
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code (2 on user errors)."""
    p = argparse.ArgumentParser(prog="python -m trainer", description="LULC Explorer headless trainer")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train from a YAML config and write a model bundle")
    f.add_argument("--config", required=True, help="YAML config (see trainer/configs/default.yaml)")
    f.add_argument("--resume", action="store_true", help="continue from <output.dir>/checkpoints/last.ckpt")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set trainer.max_epochs=5 (repeatable)")

    e = sub.add_parser("evaluate", help="per-class IoU, mIoU and OA of a bundle on a sample scene")
    e.add_argument("--checkpoint", required=True, help="model bundle folder (card.json + model.safetensors)")
    e.add_argument("--scene", required=True, help="sample scene id, e.g. brandenburg-2017-02-16")
    e.add_argument("--labels", default="dw", help="reference labels: dw, osm, dfc or water (default dw)")
    e.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                   help="auto: held-out test blocks for scenes the model was trained on, else whole scene")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])

    r = sub.add_parser("predict", help="write a class-map Cloud-Optimized GeoTIFF for a GeoTIFF")
    r.add_argument("--checkpoint", required=True, help="model bundle folder")
    r.add_argument("--input", required=True, help="GeoTIFF with band descriptions naming the bands (B2, B3, ...)")
    r.add_argument("--output", required=True, help="output COG of class ids")
    r.add_argument("--confidence", help="optional output COG of the winning class's probability")
    r.add_argument("--tile", type=int, default=256)
    r.add_argument("--overlap", type=int, default=32)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])

    args = p.parse_args(argv)
    from trainer import commands  # heavy imports only after the arguments are valid

    try:
        if args.command == "fit":
            from trainer.config import load_config

            commands.fit(load_config(args.config, args.overrides), resume=args.resume)
        elif args.command == "evaluate":
            commands.evaluate(args.checkpoint, args.scene, args.labels, split=args.split, as_json=args.json, precision=args.precision)
        else:
            commands.predict(args.checkpoint, args.input, args.output, confidence=args.confidence, tile=args.tile,
                             overlap=args.overlap, batch_size=args.batch_size, precision=args.precision)
    except (ValueError, FileNotFoundError) as exc:  # user errors: message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
