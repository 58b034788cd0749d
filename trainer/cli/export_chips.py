"""``python -m trainer export-chips``: training chips from Earth Engine at points of a CSV (work: :mod:`trainer.export`)."""

from __future__ import annotations

import argparse

from trainer.cli.options import _fraction, _int_at_least


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export-chips`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    x = subparsers.add_parser("export-chips", help="download training chips from Earth Engine at points of a CSV")
    x.add_argument("--points", required=True, help="CSV with lon, lat (degrees) and optional id, country/region")
    x.add_argument("--out", required=True, help="output folder (chips + manifest.csv; rerun to resume)")
    x.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    x.add_argument("--end", required=True, help="last date, YYYY-MM-DD (inclusive)")
    x.add_argument("--size", type=_int_at_least(32, 32), default=224, help="chip side in pixels, a multiple of 32 (default 224)")
    x.add_argument("--bands", default="B2,B3,B4,B8,B11,B12", help="Sentinel-2 bands, comma-separated")
    x.add_argument("--no-s1", action="store_true", help="leave out Sentinel-1 VV/VH")
    x.add_argument("--orbit", default="DESCENDING", choices=["ASCENDING", "DESCENDING"])
    x.add_argument("--labels", default="dw", choices=["dw", "worldcover"])
    x.add_argument("--level", default="L1C", choices=["L1C", "L2A"])
    x.add_argument("--max-nodata", type=_fraction, default=0.1, help="skip chips with more masked/nodata pixels (default 0.1)")
    x.add_argument("--batch", choices=["gcs", "drive"], help="submit Earth Engine batch exports instead of downloading")
    x.add_argument("--destination", help="bucket (gcs) or Drive folder (drive) for --batch")
    x.add_argument("--dry-run", action="store_true",
                   help="print the requests that would be sent (collections, filters, tiles, bytes) as JSON; needs no credentials")
    return x


def run(args: argparse.Namespace) -> int:
    """Run ``export-chips``; returns the exit code."""
    from core.sources.earth_engine import LiveEarthEngine
    from trainer.export import ExportSettings, export_chips, plan_export

    settings = ExportSettings(start=args.start, end=args.end, bands=tuple(b.strip() for b in args.bands.split(",")),
                              s1=not args.no_s1, orbit=args.orbit, labels=args.labels, level=args.level,
                              size=args.size, max_nodata=args.max_nodata)
    if args.dry_run:
        import json

        print(json.dumps(plan_export(args.points, args.out, settings, batch=args.batch, destination=args.destination), indent=1))
        return 0
    m = export_chips(LiveEarthEngine(), args.points, args.out, settings, batch=args.batch, destination=args.destination)
    print(m["status"].value_counts().to_string())
    return 0
