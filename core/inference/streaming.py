"""Class maps from a model: in memory for the app, window by window for GeoTIFFs of any size.

Both paths run the model as a :class:`core.inference.policy.RunPolicy` says (tiles or one full-frame
pass, overlap, batch size, nodata handling, input decision); they differ only in where pixels are
read from and where finished regions go. The model is a :data:`core.inference.tiling.ForwardFn` (the ``models``
package's bundles provide one), so this module never imports torch.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from core.classes import NODATA_CLASS
from core.errors import BandError, NoDataError, RasterReadError
from core.inference.policy import RunPolicy
from core.inference.tiling import ForwardFn, ProgressFn
from core.io.outputs import PARTIAL_MARK, atomic_path, check_outputs, is_write_failure, writing_outputs
from core.io.raster import GeoRaster, _colormap_arg, _open, nodata_to_nan, write_class_table

__all__ = ["ClassMap", "predict_raster", "predict_geotiff", "probability_bytes", "NODATA_CLASS", "PROBABILITY_SCALE",
           "PROBABILITY_NODATA"]

PROBABILITY_SCALE = 250
"""A probability file stores ``round(p x 250)`` as uint8 (0..250; 0.004 per step, 1/250 < half of a
percent point), the encoding of Dynamic World's published per-class probabilities rounded to bytes."""

PROBABILITY_NODATA = 255
"""Nodata of a probability file (above the largest stored value, 250)."""

# NODATA_CLASS (255, from core.classes): the class id written where the input had no data.


@dataclass(frozen=True)
class ClassMap:
    """A predicted class map on the input's grid.

    Attributes:
        classes: uint8 GeoRaster (1, H, W) of class ids, ``NODATA_CLASS`` where the input had none.
        confidence: float32 GeoRaster (1, H, W): the blended probability of the chosen class
            (0 where no data, declared as its nodata: a winning probability is at least 1/K).
        probabilities: float32 (K, H, W) blended class probabilities (NaN where no data), only when
            :func:`predict_raster` was asked for them (calibration); else ``None``.
    """

    classes: GeoRaster
    confidence: GeoRaster
    probabilities: np.ndarray | None = None



def _class_lut(num_classes: int, class_ids: Sequence[int] | None) -> np.ndarray:
    ids = list(range(num_classes)) if class_ids is None else list(class_ids)
    if len(ids) != num_classes or any(not 0 <= i < NODATA_CLASS for i in ids):
        raise ValueError(f"class_ids must give {num_classes} ids in 0..254, got {ids}")
    return np.asarray(ids, dtype=np.uint8)


def predict_raster(
    raster: GeoRaster,
    forward: ForwardFn,
    policy: RunPolicy,
    *,
    bands: Sequence[str],
    num_classes: int,
    class_ids: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    probabilities: bool = False,
) -> ClassMap:
    """Predict a class map for an in-memory raster.

    Args:
        raster: Model input (C, H, W) float32 in the model's band order, as
            :func:`core.inputs.decision.prepare_raster` makes it with ``policy.decision``; a pixel where any
            used band equals ``nodata`` (or is NaN) gets no prediction.
        forward: Network callable on raw band values (see :data:`core.inference.tiling.ForwardFn`).
        policy: How the model runs (:func:`core.inference.policy.plan_run`).
        bands: Band names the network expects, in its order; selected by name.
        num_classes: K.
        class_ids: Class id of each output channel (default 0..K-1).
        mask: Bool (H, W), e.g. the AOI polygon: pixels where it is False get no class
            (``NODATA_CLASS``) and confidence 0; the network still sees them as context.
        progress: Called with (tiles done, tiles total).
        probabilities: Also keep the (K, H, W) probabilities (K x H x W x 4 bytes).

    Returns:
        The class map and confidence (and probabilities) on the raster's grid.

    Raises:
        BandError: The raster lacks some of ``bands``.
        ValueError: ``mask`` does not have the raster's shape.
    """
    if mask is not None and mask.shape != (raster.height, raster.width):
        raise ValueError(f"mask {mask.shape} does not match the raster {(raster.height, raster.width)}")
    src = raster.select(bands)
    lut = _class_lut(num_classes, class_ids)
    classes = np.full((1, raster.height, raster.width), NODATA_CLASS, dtype=np.uint8)
    confidence = np.zeros((1, raster.height, raster.width), dtype=np.float32)
    probs_all = np.full((num_classes, raster.height, raster.width), np.nan, np.float32) if probabilities else None

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        return nodata_to_nan(src.data[:, r : r + h, c : c + w], src.nodata)

    def write(r: int, c: int, probs: np.ndarray, valid: np.ndarray) -> None:
        h, w = valid.shape
        if mask is not None:
            valid = valid & mask[r : r + h, c : c + w]
        cls = lut[probs.argmax(axis=0)]
        conf = probs.max(axis=0)
        classes[0, r : r + h, c : c + w] = np.where(valid, cls, NODATA_CLASS)
        confidence[0, r : r + h, c : c + w] = np.where(valid, conf, 0.0)
        if probs_all is not None:
            probs_all[:, r : r + h, c : c + w] = np.where(valid, probs, np.nan)

    policy.run(read, forward, write, num_classes=num_classes, height=raster.height, width=raster.width, progress=progress)
    common = {"crs": raster.crs, "transform": raster.transform, "meta": dict(raster.meta)}
    return ClassMap(
        classes=GeoRaster(classes, nodata=NODATA_CLASS, band_names=("class",), **common),
        confidence=GeoRaster(confidence, nodata=0.0, band_names=("confidence",), **common),
        probabilities=probs_all,
    )


