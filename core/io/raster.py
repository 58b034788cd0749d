"""The georeferenced raster container and GeoTIFF input/output.

A :class:`GeoRaster` holds a band-first array ``(C, H, W)`` with its CRS, affine transform
(pixel -> CRS coordinates, rasterio convention: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``
at the pixel's upper-left corner), nodata value and band names. It is the one container used by
the sources, the tiled inference, the metrics and the exports.

Reading goes through rasterio windows so that large files are never read whole unless asked;
writing produces Cloud-Optimized GeoTIFFs (GDAL's COG driver) with band descriptions and, for
class maps, an embedded colour table and a GDAL raster attribute table (RAT) naming every class.

The GTiff driver keeps a RAT in the PAM sidecar ``<name>.tif.aux.xml`` (GDAL's "persistent auxiliary
metadata"; GDAL, QGIS and ArcGIS read it when they open the GeoTIFF), so a class map is the COG plus
that sidecar: :func:`write_class_table` writes it, atomically, after the COG is in place.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
import rasterio.transform
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import MemoryFile
from rasterio.windows import Window

from core.errors import BandError, GridMismatchError, RasterReadError
from core.io.outputs import atomic_write_bytes, atomic_write_text

__all__ = [
    "GeoRaster",
    "nodata_to_nan",
    "stack_bands",
    "read_raster",
    "raster_info",
    "write_cog",
    "cog_bytes",
    "class_table_xml",
    "write_class_table",
    "rat_path",
    "scheme_classes",
    "pixel_area_m2",
    "grid_area_km2",
    "footprint_lonlat",
]


def nodata_to_nan(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Band values as float32 with NaN wherever a pixel has no data.

    Args:
        data: (C, H, W) array of any dtype.
        nodata: The nodata value (``None`` or NaN: only existing NaNs count).

    Returns:
        float32 (C, H, W) copy; a pixel where any band equals ``nodata`` is NaN in every band.
    """
    x = data.astype(np.float32)
    if nodata is not None and not math.isnan(nodata):
        x[:, (data == nodata).any(axis=0)] = np.nan
    return x


