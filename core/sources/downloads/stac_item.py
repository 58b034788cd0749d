"""A STAC Item (a local ``item.json`` or an ``http(s)`` URL) whose assets are per-band COGs, read with pystac.

Assets are matched to bands by, in order: ``eo:bands`` ``name`` / ``common_name`` (or STAC 1.1 ``bands``), then
the asset key, through :func:`core.inputs.bands.canonical_band` (Earth Search's ``sentinel-2-l2a`` keys
``coastal, blue, green, red, rededge1, rededge2, rededge3, nir, nir08, nir09, swir16, swir22``, ``cirrus`` for
L1C; Planetary Computer's ``B01`` .. ``B12``). A GeoTIFF/COG asset is preferred to a JPEG 2000 one of the same
band (Earth Search's ``blue`` vs ``blue-jp2``); ``scl`` / ``SCL`` becomes the cloud mask.

Evidence for the input decision, from the Item (STAC extensions "raster" v1.1 and Earth Search's
``s2:``/``earthsearch:`` properties):

- offset: ``raster:bands`` ``scale`` and ``offset`` per asset, ``physical = DN x scale + offset``; with scale
  1e-4 an offset of -0.1 is the +1000 DN offset of baseline 04.00 (stated as ``STAC_RASTER_ADD_OFFSET`` =
  -1000), 0 is none. Assets that disagree are refused. Without ``raster:bands``, ``s2:processing_baseline``
  (or ``earthsearch:boa_offset_applied`` = true: offset already removed) decides downstream.
- level: ``s2:product_type`` (``S2MSI1C`` / ``S2MSI2A``) or ``processing:level``; date: ``datetime``.

URLs are read through GDAL's ``/vsicurl/`` (``s3://`` through ``/vsis3/``); every asset is opened once here so
that a missing or unreachable one is refused before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.inputs.bands import BAND_ALIASES, canonical_band
from core.sources.downloads.vrt import BandFile, Product, ProductError, band_grid

__all__ = ["is_stac_item", "read_stac_item", "S2_DN_SCALE"]

S2_DN_SCALE = 1e-4
"""``raster:bands`` scale of Sentinel-2 DN (reflectance x 1e4), the unit :mod:`core.inputs.decision` expects."""

_S2_ORDER = tuple(BAND_ALIASES)[:13]


def is_stac_item(path: str | Path) -> bool:
    """True for a local ``.json`` file that is a GeoJSON Feature with ``assets``, or an ``http(s)`` URL of an Item.

    A URL is taken as an Item when it ends in ``.json`` or names ``/items/<id>`` (the STAC API path, as in
    ``https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/<id>``); only a local file is opened.
    """
    s = str(path)
    if s.startswith(("http://", "https://")):
        url = s.lower().split("?", 1)[0].rstrip("/")
        return url.endswith(".json") or "/items/" in url
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() in (".json", ".geojson")) or p.stat().st_size > 20 * 2**20:
        return False
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("type") == "Feature" and isinstance(doc.get("assets"), dict)


def _gdal_href(href: str) -> str:
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith("file://"):
        return href[7:]
    return href


def _asset_band(key: str, asset) -> str | None:
    """The canonical Sentinel-2 band of a single-band data asset, else ``None``.

    A true-colour ``visual`` asset lists three bands and is an 8-bit rendering, not reflectance; thumbnails and
    overviews are not data.
    """
    fields = asset.extra_fields
    listed = fields.get("eo:bands") or fields.get("bands") or []
    roles = set(asset.roles or [])
    if len(listed) > 1 or roles & {"visual", "overview", "thumbnail"} or key.lower() in ("visual", "tci", "thumbnail"):
        return None
    for entry in listed[:1]:
        for k in ("name", "common_name", "eo:common_name"):
            name = canonical_band(entry.get(k)) if isinstance(entry, dict) else None
            if name in _S2_ORDER:
                return name
    name = canonical_band(key)
    return name if name in _S2_ORDER else None


def read_stac_item(path: str | Path, *, bands: list[str] | None = None, what: str | None = None) -> Product:
    """Read a STAC Item into a :class:`Product` (one band file per asset, evidence from its properties).

    Args:
        path: Local ``item.json`` or an ``http(s)`` URL of one.
        bands: Canonical band names that must be among the assets; ``None``: at least one Sentinel-2 band.
        what: Name for messages (default the file name).

    Raises:
        ProductError: Not a STAC Item, no (or not the needed) band assets (listed), an asset missing or
            unreachable, a scale other than 1e-4, or assets that disagree on the offset.
    """
    import pystac

    what = what or Path(str(path)).name
    try:
        item = pystac.Item.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - pystac raises many types (IO, JSON, STACTypeError)
        raise ProductError(f"{what} is not a readable STAC Item ({' '.join(str(exc).split())[:160]}); give an Item JSON "
                           "(type Feature with assets), not a Collection or a search result") from None
    chosen: dict[str, tuple[int, str, object]] = {}
    mask = None
    for key, asset in item.assets.items():
        mtype = (asset.media_type or "").lower()
        href = asset.get_absolute_href() or asset.href
        if key.lower() == "scl":
            mask = (key, href)
            continue
        name = _asset_band(key, asset)
        rank = 1 if ("jp2" in mtype or "jp2" in key.lower() or href.lower().endswith(".jp2")) else 0  # COG first
        if name is not None and (name not in chosen or rank < chosen[name][0]):
            chosen[name] = (rank, key, asset)
    have = [b for b in _S2_ORDER if b in chosen]
    missing = [b for b in (bands or []) if b not in have]
    if not have or missing:
        raise ProductError(f"{what} has no asset for band(s) {', '.join(missing or ['any Sentinel-2 band'])} (band assets found: "
                           f"{', '.join(f'{chosen[b][1]}={b}' for b in have) or 'none'}; asset keys: {', '.join(item.assets) or 'none'})")
    props = item.properties
    out, scales = [], {}
    for b in have:
        _, key, asset = chosen[b]
        href = asset.get_absolute_href() or asset.href
        band = BandFile(b, _gdal_href(href), f"asset {key!r} ({asset.href})")
        if not href.startswith(("http://", "https://", "s3://")) and not Path(_gdal_href(href)).is_file():
            raise ProductError(f"{what}: asset {key!r} points to {asset.href}, which does not exist ({_gdal_href(href)}); "
                               "keep the COGs where the Item says or fix its hrefs")
        band_grid(band, what=what)  # opens it: unreachable / unreadable assets fail here
        rb = (asset.extra_fields.get("raster:bands") or [{}])[0]
        scale, offset = rb.get("scale"), rb.get("offset")
        if scale is not None and abs(float(scale) - S2_DN_SCALE) > 1e-12:
            raise ProductError(f"{what}: asset {key!r} has raster:bands scale {scale}; only Sentinel-2 DN (scale {S2_DN_SCALE:g}, "
                               "reflectance x 1e4) are read")
        if scale is not None or offset is not None:
            scales[b] = round(-float(offset or 0.0) / S2_DN_SCALE)
        out.append(band)
    if len(set(scales.values())) > 1:
        raise ProductError(f"{what}: its assets disagree on the offset ({', '.join(f'{b} {v} DN' for b, v in scales.items())} "
                           "from raster:bands); one offset for every band is expected")
    ptype = str(props.get("s2:product_type") or "")
    level = "L2A" if "2A" in ptype.upper() else "L1C" if "1C" in ptype.upper() else None
    plevel = str(props.get("processing:level") or "").upper()
    level = level or ("L2A" if plevel in ("L2A", "L2") else "L1C" if plevel in ("L1C", "L1") else None)
    dt = str(props.get("datetime") or props.get("start_datetime") or "")
    baseline = props.get("s2:processing_baseline")
    tags = {"LULC_PRODUCT": item.id, "LULC_PRODUCT_KIND": "stac-item", "LULC_PRODUCT_METADATA": what}
    if ptype:
        tags["PRODUCT_TYPE"] = ptype
    if level:
        tags["PROCESSING_LEVEL"] = level
    if scales:
        tags["STAC_RASTER_ADD_OFFSET"] = str(-next(iter(scales.values())))
    elif props.get("earthsearch:boa_offset_applied") is True:
        tags["STAC_RASTER_ADD_OFFSET"] = "0"
    if baseline is not None:
        tags["S2_PROCESSING_BASELINE"] = str(baseline)
    if dt:
        tags["DATETIME"] = dt
    m = None
    if mask is not None:
        m = BandFile("SCL", _gdal_href(mask[1]), f"asset {mask[0]!r}")
    return Product(kind="stac-item", name=item.id, source=Path(str(path)), bands=out, tags=tags, sensor="S2", level=level,
                   baseline=str(baseline) if baseline is not None else None, date=dt[:10] or None, metadata_file=what,
                   mask=m, mask_kind="SCL" if m else None, notes=[])
