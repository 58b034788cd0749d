"""What the Export page offers: the last run's map as ``python -m trainer predict`` writes it, with its provenance.

Every file carries the provenance ``predict`` writes (:class:`core.products.provenance.Provenance`):
the bundle's name and weights' SHA-256, the software version, the run policy (tile, overlap,
runtime, precision), the input decision (``LULC_INPUT_*``), the input's name and, where known, its
date, level and baseline; for Earth Engine the collection, dates and cloud threshold. The files are
written by the core writers ``predict`` uses (:mod:`core.products.package`) into a temporary folder
and handed to the page as bytes.

- :func:`map_files`: the class map COG, its raster attribute table (``.tif.aux.xml``), its QGIS
  style (``.qml``), the confidence COG and its style, and the STAC Item (``.json``); the page zips
  them (:func:`zip_bytes`) because a browser download is one file.
- :func:`probabilities_tif`: the per-class probabilities (K uint8 bands, ``round(p x 250)``, 255 no
  data, named by class, as ``predict --probabilities``). The analysis keeps only the class map and
  the confidence, so this runs the model again on the analysis' pixels with the run's own policy
  (same tiles, same decision, same precision).
- :func:`analysis_provenance` / :func:`provenance_tags`: the provenance, also for the sample points
  and polygons of the Accuracy & area page.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from app import services
from app.state import Analysis, AppState
from core.classes import ClassScheme, scheme_of
from core.config import data_dir
from core.errors import LulcError
from core.io.raster import scheme_classes
from core.products.package import probability_raster, write_map_package, zip_bytes
from core.products.provenance import Provenance, metadata_fields, run_provenance

__all__ = ["export_stem", "analysis_scheme", "earth_engine_request", "analysis_provenance", "provenance_tags", "map_files",
           "class_map_files", "zip_bytes", "MAP_ZIP_FILES", "probabilities_tif"]

_UNSAFE = re.compile(r"[^0-9A-Za-z_.-]+")


def export_stem(a: Analysis) -> str:
    """File stem of an analysis' downloads: ``<scene or file stem>_lulc`` in letters, digits and ``_-.``."""
    name = a.scene_id
    if a.source == "upload":
        name = Path(name).stem or "upload"
    return (_UNSAFE.sub("_", name).strip("_.") or "map") + "_lulc"


def analysis_scheme(a: Analysis) -> ClassScheme:
    """The class scheme of the analysis' model (its card's)."""
    return scheme_of(services.get_bundle(a.bundle_path).card)


def earth_engine_request(a: Analysis, state: AppState | None = None) -> dict[str, str]:
    """What an Earth Engine analysis fetched: collection, first and last date and, when known, the cloud threshold.

    Collection and dates are read from the fetched image (``core.sources.earth_engine.download``
    records them). The analysis does not record the Cloud Score+ threshold; it is taken from the
    session (``state.ee_cloud``) only while the session's dates are still the fetched ones, else left out.

    Returns:
        ``{"collection", "start", "end"[, "cloud_threshold"]}``; empty for other sources.
    """
    if a.source != "earth_engine":
        return {}
    meta = dict(a.image.meta or {})
    out = {k: str(meta[k]) for k in ("collection", "start", "end") if meta.get(k)}
    if state is not None:
        out.setdefault("start", state.ee_start)
        out.setdefault("end", state.ee_end)
        if (state.ee_start, state.ee_end) == (out["start"], out["end"]):
            out["cloud_threshold"] = str(state.ee_cloud)
    return out


def _policy(a: Analysis):
    policy = services.run_policy(a)
    if policy is None:  # an analysis made before the run policy was recorded: the policy the app plans for it
        from core.inference.policy import plan_run

        bundle = services.get_bundle(a.bundle_path)
        policy = plan_run(bundle.card, a.image.height, a.image.width, decision=services.input_decision(a),
                          precision=bundle.precision)
    return policy


def analysis_provenance(a: Analysis, state: AppState | None = None) -> Provenance:
    """The provenance of an analysis, with the fields ``predict`` writes.

    Args:
        a: The analysis (Explore's last run).
        state: The session, for the Earth Engine cloud threshold (:func:`earth_engine_request`).

    Returns:
        The :class:`core.products.provenance.Provenance`: for a sample scene its ``image_s2.tif`` and
        ``scene.json`` give date, level and baseline; for an upload its tags do; for Earth Engine the
        request does (the Item's dates are the composite's range).

    Raises:
        FileNotFoundError: The bundle has no ``model.safetensors``.
    """
    bundle = services.get_bundle(a.bundle_path)
    kw: dict[str, object] = {"input_name": a.scene_id}
    if a.source == "samples":
        from core.sources.samples import get_scene

        try:
            kw["input_path"] = get_scene(a.scene_id, data_dir()).path / "image_s2.tif"
        except LulcError:  # the pack moved since the run: no acquisition metadata, the rest stands
            kw["input_meta"] = {}
    elif a.source == "upload":
        kw["input_meta"] = metadata_fields(dict(a.image.meta.get("tags") or {}))
    else:
        kw["input_meta"] = {}
        kw["earth_engine"] = earth_engine_request(a, state)
    return run_provenance(a.bundle_path, bundle.card.name, _policy(a), **kw)