@dataclass(frozen=True)
class GeoRaster:
    """A band-first raster with its georeference.

    Attributes:
        data: Array of shape (C, H, W). Any dtype; sources document theirs (Sentinel-2 uint16
            reflectance x 1e4, Sentinel-1 float32 dB, labels uint8 class ids).
        crs: Coordinate reference system, or ``None`` for rasters without a georeference
            (such rasters still carry a local metric ``transform`` so that areas can be computed).
        transform: Affine pixel-to-CRS transform of the upper-left corner of pixel (0, 0).
        nodata: Value that marks missing pixels in every band (``nan`` allowed), or ``None``.
        band_names: One name per band, in array order (e.g. ``("B2", "B3", "B4")``).
        meta: Free-form provenance (scene id, date, sensor); never used for computation.
    """

    data: np.ndarray
    crs: CRS | None
    transform: Affine
    nodata: float | None
    band_names: tuple[str, ...]
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise BandError(f"GeoRaster data must be (C, H, W); got shape {self.data.shape}")
        if len(self.band_names) != self.data.shape[0]:
            raise BandError(
                f"{self.data.shape[0]} bands in the array but {len(self.band_names)} band names "
                f"({', '.join(self.band_names)})"
            )

    @property
    def count(self) -> int:
        """Number of bands C."""
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        """Number of rows H."""
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        """Number of columns W."""
        return int(self.data.shape[2])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left/west, bottom/south, right/east, top/north) in CRS units."""
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)[::1]

    @property
    def is_georeferenced(self) -> bool:
        """True when the raster has a CRS and can be placed on a map."""
        return self.crs is not None

    def valid_mask(self) -> np.ndarray:
        """Pixels where every band holds data.

        Returns:
            Bool array (H, W): False where any band equals ``nodata`` (or is NaN).
        """
        invalid = np.zeros((self.height, self.width), dtype=bool)
        if np.issubdtype(self.data.dtype, np.floating):
            invalid |= np.isnan(self.data).any(axis=0)
        if self.nodata is not None and not (isinstance(self.nodata, float) and math.isnan(self.nodata)):
            invalid |= (self.data == self.nodata).any(axis=0)
        return ~invalid

    def to_float(self) -> GeoRaster:
        """The raster as float32 with NaN nodata (see :func:`nodata_to_nan`)."""
        return replace(self, data=nodata_to_nan(self.data, self.nodata), nodata=float("nan"))

    def select(self, names: Sequence[str]) -> GeoRaster:
        """Return the bands ``names`` in that order, selected by name, never by position.

        Args:
            names: Band names such as ``["B4", "B3", "B2"]``.

        Returns:
            A new GeoRaster (view of the same memory where possible).

        Raises:
            BandError: Some names are not in this raster; the message lists the missing and the
                available bands.
        """
        missing = [n for n in names if n not in self.band_names]
        if missing:
            raise BandError(
                f"missing band(s) {', '.join(missing)}; this raster has "
                f"{', '.join(self.band_names) or 'no named bands'}"
            )
        idx = [self.band_names.index(n) for n in names]
        return replace(self, data=self.data[idx], band_names=tuple(names))

    def window(self, window: Window) -> GeoRaster:
        """Return the pixels inside ``window`` with the transform moved accordingly.

        Args:
            window: A rasterio Window fully inside the raster.

        Raises:
            GridMismatchError: The window reaches outside the raster.
        """
        r0, c0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        if r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width or h <= 0 or w <= 0:
            raise GridMismatchError(
                f"window rows {r0}:{r0 + h}, cols {c0}:{c0 + w} is outside the raster "
                f"({self.height} x {self.width})"
            )
        return replace(
            self,
            data=self.data[:, r0 : r0 + h, c0 : c0 + w],
            transform=rasterio.windows.transform(window, self.transform),
        )

    def same_grid(self, other: GeoRaster) -> bool:
        """True when ``other`` has the same shape, CRS and transform (to 1e-9 of a pixel)."""
        return (
            self.height == other.height
            and self.width == other.width
            and self.crs == other.crs
            and self.transform.almost_equals(other.transform, precision=1e-9)
        )

    def require_same_grid(self, other: GeoRaster, what: str = "rasters") -> None:
        """Raise :class:`GridMismatchError` unless ``other`` is on the same grid."""
        if not self.same_grid(other):
            raise GridMismatchError(
                f"{what} are not on the same grid: {self.height}x{self.width} {self.crs} "
                f"{tuple(self.transform)[:6]} vs {other.height}x{other.width} {other.crs} "
                f"{tuple(other.transform)[:6]}; resample one onto the other first"
            )

    def pixel_area_m2(self) -> np.ndarray:
        """Ground area of each pixel row, see :func:`pixel_area_m2`."""
        return pixel_area_m2(self.crs, self.transform, self.height, self.width)

    def area_km2(self) -> float:
        """Ground area of the whole raster, see :func:`grid_area_km2`."""
        return grid_area_km2(self.crs, self.transform, self.height, self.width)

    def footprint_lonlat(self) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) in degrees WGS 84, or ``None`` without a CRS."""
        return footprint_lonlat(self.crs, self.transform, self.height, self.width)


def grid_area_km2(crs: CRS | None, transform: Affine, height: int, width: int) -> float:
    """Ground area of an H x W grid in km^2 (rows summed with :func:`pixel_area_m2`)."""
    return float(pixel_area_m2(crs, transform, height, width).sum()) * width / 1e6


