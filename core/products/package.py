"""A class map from memory as ``predict`` writes it to disk: COGs, raster attribute table, styles, STAC Item.

The app holds its prediction in memory (:class:`core.inference.streaming.ClassMap`); the Export page
offers it as the same files ``python -m trainer predict --output map.tif --confidence ...
--probabilities ...`` writes beside a map, through the same writers:

- the class map and confidence COGs by :func:`core.io.raster.write_cog` (colour table, raster
  attribute table ``<name>.tif.aux.xml`` with pixel counts, provenance tags);
- the styles and the STAC Item by :func:`core.products.stac.write_map_sidecars`, as ``predict``'s
  ``finish_outputs`` calls it;
- the per-class probabilities encoded by :func:`core.inference.streaming.probability_bytes` (uint8
  ``round(p x 250)``, 255 = no data), one band per class named by the class, with the tags that say
  how to decode them (:func:`probability_tags`).

:func:`zip_bytes` packs such a folder's files for a browser download (one file per download).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from core.inference.streaming import PROBABILITY_NODATA, PROBABILITY_SCALE, probability_bytes
from core.io.raster import GeoRaster, rat_path, write_cog
from core.products.provenance import Provenance
from core.products.stac import write_map_sidecars
from core.products.styles import style_path

__all__ = ["probability_tags", "probability_raster", "write_map_package", "zip_bytes"]


def probability_tags() -> dict[str, str]:
    """The tags of a probability file that say how to decode it (as ``predict --probabilities`` writes them)."""
    return {"LULC_PROBABILITY_SCALE": str(PROBABILITY_SCALE),
            "LULC_PROBABILITY_DECODE": f"probability = value / {PROBABILITY_SCALE}; {PROBABILITY_NODATA} = no data"}


def probability_raster(probs: np.ndarray, crs, transform, names: Sequence[str]) -> GeoRaster:
    """Class probabilities as a probability file stores them.

    Args:
        probs: float32 (K, H, W) probabilities in [0, 1], NaN where there is no prediction (as
            :func:`core.inference.streaming.predict_raster` keeps them).
        crs: The map's CRS (``None``: no georeference).
        transform: The map's affine transform.
        names: (K,) band names: the class of each channel.

    Returns:
        uint8 GeoRaster (K, H, W): ``round(p x 250)``, 255 where any channel is NaN; nodata 255.

    Raises:
        ValueError: ``names`` does not give one name per channel, or ``probs`` is not (K, H, W).
    """
    if probs.ndim != 3 or len(names) != probs.shape[0]:
        raise ValueError(f"probabilities must be (K, H, W) with one name per channel, got {probs.shape} and {len(names)} names")
    valid = ~np.isnan(probs).any(axis=0)
    data = probability_bytes(np.nan_to_num(probs, nan=0.0), valid)
    return GeoRaster(data, crs, transform, PROBABILITY_NODATA, tuple(str(n) for n in names))


def write_map_package(
    folder: str | Path,
    stem: str,
    classes: GeoRaster,
    class_table: Mapping[int, tuple[str, str]],
    provenance: Provenance | None,
    *,
    confidence: GeoRaster | None = None,
    probabilities: GeoRaster | None = None,
) -> list[Path]:
    """Write a class map and its companions as ``predict`` does: COGs, RAT, QGIS styles, STAC Item.

    Files (in this order, those asked for): ``<stem>.tif``, ``<stem>.tif.aux.xml`` (RAT),
    ``<stem>.qml``, ``<stem>_confidence.tif``, ``<stem>_confidence.qml``, ``<stem>_probabilities.tif``,
    ``<stem>.json`` (STAC Item listing all of them with sizes and checksums). Every raster carries
    ``provenance.to_tags()``; the probabilities also :func:`probability_tags`.

    Args:
        folder: An existing folder.
        stem: File stem (letters, digits, ``_-.``).
        classes: uint8 GeoRaster (1, H, W) of class ids, 255 = no data.
        class_table: Class id -> (name, ``#rrggbb``) (:func:`core.io.raster.scheme_classes`).
        provenance: The run's provenance (``None``: no provenance tags or properties).
        confidence: float32 GeoRaster (1, H, W), 0 = no data.
        probabilities: From :func:`probability_raster`.

    Returns:
        The files written.

    Raises:
        OutputError: The folder cannot be written.
        ValueError: Bad class ids or colours.
    """
    folder = Path(folder)
    tags = provenance.to_tags() if provenance is not None else {}
    map_path = write_cog(classes, folder / f"{stem}.tif", classes=class_table, tags=tags)
    conf_path = prob_path = None
    if confidence is not None:
        conf_path = write_cog(confidence, folder / f"{stem}_confidence.tif", tags=tags)
    if probabilities is not None:
        prob_path = write_cog(probabilities, folder / f"{stem}_probabilities.tif", tags={**tags, **probability_tags()})
    item = write_map_sidecars(map_path, class_table, provenance, confidence_path=conf_path, probabilities_path=prob_path)
    out = [map_path, rat_path(map_path), style_path(map_path)]
    if conf_path is not None:
        out += [conf_path, style_path(conf_path)]
    if prob_path is not None:
        out.append(prob_path)
    return [*out, item]


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip archive of named files held in memory (name -> bytes), each under its own name, in the given order.

    GeoTIFFs are stored as they are (already DEFLATE-compressed), other files compressed. For a browser
    download of a folder :func:`write_map_package` wrote (one file per download).

    Raises:
        ValueError: A name holds a folder, or two names are the same file name.
    """
    names = [Path(n).name for n in files]
    if names != list(files) or len(set(names)) != len(names):
        raise ValueError(f"the files of one zip need distinct plain file names: {list(files)}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            method = zipfile.ZIP_STORED if Path(name).suffix.lower() in (".tif", ".tiff") else zipfile.ZIP_DEFLATED
            zf.writestr(name, data, compress_type=method)
    return buf.getvalue()