def predict_geotiff(
    src_path: str | Path,
    dst_path: str | Path,
    forward: ForwardFn,
    policy: RunPolicy,
    *,
    bands: Sequence[str],
    num_classes: int,
    class_ids: Sequence[int] | None = None,
    colormap: Mapping[int, str] | None = None,
    confidence_path: str | Path | None = None,
    probabilities_path: str | Path | None = None,
    class_names: Mapping[int, str] | None = None,
    tags: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    gdal_cache_mb: int = 64,
) -> Path:
    """Predict a GeoTIFF of any size window by window and write a Cloud-Optimized GeoTIFF.

    When tiled, only one batch of tiles and a carry of ``overlap`` rows are held in memory (a
    full-frame pass holds the frame, bounded by :data:`core.inference.policy.FULL_FRAME_MAX_BYTES`); the class map is
    first written window by window to a tiled GeoTIFF in a temporary folder and then copied to a COG
    (GDAL's COG driver cannot write windows).

    Args:
        src_path: Input GeoTIFF whose band descriptions name its bands.
        dst_path: Output COG of uint8 class ids (nodata 255) with the input's CRS and transform
            and ``colormap`` as its colour table.
        forward: Network callable on raw band values.
        policy: How the model runs (:func:`core.inference.policy.plan_run`); its ``decision`` says how to
            read the input (:func:`core.inference.policy.input_for_file`): band mapping, scale, offset,
            filled bands; applied to every window and written into the outputs' tags. A decision
            of ``None``: bands read by exact name, raw values.
        bands: Band names the network expects, in its order.
        num_classes: K.
        class_ids: Class id of each output channel (default 0..K-1).
        colormap: Class id -> ``#rrggbb``.
        confidence_path: Optional output COG of float32 confidence (probability of the chosen
            class, 0 where no data).
        probabilities_path: Optional output COG of the K class probabilities: band k (1-based) is
            output channel k-1, uint8 ``round(p x 250)`` (:data:`PROBABILITY_SCALE`), 255 where no data
            (:data:`PROBABILITY_NODATA`), described by the class's name; written window by window like
            the class map (no (K, H, W) array is held).
        class_names: Class id -> name. With ``colormap``: a raster attribute table (id, pixel count,
            name, RGBA) is written to ``<dst_path>.aux.xml`` after the COG
            (:func:`core.io.raster.write_class_table`); also names the probability bands.
        tags: More dataset tags for every output (e.g. the run's provenance), after the decision's.
        progress: Called with (tiles done, tiles total).
        gdal_cache_mb: GDAL block cache while this runs (MB). GDAL's default, 5 % of RAM, would
            grow with the raster (it caches every block read and written), so it is bounded
            here to keep peak memory independent of raster size.

    Returns:
        ``dst_path``.

    Outputs are safe (:mod:`core.io.outputs`): paths equal to the input or to each other, or that
    cannot be written, are refused before anything is read; the intermediate GeoTIFFs live in a
    hidden temporary folder beside ``dst_path``; the COGs are written to temporary files there and
    renamed into place only when complete, so an error or interruption leaves no file at either
    output path and no temporary file behind.

    Raises:
        OutputError: An output path is the input, both outputs are one file, or a folder cannot
            be written (before any work); or writing failed (disk full, file-size limit), said as such,
            with nothing left at the output paths.
        RasterReadError: The input is missing or corrupt.
        BandError: The input lacks some of ``bands``.
        NoDataError: No pixel of the input has data in every used band (nothing is written).
    """
    outs = check_outputs({"output": dst_path, "confidence output": confidence_path,
                          "probabilities output": probabilities_path}, [src_path])
    dst_path = outs["output"]
    conf_path = outs.get("confidence output")
    prob_path = outs.get("probabilities output")
    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), _open(src_path) as src, \
            tempfile.TemporaryDirectory(dir=dst_path.parent, prefix=f".{dst_path.name}.", suffix=PARTIAL_MARK) as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        decision = policy.decision
        read = _window_reader(src, src_path, _band_indexes(src, src_path, bands, decision), decision)
        lut = _class_lut(num_classes, class_ids)
        cls_tmp = Path(tmp) / "classes.tif"
        conf_tmp = Path(tmp) / "confidence.tif" if conf_path else None
        prob_tmp = Path(tmp) / "probabilities.tif" if prob_path else None
        all_tags = {**(decision.to_tags() if decision is not None else {}), **(tags or {})} or None
        names = _channel_names(lut, class_names)
        ours = [p.name for p in (cls_tmp, conf_tmp, prob_tmp) if p is not None]
        with writing_outputs(dst_path.parent, ours):  # a full disk is said to be one, never blamed on the input
            counts = _predict_to_tiffs(src, read, forward, policy, num_classes=num_classes, lut=lut, cls_path=cls_tmp,
                                       conf_path=conf_tmp, prob_path=prob_tmp, prob_names=names, tags=all_tags,
                                       colormap=colormap, progress=progress)
        n_valid = int(counts.sum())
        if n_valid == 0:
            raise NoDataError(
                f"{Path(src_path).name} has no pixel with data in all of the bands {', '.join(bands)} "
                f"(nodata {src.nodata}); nothing was written. Check the file's nodata value and bands."
            )
        with writing_outputs(dst_path.parent, [*ours, PARTIAL_MARK]):
            _finish_cogs([(cls_tmp, dst_path, "nearest"), (conf_tmp, conf_path, "average"), (prob_tmp, prob_path, "average")])
    if class_names is not None and colormap:
        write_class_table(dst_path, {int(i): (class_names.get(int(i), f"class_{int(i)}"), colormap[int(i)])
                                     for i in lut if int(i) in colormap}, {int(i): int(counts[int(i)]) for i in lut})
    return dst_path


