"""``python -m trainer finetune``: correct a model with a user's points (CSV lon,lat,class or GeoPackage) on a scene."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``finetune`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    p = subparsers.add_parser("finetune", help="correct a model with your points on a scene: a new bundle with your classes")
    p.add_argument("--checkpoint", required=True, help="model bundle to correct (models/default, models/dynamicworld, a corrected one)")
    p.add_argument("--input", required=True, help="the scene the points were picked on (GeoTIFF)")
    p.add_argument("--points", required=True, help="points: CSV with lon,lat,<class column> (WGS 84) or a GeoPackage point layer (any CRS)")
    p.add_argument("--class-column", default="class", help="column or field with the class names (default class)")
    p.add_argument("--output", required=True, help="folder of the corrected bundle")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-back split and replay draw (same seed: same bundle)")
    p.add_argument("--merge", action="append", default=[], metavar="FROM=INTO",
                   help="merge class FROM into class INTO (repeatable), as the app's Merge does: FROM's points and pixels become INTO")
    return p


def _merges(items: list[str]) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a malformed item is a one-line error."""
    from core.correction import CorrectionError

    out = {}
    for item in items:
        a, sep, b = item.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise CorrectionError(f"--merge {item!r} must be FROM=INTO, two class names joined by '='.")
        out[a.strip()] = b.strip()
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``finetune``; returns the exit code."""
    from trainer.finetune import finetune

    finetune(args.checkpoint, args.input, args.points, args.output, class_column=args.class_column, seed=args.seed,
             merges=_merges(args.merge))
    return 0