def footprint_lonlat(crs: CRS | None, transform: Affine, height: int, width: int) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of an H x W grid in degrees WGS 84 (edges densified), or ``None`` without a CRS."""
    if crs is None:
        return None
    from rasterio.warp import transform_bounds

    bounds = rasterio.transform.array_bounds(height, width, transform)
    return tuple(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))


def stack_bands(rasters: Sequence[GeoRaster], bands: Sequence[str]) -> GeoRaster:
    """Bands of several rasters on one grid (e.g. Sentinel-2 uint16 and Sentinel-1 dB), by name.

    Args:
        rasters: Rasters on the same grid; the first gives CRS, transform and metadata.
        bands: Band names wanted, in order; each is taken from the first raster that has it.

    Returns:
        float32 GeoRaster (len(bands), H, W), nodata NaN: a pixel missing in any input band
        of its raster is NaN in that raster's bands.

    Raises:
        GridMismatchError: The rasters are not on one grid.
        BandError: A band is in none of the rasters (the message lists what they have).
    """
    first = rasters[0]
    for r in rasters[1:]:
        first.require_same_grid(r, "rasters to stack")
    planes: dict[str, np.ndarray] = {}
    for r in rasters:
        for name, plane in zip(r.band_names, nodata_to_nan(r.data, r.nodata), strict=True):
            planes.setdefault(name, plane)
    missing = [b for b in bands if b not in planes]
    if missing:
        raise BandError(f"missing band(s) {', '.join(missing)}; the inputs have {', '.join(planes)}")
    return replace(first, data=np.stack([planes[b] for b in bands]), nodata=float("nan"), band_names=tuple(bands))


_EQUAL_AREA_METHODS = ("equal area", "albers", "mollweide", "sinusoidal", "equal earth", "eckert iv", "goode")


def _nominal_area_ok(crs: CRS) -> bool:
    """True where ``|a * e|`` is the ground area.

    That is equal-area projections, and UTM / Gauss-Kruger (transverse Mercator: area scale
    within 0.1 % of 1 inside a 6-degree zone).
    """
    from pyproj import CRS as ProjCRS

    p = ProjCRS.from_user_input(crs.to_wkt())
    method = (p.coordinate_operation.method_name if p.coordinate_operation else "").lower()
    return any(m in method for m in _EQUAL_AREA_METHODS) or "transverse mercator" in method


def pixel_area_m2(crs: CRS | None, transform: Affine, height: int, width: int) -> np.ndarray:
    """Area on the ground of the pixels of each row.

    - Equal-area projections and UTM / transverse Mercator: ``|a * e|`` times the square of the
      CRS's linear unit in metres (UTM: 1; its area scale stays within 0.1 % of 1 in its zone).
    - Geographic CRS: each row's pixel is a geodesic quadrilateral whose area is computed on the
      CRS's ellipsoid with pyproj's ``Geod.polygon_area_perimeter`` (Karney 2013).
    - Other projected CRS (not equal-area, e.g. Web Mercator EPSG:3857, whose area scale is
      1/cos^2(latitude)): the geodesic area (WGS 84) of each row strip, its top and bottom edges
      densified to 16 points, divided by ``width``.
    - Without a CRS the transform is taken as a local metric frame (metres).

    Args:
        crs: The raster's CRS or ``None``.
        transform: Its affine transform (north-up, no rotation).
        height: Number of rows H.
        width: Number of columns W.

    Returns:
        Float64 array (H,) of m^2 per pixel for each row (the row's mean).
    """
    if crs is None or (crs.is_projected and _nominal_area_ok(crs)):
        factor = 1.0
        if crs is not None:
            factor = float(crs.linear_units_factor[1]) if crs.linear_units_factor else 1.0
        return np.full(height, abs(transform.a * transform.e) * factor * factor, dtype=np.float64)
    from pyproj import Geod

    areas = np.empty(height, dtype=np.float64)
    if crs.is_projected:
        from pyproj import Transformer

        to_ll = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
        geod = Geod(ellps="WGS84")
        xs = transform.c + transform.a * width * np.linspace(0.0, 1.0, 16)
        for r in range(height):
            y_top = transform.f + transform.e * r
            x = np.concatenate([xs, xs[::-1]])
            y = np.concatenate([np.full(16, y_top), np.full(16, y_top + transform.e)])
            lon, lat = to_ll.transform(x, y)
            area, _ = geod.polygon_area_perimeter(lon, lat)
            areas[r] = abs(area) / width
        return areas
    geod = Geod(**{"ellps": "WGS84"}) if crs.to_epsg() == 4326 else Geod(crs.to_proj4())
    x0, dx = transform.c, transform.a
    for r in range(height):
        y_top = transform.f + transform.e * r
        y_bot = y_top + transform.e
        lons = [x0, x0 + dx, x0 + dx, x0]
        lats = [y_top, y_top, y_bot, y_bot]
        area, _ = geod.polygon_area_perimeter(lons, lats)
        areas[r] = abs(area)
    return areas


def _open(path: str | Path) -> rasterio.io.DatasetReader:
    path = Path(path)
    if not path.exists():
        raise RasterReadError(f"{path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterReadError(
            f"{path} is not a readable GeoTIFF ({exc}); check that the file is complete and not "
            "corrupt"
        ) from exc


def raster_info(path: str | Path) -> dict[str, object]:
    """Describe a GeoTIFF without reading its pixels.

    Returns:
        ``{"height", "width", "count", "dtype", "crs", "transform", "nodata", "band_names"}``;
        band names come from the band descriptions (``B1``, ``B2``, ...; ``band_<i>`` where unset).

    Raises:
        RasterReadError: Missing, unreadable or corrupt file.
    """
    with _open(path) as ds, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        names = tuple(d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions))
        return {
            "height": ds.height,
            "width": ds.width,
            "count": ds.count,
            "dtype": ds.dtypes[0],
            "crs": ds.crs,
            "transform": ds.transform,
            "nodata": ds.nodata,
            "band_names": names,
        }


def read_raster(
    path: str | Path,
    bands: Sequence[str] | None = None,
    window: Window | None = None,
    *,
    band_names: Sequence[str] | None = None,
    require_crs: bool = False,
) -> GeoRaster:
    """Read a GeoTIFF (or part of it) into a :class:`GeoRaster`.

    Args:
        path: File path.
        bands: Names of the bands to read, in the wanted order (read by name from the band
            descriptions); ``None`` reads all bands.
        window: Pixel window to read (rasterio ``Window``); ``None`` reads the whole raster.
        band_names: Names to give the file's bands when its descriptions are unset (length must
            equal the file's band count).
        require_crs: Raise when the file has no CRS (for sources that must be placed on a map).

    Returns:
        GeoRaster with the file's dtype, CRS (``None`` if the file has none), transform of the
        window, nodata and band names.

    Raises:
        RasterReadError: Missing, corrupt or unreadable file, or no CRS while ``require_crs``.
        BandError: A requested band is not in the file (the message lists the file's bands).
    """
    with _open(path) as ds, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if band_names is not None:
            if len(band_names) != ds.count:
                raise BandError(f"{path} has {ds.count} bands but {len(band_names)} names were given")
            names = tuple(band_names)
        else:
            names = tuple(d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions))
        if require_crs and ds.crs is None:
            raise RasterReadError(
                f"{path} has no CRS (not georeferenced); assign one (e.g. gdal_edit.py -a_srs) "
                "before using it as a map source"
            )
        if bands is None:
            indexes = list(range(1, ds.count + 1))
            out_names = names
        else:
            missing = [b for b in bands if b not in names]
            if missing:
                raise BandError(
                    f"{Path(path).name} lacks band(s) {', '.join(missing)}; it has {', '.join(names)}"
                )
            indexes = [names.index(b) + 1 for b in bands]
            out_names = tuple(bands)
        try:
            data = ds.read(indexes, window=window)
        except RasterioIOError as exc:
            raise RasterReadError(f"{path} could not be decoded ({exc}); the file may be corrupt") from exc
        transform = ds.window_transform(window) if window is not None else ds.transform
        return GeoRaster(
            data=data,
            crs=ds.crs,
            transform=transform,
            nodata=ds.nodata,
            band_names=out_names,
            meta={"path": str(path)},
        )


def _profile(raster_dtype: np.dtype, count: int, height: int, width: int) -> dict[str, object]:
    return {
        "driver": "COG",
        "dtype": str(raster_dtype),
        "count": count,
        "height": height,
        "width": width,
        "compress": "DEFLATE",
        "blocksize": 256,
        "overview_resampling": "nearest" if np.issubdtype(raster_dtype, np.integer) else "average",
    }


def _colormap_arg(colormap: Mapping[int, str | tuple[int, ...]] | None) -> dict[int, tuple[int, ...]] | None:
    if not colormap:
        return None
    out: dict[int, tuple[int, ...]] = {}
    for k, v in colormap.items():
        if isinstance(v, str):
            h = v.lstrip("#")
            out[int(k)] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
        else:
            out[int(k)] = tuple(int(c) for c in v)
    return out


# GDAL's GDALRATFieldType and GDALRATFieldUsage enums (gdal.h), as the PAM XML stores them.
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_GENERIC, _GFU_PIXEL_COUNT, _GFU_NAME, _GFU_MIN_MAX = 0, 1, 2, 5
_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 6, 7, 8, 9


def _rgba(color: str | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(color, str):
        h = color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255
    c = tuple(int(v) for v in color)
    return (c + (255,))[:4] if len(c) == 3 else c[:4]


def class_table_xml(
    classes: Mapping[int, tuple[str, str | Sequence[int]]],
    counts: Mapping[int, int] | None = None,
    indent: str = "    ",
) -> str:
    """The ``<GDALRasterAttributeTable>`` element of a class map, as GDAL's PAM and VRT files hold it.

    A thematic table with one row per class, fields ``Value`` (integer, usage MinMax: the pixel
    value), ``Count`` (integer, usage PixelCount; only with ``counts``), ``ClassName`` (string, usage
    Name), ``Red``/``Green``/``Blue``/``Alpha`` (integers 0-255, usages Red/Green/Blue/Alpha). The field
    types and usages are GDAL's ``GDALRATFieldType``/``GDALRATFieldUsage`` codes (gdal.h); QGIS
    (paletted renderer "classify from RAT") and ArcGIS read the names from ``ClassName``.

    Args:
        classes: Class id (0-254) -> (name, ``"#rrggbb"`` or RGB(A) tuple), in any order (rows are
            written in id order).
        counts: Class id -> number of pixels of that class (0 for a class not given).
        indent: Whitespace before the element's lines.

    Returns:
        The XML element as text (no trailing newline).

    Raises:
        ValueError: A class id is outside 0..254 or ``classes`` is empty.
    """
    if not classes or any(not 0 <= int(k) < 255 for k in classes):
        raise ValueError(f"a class table needs class ids in 0..254, got {sorted(classes)}")
    fields = [("Value", _GFT_INTEGER, _GFU_MIN_MAX)]
    if counts is not None:
        fields.append(("Count", _GFT_INTEGER, _GFU_PIXEL_COUNT))
    fields += [("ClassName", _GFT_STRING, _GFU_NAME), ("Red", _GFT_INTEGER, _GFU_RED), ("Green", _GFT_INTEGER, _GFU_GREEN),
               ("Blue", _GFT_INTEGER, _GFU_BLUE), ("Alpha", _GFT_INTEGER, _GFU_ALPHA)]
    lines = [f'{indent}<GDALRasterAttributeTable tableType="thematic">']
    for i, (name, ftype, usage) in enumerate(fields):
        lines.append(f'{indent}  <FieldDefn index="{i}"><Name>{name}</Name><Type>{ftype}</Type><Usage>{usage}</Usage></FieldDefn>')
    for row, cid in enumerate(sorted(int(k) for k in classes)):
        name, color = classes[cid]
        values = [str(cid)] + ([str(int(counts.get(cid, 0)))] if counts is not None else [])
        values += [escape(str(name))] + [str(v) for v in _rgba(color)]
        lines.append(f'{indent}  <Row index="{row}">' + "".join(f"<F>{v}</F>" for v in values) + "</Row>")
    lines.append(f"{indent}</GDALRasterAttributeTable>")
    return "\n".join(lines)


def rat_path(path: str | Path) -> Path:
    """The PAM sidecar of a GeoTIFF, ``<name>.tif.aux.xml``, where GDAL keeps its raster attribute table."""
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


def write_class_table(
    path: str | Path,
    classes: Mapping[int, tuple[str, str | Sequence[int]]],
    counts: Mapping[int, int] | None = None,
) -> Path:
    """Write the raster attribute table of a class-map GeoTIFF into its PAM sidecar, atomically.

    GDAL's GTiff driver stores a RAT only in ``<name>.tif.aux.xml`` (there is no TIFF tag for it);
    ``gdalinfo``, QGIS and ArcGIS read it with the GeoTIFF. An existing sidecar is replaced (a
    stale one would describe another map).

    Args:
        path: The class-map GeoTIFF (band 1 holds the class ids).
        classes: Class id -> (name, colour), see :func:`class_table_xml`.
        counts: Class id -> pixel count (optional ``Count`` field).

    Returns:
        The sidecar's path.

    Raises:
        ValueError: Bad class ids (see :func:`class_table_xml`).
        OutputError: The folder cannot be written.
    """
    xml = "\n".join(["<PAMDataset>", '  <PAMRasterBand band="1">', class_table_xml(classes, counts), "  </PAMRasterBand>",
                     "</PAMDataset>", ""])
    return atomic_write_text(rat_path(path), xml)


def scheme_classes(scheme) -> dict[int, tuple[str, str]]:
    """Class id -> (name, ``#rrggbb``) of a :class:`core.classes.ClassScheme`, for :func:`write_class_table`."""
    return {c.id: (c.name, c.color) for c in scheme.classes}


def write_cog(
    raster: GeoRaster,
    path: str | Path,
    *,
    colormap: Mapping[int, str | tuple[int, ...]] | None = None,
    classes: Mapping[int, tuple[str, str | Sequence[int]]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a raster as a Cloud-Optimized GeoTIFF (DEFLATE, 256 px blocks, overviews).

    Args:
        raster: The raster; CRS ``None`` writes no CRS.
        path: Output path (parent folders are created).
        colormap: Class id -> ``"#rrggbb"`` or RGBA tuple; embedded as the colour table of a
            single-band uint8 raster (ignored otherwise).
        classes: For a class map (single-band uint8): class id -> (name, colour), e.g.
            :func:`scheme_classes` of the scheme. Gives the colour table (unless ``colormap`` is given)
            and a raster attribute table with each class's pixel count, written to
            ``<path>.aux.xml`` after the COG (:func:`write_class_table`).
        tags: Dataset tags (default domain), e.g. the provenance of
            :func:`core.products.provenance.Provenance.to_tags`.

    Returns:
        The path written. The file appears there only when complete (written beside it and
        renamed into place, see :func:`core.io.outputs.atomic_path`); an existing file is replaced.

    Raises:
        OutputError: The folder cannot be created or written.
        ValueError: ``classes`` is given for a raster that is not single-band uint8, or has ids outside 0..254.
    """
    is_class_map = raster.count == 1 and raster.data.dtype == np.uint8
    if classes is not None and not is_class_map:
        raise ValueError(f"a class table needs a single-band uint8 class map, got {raster.count} band(s) of {raster.data.dtype}")
    if classes is not None and colormap is None:
        colormap = {k: c for k, (_, c) in classes.items()}
    with MemoryFile() as mem:
        _write_to(raster, mem, colormap, **({"tags": tags} if tags else {}))  # the 3-argument call when untagged
        out = atomic_write_bytes(path, mem.read())
    if classes is not None:
        counts = np.bincount(raster.data.ravel(), minlength=256)
        write_class_table(out, classes, {int(k): int(counts[int(k)]) for k in classes})
    return out


def cog_bytes(raster: GeoRaster, *, colormap: Mapping[int, str | tuple[int, ...]] | None = None,
              tags: Mapping[str, str] | None = None) -> bytes:
    """Return the Cloud-Optimized GeoTIFF bytes of ``raster`` (for download buttons).

    Same arguments and format as :func:`write_cog`; a raster attribute table cannot travel inside
    the bytes (GDAL keeps it in the ``.aux.xml`` sidecar): offer :func:`class_table_xml` wrapped as
    :func:`write_class_table` does beside the download, or a zip of both.
    """
    with MemoryFile() as mem:
        _write_to(raster, mem, colormap, **({"tags": tags} if tags else {}))  # the 3-argument call when untagged
        return mem.read()


def _write_to(raster: GeoRaster, mem: MemoryFile, colormap, tags: Mapping[str, str] | None = None) -> None:
    # COG can't be written window-wise, so build a tiled GTiff in memory and let the COG driver
    # copy it (the driver also builds the overviews).
    with MemoryFile() as tmp:
        profile = _profile(raster.data.dtype, raster.count, raster.height, raster.width)
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
        profile.pop("blocksize")
        profile.pop("overview_resampling")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with tmp.open(crs=raster.crs, transform=raster.transform, nodata=raster.nodata, **profile) as dst:
                dst.write(raster.data)
                dst.descriptions = tuple(raster.band_names)
                if tags:
                    dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
                cmap = _colormap_arg(colormap)
                if cmap and raster.count == 1 and raster.data.dtype == np.uint8:
                    dst.write_colormap(1, cmap)
            with tmp.open() as src:
                rasterio.shutil.copy(
                    src,
                    mem.name,
                    driver="COG",
                    compress="DEFLATE",
                    blocksize=256,
                    overview_resampling="nearest" if np.issubdtype(raster.data.dtype, np.integer) else "average",
                )
