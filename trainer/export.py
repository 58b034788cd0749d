"""``python -m trainer export-chips``: training chips from Earth Engine at sample points.

Reads a CSV of points (``lon``, ``lat``, optional ``id``, ``country``/``region``), and for each
point fetches a square chip (default 224 x 224 pixels at 10 m, in the point's UTM zone) of the
chosen Sentinel-2 bands (+ Sentinel-1 VV/VH) and label product, writes ``<id>.tif`` (image bands)
and ``<id>_label.tif`` (class ids) as GeoTIFFs, and records each point in ``manifest.csv``. A point
already in the manifest is skipped, so an interrupted export resumes where it stopped. Chips with
more masked (cloud) or nodata pixels than ``max_nodata`` are recorded as skipped.

Statuses in the manifest: ``ok`` (written), ``submitted`` (batch task started), ``skipped`` (too
much nodata, or no image for the dates: final), ``retry`` (a transient Earth Engine failure after
all retries: not done, the next run tries the point again). A permanent error (request refused,
quota, permission, credentials) stops the export at once with the point's id; what was written
stays.

With ``batch`` set, the chips are instead submitted as Earth Engine batch exports
(``Export.image.toCloudStorage`` / ``toDrive``): masked pixels are written as the fill value of each
product and declared as the GeoTIFF's nodata (0 for Sentinel-2, -9999 for Sentinel-1, 255 for
Dynamic World, 0 for WorldCover), and the manifest records these fill values, the processing level
and ``max_nodata`` so that the trainer masks the fills and applies ``max_nodata`` to every chip,
whatever the GeoTIFF tags say. Download the files into the output folder and the trainer reads them
the same way (``data.chips_dir``).

``dry_run`` (:func:`plan_export`) lists the requests an export would send, without credentials.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.classes import get_scheme
from core.io.outputs import atomic_write_text
from core.io.raster import GeoRaster, scheme_classes, write_cog
from core.products.styles import write_class_map_styles
from core.sources.earth_engine import (
    EarthEngineAdapter,
    EarthEngineError,
    EmptyCollectionError,
    PixelGrid,
    TransientError,
    describe_export,
    describe_request,
    download,
    dynamic_world_spec,
    fetch_imagery,
    fill_value,
    sentinel1_spec,
    sentinel2_spec,
    utm_grid,
    worldcover_spec,
)

__all__ = ["ExportSettings", "chip_grid", "export_chips", "plan_export", "read_manifest", "MANIFEST_FIELDS", "DONE_STATUSES"]

MANIFEST_FIELDS = ["id", "lon", "lat", "region", "status", "reason", "image", "label", "scheme", "crs", "nodata_fraction",
                   "level", "image_nodata", "s1_nodata", "label_nodata", "max_nodata"]
DONE_STATUSES = ("ok", "submitted", "skipped")
"""Manifest statuses a rerun does not try again (``retry`` is tried again)."""
LABEL_SCHEMES = {"dw": "dynamic_world", "worldcover": "esa_worldcover"}


@dataclass(frozen=True)
class ExportSettings:
    """What to export.

    Attributes:
        start: First date (ISO).
        end: Last date (ISO, inclusive).
        bands: Sentinel-2 bands.
        s1: Add Sentinel-1 VV/VH (then the image is float32 with NaN nodata).
        orbit: Sentinel-1 orbit direction.
        labels: ``"dw"`` (Dynamic World mode) or ``"worldcover"``.
        level: Sentinel-2 ``"L1C"`` or ``"L2A"``.
        size: Chip side in pixels.
        gsd_m: Pixel size in metres.
        max_nodata: Largest accepted share of masked/nodata pixels in a chip.
        cloud_threshold: Cloud Score+ threshold (see :func:`core.sources.earth_engine.sentinel2_spec`).
    """

    start: str
    end: str
    bands: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")
    s1: bool = True
    orbit: str = "DESCENDING"
    labels: str = "dw"
    level: str = "L1C"
    size: int = 224
    gsd_m: float = 10.0
    max_nodata: float = 0.1
    cloud_threshold: float | None = None


def chip_grid(lon: float, lat: float, size: int, gsd_m: float = 10.0) -> PixelGrid:
    """A ``size`` x ``size`` grid centred on a point, in its UTM zone, snapped to ``gsd_m``."""
    d = 0.001
    g = utm_grid((lon - d, lat - d, lon + d, lat + d), gsd_m)
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", g.crs, always_xy=True).transform(lon, lat)
    left = math.floor(x / gsd_m - size / 2) * gsd_m
    top = math.floor(y / gsd_m + size / 2) * gsd_m
    return PixelGrid(g.crs, (gsd_m, 0.0, left, 0.0, -gsd_m, top), size, size)


def _read_points(path: Path) -> pd.DataFrame:
    """The points of a CSV: ``lon``, ``lat`` (degrees), optional ``id`` and ``country``/``region``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Empty file, header only, no lon/lat columns, an empty or non-numeric
            coordinate (the message gives its line), coordinates out of range, or ids that repeat
            or cannot be file names.
    """
    if not path.exists():
        raise FileNotFoundError(f"points file {path} not found")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; --points takes a CSV file with lon,lat columns")
    try:
        df = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; write a header line lon,lat (optionally id,country) and one point per line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}); save it as comma-separated text") from None
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in ("lon", "lat") if c not in cols]
    if missing:
        raise ValueError(f"{path} needs columns lon and lat (degrees); it has {', '.join(map(str, df.columns))}")
    if df.empty:
        raise ValueError(f"{path} has a header but no points; add one line per point (lon,lat in degrees)")
    coords = {}
    for c in ("lon", "lat"):
        raw = df[cols[c]]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna()
        if bad.any():
            i = int(bad.to_numpy().argmax())
            cell = raw.iloc[i]
            what = "is empty" if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "" else f"is {cell!r}, not a number"
            raise ValueError(f"{path} line {i + 2}: {c} {what}; {int(bad.sum())} row(s) have no usable {c}. Fix or remove them")
        coords[c] = values.astype(float)
    out = pd.DataFrame(coords)
    out["id"] = df[cols["id"]].astype(str).str.strip() if "id" in cols else [f"p{i:06d}" for i in range(len(df))]
    region = cols.get("country") or cols.get("region")
    out["region"] = df[region].fillna("").astype(str) if region else ""
    bad = out[(out.lon.abs() > 180) | (out.lat.abs() > 90)]
    if len(bad):
        raise ValueError(f"{len(bad)} point(s) outside lon/lat ranges, first: id {bad.iloc[0].id} (is the order lon, lat?)")
    unsafe = out[out.id.isin(["", "nan"]) | out.id.str.contains(r"[/\\]|^\.", regex=True)]
    if len(unsafe):
        raise ValueError(f"{path}: id {unsafe.iloc[0].id!r} cannot be a chip file name; ids must be non-empty, without / or \\ and not start with '.'")
    dup = out.id[out.id.duplicated()]
    if len(dup):
        raise ValueError(f"{path}: id {dup.iloc[0]!r} appears more than once; chips are named by id, so ids must be unique")
    return out


def read_manifest(manifest: str | Path) -> pd.DataFrame:
    """The manifest with one row per point: the last one written (a ``retry`` row is superseded by the rerun's).

    Columns of :data:`MANIFEST_FIELDS`; those an older manifest lacks are empty.
    """
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)  # fill columns stay text: "" absent, "nan" NaN
    for col in MANIFEST_FIELDS:
        if col not in rows.columns:
            rows[col] = ""
    for col in ("lon", "lat", "nodata_fraction", "max_nodata"):
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    return rows.drop_duplicates("id", keep="last").reset_index(drop=True)[MANIFEST_FIELDS + [c for c in rows.columns if c not in MANIFEST_FIELDS]]


def _done_ids(manifest: Path) -> set[str]:
    if not manifest.exists():
        return set()
    rows = read_manifest(manifest)
    return set(rows.id[rows.status.isin(DONE_STATUSES)])


def _upgrade_manifest(manifest: Path) -> None:
    """Rewrite a manifest of an older version with the current columns (atomically; rows kept)."""
    if not manifest.exists():
        return
    with manifest.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    if header == MANIFEST_FIELDS:
        return
    old = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    tmp = manifest.with_suffix(".csv.tmp")
    old.reindex(columns=MANIFEST_FIELDS, fill_value="").to_csv(tmp, index=False)
    tmp.replace(manifest)


MANIFEST_BATCH = 16
"""Rows collected before the manifest is rewritten (atomically); a kill loses at most this many rows of work."""


def _append_rows(manifest: Path, rows: list[dict]) -> None:
    """Add ``rows`` to ``manifest`` atomically: the whole file is written beside it and renamed into place.

    A process killed at any moment (SIGKILL included) leaves either the old or the new manifest, never half a
    row, so a rerun resumes from whole rows (points whose rows were not yet written are fetched again).
    """
    if not rows and manifest.exists():
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    if not manifest.exists():
        writer.writeheader()
    writer.writerows(rows)
    old = manifest.read_text() if manifest.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(manifest, old + buf.getvalue())


def _specs(settings: ExportSettings):
    s2 = sentinel2_spec(settings.start, settings.end, settings.bands, level=settings.level, cloud_threshold=settings.cloud_threshold)
    s1 = sentinel1_spec(settings.start, settings.end, orbit=settings.orbit) if settings.s1 else None
    lab = dynamic_world_spec(settings.start, settings.end) if settings.labels == "dw" else worldcover_spec()
    return s2, s1, lab


def _check(settings: ExportSettings, batch: str | None, destination: str | None) -> None:
    if settings.size % 32:
        raise ValueError(f"chip size must be a multiple of 32 for the U-Net, got {settings.size}")
    if settings.labels not in LABEL_SCHEMES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_SCHEMES)}, got {settings.labels!r}")
    if not 0 <= settings.max_nodata <= 1:
        raise ValueError(f"max_nodata is a fraction between 0 and 1, got {settings.max_nodata}")
    if batch not in (None, "gcs", "drive"):
        raise ValueError(f"batch must be gcs or drive, got {batch!r}")
    if batch and not destination:
        raise ValueError("a batch export needs a destination (bucket for gcs, folder for drive)")


def plan_export(points_csv: str | Path, out_dir: str | Path, settings: ExportSettings, *, batch: str | None = None,
                destination: str | None = None, show: int = 1) -> dict:
    """The requests :func:`export_chips` would send, without credentials or network (a dry run).

    Points already done in ``out_dir``'s manifest are left out, as a real run would.

    Args:
        points_csv: CSV of points.
        out_dir: Output folder (only its manifest is read).
        settings: What to export.
        batch: ``None``, ``"gcs"`` or ``"drive"``.
        destination: Bucket or Drive folder for batch exports.
        show: How many chips to describe request by request.

    Returns:
        JSON-ready dict: ``points`` (in the CSV), ``todo`` (not done yet), ``requests`` (HTTP
        requests in all: an image count and the ``computePixels`` tiles per product, or one export
        task per product), ``bytes`` (uncompressed pixels), ``products`` (collection, filters,
        bands, ...) and ``chips`` (the first ``show`` chips' requests in full).

    Raises:
        ValueError: Bad CSV or settings.
    """
    _check(settings, batch, destination)
    points = _read_points(Path(points_csv))
    todo = points[~points.id.isin(_done_ids(Path(out_dir) / "manifest.csv"))]
    specs = [(sp, suf) for sp, suf in zip(_specs(settings), ("", "_s1", "_label"), strict=True) if sp is not None]
    requests = total = 0
    chips = []
    for i, p in enumerate(todo.itertuples()):
        grid = chip_grid(p.lon, p.lat, settings.size, settings.gsd_m)
        if batch:
            described = [describe_export(sp, grid, f"{p.id}{suf}", batch, destination) for sp, suf in specs]
            requests += len(described)
        else:
            described = [describe_request(sp, grid) for sp, _ in specs]
            requests += sum(d["requests"] for d in described)
        total += sum(d["bytes"] for d in described)
        if i < show:
            chips.append({"id": p.id, "lon": p.lon, "lat": p.lat, "requests": described})
    keep = ("collection", "dates", "filters", "cloud_mask", "cloud_threshold", "bands", "reducer", "resampling", "dtype", "fill_value")
    products = [{k: v for k, v in describe_request(sp, chip_grid(0.0, 0.0, 32)).items() if k in keep} for sp, _ in specs]
    return {"mode": f"batch export to {batch}:{destination}" if batch else "computePixels download", "points": len(points),
            "todo": len(todo), "requests": requests, "bytes": total, "products": products, "chips": chips}


def export_chips(
    adapter: EarthEngineAdapter,
    points_csv: str | Path,
    out_dir: str | Path,
    settings: ExportSettings,
    *,
    batch: str | None = None,
    destination: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Export chips for every point not yet in the manifest.

    Args:
        adapter: Earth Engine adapter (``LiveEarthEngine`` or a fake).
        points_csv: CSV of points (``lon``, ``lat``[, ``id``, ``country``/``region``]).
        out_dir: Output folder (``manifest.csv`` and chip GeoTIFFs).
        settings: What to export.
        batch: ``None`` (download now), ``"gcs"`` or ``"drive"`` (Earth Engine batch tasks).
        destination: Bucket (gcs) or Drive folder (drive) for batch exports.
        progress: Called with (points done, points total).

    Returns:
        The manifest after this run, one row per point (:func:`read_manifest`).

    Raises:
        ValueError: Bad CSV or settings.
        EarthEngineError: A permanent Earth Engine error (request refused, credentials, quota,
            permission): the export stops at once, naming the point; what was written stays, and
            a rerun resumes. Transient errors after all retries do not stop it: the point is
            recorded as ``retry`` and tried again on the next run.
    """
    _check(settings, batch, destination)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    points = _read_points(Path(points_csv))
    _upgrade_manifest(manifest)
    done = _done_ids(manifest)
    todo = points[~points.id.isin(done)]
    s2, s1, lab = _specs(settings)
    scheme = LABEL_SCHEMES[settings.labels]
    pending: list[dict] = []
    try:
        for i, p in enumerate(tqdm(todo.itertuples(), total=len(todo), desc="chips", unit="chip")):
            grid = chip_grid(p.lon, p.lat, settings.size, settings.gsd_m)
            row = {"id": p.id, "lon": p.lon, "lat": p.lat, "region": p.region, "scheme": scheme, "crs": grid.crs,
                   "image": "", "label": "", "reason": "", "nodata_fraction": "", "level": settings.level,
                   "image_nodata": fill_value(s2) if batch else ("nan" if settings.s1 else s2.nodata),
                   "s1_nodata": (fill_value(s1) if batch else "nan") if s1 is not None else "",
                   "label_nodata": fill_value(lab), "max_nodata": settings.max_nodata}
            try:
                if batch:
                    for spec, suffix in ((s2, ""), (s1, "_s1"), (lab, "_label")):
                        if spec is not None:
                            adapter.export(spec, grid, f"{p.id}{suffix}", batch, destination)
                    row.update(status="submitted", image=f"{p.id}.tif", label=f"{p.id}_label.tif")
                else:
                    row.update(_fetch_chip(adapter, p.id, grid, lab, settings, out))
            except EmptyCollectionError as exc:
                row.update(status="skipped", reason=str(exc))
            except TransientError as exc:
                row.update(status="retry", reason=f"transient Earth Engine error after retries, tried again on the next run: {exc}")
            except EarthEngineError as exc:
                raise type(exc)(f"point {p.id} ({p.lon:.5f}, {p.lat:.5f}): {exc}; {i} point(s) of this run are in {manifest}, "
                                "a rerun resumes") from None
            pending.append(row)
            if len(pending) >= MANIFEST_BATCH:
                _append_rows(manifest, pending)
                pending = []
            if progress is not None:
                progress(i + 1, len(todo))
    finally:  # an error stops the export: the rows done so far are kept, whole
        _append_rows(manifest, pending)
    return read_manifest(manifest)


def _fetch_chip(adapter, chip_id, grid, lab, settings, out: Path) -> dict:
    bands = list(settings.bands) + (["VV", "VH"] if settings.s1 else [])
    img = fetch_imagery(adapter, grid, settings.start, settings.end, bands, level=settings.level,
                        cloud_threshold=settings.cloud_threshold, orbit=settings.orbit, workers=1)
    invalid = ~img.valid_mask()
    label = download(adapter, lab, grid, workers=1)
    ignore = get_scheme(LABEL_SCHEMES[settings.labels]).ignore_index
    invalid |= (label.data[0] == label.nodata) | (label.data[0] == (ignore if ignore is not None else 255))
    frac = float(invalid.mean())
    if frac > settings.max_nodata:
        return {"status": "skipped", "reason": f"{frac:.0%} masked or nodata pixels (limit {settings.max_nodata:.0%})",
                "nodata_fraction": round(frac, 4)}
    write_cog(img, out / f"{chip_id}.tif")
    classes = scheme_classes(get_scheme(LABEL_SCHEMES[settings.labels]))  # colour table + RAT, so QGIS shows class names
    write_cog(GeoRaster(label.data.astype(np.uint8), img.crs, img.transform, label.nodata, ("label",)), out / f"{chip_id}_label.tif",
              classes=classes)
    write_class_map_styles(out / f"{chip_id}_label.tif", classes)
    return {"status": "ok", "image": f"{chip_id}.tif", "label": f"{chip_id}_label.tif", "nodata_fraction": round(frac, 4)}

