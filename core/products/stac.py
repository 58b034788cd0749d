"""STAC Items and Catalogs of this project's outputs (pystac), and the sidecars of a class map.

:func:`write_map_sidecars` is what every writer of a class map calls after the COG is in place: a
QGIS style per raster (:mod:`core.products.styles`) and a STAC Item ``<stem>.json`` beside the map
(:func:`map_item`). The Item (STAC 1.1.0) declares and fills four extensions:

- ``classification`` v2.0.0: ``classification:classes`` of the class-map asset (value, name,
  title, ``color_hint``; the nodata value 255 as a class with ``nodata: true``);
- ``projection`` v2.0.0: ``proj:code`` (``EPSG:<n>``, else ``proj:wkt2``), ``proj:shape`` [H, W],
  ``proj:transform`` (the six affine terms a, b, c, d, e, f of rasterio);
- ``raster`` v1.1.0: ``raster:bands`` of each asset (``nodata``, ``data_type``,
  ``spatial_resolution`` in CRS units; ``scale`` 1/250 for probabilities);
- ``file`` v2.1.0: ``file:size`` (bytes) and ``file:checksum`` of every asset, a multihash of the
  file's SHA-256 (``1220`` + 64 hex digits: code 0x12 = sha2-256, length 0x20 = 32 bytes; the
  multiformats table, https://github.com/multiformats/multicodec).

Provenance (:class:`core.products.provenance.Provenance`) goes into ``lulc:*`` properties;
``datetime`` is the input's acquisition date when known (``lulc:datetime_source`` says which),
``created`` the run's time. Asset hrefs are relative (``./map.tif``) and no self link is written,
so a folder of outputs can be moved or published as it is.

Validation: pystac ships the STAC core JSON schemas, not the extensions' (it fetches those from
``stac-extensions.github.io``). :func:`validate_core` validates an Item or Catalog against the core
schema offline; ``Item.validate()`` with network access validates the extensions too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.warp
from rasterio.errors import NotGeoreferencedWarning

from core.classes import NODATA_CLASS
from core.io.outputs import atomic_write_text
from core.io.raster import rat_path
from core.products.provenance import Provenance, file_sha256
from core.products.styles import style_path, write_class_map_styles, write_confidence_styles

__all__ = [
    "EXTENSIONS",
    "multihash_sha256",
    "map_item",
    "write_item",
    "write_catalog",
    "write_map_sidecars",
    "validate_core",
]

EXTENSIONS = {
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
"""The extension schemas an output Item declares (the versions pystac 1.15's extension classes write)."""

_GEOTIFF = "image/tiff; application=geotiff; profile=cloud-optimized"
_NAME_OK = re.compile(r"[^0-9A-Za-z_-]+")


def multihash_sha256(path: str | Path) -> str:
    """``file:checksum`` of a file: the multihash of its SHA-256, ``"1220" + hex digest``."""
    return "1220" + file_sha256(path)


def _asset(item, key: str, path: Path, *, title: str, roles: list[str], media_type: str, bands: list[dict] | None = None,
           classes=None) -> None:
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    if path.suffix.lower() == ".vrt":
        media_type = "application/xml"  # a GDAL VRT mosaic of the block COGs
    asset = pystac.Asset(href=str(path), title=title, roles=roles, media_type=media_type)
    item.add_asset(key, asset)
    FileExtension.ext(asset, add_if_missing=True).apply(checksum=multihash_sha256(path), size=path.stat().st_size)
    if bands is not None:
        RasterExtension.ext(asset, add_if_missing=True).apply([RasterBand.create(**b) for b in bands])
    if classes is not None:
        ClassificationExtension.ext(asset, add_if_missing=True).apply(classes=classes)


def _classifications(classes: Mapping[int, tuple[str, str]]) -> list:
    from pystac.extensions.classification import Classification

    out = []
    for cid in sorted(int(k) for k in classes):
        name, color = classes[cid]
        slug = _NAME_OK.sub("_", str(name)).strip("_") or f"class_{cid}"
        out.append(Classification.create(value=cid, name=slug, title=str(name), color_hint=str(color).lstrip("#").upper()))
    out.append(Classification.create(value=NODATA_CLASS, name="no_data", title="no data (no input, or outside the AOI)",
                                     nodata=True))
    return out


def _grid(path: Path) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return {"crs": ds.crs, "transform": ds.transform, "height": ds.height, "width": ds.width,
                    "descriptions": ds.descriptions, "res": ds.res, "count": ds.count}


def _footprint(grid: dict) -> tuple[dict | None, list[float] | None]:
    """GeoJSON polygon and bbox in lon/lat (EPSG:4326) of a grid, or (None, None) without a CRS."""
    if grid["crs"] is None:
        return None, None
    t, h, w = grid["transform"], grid["height"], grid["width"]
    ring = [(t.c + t.a * x + t.b * y, t.f + t.d * x + t.e * y) for x, y in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    geom = rasterio.warp.transform_geom(grid["crs"], "EPSG:4326", {"type": "Polygon", "coordinates": [ring]},
                                        antimeridian_cutting=True)
    coords = np.asarray(geom["coordinates"][0] if geom["type"] == "Polygon" else
                        [p for poly in geom["coordinates"] for p in poly[0]], dtype=float)
    bbox = [float(coords[:, 0].min()), float(coords[:, 1].min()), float(coords[:, 0].max()), float(coords[:, 1].max())]
    return json.loads(json.dumps(geom)), bbox


def map_item(
    map_path: str | Path,
    classes: Mapping[int, tuple[str, str]],
    provenance: Provenance | None = None,
    *,
    confidence_path: str | Path | None = None,
    probabilities_path: str | Path | None = None,
    extra_assets: Mapping[str, tuple[str | Path, str, list[str], str]] | None = None,
    item_id: str | None = None,
    now: dt.datetime | None = None,
):
    """A STAC Item describing a class map and its companion rasters.

    Args:
        map_path: The class-map COG (uint8 class ids, nodata 255); read for its grid.
        classes: Class id -> (name, ``#rrggbb``).
        provenance: The run's provenance (``lulc:*`` properties; its input date sets ``datetime``).
        confidence_path: The confidence COG, if written (asset ``confidence``).
        probabilities_path: The probability COG, if written (asset ``probabilities``; K uint8
            bands, ``value / 250``, 255 = no data).
        extra_assets: More assets: key -> (path, title, roles, media type), e.g. the styles.
        item_id: Default: the map's file stem.
        now: Fallback ``datetime`` when the input's date is unknown (default: now, UTC).

    Returns:
        A ``pystac.Item`` whose asset hrefs are the absolute paths given (:func:`write_item` makes
        them relative).

    Raises:
        RasterReadError/rasterio errors: A path cannot be read.
    """
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    map_path = Path(map_path).resolve()
    grid = _grid(map_path)
    geometry, bbox = _footprint(grid)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    date = (provenance.input_meta.get("date") if provenance else None) or None
    ee = dict(provenance.earth_engine) if provenance else {}
    span = None
    if not date and ee.get("start") and ee.get("end"):  # a composite: the dates it spans (end inclusive)
        span = (dt.datetime.fromisoformat(ee["start"]).replace(tzinfo=dt.UTC),
                dt.datetime.fromisoformat(ee["end"]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1, seconds=-1))
    when = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC) if date else (None if span else created)
    source = "input acquisition date" if date else ("composite date range" if span else
                                                     "time of prediction (the input's date is unknown)")
    props: dict[str, object] = {
        "title": f"Land-cover class map: {map_path.name}",  # "map.tif" read "class map map" with the stem
        "created": created.isoformat().replace("+00:00", "Z"),
        "lulc:datetime_source": source,
    }
    if provenance is not None:
        props.update(provenance.to_properties())
        if provenance.created:
            props["created"] = provenance.created
    item = pystac.Item(id=item_id or map_path.stem, geometry=geometry, bbox=bbox, datetime=when, properties=props,
                       start_datetime=span[0] if span else None, end_datetime=span[1] if span else None)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = grid["crs"].to_epsg() if grid["crs"] is not None else None
    proj.apply(code=f"EPSG:{epsg}" if epsg else None, wkt2=grid["crs"].to_wkt() if grid["crs"] is not None and not epsg else None,
               shape=[grid["height"], grid["width"]], transform=[float(v) for v in tuple(grid["transform"])[:6]])
    res = float(abs(grid["res"][0]))
    _asset(item, "map", map_path, title="Class map (uint8 class ids, 255 = no data)", roles=["data"], media_type=_GEOTIFF,
           bands=[{"nodata": NODATA_CLASS, "data_type": "uint8", "spatial_resolution": res}], classes=_classifications(classes))
    if confidence_path is not None:
        _asset(item, "confidence", Path(confidence_path).resolve(), title="Confidence: probability of the mapped class (0 = no data)",
               roles=["data", "confidence"], media_type=_GEOTIFF,
               bands=[{"nodata": 0.0, "data_type": "float32", "spatial_resolution": res, "unit": "probability"}])
    if probabilities_path is not None:
        p = Path(probabilities_path).resolve()
        names = _grid(p)["descriptions"]
        _asset(item, "probabilities", p, title="Class probabilities x 250 (uint8, 255 = no data), one band per class",
               roles=["data", "probabilities"], media_type=_GEOTIFF,
               bands=[{"nodata": 255, "data_type": "uint8", "spatial_resolution": res, "scale": 1 / 250, "offset": 0.0,
                       "unit": "probability"} for _ in names])
        item.assets["probabilities"].extra_fields["lulc:band_names"] = [str(n) for n in names]
    for key, (path, title, roles, media) in (extra_assets or {}).items():
        _asset(item, key, Path(path).resolve(), title=title, roles=list(roles), media_type=media)
    return item


def write_item(item, path: str | Path) -> Path:
    """Write an Item as JSON with hrefs relative to ``path``'s folder and no self link, atomically; returns ``path``."""
    path = Path(path).resolve()
    for asset in item.assets.values():
        href = Path(asset.href)
        if href.is_absolute():
            asset.href = "./" + Path(_relpath(href, path.parent)).as_posix()
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    return atomic_write_text(path, json.dumps(d, indent=2) + "\n")


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


def write_catalog(folder: str | Path, item_paths: Sequence[str | Path], *, catalog_id: str, description: str,
                  name: str = "catalog.json") -> Path:
    """Write a STAC Catalog linking the Items written beside a run's outputs (relative ``item`` links), atomically.

    Args:
        folder: Where the catalog goes (``<folder>/<name>``).
        item_paths: The Item JSON files (as :func:`write_item` wrote them).
        catalog_id: The catalog's id.
        description: What the run was.
        name: The catalog's file name.

    Returns:
        The catalog's path.
    """
    import pystac

    folder = Path(folder).resolve()
    cat = pystac.Catalog(id=catalog_id, description=description, title=catalog_id)
    d = cat.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [link for link in d.get("links", []) if link.get("rel") not in ("root", "self")]
    d["links"].insert(0, {"rel": "root", "href": f"./{name}", "type": "application/json"})
    for p in item_paths:
        p = Path(p).resolve()
        title = json.loads(p.read_text()).get("properties", {}).get("title")
        link = {"rel": "item", "href": "./" + Path(_relpath(p, folder)).as_posix(), "type": "application/geo+json"}
        if title:
            link["title"] = title
        d["links"].append(link)
    return atomic_write_text(folder / name, json.dumps(d, indent=2) + "\n")


def write_map_sidecars(
    map_path: str | Path,
    classes: Mapping[int, tuple[str, str]],
    provenance: Provenance | None = None,
    *,
    confidence_path: str | Path | None = None,
    probabilities_path: str | Path | None = None,
    sld: bool = False,
    item_path: str | Path | None = None,
) -> Path:
    """Write a class map's QGIS styles and STAC Item (call after the COGs and the RAT are in place).

    Writes ``<stem>.qml`` beside the map (paletted) and beside the confidence map (colour ramp),
    with ``sld`` also ``.sld`` files, then the Item ``<stem>.json`` (:func:`map_item`) listing the
    rasters, the RAT sidecar (``<name>.tif.aux.xml``, role ``metadata``) and the styles (role
    ``style``), each with its size and checksum. Every file is written atomically.

    Args:
        map_path: The class-map COG.
        classes: Class id -> (name, ``#rrggbb``).
        provenance: The run's provenance.
        confidence_path: The confidence COG, if any.
        probabilities_path: The probability COG, if any.
        sld: Also write SLD styles.
        item_path: Where the Item goes (default ``<map stem>.json`` beside the map).

    Returns:
        The Item's path.

    Raises:
        OutputError: A folder cannot be written.
        ValueError: Bad classes or colours.
    """
    map_path = Path(map_path)
    extra: dict[str, tuple[Path, str, list[str], str]] = {}
    if rat_path(map_path).exists():
        extra["attribute_table"] = (rat_path(map_path), "GDAL raster attribute table (class names and colours)", ["metadata"],
                                    "application/xml")
    for i, p in enumerate(write_class_map_styles(map_path, classes, sld=sld)):
        extra["style" if i == 0 else "style_sld"] = (p, "QGIS style (paletted)" if i == 0 else "SLD 1.0.0 style",
                                                     ["style"], "application/xml" if i == 0 else "application/vnd.ogc.sld+xml")
    if confidence_path is not None and style_path(confidence_path) != style_path(map_path):
        for i, p in enumerate(write_confidence_styles(confidence_path, sld=sld)):
            extra["confidence_style" if i == 0 else "confidence_style_sld"] = (
                p, "QGIS style of the confidence (colour ramp)" if i == 0 else "SLD 1.0.0 style of the confidence", ["style"],
                "application/xml" if i == 0 else "application/vnd.ogc.sld+xml")
    item = map_item(map_path, classes, provenance, confidence_path=confidence_path, probabilities_path=probabilities_path,
                    extra_assets=extra)
    return write_item(item, item_path or map_path.with_suffix(".json"))


def validate_core(stac_object) -> list[str]:
    """Validate an Item or Catalog against the STAC core JSON schema that pystac ships (offline).

    The extension schemas are not fetched: this checks the core fields only (id, geometry, bbox,
    datetime, links, assets); test the extension fields explicitly.

    Args:
        stac_object: A ``pystac.Item``/``pystac.Catalog`` or its dict.

    Returns:
        The schema URIs validated against.

    Raises:
        pystac.errors.STACValidationError: The object breaks the core schema.
    """
    import pystac
    from pystac.validation import validate_dict

    d = stac_object if isinstance(stac_object, dict) else stac_object.to_dict(include_self_link=False, transform_hrefs=False)
    d = {**d, "stac_extensions": []}  # the extension schemas are online only
    kind = pystac.STACObjectType.ITEM if d.get("type") == "Feature" else pystac.STACObjectType.CATALOG
    return validate_dict(d, stac_object_type=kind)
