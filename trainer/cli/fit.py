"""``python -m trainer fit``: train from a YAML config and write a model bundle (work: :mod:`trainer.fit`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``fit`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    f = subparsers.add_parser("fit", help="train from a YAML config and write a model bundle")
    f.add_argument("--config", required=True, help="YAML config (see trainer/configs/default.yaml)")
    f.add_argument("--resume", action="store_true", help="continue from <output.dir>/checkpoints/last.ckpt")
    f.add_argument("--offset", default="auto", choices=["auto", "0", "1000"],
                   help="radiometric offset of the training images: auto (metadata, else a pixel test), 0, or 1000")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set trainer.max_epochs=5 (repeatable)")
    return f


def run(args: argparse.Namespace) -> int:
    """Run ``fit``; returns the exit code."""
    from trainer.config import load_config
    from trainer.fit import fit

    fit(load_config(args.config, args.overrides), resume=args.resume, offset=args.offset)
    return 0
