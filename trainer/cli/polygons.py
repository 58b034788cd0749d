"""``python -m trainer polygons``: a class map as GeoPackage polygons (work: :mod:`trainer.map_analysis`)."""

from __future__ import annotations

import argparse

from trainer.cli.options import _classes, number_in

_non_negative = number_in(0)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``polygons`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    g = subparsers.add_parser("polygons", help="class map as GeoPackage polygons after a minimum mapping unit")
    g.add_argument("--map", required=True, help="class-map GeoTIFF")
    g.add_argument("--out", required=True, help="output GeoPackage (.gpkg)")
    g.add_argument("--mmu", type=_non_negative, default=0.5, help="minimum mapping unit in hectares (default 0.5)")
    _classes(g)
    return g


def run(args: argparse.Namespace) -> int:
    """Run ``polygons``; returns the exit code."""
    from trainer.map_analysis import polygons

    polygons(args.map, args.out, mmu_ha=args.mmu, checkpoint=args.checkpoint, scheme=args.scheme)
    return 0
