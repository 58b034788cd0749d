"""``python -m trainer change``: from-to change between two class maps on one grid (work: :mod:`trainer.map_analysis`)."""

from __future__ import annotations

import argparse

from trainer.cli.options import _classes


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``change`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    c = subparsers.add_parser("change", help="from-to change between two class maps on the same grid (table, change-map COG, CSV)")
    c.add_argument("--before", required=True, help="class map of the first date")
    c.add_argument("--after", required=True, help="class map of the second date (same grid)")
    _classes(c)
    c.add_argument("--out-map", help="output COG of from*K+to codes")
    c.add_argument("--out-csv", help="output CSV of the transitions (from, to, km2, pct)")
    return c


def run(args: argparse.Namespace) -> int:
    """Run ``change``; returns the exit code."""
    from trainer.map_analysis import change

    change(args.before, args.after, checkpoint=args.checkpoint, scheme=args.scheme, out_map=args.out_map, out_csv=args.out_csv)
    return 0
