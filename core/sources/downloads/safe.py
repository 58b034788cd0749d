"""Sentinel-2 SAFE products (Level-1C and Level-2A), as a folder or as the ``.zip`` the Copernicus Data Space delivers.

Layout read (ESA, "Sentinel-2 Products Specification Document" (PSD) issue 14.9, sections 2 and 3; the
"compact" naming in use since 2016-12-06)::

    S2B_MSIL1C_20201002T221939_N0209_R029_T60HWB_20201002T235959.SAFE/
      MTD_MSIL1C.xml                                  product metadata (MTD_MSIL2A.xml for Level-2A)
      GRANULE/L1C_T60HWB_A018696_20201002T221939/
        IMG_DATA/T60HWB_20201002T221939_B02.jp2       L1C: one JPEG 2000 file per band, at 10, 20 or 60 m
        IMG_DATA/R10m/T60HWB_20201002T221939_B02_10m.jp2   L2A: R10m/, R20m/, R60m/ (and SCL_20m in R20m/)
        QI_DATA/MSK_CLASSI_B00.jp2                    L1C cloud mask (baseline 04.00 and later)

The band files are read directly (their own GeoJP2 georeference), each band at its finest resolution, and
stacked on the 10 m grid by :func:`core.sources.downloads.vrt.write_band_vrt` (bilinear resampling of the 20
and 60 m bands unless told otherwise). GDAL's ``SENTINEL2`` driver is not used: it keeps each resolution in
its own subdataset, which is the stacking this module does.

Evidence taken from the product metadata (never from a pixel test): ``PRODUCT_TYPE`` (``S2MSI1C`` /
``S2MSI2A``), ``PROCESSING_LEVEL``, ``PROCESSING_BASELINE``, ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET``
(L2A) per ``band_id`` (0..12 = B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B10, B11, B12; PSD table
"Radiometric_Offset_List"), the quantification value (10000), ``PRODUCT_START_TIME`` and ``PRODUCT_URI``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path, PurePosixPath

from core.inputs.bands import canonical_band
from core.sources.downloads.vrt import BandFile, Product, ProductError, check_band_file

__all__ = ["MTD_NAMES", "BAND_IDS", "is_safe", "read_safe"]

MTD_NAMES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")
"""Product metadata file names of compact-naming Level-1C and Level-2A SAFE products."""

BAND_IDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
"""``band_id`` 0..12 of the MTD's offset lists, as canonical band names (PSD, physical band order)."""

_BAND_FILE = re.compile(r"_(B\d\d|B8A|SCL)(?:_(\d\d)m)?\.(jp2|j2k|tif|tiff)$", re.IGNORECASE)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Source:
    """The SAFE's files, in a folder or a zip: list, open, GDAL path, name shown."""

    def __init__(self, path: Path, what: str):
        self.path, self.what, self.zip = path, what, None
        if path.is_dir():
            mtd = [path / n for n in MTD_NAMES if (path / n).is_file()]
            if not mtd:
                raise ProductError(f"{what} is a folder without MTD_MSIL1C.xml or MTD_MSIL2A.xml: not a Sentinel-2 SAFE "
                                   "product in the compact naming (give the .SAFE folder itself, or its .zip)")
            self.root, self.mtd = "", mtd[0].name
            self.names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
            return
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ProductError(f"{what} is not a complete zip file ({exc}); download the product again") from None
        names = self.zip.namelist()
        mtd = sorted((n for n in names if PurePosixPath(n).name in MTD_NAMES), key=lambda n: n.count("/"))
        if not mtd:
            raise ProductError(f"{what} holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml: not a zipped Sentinel-2 SAFE product")
        self.root = mtd[0][: -len(PurePosixPath(mtd[0]).name)]
        self.mtd = PurePosixPath(mtd[0]).name
        self.names = [n[len(self.root):] for n in names if n.startswith(self.root) and not n.endswith("/")]

    def read(self, rel: str) -> bytes:
        if self.zip is None:
            return (self.path / rel).read_bytes()
        return self.zip.read(self.root + rel)

    def gdal_path(self, rel: str) -> str:
        if self.zip is None:
            return str((self.path / rel).resolve())
        return f"/vsizip/{self.path.resolve()}/{self.root}{rel}"

    def check(self, band: BandFile, rel: str) -> None:
        if self.zip is None:
            check_band_file(band, self.path / rel, what=self.what)
        else:
            check_band_file(band, what=self.what, zip_file=self.zip, member=self.root + rel)


def is_safe(path: str | Path) -> bool:
    """True for a ``.SAFE`` folder (or any folder holding an MTD_MSIL1C/2A.xml) and for any ``.zip`` file.

    A zip is never a raster the GeoTIFF path reads, so every zip is taken as a SAFE candidate (uploads lose the
    product name); :func:`read_safe` refuses one without an MTD in one sentence.
    """
    p = Path(path)
    if p.is_dir():
        return p.suffix.upper() == ".SAFE" or any((p / n).is_file() for n in MTD_NAMES)
    return p.is_file() and p.suffix.lower() == ".zip"


