"""Command line of the headless trainer.

Examples::

    python -m trainer fit --config trainer/configs/default.yaml
    python -m trainer fit --config trainer/configs/default.yaml --resume
    python -m trainer evaluate --checkpoint models/default --scene brandenburg-2017-02-16 --labels dw
    python -m trainer predict --checkpoint models/default --input in.tif --output out.tif
    python -m trainer export-chips --points points.csv --out chips/ --start 2021-06-01 --end 2021-09-01
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code (2 on user errors)."""
    p = argparse.ArgumentParser(prog="python -m trainer", description="LULC Explorer headless trainer")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train from a YAML config and write a model bundle")
    f.add_argument("--config", required=True, help="YAML config (see trainer/configs/default.yaml)")
    f.add_argument("--resume", action="store_true", help="continue from <output.dir>/checkpoints/last.ckpt")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set trainer.max_epochs=5 (repeatable)")

    e = sub.add_parser("evaluate", help="per-class IoU, mIoU and OA of a bundle on a sample scene")
    e.add_argument("--checkpoint", required=True, help="model bundle folder (card.json + model.safetensors)")
    e.add_argument("--scene", required=True, help="sample scene id, e.g. brandenburg-2017-02-16")
    e.add_argument("--labels", default="dw", help="reference labels: dw, osm, dfc or water (default dw)")
    e.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                   help="auto: held-out test blocks for scenes the model was trained on, else whole scene")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])

    r = sub.add_parser("predict", help="write a class-map Cloud-Optimized GeoTIFF for a GeoTIFF")
    r.add_argument("--checkpoint", required=True, help="model bundle folder")
    r.add_argument("--input", required=True, help="GeoTIFF with band descriptions naming the bands (B2, B3, ...)")
    r.add_argument("--output", required=True, help="output COG of class ids")
    r.add_argument("--confidence", help="optional output COG of the winning class's probability")
    r.add_argument("--tile", type=int, default=256)
    r.add_argument("--overlap", type=int, default=32)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])

    x = sub.add_parser("export-chips", help="download training chips from Earth Engine at points of a CSV")
    x.add_argument("--points", required=True, help="CSV with lon, lat (degrees) and optional id, country/region")
    x.add_argument("--out", required=True, help="output folder (chips + manifest.csv; rerun to resume)")
    x.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    x.add_argument("--end", required=True, help="day after the last date, YYYY-MM-DD")
    x.add_argument("--size", type=int, default=224, help="chip side in pixels (default 224)")
    x.add_argument("--bands", default="B2,B3,B4,B8,B11,B12", help="Sentinel-2 bands, comma-separated")
    x.add_argument("--no-s1", action="store_true", help="leave out Sentinel-1 VV/VH")
    x.add_argument("--orbit", default="DESCENDING", choices=["ASCENDING", "DESCENDING"])
    x.add_argument("--labels", default="dw", choices=["dw", "worldcover"])
    x.add_argument("--level", default="L1C", choices=["L1C", "L2A"])
    x.add_argument("--max-nodata", type=float, default=0.1, help="skip chips with more masked/nodata pixels (default 0.1)")
    x.add_argument("--batch", choices=["gcs", "drive"], help="submit Earth Engine batch exports instead of downloading")
    x.add_argument("--destination", help="bucket (gcs) or Drive folder (drive) for --batch")

    args = p.parse_args(argv)
    from trainer import commands  # heavy imports only after the arguments are valid

    try:
        if args.command == "fit":
            from trainer.config import load_config

            commands.fit(load_config(args.config, args.overrides), resume=args.resume)
        elif args.command == "evaluate":
            commands.evaluate(args.checkpoint, args.scene, args.labels, split=args.split, as_json=args.json, precision=args.precision)
        elif args.command == "export-chips":
            from core.sources.earth_engine import LiveEarthEngine
            from trainer.export import ExportSettings, export_chips

            settings = ExportSettings(start=args.start, end=args.end, bands=tuple(b.strip() for b in args.bands.split(",")),
                                      s1=not args.no_s1, orbit=args.orbit, labels=args.labels, level=args.level,
                                      size=args.size, max_nodata=args.max_nodata)
            m = export_chips(LiveEarthEngine(), args.points, args.out, settings, batch=args.batch, destination=args.destination)
            print(m["status"].value_counts().to_string())
        else:
            commands.predict(args.checkpoint, args.input, args.output, confidence=args.confidence, tile=args.tile,
                             overlap=args.overlap, batch_size=args.batch_size, precision=args.precision)
    except (ValueError, FileNotFoundError) as exc:  # user errors: message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
