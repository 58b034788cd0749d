"""``python -m trainer evaluate``: per-class IoU, mIoU and OA of a bundle on a sample scene (work: :mod:`trainer.scene_scores`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    e = subparsers.add_parser("evaluate", help="per-class IoU, mIoU and OA of a bundle on a sample scene")
    e.add_argument("--checkpoint", required=True, help="model bundle folder (card.json + model.safetensors)")
    e.add_argument("--scene", required=True, help="sample scene id, e.g. brandenburg-2017-02-16")
    e.add_argument("--labels", default="dw", help="reference labels: dw, osm, dfc or water (default dw)")
    e.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                   help="auto: held-out test blocks for scenes the model was trained on, else whole scene")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--offset", default="auto", choices=["auto", "0", "1000"],
                   help="radiometric offset of the scene: auto (metadata, else a pixel test), 0, or 1000")
    e.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="fp32 (default, the reference) or bf16")
    e.add_argument("--calibration", action="store_true", help="also print expected calibration error before/after the card temperature")
    e.add_argument("--reliability", metavar="PNG", help="write a reliability diagram (implies --calibration)")
    return e


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; returns the exit code."""
    from trainer.scene_scores import evaluate

    evaluate(args.checkpoint, args.scene, args.labels, split=args.split, as_json=args.json, precision=args.precision,
             offset=args.offset)
    if args.calibration or args.reliability:
        from models.bundle import load_bundle
        from trainer.calibration import print_calibration

        print_calibration(load_bundle(args.checkpoint), args.scene, args.labels, args.split, args.reliability)
    return 0
