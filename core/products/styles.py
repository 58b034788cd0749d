"""Style sidecars that make a class map or a confidence map open styled in QGIS and on map servers.

QGIS applies ``<name>.qml`` beside ``<name>.tif`` when it opens the raster (QGIS user manual,
"Layer properties > Style > Save as default"): :func:`class_map_qml` writes a *paletted* renderer
(one entry per class: value, colour, label = class name), :func:`confidence_qml` a
*singlebandpseudocolor* renderer with an interpolated colour ramp over probabilities 0..1.
:func:`class_map_sld`/:func:`confidence_sld` write the same as OGC SLD 1.0.0 ``RasterSymbolizer``
``ColorMap``s (``type="values"`` / ``"ramp"``) for GeoServer and MapServer.

The confidence ramp is matplotlib's viridis at 0, 0.25, 0.5, 0.75, 1 (perceptually uniform,
readable by colour-blind users; van der Walt & Smith, 2015).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.io.outputs import atomic_write_text

__all__ = [
    "CONFIDENCE_RAMP",
    "class_map_qml",
    "confidence_qml",
    "class_map_sld",
    "confidence_sld",
    "style_path",
    "write_class_map_styles",
    "write_confidence_styles",
]

CONFIDENCE_RAMP: tuple[tuple[float, str], ...] = (
    (0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"), (1.0, "#fde725"),
)
"""(probability, colour) stops of the confidence style: viridis (matplotlib's ``_cm_listed``)."""

_QGIS_VERSION = "3.28.0"  # the oldest long-term release whose QML this layout matches; newer QGIS reads it


def style_path(path: str | Path, suffix: str = ".qml") -> Path:
    """The style sidecar QGIS looks for: ``<stem>.qml`` beside ``<stem>.tif`` (or ``.sld``)."""
    return Path(path).with_suffix(suffix)


def _hex(color: str | Sequence[int]) -> tuple[str, int]:
    """``#rrggbb`` and alpha 0-255 of a colour given as hex or an RGB(A) tuple."""
    if isinstance(color, str):
        h = color.lstrip("#").lower()
        if len(h) not in (6, 8) or any(c not in "0123456789abcdef" for c in h):
            raise ValueError(f"colour {color!r} is not #rrggbb")
        return f"#{h[:6]}", int(h[6:8], 16) if len(h) == 8 else 255
    c = [int(v) for v in color]
    return "#{:02x}{:02x}{:02x}".format(*c[:3]), c[3] if len(c) > 3 else 255


def _qml_root(renderer: ET.Element) -> str:
    root = ET.Element("qgis", {"version": _QGIS_VERSION, "styleCategories": "AllStyleCategories",
                               "hasScaleBasedVisibilityFlag": "0", "minScale": "1e+08", "maxScale": "0"})
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", {"enabled": "false", "zoomedInResamplingMethod": "nearestNeighbour",
                                           "zoomedOutResamplingMethod": "nearestNeighbour", "maxOversampling": "2"})
    pipe.append(renderer)
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "colorizeOn": "0", "colorizeRed": "255",
                                          "colorizeGreen": "128", "colorizeBlue": "128", "colorizeStrength": "100"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def class_map_qml(classes: Mapping[int, tuple[str, str | Sequence[int]]]) -> str:
    """A QGIS paletted style of a class map.

    Args:
        classes: Class id -> (name, ``#rrggbb`` or RGB(A) tuple), e.g.
            :func:`core.io.raster.scheme_classes`; entries are written in id order.

    Returns:
        The QML document (one ``<paletteEntry value= color= alpha= label=>`` per class; the nodata
        value 255 is left transparent by QGIS from the file's nodata).

    Raises:
        ValueError: No classes, or a colour that is not ``#rrggbb``.
    """
    if not classes:
        raise ValueError("a class-map style needs at least one class")
    renderer = ET.Element("rasterrenderer", {"type": "paletted", "band": "1", "opacity": "1", "alphaBand": "-1",
                                             "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for cid in sorted(int(k) for k in classes):
        name, color = classes[cid]
        hexc, alpha = _hex(color)
        ET.SubElement(palette, "paletteEntry", {"value": str(cid), "color": hexc, "alpha": str(alpha), "label": str(name)})
    return _qml_root(renderer)


def confidence_qml(ramp: Sequence[tuple[float, str]] = CONFIDENCE_RAMP) -> str:
    """A QGIS pseudocolour style of a confidence map (probability of the winning class, 0..1).

    Args:
        ramp: (value, ``#rrggbb``) stops in increasing value (default :data:`CONFIDENCE_RAMP`).

    Returns:
        The QML document (interpolated ``colorrampshader`` from the first to the last stop).

    Raises:
        ValueError: Fewer than two stops, or values not increasing.
    """
    if len(ramp) < 2 or any(b[0] <= a[0] for a, b in zip(ramp, ramp[1:], strict=False)):
        raise ValueError("a colour ramp needs at least two stops in increasing value")
    lo, hi = float(ramp[0][0]), float(ramp[-1][0])
    renderer = ET.Element("rasterrenderer", {"type": "singlebandpseudocolor", "band": "1", "opacity": "1", "alphaBand": "-1",
                                             "classificationMin": repr(lo), "classificationMax": repr(hi), "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    mmo = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", "0.02"), ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(mmo, tag).text = text
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader", {
        "colorRampType": "INTERPOLATED", "classificationMode": "1", "clip": "0", "minimumValue": repr(lo),
        "maximumValue": repr(hi), "labelPrecision": "2"})
    for value, color in ramp:
        hexc, alpha = _hex(color)
        ET.SubElement(shader, "item", {"value": repr(float(value)), "color": hexc, "alpha": str(alpha), "label": f"{value:.2f}"})
    return _qml_root(renderer)


def _sld(layer: str, entries: Sequence[dict[str, str]], map_type: str) -> str:
    ns = {"sld": "http://www.opengis.net/sld", "ogc": "http://www.opengis.net/ogc"}
    ET.register_namespace("sld", ns["sld"])
    q = lambda t: f"{{{ns['sld']}}}{t}"  # noqa: E731
    root = ET.Element(q("StyledLayerDescriptor"), {"version": "1.0.0"})
    named = ET.SubElement(root, q("NamedLayer"))
    ET.SubElement(named, q("Name")).text = layer
    style = ET.SubElement(named, q("UserStyle"))
    ET.SubElement(style, q("Title")).text = layer
    rule = ET.SubElement(ET.SubElement(style, q("FeatureTypeStyle")), q("Rule"))
    sym = ET.SubElement(rule, q("RasterSymbolizer"))
    ET.SubElement(sym, q("Opacity")).text = "1.0"
    cmap = ET.SubElement(sym, q("ColorMap"), {"type": map_type})
    for e in entries:
        ET.SubElement(cmap, q("ColorMapEntry"), e)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def class_map_sld(classes: Mapping[int, tuple[str, str | Sequence[int]]], layer: str = "classes") -> str:
    """An SLD 1.0.0 style of a class map: ``ColorMap type="values"``, one entry per class (quantity, colour, label).

    Raises:
        ValueError: No classes, or a colour that is not ``#rrggbb``.
    """
    if not classes:
        raise ValueError("a class-map style needs at least one class")
    entries = []
    for cid in sorted(int(k) for k in classes):
        name, color = classes[cid]
        hexc, alpha = _hex(color)
        entries.append({"quantity": str(cid), "color": hexc, "opacity": f"{alpha / 255:g}", "label": str(name)})
    return _sld(layer, entries, "values")


def confidence_sld(ramp: Sequence[tuple[float, str]] = CONFIDENCE_RAMP, layer: str = "confidence") -> str:
    """An SLD 1.0.0 style of a confidence map: ``ColorMap type="ramp"`` over ``ramp``'s stops."""
    return _sld(layer, [{"quantity": repr(float(v)), "color": _hex(c)[0], "label": f"{v:.2f}"} for v, c in ramp], "ramp")


def write_class_map_styles(path: str | Path, classes: Mapping[int, tuple[str, str | Sequence[int]]], *,
                           sld: bool = False) -> list[Path]:
    """Write ``<stem>.qml`` (and with ``sld`` ``<stem>.sld``) beside a class map, atomically.

    Args:
        path: The class-map GeoTIFF.
        classes: Class id -> (name, colour).
        sld: Also write the SLD.

    Returns:
        The files written.

    Raises:
        ValueError: See :func:`class_map_qml`.
        OutputError: The folder cannot be written.
    """
    out = [atomic_write_text(style_path(path), class_map_qml(classes))]
    if sld:
        out.append(atomic_write_text(style_path(path, ".sld"), class_map_sld(classes, layer=Path(path).stem)))
    return out


def write_confidence_styles(path: str | Path, *, sld: bool = False) -> list[Path]:
    """Write ``<stem>.qml`` (and with ``sld`` ``<stem>.sld``) beside a confidence map, atomically; returns them."""
    out = [atomic_write_text(style_path(path), confidence_qml())]
    if sld:
        out.append(atomic_write_text(style_path(path, ".sld"), confidence_sld(layer=Path(path).stem)))
    return out
