"""``python -m trainer card-check``: measure what a model card promises beyond held-out accuracy, and write it into the card.

Band and level agreement, leave-one-region-out and the independent references (work:
:mod:`trainer.card_assessment`); ``--markdown`` prints the card's tables and measures nothing.
This was ``python -m trainer.assess`` (not the ``assess`` command, which assesses a class map).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``card-check`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    k = subparsers.add_parser("card-check", help="measure what a model card promises beyond held-out accuracy (band and level "
                              "agreement, leave-one-region-out, independent references) and write it into the card")
    k.add_argument("bundle", help="model bundle folder (its card is rewritten; weights untouched)")
    k.add_argument("--loro", nargs="*", default=[], metavar="BUNDLE",
                   help="leave-one-region-out bundles (their configs' data.exclude_regions name the held-out region)")
    k.add_argument("--markdown", action="store_true", help="print the card's assessment as Markdown tables, measure nothing")
    return k


def run(args: argparse.Namespace) -> int:
    """Run ``card-check``; returns the exit code."""
    from trainer.card_assessment import assess_card, card_tables

    if args.markdown:
        print(card_tables(args.bundle))
        return 0
    import json

    print(json.dumps(assess_card(args.bundle, args.loro), indent=1))
    return 0
