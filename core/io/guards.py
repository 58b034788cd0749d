"""Checks made from a raster's header before any pixel is read: size, ground sampling distance, grid.

Each check raises a :class:`core.errors.LulcError` subclass whose message says what was found,
what the limit or the expectation is, and how to fix it, so that the command line and the app can
show it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from affine import Affine

from core.errors import GridMismatchError, LulcError

__all__ = [
    "SizeLimitError",
    "GsdError",
    "UploadNameError",
    "IncompleteFileError",
    "check_decoded_size",
    "check_blocks_in_file",
    "upload_name",
    "DEFAULT_MAX_PIXELS",
    "GSD_TOLERANCE",
    "check_size",
    "gsd_m",
    "check_gsd",
    "check_same_grid",
]

DEFAULT_MAX_PIXELS = 500_000_000
"""Largest raster ``predict`` takes without ``--max-megapixels``: about four Sentinel-2 tiles
(10980 x 10980 px = 120.6 Mpx each)."""

GSD_TOLERANCE = 0.25
"""Largest relative difference between an input's GSD and the model's (25 %). The sample pack's
geographic 10 m grids are 8.9-10.0 m on the ground; a 20 m or 60 m input is refused."""


class SizeLimitError(LulcError):
    """A raster is larger than the limit set for this use."""


class GsdError(LulcError):
    """An input's ground sampling distance differs from the model's beyond the tolerance."""


class UploadNameError(LulcError):
    """An uploaded file's name carries a folder path, ``..`` or control characters."""


class IncompleteFileError(LulcError):
    """A raster's header is whole but its pixel data ends before the header says it does."""


def check_decoded_size(info: Mapping[str, object], *, max_bytes: int, name: str, file_bytes: int | None = None,
                       hint: str = "crop it, or save it with fewer bands or as uint16") -> int:
    """Refuse a raster that would take more than ``max_bytes`` of memory once decompressed, from its header.

    A deflate GeoTIFF of a constant (or sparse) raster takes a few KB on disk and gigabytes when read, so an upload
    is judged by what its header declares (count x height x width x itemsize), never by its file size.

    Args:
        info: Header of :func:`core.io.raster.raster_info` (``height``, ``width``, ``count``, ``dtype``).
        max_bytes: Largest decoded size (bytes).
        name: File name for the message (the user's).
        file_bytes: Size of the file on disk (bytes), to name the ratio.
        hint: How to get under the limit.

    Returns:
        The decoded size in bytes.

    Raises:
        SizeLimitError: Above ``max_bytes``; the message gives the bands, shape, dtype and both sizes.
    """
    h, w, c = int(info["height"]), int(info["width"]), int(info.get("count", 1))
    dtype = np.dtype(str(info.get("dtype", "uint8")))
    size = h * w * c * dtype.itemsize
    if size > max_bytes:
        on_disk = f" from a {_bytes(file_bytes)} file" if file_bytes else ""
        raise SizeLimitError(
            f"{name} would take {_bytes(size)} of memory when read ({c} band(s) x {h:,} x {w:,} pixels of {dtype.name}){on_disk}; "
            f"the limit is {_bytes(max_bytes)}: {hint}"
        )
    return size


MAX_BLOCKS_CHECKED = 50_000
"""Most strips or tiles :func:`check_blocks_in_file` looks at (a larger file is left to the read itself)."""


def check_blocks_in_file(path, *, name: str) -> None:
    """Refuse a GeoTIFF whose strips or tiles lie beyond the end of the file (a cut-off upload or download).

    Reads only the TIFF directory (GDAL's ``BLOCK_OFFSET_x_y`` / ``BLOCK_SIZE_x_y`` items of the ``TIFF`` metadata
    domain), no pixels. A block without data (offset 0: a sparse file) is allowed; other formats are not checked.

    Args:
        path: The file.
        name: File name for the message (the user's).

    Raises:
        IncompleteFileError: The pixel data runs past the end of the file; the message gives both sizes.
    """
    import os

    import rasterio

    size = os.path.getsize(path)
    with rasterio.open(path) as ds:
        if ds.driver != "GTiff":
            return
        bh, bw = ds.block_shapes[0]
        rows, cols = -(-ds.height // bh), -(-ds.width // bw)
        separate = (ds.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "").upper() == "BAND"
        bands = range(1, ds.count + 1) if separate else (1,)
        if rows * cols * len(bands) > MAX_BLOCKS_CHECKED:
            return
        end = 0
        for b in bands:
            for i in range(rows):
                for j in range(cols):
                    off = ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=b)
                    if off and int(off) > 0:
                        end = max(end, int(off) + int(ds.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=b) or 0))
    if end > size:
        raise IncompleteFileError(
            f"{name} is incomplete: its header is whole but its pixel data runs to byte {end:,} and the file ends at "
            f"byte {size:,} ({_bytes(end - size)} missing), so the upload or download was cut off; upload the whole file again"
        )


def upload_name(name: str) -> str:
    """The name of an uploaded file as the user gave it, for messages only (files are saved under generated names).

    Args:
        name: The name the browser sent.

    Returns:
        The name, unchanged.

    Raises:
        UploadNameError: The name holds a folder path (a slash or a backslash), is ``.`` or ``..``, is empty or holds
            control characters: browsers send a file's own name only.
    """
    bad = not name or name.strip() in (".", "..") or "/" in name or "\\" in name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    if bad or len(name) > 255:
        shown = "".join(ch if 32 <= ord(ch) != 127 else "?" for ch in name)[:80]
        raise UploadNameError(
            f"the uploaded file's name {shown!r} is not a plain file name (it holds a folder path, '..' or control "
            "characters); rename the file, e.g. to scene.tif, and upload it again"
        )
    return name


