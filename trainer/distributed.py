"""Commands for large areas and other runtimes: ``predict --engine dask`` and ``export-onnx``.

``predict --engine dask`` cuts the output into blocks and predicts them as Dask tasks on a
``LocalCluster`` (one worker process per core by default) or on an existing cluster
(``--scheduler tcp://host:8786``); see :mod:`core.distributed`. Rerunning the same command
resumes: only blocks missing from the manifest are predicted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from core.classes import get_scheme
from core.distributed import RasterSource, block_grid_summary, predict_distributed
from core.inputs import decide_for_file
from core.outputs import check_outputs
from core.raster import raster_info
from models.bundle import read_card
from models.runtimes import ForwardFactory, bundle_checksum, export_onnx, onnx_path_for

__all__ = ["predict_dask", "export_onnx_command"]


def predict_dask(
    checkpoint: str,
    src: str,
    dst: str,
    *,
    confidence: str | None = None,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    precision: str = "auto",
    runtime: str = "torch",
    workers: int | None = None,
    scheduler: str | None = None,
    block_size: int = 4096,
    blocks_dir: str | None = None,
    retries: int = 2,
    offset: str | int | None = "auto",
    bands: Sequence[str] | None = None,
) -> Path:
    """Predict a large GeoTIFF/VRT block by block on Dask and write a COG (or a VRT).

    Args:
        checkpoint: Bundle folder (workers load it from the same path).
        src: Input GeoTIFF or VRT; band names as for ``predict`` (descriptions or ``bands``).
        dst: Output class map: a COG, or a ``.vrt`` mosaic of the block COGs.
        confidence: Optional confidence map (COG or ``.vrt``).
        tile: Tile side in pixels (multiple of 32).
        overlap: Overlap between tiles in pixels (<= tile / 2).
        batch_size: Tiles per forward call.
        precision: ``fp32``, ``bf16`` or ``auto`` (torch runtime).
        runtime: ``torch``, ``onnxruntime`` or ``openvino``.
        workers: Local worker processes (default: CPU cores); ignored with ``scheduler``.
        scheduler: Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        block_size: Block side in pixels (rounded to a multiple of ``tile - overlap``).
        blocks_dir: Folder of block files and manifest (default ``<dst>.blocks``).
        retries: Extra attempts per failing block.
        offset: ``"auto"``, 0 or 1000 (see :mod:`core.inputs`).
        bands: Names of the input's bands in file order, overriding its descriptions.

    Returns:
        ``dst``.

    Raises:
        OutputError, BandError, InputError, RasterReadError: Bad input or output (before any work).
        BlockFailedError: Blocks failed on every attempt (finished blocks are kept for a rerun).
        ManifestMismatchError: The blocks folder belongs to a run with other settings.
    """
    check_outputs({"--output": dst, "--confidence": confidence}, [src])
    ckpt = str(Path(checkpoint).resolve())
    card = read_card(ckpt)
    decision = decide_for_file(src, card, bands=bands, offset=offset)
    print(f"{Path(src).name}: {decision.summary()}")
    for w in decision.warnings:
        print(f"warning: {w}", file=sys.stderr)
    onnx_path = str(onnx_path_for(ckpt)) if runtime in ("onnxruntime", "openvino") else None
    n_workers = workers or os.cpu_count() or 1
    threads = None if scheduler else max(1, (os.cpu_count() or 1) // n_workers)
    factory = ForwardFactory(ckpt, runtime=runtime, precision=precision, threads=threads, onnx_path=onnx_path)
    info = raster_info(src)
    grid = block_grid_summary(info["height"], info["width"], block_size=block_size, tile=tile, overlap=overlap)
    where = f"the cluster at {scheduler}" if scheduler else f"a local cluster of {n_workers} worker process(es), {threads} thread(s) each"
    print(f"{grid['n_blocks']} block(s) of {grid['block_size']} px on {where}; runtime {runtime}; "
          f"halo tiles add {100 * (grid['halo_overhead'] - 1):.0f} %")
    scheme = get_scheme(card.scheme_name)
    with tqdm(total=grid["n_blocks"], unit="block", desc="predict (dask)") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        res = predict_distributed(
            RasterSource(str(src), tuple(card.bands), decision), factory, dst, num_classes=card.num_classes,
            class_ids=[int(c["id"]) for c in card.classes["classes"]], colormap=scheme.colormap(),
            confidence_path=confidence, blocks_dir=blocks_dir, model_id=f"{bundle_checksum(ckpt)}/{runtime}/{precision}",
            tile=tile, overlap=overlap, batch_size=batch_size, block_size=block_size, workers=n_workers,
            scheduler=scheduler, retries=retries, progress=progress, log=lambda m: tqdm.write(m, file=sys.stderr),
        )
    if res.skipped:
        print(f"resumed: {len(res.skipped)} block(s) were already done, {len(res.computed)} predicted now")
    print(f"wrote {res.output}" + (f" and {res.confidence}" if res.confidence else "") + f" (blocks and manifest in {res.blocks_dir})")
    return res.output


def export_onnx_command(checkpoint: str, output: str | None = None) -> Path:
    """Export a bundle to ONNX (default ``<checkpoint>/model.onnx``) and print what was written.

    Returns:
        The ONNX file.

    Raises:
        BundleError: The bundle cannot be loaded.
        OutputError: The output cannot be written.
    """
    out = Path(output) if output else Path(checkpoint) / "model.onnx"
    check_outputs({"--output": out}, [Path(checkpoint) / "model.safetensors", Path(checkpoint) / "card.json"])
    path = export_onnx(checkpoint, out)
    card = read_card(checkpoint)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input 'bands' float32 (B, {len(card.bands)}, H, W) raw "
          f"{','.join(card.bands)}; output 'logits' (B, {card.num_classes}, H, W); card in the ONNX metadata")
    return path