def provenance_tags(a: Analysis, state: AppState | None = None) -> dict[str, str]:
    """:func:`analysis_provenance` as tags (``LULC_*`` -> text), for rasters, points and polygons."""
    return analysis_provenance(a, state).to_tags()


MAP_ZIP_FILES = (".tif", ".tif.aux.xml", ".qml", "_confidence.tif", "_confidence.qml", ".json")
"""What the map zip holds, after the stem: ``predict --output <stem>.tif --confidence <stem>_confidence.tif``'s files."""


def map_files(a: Analysis, state: AppState | None = None) -> dict[str, bytes]:
    """The analysis' class map with its sidecars and confidence, as files ``predict`` writes (name -> bytes).

    ``<stem>.tif`` (uint8 class ids, colour table, provenance tags), ``<stem>.tif.aux.xml`` (the
    raster attribute table: value, pixel count, class name, RGBA), ``<stem>.qml`` (QGIS paletted
    style), ``<stem>_confidence.tif`` (float32), ``<stem>_confidence.qml`` (colour ramp) and
    ``<stem>.json`` (STAC Item of them all, with checksums and the provenance).

    Args:
        a: The analysis.
        state: The session (Earth Engine cloud threshold).

    Raises:
        FileNotFoundError: The bundle has no ``model.safetensors``.
    """
    return class_map_files(export_stem(a), a.prediction.classes, scheme_classes(analysis_scheme(a)), analysis_provenance(a, state),
                           confidence=a.prediction.confidence)


def class_map_files(stem: str, classes, class_table: Mapping[int, tuple[str, str]], provenance: Provenance | None, *,
                    confidence=None) -> dict[str, bytes]:
    """Any class map held in memory as ``predict``'s files (name -> bytes; :func:`core.products.package.write_map_package`).

    For the Export page (:func:`map_files`) and any other page offering a class map (the Correct
    page's corrected map: its classes and colours, and the provenance of the run it corrects).

    Args:
        stem: File stem.
        classes: uint8 GeoRaster (1, H, W) of class ids, 255 = no data.
        class_table: Class id -> (name, ``#rrggbb``).
        provenance: The run's provenance (:func:`analysis_provenance`), or ``None``.
        confidence: float32 GeoRaster (1, H, W), or ``None``.

    Returns:
        ``<stem>.tif``, ``<stem>.tif.aux.xml``, ``<stem>.qml`` (and ``<stem>_confidence.tif``/``.qml``),
        ``<stem>.json``, in that order; zip them with :func:`zip_bytes`.
    """
    classes = replace(classes, band_names=("class",))
    with tempfile.TemporaryDirectory(prefix="lulc-export-") as tmp:
        paths = write_map_package(tmp, stem, classes, class_table, provenance, confidence=confidence)
        return {p.name: p.read_bytes() for p in paths}


def probabilities_tif(a: Analysis, state: AppState | None = None, progress: Callable[[int, int], None] | None = None) -> bytes:
    """The per-class probabilities of the analysis as ``predict --probabilities`` writes them (COG bytes).

    K uint8 bands, band k = the probability of the model's k-th class x 250 (rounded), 255 = no data
    (no input, or outside the AOI), each band described by its class's name; the provenance tags and
    ``LULC_PROBABILITY_SCALE``/``_DECODE``. The model runs again on the analysis' pixels with the
    run's policy and AOI mask (the analysis keeps no probabilities), so the winning band of every
    pixel is the class of the map.

    Args:
        a: The analysis.
        state: The session (Earth Engine cloud threshold).
        progress: Called with (passes done, passes total).

    Raises:
        FileNotFoundError: The bundle has no ``model.safetensors``.
    """
    from core.inference.streaming import predict_raster
    from core.inputs.decision import prepare_raster
    from core.io.raster import cog_bytes
    from core.products.package import probability_tags

    policy = _policy(a)
    bundle = services.get_bundle(a.bundle_path, policy.precision)
    model_input = prepare_raster(a.image, policy.decision)
    pred = predict_raster(model_input, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes,
                          class_ids=bundle.class_ids, mask=a.aoi_mask, progress=progress, probabilities=True)
    scheme = analysis_scheme(a)
    names = dict(zip(scheme.ids, scheme.names, strict=True))
    raster = probability_raster(pred.probabilities, a.image.crs, a.image.transform,
                                [names.get(int(i), f"class_{int(i)}") for i in bundle.class_ids])
    return cog_bytes(raster, tags={**provenance_tags(a, state), **probability_tags()})

