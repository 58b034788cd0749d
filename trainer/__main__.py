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
import signal
import sys

from trainer.cli_types import number_in


def _int_at_least(low: int, multiple: int = 1):
    """Parse an integer >= ``low`` (and a multiple of ``multiple``), named in the error."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        if v % multiple:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple}, got {v} (try {max(multiple, v // multiple * multiple)})")
        return v

    return parse


_fraction = number_in(0, 1)
"""A number between 0 and 1 (argparse type)."""


def _one_line(exc: BaseException) -> str:
    """The message of an expected error as one line (OSErrors with their file name).

    A rasterio read error says only "Read failed. See previous exception"; GDAL's reasons are in
    its chain of causes, so those are shown, with what to do about a damaged file.
    """
    if type(exc).__name__ == "RasterioIOError":
        causes, e = [], exc.__cause__ or exc.__context__
        while e is not None and len(causes) < 8:
            causes.append(str(e))
            e = e.__cause__ or e.__context__
        detail = next((c for c in causes if "failed at" in c), causes[0] if causes else str(exc))
        text = f"a raster could not be read ({detail}); the file is damaged or incomplete: re-download or re-export it"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line ``error: ...`` (exit 2) instead of usage + error."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    # turn a polite kill into SystemExit so that temporary files are removed on the way out
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one command; returns the exit code (2 on user errors)."""
    p = _Parser(prog="python -m trainer", description="LULC Explorer headless trainer")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train from a YAML config and write a model bundle")
    f.add_argument("--config", required=True, help="YAML config (see trainer/configs/default.yaml)")
    f.add_argument("--resume", action="store_true", help="continue from <output.dir>/checkpoints/last.ckpt")
    f.add_argument("--offset", default="auto", choices=["auto", "0", "1000"],
                   help="radiometric offset of the training images: auto (metadata, else a pixel test), 0, or 1000")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set trainer.max_epochs=5 (repeatable)")

    e = sub.add_parser("evaluate", help="per-class IoU, mIoU and OA of a bundle on a sample scene")
    e.add_argument("--checkpoint", required=True, help="model bundle folder (card.json + model.safetensors)")
    e.add_argument("--scene", required=True, help="sample scene id, e.g. brandenburg-2017-02-16")
    e.add_argument("--labels", default="dw", help="reference labels: dw, osm, dfc or water (default dw)")
    e.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                   help="auto: held-out test blocks for scenes the model was trained on, else whole scene")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--offset", default="auto", choices=["auto", "0", "1000"],
                   help="radiometric offset of the scene: auto (metadata, else a pixel test), 0, or 1000")
    e.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="fp32 (default, the reference) or bf16")

    r = sub.add_parser("predict", help="write a class-map Cloud-Optimized GeoTIFF for a GeoTIFF")
    r.add_argument("--checkpoint", required=True, help="model bundle folder")
    r.add_argument("--input", nargs="+", metavar="PATH",
                   help="GeoTIFF(s) or folder(s) of GeoTIFFs; band descriptions name the bands (B2, b02, B8A_20m, ...) or --bands does")
    r.add_argument("--aoi", metavar="W,S,E,N|FILE.geojson",
                   help="--engine dask, instead of --input: an AOI (degrees, or a GeoJSON file) whose blocks the workers fetch "
                   "from Earth Engine (Sentinel-2 composite --start..--end, the model's level) with computePixels")
    r.add_argument("--start", help="with --aoi: first date, YYYY-MM-DD")
    r.add_argument("--end", help="with --aoi: last date, YYYY-MM-DD (inclusive)")
    r.add_argument("--output", required=True, help="output COG of class ids; with several inputs or a folder, an output folder "
                   "(<name>_classes.tif per input)")
    r.add_argument("--confidence", help="optional output COG of the winning class's probability (a folder with several inputs)")
    r.add_argument("--offset", default="auto", choices=["auto", "0", "1000"],
                   help="radiometric offset of the input DN: auto (metadata, else a pixel test), 0, or 1000 (baseline 04.00+)")
    r.add_argument("--bands", help="names of the input's bands in file order, e.g. B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,B10,B11,B12 "
                   "(for files without band descriptions, or to override them)")
    r.add_argument("--tile", type=_int_at_least(32, 32),
                   help="tile side in pixels, a multiple of 32 (default: the model card's, 256 for the shipped U-Net; a tile "
                   "also turns off Dynamic World's full-frame pass)")
    r.add_argument("--overlap", type=_int_at_least(0),
                   help="overlap of neighbouring tiles in pixels, at most tile/2 (default: the model card's, 32)")
    r.add_argument("--batch-size", type=_int_at_least(1), help="tiles per forward pass, at least 1 (default 8)")
    r.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="fp32 (default): the reference, the same map as the app's; bf16: autocast, faster on CPUs with native "
                   "bf16 but some labels differ")
    r.add_argument("--max-megapixels", type=_int_at_least(1), default=500,
                   help="refuse inputs larger than this many million pixels (default 500, about four Sentinel-2 tiles)")
    r.add_argument("--runtime", default="torch", choices=["torch", "auto", "onnxruntime", "openvino"],
                   help="inference runtime: torch (default: the reference, the same map as the app's; GPUs, bf16), "
                   "onnxruntime/openvino on the CPU (fp32; the bundle is exported to ONNX once and cached), or auto: the "
                   "fastest of them whose labels match PyTorch fp32 (logits within 1e-3, 99.9 %% of labels), measured once "
                   "per machine and bundle and cached (measured for inputs of 64+ tiles or --engine dask; smaller inputs use "
                   "the cached choice, else torch)")
    r.add_argument("--engine", default="stream", choices=["stream", "dask"],
                   help="stream: one process, window by window (default); dask: blocks predicted in parallel on a Dask "
                   "cluster, each written to its own COG, resumable after a kill (rerun the same command); no size limit")
    r.add_argument("--workers", type=_int_at_least(1), help="--engine dask: worker processes of the local cluster (default: CPU cores)")
    r.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="--engine dask: address of a running Dask scheduler (`dask scheduler`, `dask worker tcp://HOST:8786` "
                   "on each machine; input, bundle and output on a shared file system) instead of a local cluster")
    r.add_argument("--block-size", type=_int_at_least(64), default=4096,
                   help="--engine dask: block side in pixels, rounded to a multiple of tile - overlap (default 4096)")
    r.add_argument("--blocks-dir", help="--engine dask: folder for block COGs, manifest and VRT (default <output>.blocks)")

    o = sub.add_parser("export-onnx", help="export a model bundle to ONNX (card bands, normalisation, classes in its metadata)")
    o.add_argument("--checkpoint", required=True, help="model bundle folder")
    o.add_argument("--output", help="ONNX file to write (default <checkpoint>/model.onnx)")

    x = sub.add_parser("export-chips", help="download training chips from Earth Engine at points of a CSV")
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

    from trainer import analyst_cli  # issue 11: assess, change, polygons, report

    analyst_cli.add_parsers(sub)
    e.add_argument("--calibration", action="store_true", help="also print expected calibration error before/after the card temperature")
    e.add_argument("--reliability", metavar="PNG", help="write a reliability diagram (implies --calibration)")

    args = p.parse_args(argv)
    if args.command == "predict" and args.overlap is not None and 2 * args.overlap > (args.tile or 256):
        r.error(f"argument --overlap: must be at most half of --tile ({(args.tile or 256) // 2}), got {args.overlap}")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was left at the output paths", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except _expected_errors() as exc:  # user errors: one sentence, no traceback
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: short message here, the traceback in a log file
        from core.io.outputs import write_crash_log

        log = write_crash_log(exc, "python -m trainer " + " ".join(sys.argv[1:] if argv is None else argv))
        where = f"the details are in {log}" if log else "no log file could be written"
        print(f"error: unexpected {type(exc).__name__} ({_one_line(exc)[:200]}); {where}. "
              "Please report it with that file.", file=sys.stderr)
        return 1


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: bad values, files, configs, permissions, disk space."""
    import yaml

    return (ValueError, OSError, yaml.YAMLError, UnicodeDecodeError)


def _run(args: argparse.Namespace) -> int:
    from trainer import analyst_cli, commands  # heavy imports only after the arguments are valid

    if args.command == "fit":
        from trainer.config import load_config

        commands.fit(load_config(args.config, args.overrides), resume=args.resume, offset=args.offset)
    elif args.command == "evaluate":
        commands.evaluate(args.checkpoint, args.scene, args.labels, split=args.split, as_json=args.json, precision=args.precision,
                          offset=args.offset)
        if args.calibration or args.reliability:
            from models.bundle import load_bundle
            from trainer.analyst import print_calibration

            print_calibration(load_bundle(args.checkpoint), args.scene, args.labels, args.split, args.reliability)
    elif args.command in analyst_cli.COMMANDS:
        return analyst_cli.run(args)
    elif args.command == "export-onnx":
        from trainer.distributed import export_onnx_command

        export_onnx_command(args.checkpoint, args.output)
    elif args.command == "export-chips":
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
    else:
        from pathlib import Path

        from core.inputs.decision import parse_bands

        names = parse_bands(args.bands)
        if args.aoi is not None:
            from trainer.distributed import predict_dask

            if args.engine != "dask" or args.input:
                raise ValueError("--aoi goes with --engine dask and without --input")
            predict_dask(args.checkpoint, None, args.output, aoi=args.aoi, start=args.start, end=args.end,
                         confidence=args.confidence, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                         precision=args.precision, runtime=args.runtime, workers=args.workers, scheduler=args.scheduler,
                         block_size=args.block_size, blocks_dir=args.blocks_dir)
            return 0
        if not args.input:
            raise ValueError("predict needs --input (GeoTIFFs or folders) or, with --engine dask, --aoi with --start and --end")
        single = len(args.input) == 1 and not Path(args.input[0]).is_dir() and not Path(args.output).is_dir()
        if args.engine == "dask":
            from trainer.distributed import predict_dask

            if not single:
                raise ValueError("--engine dask takes one input (a GeoTIFF or a VRT joining several files on one grid) "
                                 "and one output file")
            predict_dask(args.checkpoint, args.input[0], args.output, confidence=args.confidence, tile=args.tile,
                         overlap=args.overlap, batch_size=args.batch_size, precision=args.precision, runtime=args.runtime,
                         workers=args.workers, scheduler=args.scheduler, block_size=args.block_size,
                         blocks_dir=args.blocks_dir, offset=args.offset, bands=names)
        elif single:
            commands.predict(args.checkpoint, args.input[0], args.output, confidence=args.confidence, tile=args.tile,
                             overlap=args.overlap, batch_size=args.batch_size, precision=args.precision,
                             max_pixels=args.max_megapixels * 1_000_000, offset=args.offset, bands=names,
                             runtime=args.runtime)
        elif commands.predict_many(args.checkpoint, args.input, args.output, confidence=args.confidence, tile=args.tile,
                                   overlap=args.overlap, batch_size=args.batch_size, precision=args.precision,
                                   max_pixels=args.max_megapixels * 1_000_000, offset=args.offset, bands=names,
                                   runtime=args.runtime):
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
