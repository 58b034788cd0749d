"""Analyses of class maps: good-practice accuracy and area assessment, change, polygons.

``python -m trainer assess | change | polygons`` call these functions; the numbers come from
:mod:`core.evaluation.accuracy`, :mod:`core.products.change` and :mod:`core.products.polygons`.
Class maps are single-band uint8 GeoTIFFs of class ids (``predict``'s output); their classes are
those of a model card (``--checkpoint``) or a named scheme (``--scheme``). The HTML report is
:mod:`trainer.report`, calibration :mod:`trainer.calibration`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.classes import ClassScheme, get_scheme
from core.classes import scheme_of as card_scheme
from core.evaluation.accuracy import (
    AreaEstimate,
    design_sample,
    estimate_from_points,
    label_points,
    read_points,
    sample_points,
    write_points,
)
from core.io.outputs import atomic_write_text, check_outputs
from core.io.raster import GeoRaster, read_raster, write_cog
from core.products.change import ChangeResult, change_between

__all__ = ["scheme_of", "read_class_map", "assess_sample", "assess_points", "change", "polygons", "mapped_km2", "assessment_of"]


def scheme_of(checkpoint: str | None, scheme: str | None) -> ClassScheme:
    """The class scheme of a model bundle's card, or a named scheme (default Dynamic World)."""
    if checkpoint:
        from models.bundle import read_card

        return card_scheme(read_card(checkpoint))
    return get_scheme(scheme or "dynamic_world")


