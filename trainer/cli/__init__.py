"""Command line of the headless trainer: ``python -m trainer COMMAND ...``.

One module per command in this package, each with ``add_parser(subparsers)`` (argparse only, so
``--help`` stays fast) and ``run(args) -> int`` (the heavy imports happen there, after the
arguments are valid). :data:`COMMANDS` is the dispatch table.

Examples::

    python -m trainer fit --config trainer/configs/default.yaml
    python -m trainer fit --config trainer/configs/default.yaml --resume
    python -m trainer evaluate --checkpoint models/default --scene brandenburg-2017-02-16 --labels dw
    python -m trainer predict --checkpoint models/default --input in.tif --output out.tif
    python -m trainer export-chips --points points.csv --out chips/ --start 2021-06-01 --end 2021-09-01
    python -m trainer card-check models/default --markdown
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.cli import (
    assess,
    card_check,
    change,
    evaluate,
    export_chips,
    export_onnx,
    finetune,
    fit,
    polygons,
    predict,
    report,
    sweep,
)
from trainer.cli.options import _Parser, run_guarded

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {
    "fit": fit,
    "evaluate": evaluate,
    "predict": predict,
    "export-onnx": export_onnx,
    "export-chips": export_chips,
    "assess": assess,
    "change": change,
    "polygons": polygons,
    "report": report,
    "card-check": card_check,
    "finetune": finetune,
    "sweep": sweep,
}
"""Command name -> its module (``add_parser``, ``run`` and optionally ``check``), in ``--help`` order."""


def build_parser() -> tuple[_Parser, dict]:
    """The parser of ``python -m trainer`` and each command's sub-parser by name."""
    parser = _Parser(prog="python -m trainer", description="LULC Explorer headless trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    return parser, {name: module.add_parser(sub) for name, module in COMMANDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code (2 on user errors)."""
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    check = getattr(command, "check", None)
    if check is not None:  # rules between arguments, reported like argparse's own errors
        check(args, subparsers[args.command])
    return run_guarded(command.run, args, argv)
