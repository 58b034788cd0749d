"""What every downloaded product becomes: a GDAL VRT of canonical bands on one grid, in a cache folder.

A product (a Sentinel-2 SAFE, a Landsat scene, a STAC Item) is a set of single-band files, possibly at several
resolutions. :func:`write_band_vrt` stacks them into one VRT (GDAL's XML "virtual raster" format, GDAL
documentation "VRT -- GDAL Virtual Format") whose band descriptions are the canonical band names
(:func:`core.inputs.bands.canonical_band`) and whose dataset metadata carries the product's evidence (level,
baseline, offset, date) as tags, so that the GeoTIFF path of :mod:`core.inputs.decision` reads it unchanged:
``decide_for_file`` finds the names in the descriptions and the evidence in the tags.

Coarser bands are resampled onto the grid of the finest band by the VRT's own source resampling
(``<ComplexSource resampling="bilinear">``): GDAL resamples each window as it is read, so a window or an AOI
decodes only the source blocks it needs, never the whole 110 km tile. The VRT is written to
:func:`cache_dir` (``$LULC_CACHE_DIR/inputs`` or ``~/.cache/lulc-explorer/inputs``), never beside the user's
input, atomically (:func:`core.io.outputs.atomic_write_text`).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from core.errors import RasterReadError

__all__ = ["ProductError", "BandFile", "Grid", "Product", "cache_dir", "vrt_path_for", "band_grid", "write_band_vrt",
           "check_jp2_complete", "check_band_file"]


class ProductError(RasterReadError):
    """A downloaded product (SAFE, Landsat scene, STAC Item) is incomplete, inconsistent or not supported."""


@dataclass(frozen=True)
class BandFile:
    """One band of a product as GDAL reads it.

    Attributes:
        name: Canonical band name (``"B2"``, ``"SR_B4"``) written as the VRT band's description.
        path: GDAL path of the file (a local path, ``/vsizip/<zip>/<member>``, ``/vsicurl/<url>``).
        shown: How the user knows the file (its path inside the product), for messages.
        band: 1-based band index inside the file.
    """

    name: str
    path: str
    shown: str
    band: int = 1


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS (WKT), affine transform, width, height, data type and nodata of one band file."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    dtype: str
    nodata: float | None

    @property
    def res(self) -> float:
        """Pixel width in CRS units."""
        return abs(self.transform[0])


@dataclass
class Product:
    """A product as its reader found it, before the VRT is written.

    Attributes:
        kind: ``"sentinel2-safe"``, ``"landsat-c2l2"`` or ``"stac-item"``.
        name: The product's name as the user knows it (``S2B_MSIL1C_..._.SAFE``, the scene id, the Item id).
        source: The path the user gave (for the cache key).
        bands: Spectral bands in output order.
        tags: Evidence for the input decision, as strings (``PRODUCT_TYPE``, ``PROCESSING_BASELINE``,
            ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``, a date ...), written into the VRT.
        sensor: ``"S2"`` or ``"L8/9"`` (:data:`core.inputs.bands.SENSORS`).
        level: ``"L1C"``, ``"L2A"``, ``"L2SP"`` or ``None``.
        baseline: Processing baseline as written (``"04.00"``), or ``None``.
        date: Acquisition date ``YYYY-MM-DD``, or ``None``.
        metadata_file: Where the evidence comes from, for messages (``MTD_MSIL1C.xml``, ``..._MTL.json``, ``item.json``).
        mask: The product's cloud / quality band, or ``None``.
        mask_kind: ``"SCL"``, ``"MSK_CLASSI"`` or ``"QA_PIXEL"`` (how :func:`core.sources.downloads.cloud_mask` decodes it).
        notes: Lines for the summary (what was assumed or left out).
    """

    kind: str
    name: str
    source: Path
    bands: list[BandFile]
    tags: dict[str, str]
    sensor: str
    level: str | None = None
    baseline: str | None = None
    date: str | None = None
    metadata_file: str = ""
    mask: BandFile | None = None
    mask_kind: str | None = None
    notes: list[str] | None = None


def cache_dir() -> Path:
    """Folder of the VRTs: ``$LULC_CACHE_DIR/inputs``, else ``~/.cache/lulc-explorer/inputs``."""
    base = os.environ.get("LULC_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "lulc-explorer") / "inputs"


def vrt_path_for(source: Path, stem: str, *, key: str = "", folder: str | Path | None = None) -> Path:
    """The VRT path of a product: ``<folder or cache_dir()>/<hash>/<stem>.vrt``.

    The hash covers the product's absolute path, size and modification time (a re-downloaded product gets
    a new VRT) and ``key`` (e.g. the resampling), so two products never share a VRT.
    """
    p = source.resolve()
    st = p.stat()
    digest = hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}|{key}".encode()).hexdigest()[:16]
    return Path(folder or cache_dir()) / digest / f"{stem}.vrt"


def band_grid(band: BandFile, *, what: str) -> Grid:
    """Open one band file (header only) and return its grid.

    Raises:
        ProductError: The file cannot be opened (missing, truncated header, unreachable URL), or it has no CRS.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(band.path) as ds:
            if ds.crs is None:
                raise ProductError(f"{what}: band file {band.shown} has no georeference; the product is not usable as it is")
            t = ds.transform
            return Grid(ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), ds.width, ds.height, ds.dtypes[band.band - 1],
                        ds.nodatavals[band.band - 1])
    except RasterioIOError as exc:
        remote = band.path.startswith(("/vsicurl/", "/vsis3/"))
        hint = "check that you are online and that the URL is public" if remote else "download the product again"
        raise ProductError(f"{what}: band file {band.shown} cannot be read ({_short(exc)}); {hint}") from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def check_jp2_complete(fh, size: int) -> str | None:
    """Why a JPEG 2000 file is incomplete, or ``None`` when its boxes and codestream are whole.

    Walks the JP2 boxes (ISO/IEC 15444-1 annex I: 4-byte length, 4-byte type, 8-byte extended length when
    the length is 1, 0 = to the end of the file) and checks that the contiguous codestream box ``jp2c``
    fits in the file and ends with the EOC marker ``FFD9`` (annex A.4.4). A raw codestream (``FF4F`` SOC
    first) is checked for its EOC only. No pixel is decoded.

    Args:
        fh: Binary file object positioned anywhere, seekable.
        size: The file's size in bytes.
    """
    def ends_with_eoc(end: int) -> bool:
        fh.seek(end - 2)
        return fh.read(2) == b"\xff\xd9"

    fh.seek(0)
    head = fh.read(12)
    if head[:2] == b"\xff\x4f":
        return None if ends_with_eoc(size) else "its codestream has no end marker (the file is cut short)"
    if head[4:8] != b"jP  ":
        return "it is not a JPEG 2000 file"
    pos = 0
    while pos < size:
        fh.seek(pos)
        hdr = fh.read(8)
        if len(hdr) < 8:
            return "it ends inside a box header (the file is cut short)"
        length, kind = struct.unpack(">I4s", hdr)
        if length == 1:
            length = struct.unpack(">Q", fh.read(8))[0]
        elif length == 0:
            length = size - pos
        if length < 8 or pos + length > size:
            return f"its {kind.decode('latin-1')!r} box needs {pos + length:,} bytes but the file has {size:,} (the file is cut short)"
        if kind == b"jp2c":
            return None if ends_with_eoc(pos + length) else "its codestream has no end marker (the file is cut short)"
        pos += length
    return "it holds no codestream"