def check_size(info: Mapping[str, object], *, max_pixels: int, name: str, hint: str = "crop it first") -> None:
    """Refuse a raster whose header says it is larger than ``max_pixels``.

    Args:
        info: Header of :func:`core.io.raster.raster_info` (``height``, ``width``, ``count``, ``dtype``).
        max_pixels: Limit on height x width.
        name: File name for the message (the user's, never a server path).
        hint: How to get under the limit.

    Raises:
        SizeLimitError: height x width > ``max_pixels``; the message gives both and the memory the
            bands would take when read whole (count x height x width x itemsize).
    """
    h, w, c = int(info["height"]), int(info["width"]), int(info.get("count", 1))
    px = h * w
    if px > max_pixels:
        size = px * c * np.dtype(str(info.get("dtype", "uint8"))).itemsize
        raise SizeLimitError(
            f"{name} is {h:,} x {w:,} pixels ({px / 1e6:,.0f} million, {c} band(s), {_bytes(size)} uncompressed); "
            f"the limit is {max_pixels / 1e6:,.0f} million pixels: {hint}"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit in ("GB", "TB") and n < 100 else f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n:,.0f} TB"


def gsd_m(crs, transform: Affine, height: int, width: int) -> float | None:
    """Ground sampling distance of a grid in metres (geometric mean of pixel width and height).

    Projected CRS: ``sqrt(|a * e|)`` times the linear unit in metres. Geographic CRS: the geodesic
    width and height of the centre pixel on the WGS 84 ellipsoid (pyproj ``Geod.inv``). No CRS:
    ``None`` (unknown).
    """
    if crs is None:
        return None
    if crs.is_projected:
        factor = float(crs.linear_units_factor[1]) if crs.linear_units_factor else 1.0
        return math.sqrt(abs(transform.a * transform.e)) * factor
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    cx, cy = transform @ (width / 2, height / 2)
    cy = max(-89.0, min(89.0, cy))
    _, _, dx = geod.inv(cx, cy, cx + transform.a, cy)
    _, _, dy = geod.inv(cx, cy, cx, max(-90.0, min(90.0, cy + transform.e)))
    return math.sqrt(abs(dx * dy))


def check_gsd(crs, transform: Affine, height: int, width: int, model_gsd_m: float, *, name: str,
              tolerance: float = GSD_TOLERANCE) -> float | None:
    """Refuse an input whose GSD differs from the model's by more than ``tolerance``.

    A network trained at 10 m sees objects 6x smaller on a 60 m input and answers with confident
    nonsense, so such inputs are refused rather than predicted silently.

    Args:
        crs: The input's CRS (``None``: not checked).
        transform: Its affine transform.
        height: Rows H.
        width: Columns W.
        model_gsd_m: The model card's ``gsd_m``.
        name: File name for the message.
        tolerance: Largest accepted ``|gsd / model_gsd - 1|``.

    Returns:
        The input's GSD in metres, or ``None`` without a CRS (not checked).

    Raises:
        GsdError: Outside the tolerance; the message gives a ``gdalwarp`` command that resamples
            the input to the model's GSD.
    """
    g = gsd_m(crs, transform, height, width)
    if g is None or not model_gsd_m:
        return g
    if abs(g / model_gsd_m - 1) > tolerance:
        m = f"{model_gsd_m:g}"
        raise GsdError(
            f"{name} has {g:.3g} m pixels but the model was trained at {m} m (tolerance {tolerance:.0%}); "
            f"resample it to {m} m first, e.g. gdalwarp -t_srs <UTM zone> -tr {m} {m} -r bilinear {name} resampled.tif"
        )
    return g


def check_same_grid(a: Mapping[str, object], b: Mapping[str, object], *, what: str, names: tuple[str, str]) -> None:
    """Refuse two rasters (headers of :func:`core.io.raster.raster_info`) that are not on one grid.

    Compares CRS, transform (to 1e-6 of a pixel) and shape, and says which differs and by how much.

    Raises:
        GridMismatchError: With the difference and a ``gdalwarp`` command aligning the second onto
            the first.
    """
    problems = []
    if (a["height"], a["width"]) != (b["height"], b["width"]):
        problems.append(f"shape {a['height']} x {a['width']} vs {b['height']} x {b['width']}")
    if a["crs"] != b["crs"]:
        problems.append(f"CRS {a['crs']} vs {b['crs']}")
    ta, tb = a["transform"], b["transform"]
    if not ta.almost_equals(tb, precision=1e-6 * max(abs(ta.a), abs(ta.e), 1e-12)):
        dx, dy = tb.c - ta.c, tb.f - ta.f
        problems.append(
            f"origin shifted by ({dx:.6g}, {dy:.6g}) CRS units ({dx / ta.a + 0.0:.3g}, {dy / ta.e + 0.0:.3g} pixels)"
            if (ta.a, ta.e) == (tb.a, tb.e) else f"pixel size {ta.a:g} x {ta.e:g} vs {tb.a:g} x {tb.e:g}"
        )
    if problems:
        left, bottom = ta.c, ta.f + ta.e * int(a["height"])
        right, top = ta.c + ta.a * int(a["width"]), ta.f
        raise GridMismatchError(
            f"{what}: {names[1]} is not on the grid of {names[0]} ({'; '.join(problems)}), so pixels would be "
            f"compared with the wrong ground. Align it first, e.g. gdalwarp -t_srs {a['crs']} -te {left:.10g} {bottom:.10g} "
            f"{right:.10g} {top:.10g} -ts {a['width']} {a['height']} -r near {names[1]} aligned.tif"
        )
