"""Correction points on disk: a CSV ``lon,lat,class`` (WGS 84) or a GeoPackage of points in any CRS.

Points are read into :class:`PointSet` (coordinates in their own CRS, class names) and placed on an image
grid by :func:`to_pixels` (reprojected to the grid's CRS). :func:`write_points_csv` and
:func:`write_points_gpkg` write them back through the safe-output code (:mod:`core.io.outputs`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.correction import MAX_POINTS, CorrectionError
from core.io.outputs import atomic_path

__all__ = ["PointSet", "read_points", "to_pixels", "write_points_csv", "write_points_gpkg"]


@dataclass(frozen=True)
class PointSet:
    """Points with a class name each.

    Attributes:
        x: float64 (N,) first coordinate (longitude for WGS 84).
        y: float64 (N,) second coordinate (latitude).
        names: (N,) class names.
        crs: CRS of x/y (``"EPSG:4326"`` for a CSV).
    """

    x: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    crs: str = "EPSG:4326"

    def __len__(self) -> int:
        return len(self.names)


def _check_count(n: int, path: Path) -> None:
    if n == 0:
        raise CorrectionError(f"{path.name} holds no points.")
    if n > MAX_POINTS:
        raise CorrectionError(f"{path.name} holds {n} points, more than the {MAX_POINTS} a correction set may have.")


def read_points(path: str | Path, *, class_column: str = "class") -> PointSet:
    """Read a points CSV (``lon,lat,<class_column>``, WGS 84) or GeoPackage (point layer, any CRS).

    Raises:
        CorrectionError: A missing or corrupt file, no class column, no lon/lat columns, a coordinate that is not
            a number, an empty class name, no points, or more than :data:`~core.correction.MAX_POINTS`.
    """
    path = Path(path)
    if not path.is_file():
        raise CorrectionError(f"points file {path} does not exist.")
    if path.suffix.lower() == ".gpkg":
        return _read_gpkg(path, class_column)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CorrectionError(f"{path.name} is not a readable CSV file ({exc}).") from None
    cols = set(rows[0]) if rows else set()
    if rows and not {"lon", "lat"} <= cols:
        raise CorrectionError(f"{path.name} needs the columns lon, lat and {class_column}; it has {', '.join(sorted(c for c in cols if c))}.")
    if rows and class_column not in cols:
        raise CorrectionError(f"{path.name} has no class column {class_column!r} (columns: {', '.join(sorted(c for c in cols if c))}); give it with --class-column.")
    _check_count(len(rows), path)
    try:
        x = np.array([float(r["lon"]) for r in rows])
        y = np.array([float(r["lat"]) for r in rows])
    except (TypeError, ValueError):
        raise CorrectionError(f"{path.name} has a lon or lat that is not a number.") from None
    names = tuple((r[class_column] or "").strip() for r in rows)
    if not all(names):
        raise CorrectionError(f"{path.name} has a point without a class name in column {class_column!r}.")
    return PointSet(x, y, names, "EPSG:4326")


def _read_gpkg(path: Path, class_column: str) -> PointSet:
    try:
        import pyogrio
        import pyogrio.raw

        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        meta, _fids, geoms, field_data = pyogrio.raw.read(path, layer="corrections" if "corrections" in layers else 0)
    except Exception as exc:  # pyogrio raises its own errors for corrupt files
        raise CorrectionError(f"{path.name} is not a readable GeoPackage ({str(exc).splitlines()[0][:120]}).") from None
    names_cols = [str(f) for f in meta["fields"]]
    if class_column not in names_cols:
        raise CorrectionError(f"{path.name} has no class column {class_column!r} (fields: {', '.join(names_cols)}); give it with --class-column.")
    values = field_data[names_cols.index(class_column)]
    n = len(values)
    _check_count(n, path)
    from shapely import from_wkb, get_x, get_y  # shapely comes with pyogrio's usual stack

    pts = from_wkb(np.asarray(geoms, dtype=object))
    kinds = {g.geom_type for g in pts if g is not None}
    if kinds - {"Point"}:
        raise CorrectionError(f"{path.name} holds {', '.join(sorted(kinds - {'Point'}))} geometries; give a layer of points.")
    crs = meta.get("crs") or "EPSG:4326"
    names = tuple(str(v).strip() if v is not None else "" for v in values)
    if not all(names):
        raise CorrectionError(f"{path.name} has a point without a class name in field {class_column!r}.")
    return PointSet(np.asarray(get_x(pts), float), np.asarray(get_y(pts), float), names, str(crs))


def to_pixels(points: PointSet, crs, transform, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the points on an image grid (reprojected from the points' CRS to the grid's).

    Raises:
        CorrectionError: A point outside the raster (the message counts them and names the first).
    """
    from rasterio.transform import rowcol
    from rasterio.warp import transform as warp

    xs, ys = warp(points.crs, crs, list(points.x), list(points.y))
    rows, cols = rowcol(transform, xs, ys, op=np.floor)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    out = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise CorrectionError(f"{int(out.sum())} point(s) lie outside the raster, the first at "
                              f"({points.x[i]:.6f}, {points.y[i]:.6f}) in {points.crs}; remove them or give the image they were picked on.")
    return rows, cols


