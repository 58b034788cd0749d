"""Imagery as users download it, turned into the one GeoTIFF-like input the rest of the project reads.

:func:`resolve_input` takes what a user downloaded and returns a :class:`ResolvedInput`: a path to open with
the existing GeoTIFF code (a GDAL VRT in :func:`core.sources.downloads.vrt.cache_dir`, band descriptions =
canonical band names, product evidence in its tags) and the metadata the input decision needs. Kinds:

- a Sentinel-2 ``.SAFE`` folder or its ``.zip``, Level-1C or Level-2A (:mod:`core.sources.downloads.safe`):
  band files from ``GRANULE/*/IMG_DATA``, 20 and 60 m bands resampled onto the 10 m grid (bilinear by
  default, stated in :meth:`ResolvedInput.summary`), level and offset from ``MTD_MSIL1C.xml`` /
  ``MTD_MSIL2A.xml``;
- a Landsat 8/9 Collection 2 Level-2 scene folder or its ``*_MTL.json`` / ``*_MTL.txt``
  (:mod:`core.sources.downloads.landsat`): SR_B1..SR_B7 at 30 m as one scene;
- a STAC Item JSON (local or URL) over per-band COGs (:mod:`core.sources.downloads.stac_item`);
- anything else (a GeoTIFF, a VRT the user made) passes through unchanged.

The offset and the level come from the product's metadata, never from a pixel test; the pixel test of
:func:`core.inputs.evidence.offset_from_pixels` is only used to refuse a metadata file that contradicts its
own pixels (a product whose MTD was swapped or edited). Prediction then goes through
:func:`core.inference.policy.input_for_file` on :attr:`ResolvedInput.path` exactly as for a GeoTIFF; a 30 m
Landsat VRT is refused by a 10 m model's :func:`core.io.guards.check_gsd`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.sources.downloads.vrt import Product, ProductError, band_grid, cache_dir, vrt_path_for, write_band_vrt

__all__ = ["ProductError", "ResolvedInput", "resolve_input", "is_download_product", "cloud_mask", "RESAMPLINGS",
           "SCL_MASKED"]

RESAMPLINGS = ("bilinear", "cubic", "near", "average")
"""Resamplings offered for the 20 m / 60 m bands (GDAL names); ``bilinear`` is the default, as in the sample pack's
build (pack README: "20 m and 60 m bands ... resampled bilinearly onto the 10 m B2 grid")."""

SCL_MASKED = (0, 1, 3, 8, 9, 10)
"""Sen2Cor scene classification values masked as cloud / nodata: 0 no data, 1 saturated or defective, 3 cloud
shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus (ESA, Sentinel-2 Level-2A PSD,
SCL class table)."""

_QA_MASK_BITS = 0b11111
"""QA_PIXEL bits 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow (USGS LSDS-1619 table 6-3)."""


@dataclass(frozen=True)
class ResolvedInput:
    """What to open and what the product says about it.

    Attributes:
        path: The file to open with the GeoTIFF code: the VRT (in the cache) or, for a plain raster, the input.
        source: The input as the user gave it.
        kind: ``"geotiff"`` (passed through), ``"sentinel2-safe"``, ``"landsat-c2l2"`` or ``"stac-item"``.
        name: The product's name (``PRODUCT_URI``, the Landsat scene id, the Item id) or the file name.
        sensor: ``"S2"``, ``"L8/9"`` or ``None`` (passed through: the decision reads the file).
        level: ``"L1C"``, ``"L2A"``, ``"L2SP"`` or ``None``, from the product metadata.
        baseline: Processing baseline as the metadata writes it, or ``None``.
        offset_dn: Radiometric offset stated by the metadata (0 or 1000 DN), ``None`` when it states none.
        offset_reason: Which metadata field says so.
        date: Acquisition date ``YYYY-MM-DD`` or ``None``.
        gsd_m: Pixel size of :attr:`path` in metres (``None`` for a passed-through file).
        resampling: How bands were put on one grid (one sentence; empty when no band was resampled).
        bands: Band descriptions of :attr:`path`, in order.
        mask_path: A one-band VRT (or a 2-band for ``MSK_CLASSI``) of the product's cloud / quality band on the grid of
            :attr:`path`, or ``None``; decode with :func:`cloud_mask`.
        mask_kind: ``"SCL"``, ``"MSK_CLASSI"``, ``"QA_PIXEL"`` or ``None``.
        metadata: The tags written into the VRT (the decision's metadata evidence).
        notes: Other lines the user should see (assumptions).
    """

    path: str
    source: str
    kind: str
    name: str
    sensor: str | None = None
    level: str | None = None
    baseline: str | None = None
    offset_dn: int | None = None
    offset_reason: str = ""
    date: str | None = None
    gsd_m: float | None = None
    resampling: str = ""
    bands: tuple[str, ...] = ()
    mask_path: str | None = None
    mask_kind: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def is_product(self) -> bool:
        """True when :attr:`path` is a VRT made from a downloaded product (not the input itself)."""
        return self.kind != "geotiff"

    def summary(self) -> str:
        """One line for the CLI and the app: kind, level, baseline, offset, date, GSD, resampling, mask."""
        if not self.is_product:
            return f"{self.name}: read as it is"
        kind = {"sentinel2-safe": "Sentinel-2 SAFE", "landsat-c2l2": "Landsat 8/9 C2 L2 scene", "stac-item": "STAC Item"}[self.kind]
        parts = [f"{self.name}: {kind}", f"{len(self.bands)} bands ({', '.join(self.bands)})"]
        if self.level:
            parts.append(f"level {self.level}")
        if self.baseline:
            parts.append(f"baseline {self.baseline}")
        if self.offset_dn is not None:
            parts.append(f"offset {self.offset_dn} DN ({self.offset_reason})")
        if self.date:
            parts.append(f"acquired {self.date}")
        if self.gsd_m:
            parts.append(f"{self.gsd_m:g} m grid")
        parts.append(self.resampling or "no band resampled")
        if self.mask_kind:
            parts.append(f"cloud mask {self.mask_kind} available")
        return "; ".join(parts + list(self.notes))


def _is_url(path: str) -> bool:
    return str(path).startswith(("http://", "https://"))


def is_download_product(path: str | Path) -> bool:
    """True when ``path`` is a downloaded product that :func:`resolve_input` turns into a VRT.

    That is a SAFE folder or ``.zip`` (or its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``), a Landsat C2 L2 scene folder
    or ``*_MTL.json`` / ``*_MTL.txt``, or a STAC Item JSON (file or URL). Plain GeoTIFFs and folders of GeoTIFFs
    are not. Only names and small JSON files are read.
    """
    from core.sources.downloads.landsat import is_landsat
    from core.sources.downloads.safe import MTD_NAMES, is_safe
    from core.sources.downloads.stac_item import is_stac_item

    if _is_url(str(path)):
        return is_stac_item(path)
    p = Path(path)
    if p.is_file() and p.name in MTD_NAMES:
        return True
    return is_safe(p) or is_landsat(p) or is_stac_item(p)


def _read_product(path: str, bands: Sequence[str] | None) -> Product:
    from core.sources.downloads.landsat import is_landsat, read_landsat
    from core.sources.downloads.safe import MTD_NAMES, is_safe, read_safe
    from core.sources.downloads.stac_item import is_stac_item, read_stac_item

    if _is_url(path):
        return read_stac_item(path, bands=list(bands) if bands else None)
    p = Path(path)
    if p.is_file() and p.name in MTD_NAMES:
        p = p.parent
    if p.is_file() and p.suffix.lower() == ".zip" or is_safe(p):
        return read_safe(p, bands=list(bands) if bands else None)
    if is_landsat(p):
        return read_landsat(p)
    if is_stac_item(p):
        return read_stac_item(p, bands=list(bands) if bands else None)
    raise ProductError(f"{p.name} is not a Sentinel-2 SAFE, a Landsat C2 L2 scene or a STAC Item")


def resolve_input(path: str | Path, *, bands: Sequence[str] | None = None, resampling: str = "bilinear",
                  cache: str | Path | None = None, check_offset: bool = True, sharpen: bool = False) -> ResolvedInput:
    """Turn a downloaded product into a VRT the GeoTIFF path reads; pass anything else through.

    Args:
        path: A SAFE folder / zip, a Landsat C2 L2 folder / MTL file, a STAC Item JSON (file or URL), or a raster.
        bands: Canonical band names that the product must hold (e.g. the model's bands); missing ones are
            listed in the error. ``None``: the product's own completeness is checked (every file its metadata
            lists).
        resampling: GDAL resampling of the coarser bands onto the finest grid, one of :data:`RESAMPLINGS`.
        cache: Folder for the VRTs (default :func:`core.sources.downloads.vrt.cache_dir`; the app passes its
            upload's temporary folder). Never beside the input.
        check_offset: Refuse a Sentinel-2 product whose metadata offset contradicts the pixel test.
        sharpen: Sentinel-2 only: sharpen the 20 m bands with a 10 m band (SFIM,
            :mod:`core.sources.downloads.sharpen`); :attr:`ResolvedInput.path` is then a GeoTIFF in the cache,
            written block by block (the whole image is decoded once).

    Returns:
        The :class:`ResolvedInput`; for a product its VRT has uint16 DN bands (Sentinel-2 reflectance x 1e4 plus the
        stated offset; Landsat C2 DN), nodata 0, band descriptions ``B1`` .. ``B12`` / ``SR_B1`` .. ``SR_B7``.

    Raises:
        ProductError: One sentence: the product lacks bands (listed), a band file is truncated or unreachable,
            the metadata is damaged or contradicts the pixels' offset, or the kind is not supported.
        OutputError: The cache folder cannot be written.
    """
    from core.inputs.evidence import level_from_metadata, offset_from_metadata
    from core.io.guards import gsd_m

    src = str(path)
    if resampling not in RESAMPLINGS:
        raise ProductError(f"resampling must be one of {', '.join(RESAMPLINGS)}, got {resampling!r}")
    if not is_download_product(src):
        return ResolvedInput(path=src, source=src, kind="geotiff", name=Path(src).name)
    product = _read_product(src, bands)
    grids = [band_grid(b, what=product.name) for b in product.bands]
    stem = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in product.name.removesuffix(".SAFE"))[:120] or "product"
    if _is_url(src):
        digest = hashlib.sha1(f"{src}|{resampling}".encode()).hexdigest()[:16]
        dst = Path(cache or cache_dir()) / digest / f"{stem}.vrt"
    else:
        dst = vrt_path_for(Path(src), stem, key=f"{resampling}|{sharpen}", folder=cache)
    tags = dict(product.tags)
    dst, grid, lines = write_band_vrt(dst, product.bands, grids, metadata=tags,
                                      resampling=resampling, what=product.name)
    notes = list(product.notes or [])
    try:
        off, off_reason, _ = offset_from_metadata(tags)
        if product.sensor == "S2" and check_offset and off is not None:
            _check_offset(dst, off, off_reason, product)
    except ProductError:
        with contextlib.suppress(OSError):
            dst.unlink()
        raise
    path = dst
    if sharpen and product.sensor == "S2":
        from core.sources.downloads.sharpen import write_sharpened

        path, sharp = write_sharpened(dst, product.bands, grids, grid, dst.with_name(dst.stem + "_sfim.tif"), offset=off or 0,
                                      metadata={**tags, "LULC_RESAMPLING": "; ".join(lines)}, resampling=resampling)
        lines = [*lines, *sharp]
    mask_path = None
    if product.mask is not None:
        try:
            mbands = [product.mask] if product.mask_kind != "MSK_CLASSI" else [
                type(product.mask)("MSK_OPAQUE", product.mask.path, product.mask.shown, 1),
                type(product.mask)("MSK_CIRRUS", product.mask.path, product.mask.shown, 2)]
            mgrid = band_grid(product.mask, what=product.name)
            mask_path = str(write_band_vrt(dst.with_name(dst.stem + "_mask.vrt"), mbands, [mgrid] * len(mbands), metadata={},
                                           resampling="near", nodata=None, what=product.name, grid=grid)[0])
        except ProductError as exc:
            notes.append(f"cloud mask {product.mask_kind} not usable ({exc})")
    level = product.level
    if level is None:
        level = level_from_metadata(tags)[0]
    from affine import Affine
    from rasterio.crs import CRS

    g = gsd_m(CRS.from_wkt(grid.crs_wkt), Affine(*grid.transform), grid.height, grid.width)
    return ResolvedInput(
        path=str(path), source=src, kind=product.kind, name=product.name, sensor=product.sensor, level=level,
        baseline=product.baseline, offset_dn=off if product.sensor == "S2" else None,
        offset_reason=off_reason if product.sensor == "S2" else "", date=product.date,
        gsd_m=round(g, 3) if g else None, resampling="; ".join(lines), bands=tuple(b.name for b in product.bands),
        mask_path=mask_path, mask_kind=product.mask_kind if mask_path else None, metadata=tags, notes=tuple(notes))


def _check_offset(vrt: Path, off: int, off_reason: str, product: Product, max_pixels: int = 512 * 512) -> None:
    """Refuse a product whose metadata offset (``off``) contradicts :func:`core.inputs.evidence.offset_from_pixels`.

    Raises:
        ProductError: Names the metadata file, what it states and what the pixels show.
    """
    import rasterio

    from core.inputs.evidence import offset_from_pixels

    with rasterio.open(vrt) as ds:
        factor = max(1.0, math.sqrt(ds.height * ds.width / max_pixels))
        h, w = max(1, int(ds.height / factor)), max(1, int(ds.width / factor))
        sample = ds.read(out_shape=(ds.count, h, w))
        names = list(ds.descriptions)
    valid = ~(sample == 0).all(axis=0)
    if not valid.any():
        raise ProductError(f"{product.name} holds no valid pixel (every band is 0, the Sentinel-2 nodata value)")
    pix, pix_reason = offset_from_pixels({n: sample[i][valid].astype(np.float64) for i, n in enumerate(names)})
    if pix is not None and pix != off:
        said = "a +1000 DN offset" if off else "no offset"
        seen = "a +1000 DN offset" if pix else "none"
        raise ProductError(
            f"{product.name}: its {product.metadata_file} states {said} ({off_reason}) but its pixels show {seen} ({pix_reason}); "
            "the metadata does not belong to these band files: download the product again"
        )


def cloud_mask(resolved: ResolvedInput, window=None) -> np.ndarray | None:
    """The product's cloud / nodata mask on the grid of :attr:`ResolvedInput.path`, ``True`` = masked.

    Decoding: SCL values :data:`SCL_MASKED`; L1C ``MSK_CLASSI_B00`` opaque-cloud or cirrus band non-zero (PSD
    14.9, "Cloud mask" raster of baseline 04.00); Landsat ``QA_PIXEL`` bits 0-4 (fill, dilated cloud, cirrus, cloud,
    cloud shadow).

    Args:
        resolved: From :func:`resolve_input`.
        window: A rasterio ``Window`` of :attr:`ResolvedInput.path` (``None``: all of it).

    Returns:
        bool (H, W), or ``None`` when the product has no mask.
    """
    if not resolved.mask_path:
        return None
    import rasterio

    with rasterio.open(resolved.mask_path) as ds:
        m = ds.read(window=window)
    if resolved.mask_kind == "SCL":
        return np.isin(m[0], SCL_MASKED)
    if resolved.mask_kind == "MSK_CLASSI":
        return (m != 0).any(axis=0)
    return (m[0].astype(np.uint32) & _QA_MASK_BITS) != 0
