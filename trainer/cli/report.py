"""``python -m trainer report``: a self-contained HTML report of a sample scene (work: :mod:`trainer.report`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``report`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    r = subparsers.add_parser("report", help="self-contained HTML report of a sample scene: maps, area estimates with CIs, "
                              "calibration, change, provenance")
    r.add_argument("--checkpoint", required=True, help="model bundle folder")
    r.add_argument("--scene", required=True, help="sample scene id, e.g. hungary-2020-08-12")
    r.add_argument("--out", required=True, help="output HTML file")
    r.add_argument("--labels", default="dw", help="reference labels of the scene (default dw)")
    r.add_argument("--before", dest="before_scene", help="earlier sample scene on the same grid, for a change section")
    r.add_argument("--points", help="labelled points (.csv/.gpkg) for the area estimates; without it a demonstration "
                   "sample is labelled from the reference labels")
    r.add_argument("--seed", type=int, default=0)
    return r


def run(args: argparse.Namespace) -> int:
    """Run ``report``; returns the exit code."""
    from trainer.report import report

    report(args.checkpoint, args.scene, args.out, labels=args.labels, before_scene=args.before_scene, points=args.points,
           seed=args.seed)
    return 0
