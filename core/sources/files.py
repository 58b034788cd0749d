"""Training data from files: an image GeoTIFF, a label GeoTIFF and a class scheme (built-in name or class file).

The image goes through :mod:`core.inputs.decision` exactly as a prediction input does (band aliases, scale,
offset, level). The labels are brought onto the image's grid: used as they are when on the same grid, else
reprojected with nearest neighbour (so no class is invented between two others) and the reprojection is said in
:attr:`FilePair.notes`; labels that do not overlap the image, or either file without a CRS when the grids
differ, are refused. Label values that are neither a class id of the scheme, its ignore value nor the label file's
nodata are refused with the values listed. Every refusal is one :class:`core.errors.LulcError` sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.classes import NODATA_CLASS, ClassScheme, get_scheme
from core.errors import GridMismatchError, SchemeError
from core.inputs.decision import InputError

__all__ = ["FilePair", "resolve_scheme", "load_file_pair", "labels_on_grid"]


@dataclass
class FilePair:
    """One (image, labels) pair on the image's grid.

    Attributes:
        image: float32 (C, H, W) model input (the decision applied), NaN = nodata.
        target: uint8 (H, W) class indices 0..K-1 of ``scheme``, 255 = no label.
        crs, transform: The image's grid.
        decision: The input decision for the image.
        notes: What was done on the way (reprojection), for the log.
    """

    image: np.ndarray
    target: np.ndarray
    crs: object
    transform: object
    decision: object
    notes: list[str] = field(default_factory=list)


def resolve_scheme(spec: str, base: Path | None = None) -> ClassScheme:
    """A scheme from a config value: a built-in name (``dynamic_world``) or a class file (``.json``/``.csv``/``.qml``).

    Raises:
        SchemeError: Neither a known name nor a readable, valid class file.
    """
    from core.class_files import SCHEME_SUFFIXES, read_scheme_file

    p = Path(spec)
    if p.suffix.lower() in SCHEME_SUFFIXES:
        if not p.is_absolute() and base is not None:
            p = base / p
        return read_scheme_file(p)
    return get_scheme(spec)


def _bounds(crs, transform, height: int, width: int, to_crs) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    left, top = transform.c, transform.f
    right, bottom = left + transform.a * width, top + transform.e * height
    b = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    return transform_bounds(crs, to_crs, *b) if crs != to_crs else b


def labels_on_grid(label_path: str | Path, image_info: dict, *, what: str) -> tuple[np.ndarray, float | None, list[str]]:
    """The first band of a label GeoTIFF on the grid of ``image_info`` (a :func:`core.io.raster.raster_info` header).

    Returns:
        (labels (H, W) integer array, the label file's nodata, notes).

    Raises:
        GridMismatchError: The grids differ and a file has no CRS, or the labels do not overlap the image.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    from core.io.raster import raster_info, read_raster

    info = raster_info(label_path)
    same = (info["crs"] == image_info["crs"] and (info["height"], info["width"]) == (image_info["height"], image_info["width"])
            and info["transform"].almost_equals(image_info["transform"], precision=1e-6 * abs(image_info["transform"].a)))
    name = Path(label_path).name
    if same:
        return read_raster(label_path).data[0], info["nodata"], []
    if info["crs"] is None or image_info["crs"] is None:
        which = name if info["crs"] is None else "the image"
        raise GridMismatchError(f"{what}: {which} has no CRS and the labels are not on the image's grid, so they cannot be placed; "
                                "write the labels on the image's grid or give both files a CRS")
    lb = _bounds(info["crs"], info["transform"], info["height"], info["width"], image_info["crs"])
    ib = _bounds(image_info["crs"], image_info["transform"], image_info["height"], image_info["width"], image_info["crs"])
    if lb[0] >= ib[2] or lb[2] <= ib[0] or lb[1] >= ib[3] or lb[3] <= ib[1]:
        raise GridMismatchError(f"{what}: {name} does not overlap the image (labels cover {tuple(round(v, 3) for v in lb)}, "
                                f"the image {tuple(round(v, 3) for v in ib)} in {image_info['crs']}); give labels of the same place")
    nodata = info["nodata"]
    fill = int(nodata) if nodata is not None and float(nodata).is_integer() and 0 <= nodata <= 255 else NODATA_CLASS
    with rasterio.open(label_path) as src:
        data = src.read(1)
    out = np.full((int(image_info["height"]), int(image_info["width"])), fill, dtype=np.int64)
    reproject(data.astype(np.int64) if data.dtype.kind != "u" else data, out, src_transform=info["transform"], src_crs=info["crs"],
              src_nodata=nodata, dst_transform=image_info["transform"], dst_crs=image_info["crs"], dst_nodata=fill,
              resampling=Resampling.nearest)
    note = (f"{what}: {name} ({info['height']} x {info['width']} px, {info['crs']}) is on another grid than the image "
            f"({image_info['height']} x {image_info['width']} px, {image_info['crs']}); reprojected onto the image grid with nearest neighbour")
    return out, float(fill), [note]


def load_file_pair(image_path: str | Path, label_path: str | Path, scheme: ClassScheme, card, *,
                   offset: int | str | None = None, level: str | None = None, what: str | None = None) -> FilePair:
    """Read an (image, labels) pair for training.

    Args:
        image_path: Image GeoTIFF (bands named in its descriptions, or in the sensor's file order), or imagery as
            downloaded: a Sentinel-2 SAFE folder/zip, a Landsat C2 L2 scene folder or MTL file, a STAC Item
            (:func:`core.sources.downloads.resolve_input`).
        label_path: Label GeoTIFF of ``scheme`` ids (first band).
        scheme: The labels' class scheme.
        card: The card-like view of the training bands (see :func:`core.inputs.decision.decide`).
        offset: Radiometric offset (``None``/``"auto"``: decided).
        level: Processing level when known from outside the file.
        what: How to name the pair in messages.

    Raises:
        RasterReadError: A file is missing or unreadable.
        InputError: The image has no CRS, or the labels hold values not in the scheme (listed).
        GridMismatchError: See :func:`labels_on_grid`.
        BandError: A training band is missing from the image.
    """
    from core.inputs.decision import decide_for_file, prepare_raster
    from core.io.raster import raster_info, read_raster
    from core.sources.downloads import resolve_input

    what = what or Path(image_path).name
    image_name = Path(image_path).name  # messages name the user's file or product, not the VRT
    image_path = resolve_input(image_path).path  # a SAFE product, Landsat scene or STAC Item as downloaded -> a VRT
    info = raster_info(image_path)
    if info["crs"] is None:
        raise InputError(f"{what}: the image {image_name} has no CRS (coordinate reference system), so its blocks "
                         "and labels cannot be placed; write it with one (gdal_edit.py -a_srs EPSG:...)")
    decision = decide_for_file(image_path, card, offset=offset, level=level, level_reason="training config" if level else "")
    image = prepare_raster(read_raster(image_path), decision).data
    labels, nodata, notes = labels_on_grid(label_path, info, what=what)
    allowed = set(scheme.ids) | {v for v in (scheme.ignore_index, nodata) if v is not None and v == v}
    values = np.unique(labels)
    unknown = [int(v) for v in values if int(v) not in allowed]
    if unknown:
        shown = ", ".join(map(str, unknown[:12])) + (" ..." if len(unknown) > 12 else "")
        raise SchemeError(f"{what}: {Path(label_path).name} holds value(s) {shown} that are not classes of scheme "
                          f"{scheme.name!r} (ids {', '.join(map(str, scheme.ids))}, ignore {scheme.ignore_index}); fix the labels or the class file")
    target = scheme.to_index(labels)
    if nodata is not None and nodata == nodata and int(nodata) not in scheme.ids:
        target[labels == nodata] = NODATA_CLASS
    target[np.isnan(image).any(axis=0)] = NODATA_CLASS
    if (target == NODATA_CLASS).all():
        raise InputError(f"{what}: no pixel has both image data and a label")
    return FilePair(image, target, info["crs"], info["transform"], decision, notes)
