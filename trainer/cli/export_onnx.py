"""``python -m trainer export-onnx``: export a model bundle to ONNX (card bands, normalisation, classes in its metadata)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export-onnx`` to ``python -m trainer``'s sub-parsers; returns its parser."""
    o = subparsers.add_parser("export-onnx", help="export a model bundle to ONNX (card bands, normalisation, classes in its metadata)")
    o.add_argument("--checkpoint", required=True, help="model bundle folder")
    o.add_argument("--output", help="ONNX file to write (default <checkpoint>/model.onnx)")
    return o


def run(args: argparse.Namespace) -> int:
    """Run ``export-onnx``; returns the exit code."""
    write_onnx(args.checkpoint, args.output)
    return 0


def write_onnx(checkpoint: str, output: str | None = None) -> Path:
    """Export a bundle to ONNX (default ``<checkpoint>/model.onnx``) and print what was written.

    Returns:
        The ONNX file.

    Raises:
        BundleError: The bundle cannot be loaded.
        OutputError: The output cannot be written.
    """
    from core.io.outputs import check_outputs
    from models.bundle import read_card
    from models.runtimes import export_onnx

    out = Path(output) if output else Path(checkpoint) / "model.onnx"
    check_outputs({"--output": out}, [Path(checkpoint) / "model.safetensors", Path(checkpoint) / "card.json"])
    path = export_onnx(checkpoint, out)
    card = read_card(checkpoint)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input 'bands' float32 (B, {len(card.bands)}, H, W) raw "
          f"{','.join(card.bands)}; output 'logits' (B, {card.num_classes}, H, W); card in the ONNX metadata")
    return path