def check_band_file(band: BandFile, local: Path | None = None, *, what: str, zip_file=None, member: str | None = None) -> None:
    """Refuse a truncated band file before any prediction work.

    JPEG 2000 files are checked by :func:`check_jp2_complete` (on disk or as a zip member); other files by
    reading their last row of blocks (a truncated GeoTIFF fails there).

    Raises:
        ProductError: One sentence naming the file and what is wrong.
    """
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    if band.shown.lower().endswith((".jp2", ".j2k")):
        if zip_file is not None and member is not None:
            size = zip_file.getinfo(member).file_size
            with zip_file.open(member) as fh:
                why = check_jp2_complete(fh, size)
        elif local is not None:
            with open(local, "rb") as fh:
                why = check_jp2_complete(fh, local.stat().st_size)
        else:
            why = None
        if why:
            raise ProductError(f"{what}: band file {band.shown} is incomplete: {why}; download the product again")
        return
    try:
        with rasterio.open(band.path) as ds:
            h = ds.block_shapes[0][0] if ds.block_shapes else 1
            ds.read(band.band, window=Window(0, max(0, ds.height - h), ds.width, min(h, ds.height)))
    except RasterioIOError as exc:
        raise ProductError(f"{what}: band file {band.shown} cannot be read to its end ({_short(exc)}); "
                           "download the product again") from None


def _same_crs(a: str, b: str) -> bool:
    from rasterio.crs import CRS

    return a == b or CRS.from_wkt(a) == CRS.from_wkt(b)