def write_points_csv(points: PointSet, path: str | Path) -> Path:
    """Write ``lon,lat,class`` (WGS 84) atomically; returns the path."""
    from rasterio.warp import transform as warp

    lon, lat = warp(points.crs, "EPSG:4326", list(points.x), list(points.y)) if points.crs != "EPSG:4326" else (points.x, points.y)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["lon", "lat", "class"])
        for a, b, c in zip(lon, lat, points.names, strict=True):
            w.writerow([f"{a:.8f}", f"{b:.8f}", c])
    return Path(path)


def write_points_gpkg(points: PointSet, path: str | Path, *, class_ids: dict[str, int] | None = None,
                      colors: dict[str, str] | None = None, round_no: int | list[int] = 0, times: list[str] | None = None,
                      polygons: list[dict] | None = None) -> Path:
    """Write a GeoPackage of the corrections atomically; returns the path.

    Layer ``corrections`` (the first, read by :func:`read_points`): one point per sample with ``class``,
    ``class_id``, ``color``, ``round`` and ``time``. With ``polygons``, a second layer ``polygons`` with the
    polygons the user drew (in the points' CRS) and the same fields.

    Args:
        points: The points (their CRS is the layers' CRS).
        path: Output ``.gpkg``.
        class_ids: Class name -> id (default: order of appearance).
        colors: Class name -> ``#rrggbb``.
        round_no: The round each point was given in (one number for all, or one per point).
        times: ISO time each point was given (default: now for all).
        polygons: Dicts ``{"geometry": shapely polygon, "class": name, "round": int, "time": str}``.

    Raises:
        OutputError: The file cannot be written (:func:`core.io.outputs.atomic_path`).
    """
    from datetime import UTC, datetime

    import pyogrio.raw
    from shapely import points as make_points
    from shapely import to_wkb

    names = list(points.names) + [p["class"] for p in polygons or []]
    ids = class_ids or {n: i for i, n in enumerate(dict.fromkeys(names))}
    colors = colors or {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rounds = np.broadcast_to(np.asarray(round_no, np.int32), (len(points),))

    def fields_of(cls: list[str], rnd, when: list[str]) -> dict:
        return {"class": np.array(cls, dtype=object), "class_id": np.array([ids[n] for n in cls], np.int32),
                "color": np.array([colors.get(n, "") for n in cls], dtype=object), "round": np.asarray(rnd, np.int32),
                "time": np.array(when, dtype=object)}

    point_fields = fields_of(list(points.names), rounds, list(times) if times is not None else [now] * len(points))
    with atomic_path(path) as tmp:
        tmp = Path(tmp)
        gpkg = tmp.with_name(tmp.name + ".gpkg")
        pyogrio.raw.write(gpkg, np.asarray(to_wkb(make_points(points.x, points.y)), dtype=object), list(point_fields.values()),
                          list(point_fields), geometry_type="Point", crs=points.crs, driver="GPKG", layer="corrections")
        if polygons:
            pf = fields_of([p["class"] for p in polygons], [p.get("round", 0) for p in polygons], [p.get("time", now) for p in polygons])
            pyogrio.raw.write(gpkg, np.asarray(to_wkb([p["geometry"] for p in polygons]), dtype=object), list(pf.values()), list(pf),
                              geometry_type="Polygon", crs=points.crs, driver="GPKG", layer="polygons", append=True)
        gpkg.replace(tmp)
    return Path(path)
