"""Good-practice accuracy assessment and area estimation (Olofsson et al. 2014).

Pixel counting on a classified map gives biased class areas: every omission and commission error
moves area from one class to another. The good-practice protocol of

    Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014).
    Good practices for estimating area and assessing accuracy of land change. Remote Sensing of
    Environment 148, 42-57. doi:10.1016/j.rse.2014.02.015

estimates areas and accuracies from a *probability sample* of reference points instead:

1. **Sampling design** (section 5.1): stratified random sampling with the map classes as strata.
   The total sample size comes from a target standard error ``S(O)`` of overall accuracy and the
   anticipated user's accuracy ``U_i`` of each class (eq. 13, after Cochran 1977 eq. 5.25)::

       n = (sum_i W_i S_i / S(O))^2,   S_i = sqrt(U_i (1 - U_i))

   and is allocated to the strata proportionally to their mapped area with a minimum per class
   (rare classes would otherwise get too few points to estimate their user's accuracy).
2. **Response design**: each point gets a reference class (labelled by the analyst; in the app, a
   reference raster can label them for demonstration).
3. **Analysis** (section 5.3, eqs. 4-11): with ``n_ij`` the sample count of map class i and
   reference class j, ``W_i`` the mapped area proportion of class i and ``n_i.`` the row total::

       p_ij = W_i n_ij / n_i.                                   (eq. 4, estimated area proportion)
       O = sum_j p_jj,  U_i = p_ii / p_i.,  P_j = p_jj / p_.j    (eqs. 1-3)
       V(O)   = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)            (eq. 5)
       V(U_i) = U_i (1 - U_i) / (n_i. - 1)                        (eq. 6)
       V(P_j) = 1/N_.j^2 [ N_j.^2 (1 - P_j)^2 U_j (1 - U_j) / (n_j. - 1)
                + P_j^2 sum_{i != j} N_i.^2 n_ij/n_i. (1 - n_ij/n_i.) / (n_i. - 1) ]   (eq. 7)
       S(p_.j) = sqrt( sum_i W_i^2 n_ij/n_i. (1 - n_ij/n_i.) / (n_i. - 1) )             (eq. 10)
       A_j = A_tot p_.j,   S(A_j) = A_tot S(p_.j)                                       (eqs. 9, 11)

   with ``N_i.`` the mapped area (or pixel count) of class i and ``N_.j = sum_i N_i. n_ij / n_i.``.
   95 % confidence intervals are ``estimate +- 1.96 S``.

Everything here is pure numpy/pandas; points are written with pyogrio (GeoPackage) or as CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import AssessmentError
from core.io.outputs import atomic_path

__all__ = [
    "Z95",
    "sample_size",
    "allocate",
    "SamplingDesign",
    "design_sample",
    "stratified_sample",
    "sample_points",
    "write_points",
    "read_points",
    "label_points",
    "AreaEstimate",
    "estimate",
    "estimate_from_points",
    "error_matrix_counts",
]

Z95 = 1.959963984540054
"""Standard normal quantile of a two-sided 95 % interval (Olofsson et al. 2014 print 1.96)."""


def sample_size(weights: Sequence[float], users_accuracy: Sequence[float], target_se: float = 0.01) -> int:
    """Total sample size of a stratified random sample for a target standard error of OA.

    Olofsson et al. (2014) eq. 13 (Cochran 1977 eq. 5.25): ``n = (sum_i W_i S_i / S(O))^2`` with
    ``S_i = sqrt(U_i (1 - U_i))``; the population is assumed large (finite population correction
    left out, as in the paper).

    Args:
        weights: (K,) mapped area proportion ``W_i`` of each stratum (map class); normalised to sum 1.
        users_accuracy: (K,) anticipated user's accuracy ``U_i`` of each class, each in (0, 1].
        target_se: Target standard error of the overall accuracy estimate (proportion, e.g. 0.01).

    Returns:
        n, rounded up.

    Raises:
        AssessmentError: Lengths differ, weights do not sum to a positive value, an accuracy is
            outside (0, 1], or ``target_se`` is not positive.
    """
    w = np.asarray(weights, float)
    u = np.asarray(users_accuracy, float)
    if w.shape != u.shape or w.ndim != 1 or w.size == 0:
        raise AssessmentError(f"give one anticipated user's accuracy per class ({w.size} classes, {u.size} accuracies)")
    if (w < 0).any() or w.sum() <= 0:
        raise AssessmentError("class weights (mapped area proportions) must be >= 0 and not all 0")
    if ((u <= 0) | (u > 1)).any():
        raise AssessmentError("anticipated user's accuracies must lie in (0, 1]")
    if target_se <= 0:
        raise AssessmentError(f"the target standard error of overall accuracy must be > 0, got {target_se}")
    w = w / w.sum()
    s = np.sqrt(u * (1 - u))
    return int(np.ceil(round(float((w * s).sum() / target_se) ** 2, 9)))


def allocate(n: int, weights: Sequence[float], min_per_class: int = 50, capacity: Sequence[int] | None = None) -> np.ndarray:
    """Allocate a total sample size to strata: a minimum per class, the rest proportional to area.

    Olofsson et al. (2014) section 5.1.1 recommend giving rare classes enough points for a usable
    user's accuracy (they use 50-100) and allocating the remainder proportionally. Classes with no
    mapped area get 0. If the minimums alone exceed ``n``, every mapped class gets the minimum.

    With ``capacity`` (the pixels of each stratum; points are drawn without replacement) no stratum
    gets more points than it has pixels: a class with fewer pixels than the minimum gets all of them
    (a census of that stratum), and points a full stratum cannot take go to the others in proportion
    to their area, so the total stays ``n`` while the strata have pixels for it.

    Args:
        n: Total sample size.
        weights: (K,) mapped area proportions (or pixel counts) of the strata.
        min_per_class: Minimum points per mapped class.
        capacity: (K,) most points each stratum can take (its pixel count), or ``None`` for no limit.

    Returns:
        int64 (K,) points per stratum: sums to ``max(n, sum of the per-class minimums)``, or to the
        total capacity when that is smaller; never above ``capacity``.

    Raises:
        AssessmentError: ``n`` < 1, negative weights, a negative minimum or capacity, or a capacity
            of another length than the weights.
    """
    w = np.asarray(weights, float)
    if n < 1 or (w < 0).any() or min_per_class < 0 or w.sum() <= 0:
        raise AssessmentError("sample size must be >= 1, weights >= 0 (not all 0) and the minimum per class >= 0")
    mapped = w > 0
    if capacity is None:
        cap = np.where(mapped, np.iinfo(np.int64).max // 4, 0)
    else:
        cap = np.asarray(capacity, np.int64)
        if cap.shape != w.shape or (cap < 0).any():
            raise AssessmentError(f"give one capacity >= 0 per stratum ({w.size} strata, {cap.size} capacities)")
        cap = np.where(mapped, cap, 0)
    out = np.minimum(np.where(mapped, min_per_class, 0), cap).astype(np.int64)
    target = max(n, int(np.where(mapped, min_per_class, 0).sum()))
    rest = min(target, int(np.minimum(cap, np.iinfo(np.int64).max // 4).sum())) - int(out.sum())
    while rest > 0:  # each round either places every point or fills at least one more stratum
        room = mapped & (out < cap)
        share = np.where(room, w, 0) / w[room].sum() * rest
        extra = np.floor(share).astype(np.int64)
        left = rest - int(extra.sum())  # largest remainders get the points lost to rounding
        extra[np.argsort(-(share - extra), kind="stable")[:left]] += 1
        extra = np.minimum(extra, cap - out)
        out += extra
        rest -= int(extra.sum())
    return out


@dataclass(frozen=True)
class SamplingDesign:
    """A stratified random sampling design with the map classes as strata.

    Attributes:
        class_names: (K,) names of the strata / map classes.
        mapped_pixels: int64 (K,) pixels mapped to each class.
        weights: (K,) mapped area proportions ``W_i``.
        users_accuracy: (K,) anticipated user's accuracies used for the sample size.
        target_se: Target standard error of overall accuracy.
        n_total: Total sample size from eq. 13 (before the per-class minimum).
        per_class: int64 (K,) points per stratum (never more than the stratum's pixels).
        min_per_class: The minimum points per mapped class the design asked for.
    """

    class_names: list[str]
    mapped_pixels: np.ndarray
    weights: np.ndarray
    users_accuracy: np.ndarray
    target_se: float
    n_total: int
    per_class: np.ndarray
    min_per_class: int = 0

    @property
    def census(self) -> list[str]:
        """Mapped classes with fewer pixels than the minimum: every one of their pixels is a sample point."""
        return [name for name, px, pts in zip(self.class_names, self.mapped_pixels, self.per_class, strict=True)
                if 0 < px < self.min_per_class and pts == px]

    def note(self) -> str:
        """One sentence on how the design meets its minimum per class, or why it cannot for some classes."""
        drawn = int(self.per_class.sum())
        text = f"{drawn:,} points drawn"
        if drawn > self.n_total:
            text += f" (more than the {self.n_total:,} of eq. 13, to give every mapped class its minimum)"
        short = self.census
        if not short:
            return text + f", at least {self.min_per_class} in every mapped class."
        px = dict(zip(self.class_names, self.mapped_pixels, strict=True))
        which = ", ".join(f"{c} ({int(px[c]):,} px)" for c in short)
        it, its, has = ("it", "its", "has") if len(short) == 1 else ("they", "their", "have")
        return (text + f", at least {self.min_per_class} in every mapped class except {which}: {it} {has} fewer mapped "
                f"pixels than the minimum, so every one of {its} pixels is a point (a census of the stratum: {its} user's "
                f"accuracy rests on those pixels only), and the points {it} cannot take go to the other classes by area.")

    def table(self) -> pd.DataFrame:
        """One row per class: mapped pixels, weight, anticipated UA, points, and whether the points are all its pixels."""
        census = set(self.census)
        return pd.DataFrame({"class": self.class_names, "mapped_pixels": self.mapped_pixels, "weight": self.weights,
                             "anticipated_users_accuracy": self.users_accuracy, "points": self.per_class,
                             "all_pixels": [n in census for n in self.class_names]})


def design_sample(
    class_map: np.ndarray,
    class_names: Sequence[str],
    users_accuracy: float | Sequence[float] = 0.8,
    target_se: float = 0.01,
    min_per_class: int = 50,
    nodata: int = 255,
) -> SamplingDesign:
    """The sampling design for a class map: strata weights, sample size and allocation.

    Args:
        class_map: Integer (H, W) class indices 0..K-1; ``nodata`` (and anything >= K) is no stratum.
        class_names: (K,) class names.
        users_accuracy: Anticipated user's accuracy, one for all classes or one per class.
        target_se: Target standard error of overall accuracy (e.g. 0.01).
        min_per_class: Minimum points per mapped class.
        nodata: Value of unmapped pixels.

    Returns:
        The design. Every mapped class gets at least ``min_per_class`` points, except a class with
        fewer mapped pixels, which gets all of them (:attr:`SamplingDesign.census`); points it cannot
        take go to the other classes (see :func:`allocate`).

    Raises:
        AssessmentError: Nothing is mapped, or the arguments are invalid (see :func:`sample_size`).
    """
    k = len(class_names)
    m = np.asarray(class_map).reshape(-1)
    valid = (m != nodata) & (m >= 0) & (m < k)
    counts = np.bincount(m[valid].astype(np.int64), minlength=k)[:k]
    if counts.sum() == 0:
        raise AssessmentError("the map has no mapped pixels to sample")
    u = np.broadcast_to(np.asarray(users_accuracy, float), (k,)).copy()
    w = counts / counts.sum()
    mapped = counts > 0
    n = sample_size(w[mapped], u[mapped], target_se)
    per = allocate(n, counts, min_per_class, capacity=counts)
    return SamplingDesign(list(class_names), counts, w, u, float(target_se), n, per, int(min_per_class))


def stratified_sample(
    class_map: np.ndarray, per_class: Sequence[int], rng: np.random.Generator | int | None = None, nodata: int = 255
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a stratified random sample of pixels, without replacement within each stratum.

    Args:
        class_map: Integer (H, W) class indices 0..K-1 (``nodata`` is never drawn).
        per_class: (K,) points to draw from each class (capped at the class's pixel count).
        rng: Generator or seed.
        nodata: Value of unmapped pixels.

    Returns:
        (rows, cols, map_class): int64 (n,) pixel rows and columns and the map class index of each.
    """
    rng = np.random.default_rng(rng)
    m = np.asarray(class_map)
    flat = m.reshape(-1)
    picks = []
    for k, n_k in enumerate(per_class):
        idx = np.flatnonzero(flat == k) if k != nodata else np.empty(0, np.int64)
        if n_k <= 0 or idx.size == 0:
            continue
        picks.append(rng.choice(idx, size=min(int(n_k), idx.size), replace=False))
    sel = np.sort(np.concatenate(picks)) if picks else np.empty(0, np.int64)
    rows, cols = np.divmod(sel, m.shape[1])
    return rows.astype(np.int64), cols.astype(np.int64), flat[sel].astype(np.int64)


def sample_points(
    class_map: np.ndarray, class_names: Sequence[str], per_class: Sequence[int], transform, crs, seed: int = 0, nodata: int = 255
) -> pd.DataFrame:
    """Stratified random sample points of a georeferenced class map, ready for labelling.

    Args:
        class_map: Integer (H, W) class indices 0..K-1.
        class_names: (K,) class names.
        per_class: (K,) points per class (e.g. :attr:`SamplingDesign.per_class`).
        transform: ``affine.Affine`` of the map grid.
        crs: ``rasterio.crs.CRS`` of the map (``None``: lon/lat are left empty, x/y are pixel units).
        seed: Random seed (the same seed gives the same points).
        nodata: Unmapped value.

    Returns:
        DataFrame with columns ``point_id, row, col, x, y, lon, lat, map_class, map_class_name,
        reference_class`` (the last empty, for the analyst to fill); x/y are pixel centres in the
        map CRS, lon/lat in degrees (EPSG:4326).
    """
    rows, cols, cls = stratified_sample(class_map, per_class, seed, nodata)
    from rasterio.transform import xy

    xs, ys = xy(transform, rows, cols, offset="center")
    xs, ys = np.asarray(xs, float).reshape(-1), np.asarray(ys, float).reshape(-1)
    if crs is not None:
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    else:
        lon = lat = np.full(rows.shape, np.nan)
    names = np.asarray(list(class_names), dtype=object)
    return pd.DataFrame({
        "point_id": np.arange(1, rows.size + 1), "row": rows, "col": cols, "x": xs, "y": ys,
        "lon": np.round(lon, 7), "lat": np.round(lat, 7), "map_class": cls, "map_class_name": names[cls] if rows.size else [],
        "reference_class": pd.Series([pd.NA] * rows.size, dtype="object"),
    })


def write_points(points: pd.DataFrame, path: str | Path) -> Path:
    """Write sample points as CSV or GeoPackage (by the file suffix), never half-written.

    The GeoPackage holds point geometries in lon/lat (EPSG:4326) and every column as an attribute,
    written with pyogrio (GDAL's OGR); the file appears only when complete.

    Args:
        points: Output of :func:`sample_points` (needs ``lon`` and ``lat`` for a GeoPackage).
        path: ``*.csv`` or ``*.gpkg``.

    Returns:
        The path written.

    Raises:
        AssessmentError: Another suffix, or a GeoPackage of points without lon/lat.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".gpkg"):
        raise AssessmentError(f"{path.name}: write points as .csv or .gpkg")
    if suffix == ".gpkg" and points[["lon", "lat"]].isna().any().any():
        raise AssessmentError("these points have no lon/lat (the map has no CRS): write them as CSV")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            points.to_csv(tmp, index=False)
        else:
            import shapely
            from pyogrio.raw import write

            tmp.unlink()  # GDAL creates the GeoPackage itself
            geoms = shapely.to_wkb(shapely.points(points["lon"].to_numpy(float), points["lat"].to_numpy(float)))
            cols = list(points.columns)
            data = [points[c].astype(str).to_numpy() if points[c].dtype == object else points[c].to_numpy() for c in cols]
            write(str(tmp), geoms, data, cols, driver="GPKG", layer="points", crs="EPSG:4326", geometry_type="Point")
    return path


def read_points(path: str | Path, reference_column: str = "reference_class", map_column: str = "map_class") -> pd.DataFrame:
    """Read labelled points (CSV or GeoPackage) and check the columns the analysis needs.

    Args:
        path: ``*.csv`` or ``*.gpkg`` with a map-class and a reference-class column (class
            indices or class names).
        reference_column: Column with the analyst's reference class.
        map_column: Column with the map class.

    Returns:
        The table; rows without a reference class are dropped.

    Raises:
        AssessmentError: No such file, unknown format, a file that cannot be parsed (empty,
            malformed CSV, not UTF-8, a corrupt GeoPackage), or a missing column (the message
            lists the columns present).
    """
    path = Path(path)
    if not path.exists():
        raise AssessmentError(f"no points file at {path}")
    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise AssessmentError(f"{path.name} is empty; write a header line with map_class and {reference_column}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AssessmentError(f"{path.name} is not a readable CSV ({first}); save it as comma-separated UTF-8 text") from None
    elif path.suffix.lower() == ".gpkg":
        from pyogrio.errors import DataLayerError, DataSourceError
        from pyogrio.raw import read

        try:
            meta, _, _, fields = read(path)
        except (DataSourceError, DataLayerError) as exc:
            raise AssessmentError(f"{path.name} is not a readable GeoPackage of points ({exc})") from None
        df = pd.DataFrame({name: values for name, values in zip(meta["fields"], fields, strict=True)})
    else:
        raise AssessmentError(f"{path.name}: points must be .csv or .gpkg")
    missing = [c for c in (map_column, reference_column) if c not in df.columns]
    if missing:
        raise AssessmentError(f"{path.name} has no column {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})")
    df = df[df[reference_column].notna() & (df[reference_column].astype(str).str.strip() != "")]
    return df.reset_index(drop=True)


def label_points(points: pd.DataFrame, reference: np.ndarray, ignore: int = 255) -> pd.DataFrame:
    """Label points from a reference raster on the map's grid (a demonstration response design).

    A reference *map* is not a reference *sample* of better quality than the map; use this to try
    the workflow, and label the points by interpretation for publishable numbers.

    Args:
        points: Output of :func:`sample_points` (``row`` and ``col`` columns).
        reference: Integer (H, W) reference class indices of the same scheme, ``ignore`` = no label.
        ignore: Value of unlabelled pixels; those points are dropped.

    Returns:
        A copy with ``reference_class`` filled and ``reference_source = "raster"``.
    """
    ref = np.asarray(reference)[points["row"].to_numpy(int), points["col"].to_numpy(int)].astype(np.int64)
    out = points.copy()
    out["reference_class"] = ref
    out["reference_source"] = "raster"
    return out[ref != ignore].reset_index(drop=True)


def _as_index(values: pd.Series, class_names: Sequence[str], what: str) -> np.ndarray:
    names = list(class_names)
    lookup = {n.lower(): i for i, n in enumerate(names)}
    out = np.empty(len(values), np.int64)
    for i, v in enumerate(values.tolist()):
        s = str(v).strip()
        try:
            k = int(float(s))
        except (ValueError, OverflowError):  # a name, or inf
            k = lookup.get(s.lower(), -1)
        if not 0 <= k < len(names):
            raise AssessmentError(f"{what} {v!r} is neither a class index 0..{len(names) - 1} nor a class name ({', '.join(names)})")
        out[i] = k
    return out


def error_matrix_counts(map_class: Sequence, reference_class: Sequence, class_names: Sequence[str]) -> np.ndarray:
    """Sample counts ``n_ij`` (rows = map class i, columns = reference class j).

    Args:
        map_class: (n,) map classes of the points (indices or names).
        reference_class: (n,) reference classes (indices or names).
        class_names: (K,) class names.

    Returns:
        int64 (K, K) counts.

    Raises:
        AssessmentError: A class that is neither a valid index nor a name.
    """
    k = len(class_names)
    mi = _as_index(pd.Series(list(map_class)), class_names, "map class")
    ri = _as_index(pd.Series(list(reference_class)), class_names, "reference class")
    return np.bincount(mi * k + ri, minlength=k * k).reshape(k, k).astype(np.int64)


@dataclass(frozen=True)
class AreaEstimate:
    """Stratified estimates of accuracy and area with standard errors and 95 % intervals.

    Arrays are (K,) per class unless noted; ``*_ci`` are half-widths (``z * SE``). Classes with no
    sample (or undefined ratios) hold NaN.

    Attributes:
        class_names: Class names.
        counts: int64 (K, K) sample counts, rows = map class, columns = reference class.
        mapped_area: Mapped area of each class (the unit of ``mapped_area`` given, e.g. km^2).
        proportions: (K, K) estimated area proportions ``p_ij`` (eq. 4).
        users: User's accuracy ``U_i``; ``users_se``, ``users_ci``.
        producers: Producer's accuracy ``P_j``; ``producers_se``, ``producers_ci``.
        overall: Overall accuracy; ``overall_se``, ``overall_ci``.
        area: Estimated area of each reference class (same unit as ``mapped_area``); ``area_se``, ``area_ci``.
        z: Normal quantile of the intervals.
    """

    class_names: list[str]
    counts: np.ndarray
    mapped_area: np.ndarray
    proportions: np.ndarray
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    overall: float
    overall_se: float
    area: np.ndarray
    area_se: np.ndarray
    z: float = Z95

    @property
    def users_ci(self) -> np.ndarray:
        """Half-width of the users' accuracy intervals."""
        return self.z * self.users_se

    @property
    def producers_ci(self) -> np.ndarray:
        """Half-width of the producers' accuracy intervals."""
        return self.z * self.producers_se

    @property
    def overall_ci(self) -> float:
        """Half-width of the overall accuracy interval."""
        return self.z * self.overall_se

    @property
    def area_ci(self) -> np.ndarray:
        """Half-width of the area intervals (unit of ``mapped_area``)."""
        return self.z * self.area_se

    def table(self, unit: str = "km2") -> pd.DataFrame:
        """One row per class: mapped (pixel-counted) area, estimated area +- CI, UA +- CI, PA +- CI, points."""
        return pd.DataFrame({
            "class": self.class_names,
            "points": self.counts.sum(axis=1),
            f"mapped_{unit}": self.mapped_area,
            f"estimated_{unit}": self.area,
            f"ci95_{unit}": self.area_ci,
            "users_accuracy": self.users,
            "users_ci95": self.users_ci,
            "producers_accuracy": self.producers,
            "producers_ci95": self.producers_ci,
        })

    def matrix_table(self) -> pd.DataFrame:
        """The error matrix of estimated area proportions (rows = map, columns = reference) with totals."""
        df = pd.DataFrame(self.proportions, index=self.class_names, columns=self.class_names)
        df["total (W_i)"] = self.proportions.sum(axis=1)
        df.loc["total"] = df.sum(axis=0)
        return df

    def to_dict(self) -> dict:
        """JSON-ready dict of every estimate."""
        def lst(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]

        return {"classes": self.class_names, "counts": self.counts.tolist(), "mapped_area": lst(self.mapped_area),
                "proportions": [lst(r) for r in self.proportions], "users": lst(self.users), "users_ci95": lst(self.users_ci),
                "producers": lst(self.producers), "producers_ci95": lst(self.producers_ci), "overall": float(self.overall),
                "overall_ci95": float(self.overall_ci), "area": lst(self.area), "area_ci95": lst(self.area_ci),
                "method": "stratified estimators of Olofsson et al. (2014), 95 % normal intervals"}


def estimate(counts: np.ndarray, mapped_area: Sequence[float], class_names: Sequence[str] | None = None, z: float = Z95) -> AreaEstimate:
    """Accuracy and area estimates from a stratified sample's error matrix (Olofsson et al. 2014).

    Args:
        counts: Integer (K, K) sample counts ``n_ij``, rows = map class (stratum), columns =
            reference class.
        mapped_area: (K,) mapped area (or pixel count) of each map class; area estimates come in
            the same unit.
        class_names: (K,) names (default ``class_0``...).
        z: Normal quantile of the intervals (1.96 for 95 %).

    Returns:
        The estimates. A stratum with a single point has an undefined within-stratum variance: its
        user's accuracy SE is NaN and it adds no variance term to the other estimates (exact when
        the point is the whole stratum, e.g. a one-pixel class; otherwise the SEs are too small, so
        sample at least 2 points per stratum). A stratum with no mapped area contributes nothing.

    Raises:
        AssessmentError: A mapped class with no sample point.
        ValueError: Shapes do not match, or negative counts (a caller's bug, not the user's).
    """
    n = np.asarray(counts, float)
    a = np.asarray(mapped_area, float)
    k = n.shape[0]
    if n.shape != (k, k) or a.shape != (k,):
        raise ValueError(f"counts must be (K, K) and mapped areas (K,), got {n.shape} and {a.shape}")
    if (n < 0).any() or (a < 0).any():
        raise ValueError("counts and mapped areas must be >= 0")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    ni = n.sum(axis=1)
    empty = (a > 0) & (ni == 0)
    if empty.any():
        raise AssessmentError(f"map class(es) {', '.join(names[i] for i in np.flatnonzero(empty))} have mapped area but no sample point")
    a_tot = a.sum()
    w = a / a_tot
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(ni[:, None] > 0, n / ni[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * f
        p_col = p.sum(axis=0)
        diag = np.diag(p)
        users = np.where(ni > 0, np.diag(f), np.nan)
        producers = np.where(p_col > 0, diag / p_col, np.nan)
        denom = np.where(ni > 1, ni - 1, np.nan)
        var_f = np.where(w[:, None] > 0, f * (1 - f) / denom[:, None], 0.0)  # per stratum, per reference class
        users_se = np.sqrt(users * (1 - users) / denom)
        overall = float(diag.sum())
        var_f = np.nan_to_num(var_f, nan=0.0)  # strata with one point add no variance term (see Returns)
        overall_se = float(np.sqrt(np.nansum(np.where(w > 0, w**2 * users * (1 - users) / denom, 0.0))))
        se_pcol = np.sqrt((w[:, None] ** 2 * var_f).sum(axis=0))
        # producer's accuracy (eq. 7), with N_i. = mapped area (the unit cancels)
        n_col = (a[:, None] * f).sum(axis=0)
        prod_var = np.full(k, np.nan)
        for j in range(k):
            if n_col[j] <= 0:
                continue
            own = a[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / denom[j] if a[j] > 0 and ni[j] > 1 else 0.0
            others = sum(a[i] ** 2 * var_f[i, j] for i in range(k) if i != j and a[i] > 0)
            prod_var[j] = (own + producers[j] ** 2 * others) / n_col[j] ** 2
    return AreaEstimate(names, n.astype(np.int64), a, p, users, users_se, producers, np.sqrt(prod_var), overall, overall_se,
                        a_tot * p_col, a_tot * se_pcol, z)


def estimate_from_points(points: pd.DataFrame, class_names: Sequence[str], mapped_area: Sequence[float],
                         map_column: str = "map_class", reference_column: str = "reference_class", z: float = Z95) -> AreaEstimate:
    """:func:`estimate` from labelled points (map and reference class per point).

    Args:
        points: Labelled points (see :func:`read_points`, :func:`label_points`).
        class_names: (K,) class names of the map.
        mapped_area: (K,) pixel-counted area of each map class (e.g. km^2).
        map_column: Column of map classes (indices or names).
        reference_column: Column of reference classes (indices or names).
        z: Normal quantile of the intervals.

    Raises:
        AssessmentError: No labelled points, unknown classes, or a mapped class without points.
    """
    if len(points) == 0:
        raise AssessmentError("no labelled points: fill the reference_class column first")
    counts = error_matrix_counts(points[map_column], points[reference_column], class_names)
    return estimate(counts, mapped_area, class_names, z)
