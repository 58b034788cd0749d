"""A class map as polygons with a minimum mapping unit (GeoPackage).

1. Patches (4-connected regions of one class) smaller than the minimum mapping unit are merged
   into their largest neighbour with GDAL's sieve filter (``rasterio.features.sieve``).
2. The sieved map is vectorised with ``rasterio.features.shapes`` (GDAL Polygonize): one polygon
   per patch, exact pixel edges in the map CRS.
3. Each polygon gets its class id, name and area in hectares (planar area in a projected CRS;
   geodesic area on the WGS 84 ellipsoid with pyproj for geographic grids, Karney 2013) and is
   written to a GeoPackage with pyogrio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio.features
import shapely
from shapely.geometry import shape

from core.io.outputs import atomic_path
from core.io.raster import GeoRaster

__all__ = ["mmu_pixels", "sieve_classes", "class_polygons", "PolygonLayer", "write_polygons"]


def mmu_pixels(raster: GeoRaster, mmu_ha: float) -> int:
    """Pixels in a minimum mapping unit of ``mmu_ha`` hectares on the raster's grid (mean pixel area).

    Raises:
        ValueError: A negative unit.
    """
    if mmu_ha < 0:
        raise ValueError(f"the minimum mapping unit must be >= 0 ha, got {mmu_ha}")
    px_m2 = float(np.mean(raster.pixel_area_m2()))
    return int(np.ceil(mmu_ha * 1e4 / px_m2 - 1e-9))


def sieve_classes(classes: GeoRaster, mmu_ha: float, nodata: int = 255, connectivity: int = 4) -> GeoRaster:
    """Merge patches smaller than the minimum mapping unit into their largest neighbour.

    Args:
        classes: uint8 GeoRaster (1, H, W) of class ids, ``nodata`` = no class.
        mmu_ha: Minimum mapping unit in hectares (0 keeps every patch).
        nodata: No-class value (never sieved, never grown into).
        connectivity: 4 or 8 (pixel neighbourhood of a patch).

    Returns:
        The sieved class map on the same grid.
    """
    size = mmu_pixels(classes, mmu_ha)
    data = classes.data[0]
    if size <= 1:
        return classes
    valid = data != nodata
    out = rasterio.features.sieve(data, size=size, mask=valid, connectivity=connectivity)
    out = np.where(valid, out, nodata).astype(data.dtype)
    return GeoRaster(out[None], classes.crs, classes.transform, classes.nodata, classes.band_names, classes.meta)


@dataclass(frozen=True)
class PolygonLayer:
    """Polygons of a class map.

    Attributes:
        geometries: (n,) shapely polygons in ``crs`` coordinates.
        class_id: int (n,) class ids; ``class_name`` (n,) names; ``area_ha`` float (n,) hectares.
        crs: The map CRS (``None`` for rasters without georeference: local metres).
        mmu_ha: The minimum mapping unit applied.
    """

    geometries: np.ndarray
    class_id: np.ndarray
    class_name: np.ndarray
    area_ha: np.ndarray
    crs: object
    mmu_ha: float

    def __len__(self) -> int:
        return int(self.geometries.size)

    def summary(self) -> pd.DataFrame:
        """Per class: polygons, total and smallest area (ha)."""
        df = pd.DataFrame({"class": self.class_name, "area_ha": self.area_ha})
        return df.groupby("class", sort=False)["area_ha"].agg(polygons="size", total_ha="sum", smallest_ha="min").reset_index()


def _areas_ha(geoms: Sequence, crs) -> np.ndarray:
    if crs is not None and crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms]) / 1e4
    factor = float(crs.linear_units_factor[1]) ** 2 if crs is not None and crs.linear_units_factor else 1.0
    return shapely.area(np.asarray(geoms, dtype=object)) * factor / 1e4


def class_polygons(classes: GeoRaster, class_ids: Sequence[int], class_names: Sequence[str], mmu_ha: float = 0.0,
                   nodata: int = 255) -> PolygonLayer:
    """Vectorise a class map after removing patches below the minimum mapping unit.

    Args:
        classes: uint8 GeoRaster (1, H, W) of class ids.
        class_ids: (K,) ids of the scheme.
        class_names: (K,) their names.
        mmu_ha: Minimum mapping unit in hectares.
        nodata: No-class value (not vectorised).

    Returns:
        The polygons with class and area attributes.
    """
    sieved = sieve_classes(classes, mmu_ha, nodata)
    data = sieved.data[0]
    names = dict(zip((int(i) for i in class_ids), class_names, strict=True))
    geoms, ids = [], []
    for geom, value in rasterio.features.shapes(data, mask=data != nodata, connectivity=4, transform=sieved.transform):
        geoms.append(shape(geom))
        ids.append(int(value))
    g = np.asarray(geoms, dtype=object)
    ids_a = np.asarray(ids, dtype=np.int64)
    return PolygonLayer(g, ids_a, np.asarray([names.get(i, str(i)) for i in ids], dtype=object),
                        _areas_ha(geoms, classes.crs) if geoms else np.empty(0), classes.crs, float(mmu_ha))


def write_polygons(layer: PolygonLayer, path: str | Path, provenance: Mapping[str, str] | None = None) -> Path:
    """Write polygons to a GeoPackage (layer ``lulc``; fields class_id, class_name, area_ha, then the provenance).

    The provenance of the map the polygons come from (:meth:`core.products.provenance.Provenance.to_tags`,
    or :func:`core.products.provenance.read_provenance_tags` of a class-map file) goes in twice: as
    one text column per tag, lower case (``lulc_bundle``, ``lulc_bundle_sha256``, ``lulc_run_tile``,
    ``lulc_input_name``, ``lulc_input_date``, ...; :func:`core.products.provenance.provenance_columns`),
    which survive a copy to another format, and as the layer's metadata (GDAL metadata in the
    GeoPackage's ``gpkg_metadata`` tables; ``ogrinfo -al -so`` lists it).

    The file appears only when complete (written beside it, renamed into place).

    Args:
        layer: From :func:`class_polygons`.
        path: ``*.gpkg``.
        provenance: Tag -> value (``LULC_*``); ``None`` or empty: no provenance fields.

    Raises:
        ValueError: The path is not ``*.gpkg``.
        OutputError: The folder cannot be written.
    """
    from pyogrio.raw import write

    from core.products.provenance import provenance_columns

    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise ValueError(f"{path.name}: polygons are written as a GeoPackage (.gpkg)")
    crs = layer.crs.to_wkt() if layer.crs is not None else None
    cols = provenance_columns(provenance or {})
    n = len(layer)
    data = [layer.class_id, layer.class_name.astype(str), np.round(layer.area_ha, 4),
            *(np.full(n, v, dtype=object) for v in cols.values())]
    with atomic_path(path) as tmp:
        tmp.unlink()  # GDAL creates the GeoPackage itself
        write(str(tmp), shapely.to_wkb(layer.geometries) if n else np.empty(0, dtype=object), data,
              ["class_id", "class_name", "area_ha", *cols], driver="GPKG", layer="lulc", crs=crs, geometry_type="Polygon",
              layer_metadata={str(k): str(v) for k, v in (provenance or {}).items()} or None)
    return path
