"""Arguments of the analyst commands (assess, change, polygons, report); argparse only, so ``--help`` stays fast.

The work is done by :mod:`trainer.analyst`, imported only after the arguments are valid.
"""

from __future__ import annotations

import argparse

from trainer.cli_types import number_in

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("assess", "change", "polygons", "report")


_positive = number_in(0, low_open=True)
_non_negative = number_in(0)
_accuracy = number_in(0, 1, low_open=True, what="an accuracy")


def _classes(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="model bundle whose card gives the classes of the map(s)")
    g.add_argument("--scheme", help="class scheme of the map(s) when no --checkpoint is given (default dynamic_world)")


def add_parsers(sub) -> None:
    """Add the analyst sub-commands to ``python -m trainer``'s sub-parsers."""
    a = sub.add_parser("assess", help="good-practice accuracy and area estimates with 95%% CIs (Olofsson et al. 2014): "
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

    c = sub.add_parser("change", help="from-to change between two class maps on the same grid (table, change-map COG, CSV)")
    c.add_argument("--before", required=True, help="class map of the first date")
    c.add_argument("--after", required=True, help="class map of the second date (same grid)")
    _classes(c)
    c.add_argument("--out-map", help="output COG of from*K+to codes")
    c.add_argument("--out-csv", help="output CSV of the transitions (from, to, km2, pct)")

    g = sub.add_parser("polygons", help="class map as GeoPackage polygons after a minimum mapping unit")
    g.add_argument("--map", required=True, help="class-map GeoTIFF")
    g.add_argument("--out", required=True, help="output GeoPackage (.gpkg)")
    g.add_argument("--mmu", type=_non_negative, default=0.5, help="minimum mapping unit in hectares (default 0.5)")
    _classes(g)

    r = sub.add_parser("report", help="self-contained HTML report of a sample scene: maps, area estimates with CIs, "
                       "calibration, change, provenance")
    r.add_argument("--checkpoint", required=True, help="model bundle folder")
    r.add_argument("--scene", required=True, help="sample scene id, e.g. hungary-2020-08-12")
    r.add_argument("--out", required=True, help="output HTML file")
    r.add_argument("--labels", default="dw", help="reference labels of the scene (default dw)")
    r.add_argument("--before", dest="before_scene", help="earlier sample scene on the same grid, for a change section")
    r.add_argument("--points", help="labelled points (.csv/.gpkg) for the area estimates; without it a demonstration "
                   "sample is labelled from the reference labels")
    r.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Run one analyst command; returns the exit code."""
    from trainer import analyst

    if args.command == "assess":
        if args.sample:
            analyst.assess_sample(args.map, args.sample, checkpoint=args.checkpoint, scheme=args.scheme, users_accuracy=args.users_accuracy,
                                  target_se=args.target_se, min_per_class=args.min_per_class, seed=args.seed, label_from=args.label_from)
        else:
            analyst.assess_points(args.map, args.points, checkpoint=args.checkpoint, scheme=args.scheme,
                                  reference_column=args.reference_column, out=args.out, as_json=args.json)
    elif args.command == "change":
        analyst.change(args.before, args.after, checkpoint=args.checkpoint, scheme=args.scheme, out_map=args.out_map, out_csv=args.out_csv)
    elif args.command == "polygons":
        analyst.polygons(args.map, args.out, mmu_ha=args.mmu, checkpoint=args.checkpoint, scheme=args.scheme)
    else:
        analyst.report(args.checkpoint, args.scene, args.out, labels=args.labels, before_scene=args.before_scene, points=args.points,
                       seed=args.seed)
    return 0