def _mtd_fields(xml: bytes, what: str, mtd: str) -> dict[str, object]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ProductError(f"{what}: {mtd} is not valid XML ({exc}); download the product again") from None
    out: dict[str, object] = {"files": [], "offsets": {}}
    for el in root.iter():
        tag, text = _local(el.tag), (el.text or "").strip()
        if tag in ("PRODUCT_URI", "PRODUCT_TYPE", "PROCESSING_LEVEL", "PROCESSING_BASELINE", "PRODUCT_START_TIME",
                   "SPACECRAFT_NAME", "QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and tag not in out:
            out[tag] = text
        elif tag == "IMAGE_FILE":
            out["files"].append(text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            try:
                out["offsets"][(tag, BAND_IDS[int(el.get("band_id", "-1"))])] = float(text)
            except (ValueError, IndexError):
                raise ProductError(f"{what}: {mtd} has an unreadable {tag} (band_id={el.get('band_id')!r}, value "
                                   f"{text!r}); the metadata file is damaged") from None
    return out


def read_safe(path: Path, *, bands: list[str] | None = None, what: str | None = None) -> Product:
    """Read a SAFE folder or zip into a :class:`Product` (band files, evidence tags, cloud mask).

    Args:
        path: The ``.SAFE`` folder or its ``.zip``.
        bands: Canonical band names that must be in the product (e.g. a model's bands); ``None``: every band
            the MTD lists must be present.
        what: The name used in messages (default the folder / zip name).

    Returns:
        The product; its bands each at their finest resolution, in physical band order (B1 ... B12).

    Raises:
        ProductError: No MTD, a damaged MTD, band files the MTD lists but the product lacks (listed), bands in
            ``bands`` that the product lacks (listed), a truncated JPEG 2000 band file, several granules, a
            quantification value other than 10000, or offsets that differ between bands.
    """
    what = what or path.name
    src = _Source(path, what)
    mtd = src.mtd
    f = _mtd_fields(src.read(mtd), what, mtd)
    present = set(src.names)
    listed = [str(x) for x in f["files"]]
    granules = sorted({p.split("/")[1] for p in listed if p.startswith("GRANULE/") and p.count("/") >= 2}
                      or {n.split("/")[1] for n in src.names if n.startswith("GRANULE/") and n.count("/") >= 2})
    if len(granules) > 1:
        raise ProductError(f"{what} holds {len(granules)} granules ({', '.join(granules[:3])}...): only single-tile "
                           "products (the compact naming since 2016-12-06) are read; split it per tile first")
    candidates: dict[str, list[tuple[int, str]]] = {}
    lacking: list[str] = []
    for rel in listed or sorted(n.rsplit(".", 1)[0] for n in src.names if "/IMG_DATA/" in n):
        found = next((rel + ext for ext in (".jp2", ".tif", ".tiff", ".j2k") if rel + ext in present), None)
        m = _BAND_FILE.search(found or rel + ".jp2")
        if m is None:
            continue  # TCI, AOT, WVP
        name = "SCL" if m.group(1).upper() == "SCL" else canonical_band(m.group(1))
        if found is None:
            lacking.append(f"{name} ({rel}.jp2)")
            continue
        res = int(m.group(2)) if m.group(2) else 0
        candidates.setdefault(name, []).append((res, found))
    if lacking:
        raise ProductError(f"{what} lacks the band file(s) {', '.join(lacking)} that its {mtd} lists; the download is "
                           "incomplete: download the product again")
    spectral = [b for b in BAND_IDS if b in candidates]
    missing = [b for b in (bands or []) if b not in spectral]
    if not spectral or missing:
        need = missing or list(BAND_IDS)
        raise ProductError(f"{what} lacks band(s) {', '.join(need)} (it has {', '.join(spectral) or 'no band file'} under "
                           "GRANULE/*/IMG_DATA); download the full product, not a band subset")
    level = "L2A" if mtd == "MTD_MSIL2A.xml" else "L1C"
    q = str(f.get("BOA_QUANTIFICATION_VALUE") or f.get("QUANTIFICATION_VALUE") or "10000")
    if float(q) != 10000:
        raise ProductError(f"{what}: {mtd} gives quantification value {q}, not 10000; this reader expects reflectance x 1e4")
    offsets = f["offsets"]
    key = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    values = {b: v for (k, b), v in offsets.items() if k == key and b in spectral}
    if len(set(values.values())) > 1:
        raise ProductError(f"{what}: {mtd} gives different {key} per band ({', '.join(f'{b} {v:g}' for b, v in values.items())}); "
                           "one offset for every band is expected")
    tags: dict[str, str] = {"LULC_PRODUCT": f.get("PRODUCT_URI") or path.name, "LULC_PRODUCT_KIND": "sentinel2-safe",
                            "LULC_PRODUCT_METADATA": mtd}
    for k in ("PRODUCT_URI", "PRODUCT_TYPE", "PROCESSING_LEVEL", "PROCESSING_BASELINE", "PRODUCT_START_TIME", "SPACECRAFT_NAME"):
        if f.get(k):
            tags[k] = str(f[k])
    if values:
        tags[key] = f"{next(iter(values.values())):g}"
    out: list[BandFile] = []
    for b in spectral:
        res, rel = min(candidates[b])
        band = BandFile(b, src.gdal_path(rel), rel)
        src.check(band, rel)
        out.append(band)
    mask, mask_kind = None, None
    if "SCL" in candidates:
        rel = min(candidates["SCL"])[1]
        mask, mask_kind = BandFile("SCL", src.gdal_path(rel), rel), "SCL"
    else:
        cl = next((n for n in src.names if n.startswith("GRANULE/") and PurePosixPath(n).name.startswith("MSK_CLASSI_B00.")), None)
        if cl:
            mask, mask_kind = BandFile("MSK_CLASSI", src.gdal_path(cl), cl), "MSK_CLASSI"
    start = str(f.get("PRODUCT_START_TIME") or "")
    return Product(kind="sentinel2-safe", name=str(f.get("PRODUCT_URI") or path.name), source=path, bands=out, tags=tags,
                   sensor="S2", level=level, baseline=str(f["PROCESSING_BASELINE"]) if f.get("PROCESSING_BASELINE") else None,
                   date=start[:10] or None, metadata_file=mtd, mask=mask, mask_kind=mask_kind, notes=[])