def read_class_map(path: str | Path, scheme: ClassScheme) -> GeoRaster:
    """Read a single-band class-id GeoTIFF and check its values belong to ``scheme``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: More than one band, or class ids the scheme does not have.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"no class map at {path}")
    r = read_raster(path)
    if r.count != 1:
        raise ValueError(f"{path} has {r.count} bands; give a single-band class map (the output of `predict`)")
    data = r.data[0]
    present = set(np.unique(data).tolist()) - {255}
    unknown = sorted(present - set(scheme.ids))
    if unknown:
        raise ValueError(f"{path} holds class ids {unknown[:5]} that the {scheme.name} scheme does not have "
                         f"(ids {scheme.ids}); pass the model with --checkpoint or the scheme with --scheme")
    return GeoRaster(data.astype(np.uint8)[None], r.crs, r.transform, 255, ("class",), r.meta)


def _indices(classes: GeoRaster, scheme: ClassScheme) -> np.ndarray:
    return scheme.to_index(classes.data[0].astype(np.uint8))


def mapped_km2(index_map: np.ndarray, grid: GeoRaster, k: int) -> np.ndarray:
    """Pixel-counted area (km^2) of each class index 0..K-1 of an (H, W) index map on ``grid``."""
    row = grid.pixel_area_m2()[:, None] / 1e6
    valid = (index_map >= 0) & (index_map < k)
    return np.bincount(index_map[valid].astype(np.int64), weights=np.broadcast_to(row, index_map.shape)[valid], minlength=k)[:k]


def assess_sample(map_path: str, out: str, *, checkpoint: str | None = None, scheme: str | None = None, users_accuracy: float = 0.8,
                  target_se: float = 0.01, min_per_class: int = 50, seed: int = 0, label_from: str | None = None) -> pd.DataFrame:
    """Design a stratified random sample of a class map and write its points for labelling.

    Args:
        map_path: Class-map GeoTIFF.
        out: Points file, ``.gpkg`` or ``.csv`` (a CSV twin is written beside a GeoPackage).
        checkpoint: Model bundle whose card gives the classes.
        scheme: Class scheme name when no checkpoint is given (default dynamic_world).
        users_accuracy: Anticipated user's accuracy of every class.
        target_se: Target standard error of overall accuracy.
        min_per_class: Minimum points per mapped class.
        seed: Random seed.
        label_from: Optional reference class-map GeoTIFF on the same grid to label the points
            with (a demonstration: the column ``reference_source`` says ``raster``).

    Returns:
        The points written.
    """
    sch = scheme_of(checkpoint, scheme)
    outs = {"points output": out}
    if out.lower().endswith(".gpkg"):
        outs["points CSV"] = str(Path(out).with_suffix(".csv"))
    check_outputs(outs, inputs=[map_path] + ([label_from] if label_from else []))
    cmap = read_class_map(map_path, sch)
    idx = _indices(cmap, sch)
    design = design_sample(idx, sch.names, users_accuracy, target_se, min_per_class)
    print(design.table().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"sample size from the target SE of overall accuracy (Olofsson et al. 2014 eq. 13): {design.n_total}; "
          f"drawn: {int(design.per_class.sum())}")
    pts = sample_points(idx, sch.names, design.per_class, cmap.transform, cmap.crs, seed=seed)
    if label_from:
        ref = read_class_map(label_from, sch)
        cmap.require_same_grid(ref, "class map and reference map")
        pts = label_points(pts, _indices(ref, sch))
        print("points labelled from a reference raster: a demonstration, not an independent reference sample")
    write_points(pts, out)
    if "points CSV" in outs:
        write_points(pts, outs["points CSV"])
    print(f"wrote {len(pts)} points to {out}" + (f" and {outs['points CSV']}" if "points CSV" in outs else ""))
    return pts


def assessment_of(index_map: np.ndarray, grid: GeoRaster, points: pd.DataFrame, sch: ClassScheme,
                  reference_column: str = "reference_class", map_column: str = "map_class") -> AreaEstimate:
    """Area and accuracy estimates of a class-index map from its labelled points (areas in km^2)."""
    return estimate_from_points(points, sch.names, mapped_km2(index_map, grid, sch.num_classes), map_column, reference_column)


def assess_points(map_path: str, points_path: str, *, checkpoint: str | None = None, scheme: str | None = None,
                  reference_column: str = "reference_class", out: str | None = None, as_json: bool = False) -> AreaEstimate:
    """Estimate accuracy and class areas with 95 % intervals from labelled points of a class map.

    Args:
        map_path: The class map the points were drawn from (its pixel counts are the strata sizes).
        points_path: Labelled points (CSV or GeoPackage) with ``map_class`` and a reference column.
        checkpoint: Model bundle whose card gives the classes.
        scheme: Class scheme name when no checkpoint is given (default dynamic_world).
        reference_column: Column of the reference class (index or name).
        out: Optional CSV of the per-class table.
        as_json: Print one JSON object instead of tables.
    """
    sch = scheme_of(checkpoint, scheme)
    if out:
        check_outputs({"--out": out}, inputs=[map_path, points_path])
    cmap = read_class_map(map_path, sch)
    pts = read_points(points_path, reference_column)
    est = assessment_of(_indices(cmap, sch), cmap, pts, sch, reference_column)
    table = est.table()
    if out:
        atomic_write_text(out, table.to_csv(index=False))
    if as_json:
        print(json.dumps(est.to_dict()))
        return est
    print(f"{len(pts)} labelled points; areas in km2; 95 % confidence intervals (Olofsson et al. 2014)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"overall accuracy {est.overall:.4f} +- {est.overall_ci:.4f}")
    print("\nerror matrix of estimated area proportions (rows = map, columns = reference):")
    print(est.matrix_table().to_string(float_format=lambda v: f"{v:.4f}"))
    return est


def change(before: str, after: str, *, checkpoint: str | None = None, scheme: str | None = None, out_map: str | None = None,
           out_csv: str | None = None, labels: tuple[str, str] | None = None) -> ChangeResult:
    """From-to change between two class maps on the same grid; optional change-map COG and transitions CSV.

    Raises:
        GridMismatchError: The maps are not on one grid.
    """
    sch = scheme_of(checkpoint, scheme)
    outs = {k: v for k, v in {"--out-map": out_map, "--out-csv": out_csv}.items() if v}
    if outs:
        check_outputs(outs, inputs=[before, after])
    a, b = read_class_map(before, sch), read_class_map(after, sch)
    if labels is None:
        pb, pa = Path(before), Path(after)
        labels = (pb.stem, pa.stem) if pb.stem != pa.stem else (f"{pb.parent.name}/{pb.stem}", f"{pa.parent.name}/{pa.stem}")
    res = change_between(a, b, sch.ids, sch.names, sch.colors, labels)
    if out_map:
        write_cog(res.change_map, out_map)
    if out_csv:
        atomic_write_text(out_csv, res.transitions().to_csv(index=False))
    print(f"compared {res.total_km2:.3f} km2; changed {res.changed_km2:.3f} km2 ({100 * res.changed_km2 / max(res.total_km2, 1e-12):.1f} %)")
    print(res.net_change().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return res


def polygons(map_path: str, out: str, *, mmu_ha: float = 0.5, checkpoint: str | None = None, scheme: str | None = None) -> int:
    """Write a class map as GeoPackage polygons after removing patches below ``mmu_ha`` hectares; returns the count.

    The map's provenance tags (``LULC_*``, as ``predict`` writes them) become the polygons' provenance
    columns and layer metadata (:func:`core.products.polygons.write_polygons`).
    """
    from core.products.polygons import class_polygons, write_polygons
    from core.products.provenance import read_provenance_tags

    sch = scheme_of(checkpoint, scheme)
    check_outputs({"--out": out}, inputs=[map_path])
    cmap = read_class_map(map_path, sch)
    layer = class_polygons(cmap, sch.ids, sch.names, mmu_ha)
    write_polygons(layer, out, read_provenance_tags(map_path))
    print(layer.summary().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {len(layer)} polygons (minimum mapping unit {mmu_ha} ha) to {out}")
    return len(layer)