def write_band_vrt(dst: Path, bands: Sequence[BandFile], grids: Sequence[Grid], *, metadata: Mapping[str, str],
                   resampling: str = "bilinear", nodata: float | None = 0, what: str,
                   grid: Grid | None = None) -> tuple[Path, Grid, list[str]]:
    """Write one VRT stacking ``bands`` on the grid of the finest of them (or on ``grid``).

    Args:
        dst: VRT path (in the cache, see :func:`vrt_path_for`); written atomically.
        bands: One :class:`BandFile` per output band, in output order.
        grids: Their grids (:func:`band_grid`), same order.
        metadata: Dataset tags (strings) written into the VRT's default metadata domain, with ``LULC_RESAMPLING``
            (the returned lines) added when there are any.
        resampling: GDAL resampling of coarser bands onto the finest grid (``bilinear``, ``cubic``, ``near``...).
        nodata: Nodata of every output band (and of the sources, so that resampling does not blend it in).
        what: The product's name for messages.
        grid: The output grid (e.g. a mask put on the grid of the image's VRT); default the finest band's.

    Returns:
        (``dst``, the output grid, one line per resampled resolution, e.g.
        ``"B5, B6 (20 m) resampled bilinearly onto the 10 m grid"``).

    Raises:
        ProductError: The bands are not in one CRS, or a band does not lie on a whole-pixel offset of the grid.
    """
    from core.io.outputs import atomic_write_text

    fine = min(range(len(grids)), key=lambda i: (grids[i].res, -grids[i].width))
    g = grid or grids[fine]
    fine_name = "the image" if grid is not None else bands[fine].name
    a, b, c, d, e, f = g.transform
    if b or d:
        raise ProductError(f"{what}: the grid of {fine_name} is rotated; only north-up grids are supported")
    dtype = _gdal_type(str(np.result_type(*[np.dtype(x.dtype) for x in grids])))  # one type: rasterio reads (C, H, W) of one dtype
    lines: list[str] = []
    by_res: dict[float, list[str]] = {}
    xml_bands = []
    for k, (band, bg) in enumerate(zip(bands, grids, strict=True), start=1):
        if not _same_crs(bg.crs_wkt, g.crs_wkt):
            raise ProductError(f"{what}: band file {band.shown} is not in the CRS of {fine_name}; "
                               "the product is inconsistent")
        ba, _, bc, _, be, bf = bg.transform
        x_off, y_off = (bc - c) / a, (bf - f) / e
        x_size, y_size = bg.width * ba / a, bg.height * be / e
        if any(abs(v - round(v)) > 1e-3 for v in (x_off, y_off)):
            raise ProductError(f"{what}: band file {band.shown} is not aligned with the {g.res:g} m grid of {fine_name} "
                               f"(offset {x_off:.3f}, {y_off:.3f} pixels)")
        resampled = not math.isclose(bg.res, g.res, rel_tol=1e-6)
        if resampled:
            by_res.setdefault(bg.res, []).append(band.name)
        nd = "" if nodata is None else f"<NODATA>{_num(nodata)}</NODATA>"
        src_nd = "" if nodata is None else f"    <NoDataValue>{_num(nodata)}</NoDataValue>\n"
        xml_bands.append(
            f'  <VRTRasterBand dataType="{dtype}" band="{k}">\n'
            f"    <Description>{escape(band.name)}</Description>\n{src_nd}"
            f"    <ComplexSource{' resampling=' + quoteattr(resampling) if resampled else ''}>\n"
            f'      <SourceFilename relativeToVRT="0">{escape(band.path)}</SourceFilename>\n'
            f"      <SourceBand>{band.band}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{bg.width}" ySize="{bg.height}"/>\n'
            f'      <DstRect xOff="{round(x_off)}" yOff="{round(y_off)}" xSize="{_num(x_size)}" ySize="{_num(y_size)}"/>\n'
            f"      {nd}\n"
            f"    </ComplexSource>\n  </VRTRasterBand>"
        )
    for res, names in sorted(by_res.items()):
        lines.append(f"{', '.join(names)} ({res:g} m) resampled {_adverb(resampling)} onto the {g.res:g} m grid of {fine_name}")
    tags = {**metadata, "LULC_RESAMPLING": "; ".join(lines) or "none"} if metadata else {}
    mdi = "\n".join(f'    <MDI key={quoteattr(str(k))}>{escape(str(v))}</MDI>' for k, v in tags.items())
    xml = (
        f'<VRTDataset rasterXSize="{g.width}" rasterYSize="{g.height}">\n'
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(g.crs_wkt)}</SRS>\n'
        f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>\n"
        + (f"  <Metadata>\n{mdi}\n  </Metadata>\n" if mdi else "") + "\n".join(xml_bands) + "\n</VRTDataset>\n"
    )
    atomic_write_text(dst, xml)
    return dst, g, lines


def _adverb(resampling: str) -> str:
    return {"bilinear": "bilinearly", "cubic": "by cubic convolution", "near": "by nearest neighbour",
            "average": "by averaging"}.get(resampling, f"with {resampling}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}


def _gdal_type(dtype: str) -> str:
    return _GDAL_TYPES.get(str(np.dtype(dtype)), "Float32")