def _channel_names(lut: np.ndarray, class_names: Mapping[int, str] | None) -> tuple[str, ...]:
    """Name of each output channel (band of a probability file): its class's name, else ``class_<id>``."""
    names = class_names or {}
    return tuple(str(names.get(int(i), f"class_{int(i)}")) for i in lut)


def probability_bytes(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Encode class probabilities as stored in a probability file.

    Args:
        probs: float32 (K, h, w) probabilities in [0, 1].
        valid: bool (h, w): pixels with a prediction.

    Returns:
        uint8 (K, h, w): ``round(p x 250)`` (:data:`PROBABILITY_SCALE`; NumPy rounds halves to even),
        :data:`PROBABILITY_NODATA` where not ``valid``. Decode with ``value / 250``.
    """
    q = np.rint(np.clip(probs, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint8)
    return np.where(valid[None], q, np.uint8(PROBABILITY_NODATA))


def _band_indexes(src, src_path: str | Path, bands: Sequence[str], decision) -> list[int]:
    """1-based indexes of the input bands to read: the decision's, else ``bands`` by exact description.

    Raises:
        BandError: The decision is for other bands, or (without one) the input lacks some of ``bands``.
    """
    if decision is not None:
        if list(decision.bands) != list(bands):
            raise BandError(f"the input decision is for bands {', '.join(decision.bands)}, not {', '.join(bands)}")
        return decision.read_indexes
    names = [d or f"band_{i + 1}" for i, d in enumerate(src.descriptions)]
    missing = [b for b in bands if b not in names]
    if missing:
        raise BandError(f"{src_path} lacks band(s) {', '.join(missing)}; it has {', '.join(names)}")
    return [names.index(b) + 1 for b in bands]


def _window_reader(src, src_path: str | Path, indexes: list[int], decision):
    """``read(r, c, h, w)`` -> float32 (C, h, w) model input of the open dataset ``src``, NaN = nodata.

    A damaged tile of an intact file raises :class:`RasterReadError` naming the rows and columns.
    """

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        try:
            arr = src.read(indexes, window=Window(c, r, w, h))
        except RasterioIOError as exc:  # intact header, damaged tiles
            if is_write_failure(exc):  # GDAL flushed an output's dirty block during this read: the disk is full
                raise
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise RasterReadError(
                f"{Path(src_path).name} is damaged: its pixels at rows {r}-{r + h}, columns {c}-{c + w} cannot be "
                f"decoded ({exc}{cause}); nothing was written. Re-download or re-export the file"
            ) from None
        return decision.apply(arr) if decision is not None else nodata_to_nan(arr, src.nodata)

    return read


def _predict_to_tiffs(src, read, forward: ForwardFn, policy: RunPolicy, *, num_classes: int, lut: np.ndarray, cls_path: Path,
                      conf_path: Path | None, prob_path: Path | None, prob_names: Sequence[str],
                      tags: Mapping[str, str] | None, colormap: Mapping[int, str] | None,
                      progress: ProgressFn | None) -> np.ndarray:
    """Run the policy over ``src``, writing tiled GeoTIFFs (classes, optional confidence and probabilities) window by window.

    Returns:
        int64 (256,): pixels predicted per class id (all 0: the input has no data).
    """
    base = {
        "driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "DEFLATE",
        "height": src.height, "width": src.width, "count": 1, "crs": src.crs, "transform": src.transform,
        "BIGTIFF": "IF_SAFER",
    }
    prob_base = {**base, "count": num_classes, "interleave": "band"}
    with rasterio.open(cls_path, "w", dtype="uint8", nodata=NODATA_CLASS, **base) as cls_ds, (
        rasterio.open(conf_path, "w", dtype="float32", nodata=0.0, **base) if conf_path else contextlib.nullcontext()
    ) as conf_ds, (
        rasterio.open(prob_path, "w", dtype="uint8", nodata=PROBABILITY_NODATA, **prob_base) if prob_path
        else contextlib.nullcontext()
    ) as prob_ds:
        counts = np.zeros(256, dtype=np.int64)

        def write(r: int, c: int, probs: np.ndarray, valid: np.ndarray) -> None:
            h, w = valid.shape
            win = Window(c, r, w, h)
            cls = np.where(valid, lut[probs.argmax(axis=0)], NODATA_CLASS).astype(np.uint8)
            counts[:] += np.bincount(cls[valid], minlength=256)
            cls_ds.write(cls, 1, window=win)
            if conf_ds is not None:
                conf_ds.write(np.where(valid, probs.max(axis=0), 0).astype(np.float32), 1, window=win)
            if prob_ds is not None:
                prob_ds.write(probability_bytes(probs, valid), window=win)

        policy.run(read, forward, write, num_classes=num_classes, height=src.height, width=src.width, progress=progress)
        cls_ds.descriptions = ("class",)
        if tags is not None:
            cls_ds.update_tags(**tags)
        if conf_ds is not None:
            conf_ds.descriptions = ("confidence",)
            if tags is not None:
                conf_ds.update_tags(**tags)
        if prob_ds is not None:
            prob_ds.descriptions = tuple(prob_names)
            prob_ds.update_tags(**(tags or {}), LULC_PROBABILITY_SCALE=str(PROBABILITY_SCALE),
                                LULC_PROBABILITY_DECODE=f"probability = value / {PROBABILITY_SCALE}; {PROBABILITY_NODATA} = no data")
        cmap = _colormap_arg(colormap)
        if cmap:
            cls_ds.write_colormap(1, cmap)
    return counts


def _finish_cogs(outputs: Sequence[tuple[Path | None, Path | None, str]]) -> None:
    """Copy tiled GeoTIFFs to COGs: ``(tiled GeoTIFF, COG path, overview resampling)``, ``None`` paths skipped.

    Every COG is complete beside its path before any is renamed into place.
    """
    with contextlib.ExitStack() as stack:
        for tmp, dst, resampling in outputs:
            if tmp is None or dst is None:
                continue
            part = stack.enter_context(atomic_path(dst))
            rasterio.shutil.copy(tmp, part, driver="COG", compress="DEFLATE", blocksize=256,
                                 overview_resampling=resampling, BIGTIFF="IF_SAFER")
