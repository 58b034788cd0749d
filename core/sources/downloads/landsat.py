"""Landsat 8/9 OLI Collection 2 Level-2 scenes as USGS EarthExplorer / M2M deliver them: one COG per band and an MTL file.

A scene is a folder (or the MTL file in it) such as::

    LC09_L2SP_072087_20201002_20201010_02_T1/
      LC09_L2SP_072087_20201002_20201010_02_T1_MTL.json     (and/or _MTL.txt, _MTL.xml)
      LC09_L2SP_072087_20201002_20201010_02_T1_SR_B1.TIF ... _SR_B7.TIF
      LC09_L2SP_072087_20201002_20201010_02_T1_QA_PIXEL.TIF

It is read as one scene: the bands SR_B1..SR_B7 (30 m) stacked into one VRT whose band descriptions are
``SR_B1``..``SR_B7`` (:data:`core.inputs.bands.LANDSAT_C2_L2`), so that :mod:`core.inputs.decision` applies the
Collection 2 rule ``reflectance = DN x 0.0000275 - 0.2`` and :func:`core.io.guards.check_gsd` sees 30 m pixels.
The MTL's ``REFLECTANCE_MULT_BAND_n`` / ``REFLECTANCE_ADD_BAND_n`` are checked against that rule (USGS,
"Landsat 8-9 Collection 2 Level 2 Science Product Guide", LSDS-1619 v6, 2022, section 4.3); ``QA_PIXEL`` is
offered as the cloud / nodata mask (bits 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow; same
guide, table 6-3). SR fill is DN 0, the VRT's nodata.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.inputs.bands import SENSORS
from core.sources.downloads.vrt import BandFile, Product, ProductError, check_band_file

__all__ = ["is_landsat", "read_mtl", "read_landsat"]

_MTL = re.compile(r"_MTL\.(json|txt)$", re.IGNORECASE)
_SR = re.compile(r"_SR_B([1-7])\.TIF{1,2}$", re.IGNORECASE)


def _mtl_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and _MTL.search(p.name)), key=lambda p: p.suffix.lower() != ".json")


def is_landsat(path: str | Path) -> bool:
    """True for an ``*_MTL.json`` / ``*_MTL.txt`` file, or a folder holding one or ``*_SR_B1.TIF``."""
    p = Path(path)
    if p.is_file():
        return bool(_MTL.search(p.name))
    return p.is_dir() and (bool(_mtl_files(p)) or any(_SR.search(q.name) for q in p.iterdir() if q.is_file()))


def read_mtl(path: Path) -> dict[str, dict[str, str]]:
    """An MTL file (JSON, or the ODL text of ``_MTL.txt``) as ``{group: {key: value}}`` (groups flattened one level).

    Raises:
        ProductError: Unreadable file.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProductError(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    out: dict[str, dict[str, str]] = {}
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProductError(f"{path.name} is not valid JSON ({exc}); download the scene's MTL file again") from None
        top = doc.get("LANDSAT_METADATA_FILE", doc) if isinstance(doc, dict) else {}
        for group, body in top.items():
            if isinstance(body, dict):
                out[group] = {str(k): str(v) for k, v in body.items() if not isinstance(v, dict | list)}
        return out
    group = ""
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if key == "GROUP":
            group = value
        elif key == "END_GROUP":
            group = ""
        elif group:
            out.setdefault(group, {})[key] = value.strip('"')
    return out


def read_landsat(path: Path, *, what: str | None = None) -> Product:
    """Read a Landsat 8/9 C2 L2 scene (folder or MTL file) into a :class:`Product`.

    Raises:
        ProductError: No SR_B1..SR_B7 band files (lists the missing ones), a Level-1 or non-OLI scene, a
            scale/offset in the MTL that is not the Collection 2 rule, or a band file that cannot be read.
    """
    folder = path.parent if path.is_file() else path
    mtls = [path] if path.is_file() else _mtl_files(folder)
    mtl = read_mtl(mtls[0]) if mtls else {}
    scene = (mtls[0].name[: _MTL.search(mtls[0].name).start()] if mtls else folder.name)
    what = what or scene
    contents = mtl.get("PRODUCT_CONTENTS", {})
    attrs = mtl.get("IMAGE_ATTRIBUTES", {})
    level = contents.get("PROCESSING_LEVEL") or (scene.split("_")[1] if scene.count("_") >= 2 else "")
    sat = attrs.get("SPACECRAFT_ID") or {"LC08": "LANDSAT_8", "LC09": "LANDSAT_9"}.get(scene[:4], scene[:4])
    if level and not level.upper().startswith("L2"):
        raise ProductError(f"{what} is a Landsat {level} (Level-1) scene; download the Collection 2 Level-2 (L2SP) product, "
                           "whose SR_B1..SR_B7 bands are surface reflectance")
    if sat and sat.upper() not in ("LANDSAT_8", "LANDSAT_9"):
        raise ProductError(f"{what} is {sat}; only Landsat 8/9 OLI Collection 2 Level-2 (SR_B1..SR_B7) scenes are read")
    files = {int(m.group(1)): p for p in folder.iterdir() if p.is_file() and (m := _SR.search(p.name))}
    for i in range(1, 8):  # the MTL's own file names win when present
        named = contents.get(f"FILE_NAME_BAND_{i}")
        if named and (folder / named).is_file():
            files[i] = folder / named
    missing = [f"SR_B{i}" for i in range(1, 8) if i not in files]
    if missing:
        raise ProductError(f"{what} lacks band file(s) {', '.join(missing)} (*_SR_B1.TIF .. *_SR_B7.TIF beside the MTL); "
                           "download every surface-reflectance band of the scene")
    params = mtl.get("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", {})
    rule = SENSORS["L8/9"]
    for i in range(1, 8):
        mult, add = params.get(f"REFLECTANCE_MULT_BAND_{i}"), params.get(f"REFLECTANCE_ADD_BAND_{i}")
        try:
            bad = (mult is not None and abs(float(mult) - rule.scale) > 1e-9) or (add is not None and abs(float(add) - rule.offset) > 1e-6)
        except ValueError:
            bad = True
        if bad:
            raise ProductError(f"{what}: its MTL gives band {i} scale {mult} and offset {add}, not the Collection 2 Level-2 rule "
                               f"({rule.scale:g}, {rule.offset:g}); this reader supports Collection 2 only")
    bands = []
    for i in range(1, 8):
        band = BandFile(f"SR_B{i}", str(files[i].resolve()), files[i].name)
        check_band_file(band, files[i], what=what)
        bands.append(band)
    qa = next((p for p in folder.iterdir() if p.is_file() and p.name.upper().endswith("_QA_PIXEL.TIF")), None)
    date = attrs.get("DATE_ACQUIRED") or (f"{scene[17:21]}-{scene[21:23]}-{scene[23:25]}" if len(scene) >= 25 else None)
    tags = {"LULC_PRODUCT": scene, "LULC_PRODUCT_KIND": "landsat-c2l2", "LULC_PRODUCT_METADATA": mtls[0].name if mtls else "none",
            "SPACECRAFT_ID": sat, "LANDSAT_PROCESSING_LEVEL": level or "unknown", "DATE_ACQUIRED": date or "",
            "LANDSAT_SR_SCALE": f"{rule.scale:g}", "LANDSAT_SR_OFFSET": f"{rule.offset:g}"}
    notes = [] if mtls else [f"{what} has no MTL file: the Collection 2 Level-2 scale {rule.scale:g} and offset {rule.offset:g} are assumed"]
    return Product(kind="landsat-c2l2", name=scene, source=path, bands=bands, tags={k: v for k, v in tags.items() if v},
                   sensor="L8/9", level=level or None, date=date, metadata_file=mtls[0].name if mtls else "",
                   mask=BandFile("QA_PIXEL", str(qa.resolve()), qa.name) if qa else None, mask_kind="QA_PIXEL" if qa else None,
                   notes=notes)
