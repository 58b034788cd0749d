"""``python -m trainer sweep``: one fit per combination of ``--grid`` values, a CSV + Markdown table (work: :mod:`trainer.sweep`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``sweep`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    f = subparsers.add_parser("sweep", help="compare a few settings: one fit per combination, a table of val/test mIoU and time",
                              description="Example: python -m trainer sweep --config base.yaml --grid loss.name=ce_dice,focal "
                                          "--grid optim.lr=1e-3,3e-4 (four fits; sweep.csv and sweep.md in --out)")
    f.add_argument("--config", required=True, help="base YAML config")
    f.add_argument("--grid", action="append", default=[], required=True, metavar="SECTION.KEY=V1,V2",
                   help="values to try for one config key (repeatable; the runs are the product of all grids)")
    f.add_argument("--out", default=None, help="folder for the runs and the table (default runs/sweep-<config name>)")
    f.add_argument("--offset", default="auto", choices=["auto", "0", "1000"], help="radiometric offset of the training images")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a base config value for every run (repeatable)")
    return f


def run(args: argparse.Namespace) -> int:
    """Run ``sweep``; returns the exit code."""
    from core.config import REPO_ROOT
    from trainer.sweep import markdown_table, sweep

    out = args.out or str(REPO_ROOT / "runs" / f"sweep-{__import__('pathlib').Path(args.config).stem}")
    rows = sweep(args.config, args.grid, out, overrides=args.overrides, offset=args.offset)
    print(markdown_table(rows), end="")
    print(f"table written to {out}/sweep.csv and {out}/sweep.md")
    return 0
