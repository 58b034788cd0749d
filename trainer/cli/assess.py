"""``python -m trainer assess``: good-practice accuracy and area estimates of a class map (work: :mod:`trainer.map_analysis`)."""

from __future__ import annotations

import argparse

from trainer.cli.options import _classes, number_in

_positive = number_in(0, low_open=True)
_accuracy = number_in(0, 1, low_open=True, what="an accuracy")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``assess`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    a = subparsers.add_parser("assess", help="good-practice accuracy and area estimates with 95%% CIs (Olofsson et al. 2014): "
                              "design a stratified sample (--sample) or analyse labelled points (--points)")
    a.add_argument("--map", required=True, help="class-map GeoTIFF (the output of predict)")
    mode = a.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sample", metavar="OUT", help="write a stratified random sample of points for labelling (.gpkg or .csv)")
    mode.add_argument("--points", metavar="IN", help="labelled points (.csv or .gpkg) with map_class and a reference column")
    _classes(a)
    a.add_argument("--users-accuracy", type=_accuracy, default=0.8, help="anticipated user's accuracy of each class (default 0.8)")
    a.add_argument("--target-se", type=_positive, default=0.01, help="target standard error of overall accuracy (default 0.01)")
    a.add_argument("--min-per-class", type=int, default=50, help="minimum points per mapped class (default 50)")
    a.add_argument("--seed", type=int, default=0, help="random seed of the sample (default 0)")
    a.add_argument("--label-from", metavar="REF.tif", help="with --sample: label the points from a reference class map "
                   "on the same grid (a demonstration, marked in the output)")
    a.add_argument("--reference-column", default="reference_class", help="with --points: column of the reference class")
    a.add_argument("--out", help="with --points: CSV of the per-class estimates")
    a.add_argument("--json", action="store_true", help="with --points: print one JSON object")
    return a


def run(args: argparse.Namespace) -> int:
    """Run ``assess``; returns the exit code."""
    from trainer.map_analysis import assess_points, assess_sample

    if args.sample:
        assess_sample(args.map, args.sample, checkpoint=args.checkpoint, scheme=args.scheme, users_accuracy=args.users_accuracy,
                      target_se=args.target_se, min_per_class=args.min_per_class, seed=args.seed, label_from=args.label_from)
    else:
        assess_points(args.map, args.points, checkpoint=args.checkpoint, scheme=args.scheme,
                      reference_column=args.reference_column, out=args.out, as_json=args.json)
    return 0
