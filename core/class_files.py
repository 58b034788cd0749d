"""Class schemes read from files: Earth Engine's ``lc.json``, a CSV (``id,name,color``), a QGIS ``.qml`` style.

``lc.json`` is the layout Earth Engine users export (``{"values": [...], "label": [...], "palette": [...]}``,
optionally ``"ignore"``); the CSV has a header ``id,name,color`` (``ignore`` rows allowed as ``id,ignore``: a
row whose name is ``ignore``/``nodata`` gives the ignore value); the QGIS style is a paletted-raster renderer
(``<paletteEntry value=... label=... color=...>``). Every file is validated (integer ids 0..254 that are unique,
parseable colours, an ignore value that is no class id) and every problem is one :class:`core.errors.SchemeError`
sentence that names the file and the line or field.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from core.classes import NODATA_CLASS, ClassScheme, LandCoverClass
from core.errors import SchemeError

__all__ = ["read_scheme_file", "parse_color", "scheme_from_rows", "SCHEME_SUFFIXES"]

SCHEME_SUFFIXES = (".json", ".csv", ".qml")
"""File suffixes :func:`read_scheme_file` reads."""

_NAMED = {"red": "#ff0000", "green": "#008000", "blue": "#0000ff", "black": "#000000", "white": "#ffffff",
          "yellow": "#ffff00", "gray": "#808080", "grey": "#808080", "orange": "#ffa500", "brown": "#a52a2a"}
_IGNORE_NAMES = ("ignore", "nodata", "no_data", "unlabelled", "unlabeled")


def parse_color(value: object, where: str) -> str:
    """A colour as ``#rrggbb``.

    Accepted: ``#rgb``, ``#rrggbb``, ``#rrggbbaa``, ``rrggbb`` (Earth Engine palettes), ``r,g,b[,a]`` (QGIS), a basic name.

    Raises:
        SchemeError: Not a colour; the message names ``where``.
    """
    text = str(value).strip().lower()
    if text in _NAMED:
        return _NAMED[text]
    h = text.lstrip("#")
    if re.fullmatch(r"[0-9a-f]{3}", h):
        return "#" + "".join(ch * 2 for ch in h)
    if re.fullmatch(r"[0-9a-f]{6}([0-9a-f]{2})?", h):
        return "#" + h[:6]
    parts = [p.strip() for p in text.split(",")]
    if len(parts) in (3, 4) and all(p.isdigit() and int(p) <= 255 for p in parts):
        return "#" + "".join(f"{int(p):02x}" for p in parts[:3])
    raise SchemeError(f"{where}: colour {value!r} is not a colour (use #rrggbb, rrggbb or r,g,b)")


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def scheme_from_rows(name: str, title: str, rows: list[tuple[object, object, object, str]], ignore: object,
                     source: str) -> ClassScheme:
    """Validate ``(id, name, colour, where)`` rows into a :class:`ClassScheme`.

    Args:
        name: Scheme name (registry key).
        title: Display name.
        rows: One per class; ``where`` names its line or field for messages.
        ignore: The ignore value (``None``: 0 if no class uses 0, else 255).
        source: The file, for messages.

    Raises:
        SchemeError: A non-integer or out-of-range id, a repeated id or name, an empty name, a bad colour,
            an ignore value that is a class id, or no class at all.
    """
    if not rows:
        raise SchemeError(f"{source} lists no class")
    classes: list[LandCoverClass] = []
    seen: dict[int, str] = {}
    names: dict[str, str] = {}
    for cid, cname, color, where in rows:
        try:
            i = int(str(cid).strip())
        except ValueError:
            raise SchemeError(f"{source}, {where}: class id {cid!r} is not a whole number") from None
        if not 0 <= i <= 254:
            raise SchemeError(f"{source}, {where}: class id {i} is outside 0..254 (255 marks no data)")
        if i in seen:
            raise SchemeError(f"{source}, {where}: class id {i} is used twice (also at {seen[i]})")
        n = _slug(str(cname or ""))
        if not n:
            raise SchemeError(f"{source}, {where}: class {i} has no name")
        if n in names:
            raise SchemeError(f"{source}, {where}: class name {n!r} is used twice (also at {names[n]})")
        seen[i], names[n] = where, where
        classes.append(LandCoverClass(i, n, parse_color(color, f"{source}, {where}")))
    classes.sort(key=lambda c: c.id)
    if ignore is None or (isinstance(ignore, str) and not ignore.strip()):
        ig = NODATA_CLASS if 0 in seen else 0
    else:
        try:
            ig = int(str(ignore).strip())
        except ValueError:
            raise SchemeError(f"{source}: ignore value {ignore!r} is not a whole number") from None
        if not 0 <= ig <= 255:
            raise SchemeError(f"{source}: ignore value {ig} is outside 0..255")
        if ig in seen:
            raise SchemeError(f"{source}: ignore value {ig} is also a class id ({seen[ig]}); pick a value no class uses")
    return ClassScheme(name, title, tuple(classes), ig)


def _read_lc_json(path: Path, name: str) -> ClassScheme:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemeError(f"{path} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(d, dict):
        raise SchemeError(f"{path} must hold one JSON object with fields values, label, palette")
    if "classes" in d and "values" not in d:  # a card's own scheme dict ({"name", "classes": [...]})
        items = d["classes"]
        if not isinstance(items, list):
            raise SchemeError(f"{path}: field classes must be a list of {{id, name, color}} objects")
        rows = [(c.get("id"), c.get("name"), c.get("color"), f"field classes[{k}]") if isinstance(c, dict) else
                (None, None, None, f"field classes[{k}]") for k, c in enumerate(items)]
        return scheme_from_rows(str(d.get("name") or name), str(d.get("title") or name), rows, d.get("ignore_index"), str(path))
    for key in ("values", "label", "palette"):
        if key not in d:
            raise SchemeError(f"{path}: field {key!r} is missing (the lc.json layout has values, label and palette)")
        if not isinstance(d[key], list):
            raise SchemeError(f"{path}: field {key!r} must be a list, got {type(d[key]).__name__}")
    n = len(d["values"])
    for key in ("label", "palette"):
        if len(d[key]) != n:
            raise SchemeError(f"{path}: field {key!r} has {len(d[key])} entries but 'values' has {n}")
    rows = [(v, lab, col, f"field values[{k}]") for k, (v, lab, col) in enumerate(zip(d["values"], d["label"], d["palette"], strict=True))]
    return scheme_from_rows(name, str(d.get("title") or name), rows, d.get("ignore"), str(path))


def _read_csv(path: Path, name: str) -> ClassScheme:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows, ignore = [], None
    for lineno, rec in enumerate(reader, start=1):
        if not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
            continue  # blank lines and comments
        if header is None:
            header = [h.strip().lower() for h in rec]
            missing = [h for h in ("id", "name", "color") if h not in header and not (h == "color" and "colour" in header)]
            if missing:
                raise SchemeError(f"{path}, line {lineno}: the header must name the columns id,name,color; missing {', '.join(missing)}")
            col = header.index("color") if "color" in header else header.index("colour")
            idx = (header.index("id"), header.index("name"), col)
            continue
        if len(rec) < len(header):
            raise SchemeError(f"{path}, line {lineno}: {len(rec)} field(s), the header has {len(header)}")
        cid, cname, color = (rec[i].strip() for i in idx)
        if cname.lower() in _IGNORE_NAMES:
            ignore = cid
            continue
        rows.append((cid, cname, color, f"line {lineno}"))
    if header is None:
        raise SchemeError(f"{path} is empty; write a header id,name,color and one line per class")
    return scheme_from_rows(name, name, rows, ignore, str(path))


def _read_qml(path: Path, name: str) -> ClassScheme:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise SchemeError(f"{path} is not valid XML at line {line}, column {col + 1}") from None
    entries = root.findall(".//paletteEntry") or root.findall(".//colorPalette/*")
    if not entries:
        raise SchemeError(f"{path} has no paletteEntry elements; save the layer style with the Paletted/Unique values renderer")
    rows = []
    for k, e in enumerate(entries):
        for attr in ("value", "color"):
            if attr not in e.attrib:
                raise SchemeError(f"{path}: paletteEntry {k + 1} has no {attr!r} attribute")
        rows.append((e.get("value"), e.get("label") or f"class_{e.get('value')}", e.get("color"), f"paletteEntry {k + 1} (value {e.get('value')})"))
    nodata = root.find(".//noDataList//noDataRange")
    ignore = nodata.get("min") if nodata is not None else None
    if ignore is not None:
        ignore = str(int(float(ignore)))
    return scheme_from_rows(name, name, rows, ignore, str(path))


def read_scheme_file(path: str | Path, name: str | None = None) -> ClassScheme:
    """Read and validate a class file.

    Args:
        path: ``.json`` (``lc.json`` layout, or a card's ``classes`` object), ``.csv`` (``id,name,color``) or ``.qml``.
        name: Scheme name (default: the file's stem, e.g. ``labels_rsgislib``).

    Returns:
        The scheme (classes in id order).

    Raises:
        SchemeError: No such file, an unknown suffix, or a malformed file (line or field named).
    """
    p = Path(path)
    if not p.is_file():
        raise SchemeError(f"class file {p} not found")
    key = name or _slug(p.stem) or "scheme"
    try:
        if p.suffix.lower() == ".json":
            return _read_lc_json(p, key)
        if p.suffix.lower() == ".csv":
            return _read_csv(p, key)
        if p.suffix.lower() == ".qml":
            return _read_qml(p, key)
    except UnicodeDecodeError:
        raise SchemeError(f"class file {p} is not a text (UTF-8) file") from None
    raise SchemeError(f"class file {p} must be .json (lc.json layout), .csv (id,name,color) or .qml (QGIS style), not {p.suffix or 'no suffix'}")
