"""Mosaics of Dask block files: a GDAL VRT over the blocks and, on request, one COG made from it.

The VRT references each block file (relative to its folder) at the block's place in the full grid;
GDAL streams the COG from the VRT (``rasterio.shutil.copy``), so memory stays flat whatever the
raster's size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import rasterio
import rasterio.shutil

from core.classes import NODATA_CLASS
from core.io.outputs import atomic_path, atomic_write_text
from core.io.raster import _colormap_arg

if TYPE_CHECKING:
    from core.inference.blocks import DaskBlock

__all__ = ["write_vrt", "assemble", "BLOCK_COG_OPTIONS"]

BLOCK_COG_OPTIONS = {"driver": "COG", "compress": "DEFLATE", "blocksize": 256, "BIGTIFF": "IF_SAFER"}
"""Creation options of every block file and assembled COG (GDAL COG driver, DEFLATE, 256 px blocks)."""


def write_vrt(
    path: str | Path,
    blocks: Sequence[DaskBlock],
    files: Sequence[str],
    *,
    height: int,
    width: int,
    crs_wkt: str | None,
    transform: Sequence[float],
    dtype: str,
    nodata: float | None,
    description: str,
    colormap: Mapping[int, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a GDAL VRT that mosaics block files into the full raster grid (atomically).

    Args:
        path: The VRT; block files are referenced relative to its folder.
        blocks: The blocks, one per file.
        files: File name of each block, relative to the VRT's folder.
        height: Raster rows H.
        width: Raster columns W.
        crs_wkt: CRS as WKT, or None.
        transform: Affine (a, b, c, d, e, f) in rasterio order.
        dtype: ``"uint8"`` or ``"float32"``.
        nodata: Nodata value or None.
        description: Band description.
        colormap: Class id -> ``#rrggbb`` (colour table of a class map).
        tags: Dataset metadata (kept by a COG made from the VRT).

    Returns:
        ``path``.
    """
    gdal_type = {"uint8": "Byte", "float32": "Float32"}[dtype]
    a, b, c, d, e, f = transform
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs_wkt:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(crs_wkt)}</SRS>')
    lines.append(f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>")
    if tags:
        lines.append("  <Metadata>")
        lines += [f'    <MDI key="{escape(str(k), {chr(34): "&quot;"})}">{escape(str(v))}</MDI>' for k, v in tags.items()]
        lines.append("  </Metadata>")
    lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="1">')
    lines.append(f"    <Description>{escape(description)}</Description>")
    if nodata is not None:
        lines.append(f"    <NoDataValue>{nodata}</NoDataValue>")
    cmap = _colormap_arg(colormap)
    if cmap:
        lines.append("    <ColorInterp>Palette</ColorInterp>")
        lines.append("    <ColorTable>")
        for i in range(max(cmap) + 1):
            r, g, bl, al = (tuple(cmap[i]) + (255,))[:4] if i in cmap else (0, 0, 0, 0)
            lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{bl}" c4="{al}"/>')
        lines.append("    </ColorTable>")
    for blk, name in zip(blocks, files, strict=True):
        lines += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>',
            "      <SourceBand>1</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{blk.width}" ySize="{blk.height}"/>',
            f'      <DstRect xOff="{blk.x0}" yOff="{blk.y0}" xSize="{blk.width}" ySize="{blk.height}"/>',
            "    </SimpleSource>",
        ]
    lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return atomic_write_text(path, "\n".join(lines))


def assemble(blocks: Sequence[DaskBlock], blocks_dir: Path, info: dict, colormap: Mapping[int, str] | None, dst_path: Path,
             confidence_path: Path | None, tags: Mapping[str, str]) -> None:
    """Write the VRT(s) of the finished blocks and, unless a .vrt was asked for, the COG(s).

    Args:
        blocks: Every block of the grid (all finished).
        blocks_dir: Folder of the block files; ``classes.vrt`` (and ``confidence.vrt``) are written there.
        info: The source's ``describe()``: height, width, crs (WKT), transform.
        colormap: Class id -> ``#rrggbb``.
        dst_path: The class map: a ``.vrt`` (a copy of ``classes.vrt`` pointing into ``blocks_dir``)
            or a COG streamed from the VRT by GDAL, written atomically.
        confidence_path: The confidence map (``.vrt`` or COG), or ``None``.
        tags: Dataset metadata of the outputs (how the input was read).
    """
    grid = {"height": info["height"], "width": info["width"], "crs_wkt": info["crs"], "transform": info["transform"]}
    outputs = [(dst_path, "classes.vrt", "", "uint8", NODATA_CLASS, "class", colormap, "nearest")]
    if confidence_path:
        outputs.append((Path(confidence_path), "confidence.vrt", "_conf", "float32", 0.0, "confidence", None, "average"))
    for dst, vrt_name, suffix, dtype, nodata, desc, cmap, resampling in outputs:
        vrt = blocks_dir / vrt_name
        write_vrt(vrt, blocks, [f"{b.key}{suffix}.tif" for b in blocks], dtype=dtype, nodata=nodata,
                  description=desc, colormap=cmap, tags=tags, **grid)
        if dst.suffix.lower() == ".vrt":
            if dst.resolve() != vrt.resolve():
                rel = os.path.relpath(blocks_dir, dst.parent)
                text = vrt.read_text().replace('relativeToVRT="1">', f'relativeToVRT="1">{rel}/')
                atomic_write_text(dst, text)
            continue
        with rasterio.Env(GDAL_CACHEMAX=64), atomic_path(dst) as tmp:
            rasterio.shutil.copy(vrt, tmp, overview_resampling=resampling, **BLOCK_COG_OPTIONS)
