"""``python -m trainer predict``: class-map COGs for GeoTIFFs (one, many, or --engine dask; or an --aoi from Earth Engine).

The work is :mod:`trainer.predict`; this module only parses and picks the mode.
"""

from __future__ import annotations

import argparse

from trainer.cli.options import _int_at_least


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``predict`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    r = subparsers.add_parser("predict", help="write a class-map Cloud-Optimized GeoTIFF for a GeoTIFF")
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
    r.add_argument("--probabilities", metavar="PATH",
                   help="optional output COG of every class's probability: one band per class named by it, uint8 = "
                   "probability x 250, 255 = no data (a folder with several inputs; not with --engine dask)")
    r.add_argument("--sld", action="store_true",
                   help="also write OGC SLD styles (<name>.sld) beside the maps, for GeoServer/MapServer; QGIS styles "
                   "(<name>.qml) and a STAC Item (<name>.json) are always written")
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
    r.add_argument("--runtime", default=None, choices=["torch", "auto", "onnxruntime", "openvino"],
                   help="inference runtime (default: the model card's, the same as the app's: torch, the reference, or for "
                   "the Dynamic World port openvino where installed, whose labels reproduce torch fp32); torch (GPUs, bf16); "
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
    return r


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The overlap is at most half the tile (an argument error, before any work)."""
    if args.overlap is not None and 2 * args.overlap > (args.tile or 256):
        parser.error(f"argument --overlap: must be at most half of --tile ({(args.tile or 256) // 2}), got {args.overlap}")


def run(args: argparse.Namespace) -> int:
    """Run ``predict``; returns the exit code."""
    from pathlib import Path

    import trainer.predict as work  # looked up here, so tests can replace its functions
    from core.inputs.decision import parse_bands

    names = parse_bands(args.bands)
    if args.probabilities and (args.engine == "dask" or args.aoi is not None):
        raise ValueError("--probabilities is not available with --engine dask (its blocks keep the class map and the "
                         "confidence only); run without --probabilities, or with --engine stream on a GeoTIFF")
    if args.aoi is not None:
        if args.engine != "dask" or args.input:
            raise ValueError("--aoi goes with --engine dask and without --input")
        work.predict_dask(args.checkpoint, None, args.output, aoi=args.aoi, start=args.start, end=args.end,
                          confidence=args.confidence, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                          precision=args.precision, runtime=args.runtime, workers=args.workers, scheduler=args.scheduler,
                          block_size=args.block_size, blocks_dir=args.blocks_dir, sld=args.sld)
        return 0
    if not args.input:
        raise ValueError("predict needs --input (GeoTIFFs or folders) or, with --engine dask, --aoi with --start and --end")
    from core.sources.downloads import is_download_product

    single = (len(args.input) == 1 and (is_download_product(args.input[0]) or not Path(args.input[0]).is_dir())
              and not Path(args.output).is_dir())  # a SAFE/Landsat folder is one scene, not a batch
    if args.engine == "dask":
        if not single:
            raise ValueError("--engine dask takes one input (a GeoTIFF or a VRT joining several files on one grid) "
                             "and one output file")
        work.predict_dask(args.checkpoint, args.input[0], args.output, confidence=args.confidence, tile=args.tile,
                          overlap=args.overlap, batch_size=args.batch_size, precision=args.precision, runtime=args.runtime,
                          workers=args.workers, scheduler=args.scheduler, block_size=args.block_size,
                          blocks_dir=args.blocks_dir, offset=args.offset, bands=names, sld=args.sld)
    elif single:
        work.predict(args.checkpoint, args.input[0], args.output, confidence=args.confidence,
                     probabilities=args.probabilities, tile=args.tile,
                     overlap=args.overlap, batch_size=args.batch_size, precision=args.precision,
                     max_pixels=args.max_megapixels * 1_000_000, offset=args.offset, bands=names, runtime=args.runtime,
                     sld=args.sld)
    elif work.predict_many(args.checkpoint, args.input, args.output, confidence=args.confidence,
                           probabilities=args.probabilities, tile=args.tile,
                           overlap=args.overlap, batch_size=args.batch_size, precision=args.precision,
                           max_pixels=args.max_megapixels * 1_000_000, offset=args.offset, bands=names, runtime=args.runtime,
                           sld=args.sld):
        return 2
    return 0
