"""Provenance of a map: which model made it, how it ran, and what the input was.

One :class:`Provenance` per run is written three ways, with the same fields:

- as GeoTIFF tags (default domain) of every output (:meth:`Provenance.to_tags`, ``LULC_*`` keys;
  ``gdalinfo`` lists them under "Metadata"), next to the input decision's ``LULC_INPUT_*`` tags
  (:meth:`core.inputs.decision.InputDecision.to_tags`);
- as ``lulc:*`` properties of the output's STAC Item (:meth:`Provenance.to_properties`,
  :mod:`core.products.stac`);
- as columns of the polygon and point tables (:meth:`Provenance.to_tags` again: one value per key).

The bundle's identity is the SHA-256 of its ``model.safetensors`` (the weights; the card travels
in the Item's properties by name and class list), computed once per file and cached by size and
modification time (:func:`file_sha256`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["Provenance", "run_provenance", "file_sha256", "software_version", "input_metadata", "metadata_fields",
           "read_provenance_tags", "provenance_columns", "WEIGHTS_FILE"]

WEIGHTS_FILE = "model.safetensors"
"""The file of a bundle whose SHA-256 identifies the model (``LULC_BUNDLE_SHA256``)."""

_PACKAGE = "lulc-explorer"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file as 64 hex digits, read in 1 MiB chunks; cached by (path, size, mtime).

    Raises:
        FileNotFoundError: No such file.
    """
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: the cache key
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def software_version() -> str:
    """The project's version: the installed package's, else ``pyproject.toml``'s beside ``core/``, else ``"unknown"``."""
    try:
        return metadata.version(_PACKAGE)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


_DATE = re.compile(r"(20\d\d|19\d\d)-?(\d\d)-?(\d\d)")


def _first_date(text: str) -> str | None:
    m = _DATE.search(text)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return None


def input_metadata(path: str | Path) -> dict[str, str]:
    """What is known of an input's acquisition: date, processing level and baseline, from its tags or its ``scene.json``.

    Reads the GeoTIFF's tags and a ``scene.json`` in the input's folder as the sample pack writes
    it, then applies :func:`metadata_fields`.

    Args:
        path: The input GeoTIFF.

    Returns:
        A subset of ``{"date": "YYYY-MM-DD", "level": "L1C"|"L2A", "baseline": text}``; empty when
        nothing is stated (an unreadable file or sidecar gives nothing, never an error).
    """
    from core.inputs.evidence import read_file_metadata

    try:
        meta = read_file_metadata(path)
    except Exception:  # noqa: BLE001 - provenance is best effort; the prediction reads the file itself
        meta = {}
    info: object = None
    scene = Path(path).with_name("scene.json")
    if scene.is_file():
        try:
            info = json.loads(scene.read_text())
        except (OSError, ValueError):
            info = None
    return metadata_fields(meta, info if isinstance(info, Mapping) else None)


def metadata_fields(tags: Mapping[str, object], scene_info: Mapping[str, object] | None = None) -> dict[str, str]:
    """Date, processing level and baseline of an input from its tags and, where there is one, its ``scene.json``.

    Sources, first found wins per field: the tags (keys naming a sensing/acquisition date,
    ``PROCESSING_LEVEL``/``PRODUCT_TYPE``, ``PROCESSING_BASELINE``, a product id with ``_Nxxxx_``),
    then the sample pack's ``scene.json`` fields (``acquisition``, ``processing_level.s2``,
    ``processing_level.processing_baseline``). Used for files (:func:`input_metadata`) and for the
    app's uploads, whose tags are kept after the temporary file is gone.

    Args:
        tags: A GeoTIFF's tags (:func:`core.inputs.evidence.read_file_metadata`).
        scene_info: The parsed ``scene.json``, or ``None``.

    Returns:
        A subset of ``{"date", "level", "baseline"}`` (strings).
    """
    from core.inputs.evidence import level_from_metadata

    out: dict[str, str] = {}
    for key, value in tags.items():
        k = str(key).upper()
        if "date" not in out and not k.startswith("TIFFTAG") and any(w in k for w in ("SENSING", "ACQUI", "DATATAKE", "DATE")):
            d = _first_date(str(value))
            if d:
                out["date"] = d
        if "baseline" not in out and (k.endswith("PROCESSING_BASELINE") or k == "BASELINE"):
            out["baseline"] = str(value)
        m = re.search(r"_N(\d{4})_", str(value))
        if "baseline" not in out and m:
            out["baseline"] = f"{m.group(1)[:2]}.{m.group(1)[2:]}"
    level, _ = level_from_metadata(dict(tags))
    if level:
        out["level"] = level
    info = scene_info or {}
    acq = info.get("acquisition")
    if "date" not in out and isinstance(acq, Mapping):
        d = next((x for x in (_first_date(str(v)) for v in acq.values()) if x), None)
        if d:
            out["date"] = d
    lvl = info.get("processing_level")
    if isinstance(lvl, Mapping):
        if "level" not in out and str(lvl.get("s2", "")).upper() in ("L1C", "L2A"):
            out["level"] = str(lvl["s2"]).upper()
        if "baseline" not in out and lvl.get("processing_baseline"):
            out["baseline"] = str(lvl["processing_baseline"])
    return out


@dataclass(frozen=True)
class Provenance:
    """Who made a map and how.

    Attributes:
        bundle: The model bundle's name (its card's ``name``).
        bundle_sha256: SHA-256 (64 hex digits) of the bundle's ``model.safetensors``.
        software_version: This project's version (:func:`software_version`).
        tile: Tile side in pixels (0 for a full-frame pass).
        overlap: Overlap of neighbouring tiles in pixels.
        full_frame: One pass over the whole input.
        runtime: ``torch``, ``onnxruntime`` or ``openvino``.
        precision: ``fp32`` or ``bf16``.
        input_tags: The input decision's ``LULC_INPUT_*`` tags (offset, scale, level, band mapping).
        input_meta: The input's own metadata: ``date``, ``level``, ``baseline`` where known
            (:func:`input_metadata`).
        earth_engine: For Earth Engine inputs: ``collection``, ``start``, ``end`` and, when given,
            ``cloud_max`` (percent); else empty.
        created: When the map was made (UTC, ISO 8601, seconds).
        input_name: What the input was, as the user knows it: a file name or a sample scene id
            (``LULC_INPUT_NAME``; empty when unknown).
    """

    bundle: str
    bundle_sha256: str
    software_version: str
    tile: int
    overlap: int
    full_frame: bool
    runtime: str
    precision: str
    input_tags: Mapping[str, str] = field(default_factory=dict)
    input_meta: Mapping[str, str] = field(default_factory=dict)
    earth_engine: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    input_name: str = ""

    def to_tags(self) -> dict[str, str]:
        """GeoTIFF tags (default domain) of the provenance, all values strings.

        ``LULC_BUNDLE``, ``LULC_BUNDLE_SHA256``, ``LULC_SOFTWARE``/``_VERSION``, ``LULC_RUN_*`` (tile,
        overlap, full frame, runtime, precision), ``LULC_INPUT_*`` (the decision's, then
        ``LULC_INPUT_NAME``/``_DATE``/``_ACQ_LEVEL``/``_BASELINE`` where known), ``LULC_EE_*`` and ``LULC_CREATED``.
        """
        tags = {
            "LULC_BUNDLE": self.bundle,
            "LULC_BUNDLE_SHA256": self.bundle_sha256,
            "LULC_SOFTWARE": "LULC Explorer",
            "LULC_SOFTWARE_VERSION": self.software_version,
            "LULC_RUN_TILE": str(self.tile),
            "LULC_RUN_OVERLAP": str(self.overlap),
            "LULC_RUN_FULL_FRAME": "yes" if self.full_frame else "no",
            "LULC_RUN_RUNTIME": self.runtime,
            "LULC_RUN_PRECISION": self.precision,
            **{str(k): str(v) for k, v in self.input_tags.items()},
        }
        if self.input_name:
            tags["LULC_INPUT_NAME"] = self.input_name
        for key, name in (("date", "DATE"), ("level", "ACQ_LEVEL"), ("baseline", "BASELINE")):
            if self.input_meta.get(key):
                tags[f"LULC_INPUT_{name}"] = str(self.input_meta[key])
        for key, value in self.earth_engine.items():
            tags[f"LULC_EE_{key.upper()}"] = str(value)
        if self.created:
            tags["LULC_CREATED"] = self.created
        return tags

    def to_properties(self) -> dict[str, object]:
        """``lulc:*`` properties of a STAC Item (the same fields as :meth:`to_tags`, typed)."""
        props: dict[str, object] = {
            "lulc:bundle": self.bundle,
            "lulc:bundle_sha256": self.bundle_sha256,
            "lulc:software_version": self.software_version,
            "lulc:run": {"tile": self.tile, "overlap": self.overlap, "full_frame": self.full_frame,
                         "runtime": self.runtime, "precision": self.precision},
            "lulc:input_decision": {str(k): str(v) for k, v in self.input_tags.items()},
        }
        if self.input_meta or self.input_name:
            props["lulc:input"] = {**({"name": self.input_name} if self.input_name else {}), **dict(self.input_meta)}
        if self.earth_engine:
            props["lulc:earth_engine"] = dict(self.earth_engine)
        return props


def run_provenance(
    bundle_dir: str | Path,
    bundle_name: str,
    policy,
    *,
    input_path: str | Path | None = None,
    earth_engine: Mapping[str, object] | None = None,
    now: dt.datetime | None = None,
    input_meta: Mapping[str, str] | None = None,
    input_name: str | None = None,
) -> Provenance:
    """The provenance of one prediction run.

    Args:
        bundle_dir: The bundle folder (its ``model.safetensors`` is hashed, :func:`file_sha256`).
        bundle_name: The card's name.
        policy: The :class:`core.inference.policy.RunPolicy` as it ran (runtime resolved).
        input_path: The input GeoTIFF, for :func:`input_metadata` (``None``: nothing known).
        earth_engine: For Earth Engine inputs: ``collection``, ``start``, ``end``, optional
            ``cloud_max``; ``None`` values are left out.
        now: Creation time (default: now, UTC).
        input_meta: The input's date/level/baseline when there is no file to read them from (the
            app's uploads and Earth Engine composites; :func:`metadata_fields`); overrides ``input_path``'s.
        input_name: How to name the input (default: ``input_path``'s file name).

    Returns:
        The :class:`Provenance`.

    Raises:
        FileNotFoundError: The bundle has no ``model.safetensors``.
    """
    weights = Path(bundle_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"the bundle {bundle_dir} has no {WEIGHTS_FILE}; its provenance cannot be recorded")
    decision = getattr(policy, "decision", None)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    return Provenance(
        bundle=bundle_name,
        bundle_sha256=file_sha256(weights),
        software_version=software_version(),
        tile=0 if policy.full_frame else int(policy.tile),
        overlap=0 if policy.full_frame else int(policy.overlap),
        full_frame=bool(policy.full_frame),
        runtime=str(policy.runtime),
        precision=str(policy.precision),
        input_tags=decision.to_tags() if decision is not None else {},
        input_meta=dict(input_meta) if input_meta is not None else (input_metadata(input_path) if input_path is not None else {}),
        earth_engine={k: str(v) for k, v in (earth_engine or {}).items() if v is not None},
        created=created.isoformat().replace("+00:00", "Z"),
        input_name=input_name if input_name is not None else (Path(input_path).name if input_path is not None else ""),
    )


_NOT_PROVENANCE = ("LULC_PROBABILITY_",)  # how to decode a probability file, not who made it


def read_provenance_tags(path: str | Path) -> dict[str, str]:
    """The provenance tags (``LULC_*``, :meth:`Provenance.to_tags`) of a GeoTIFF written by this project.

    Used to carry a class map's provenance into what is made from it (``trainer polygons``).

    Args:
        path: A GeoTIFF.

    Returns:
        Tag -> value; empty for a file without them (a map made elsewhere).

    Raises:
        rasterio.errors.RasterioIOError: The file cannot be opened.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            tags = ds.tags()
    return {k: str(v) for k, v in tags.items() if k.startswith("LULC_") and not k.startswith(_NOT_PROVENANCE)}


def provenance_columns(tags: Mapping[str, str]) -> dict[str, str]:
    """Provenance tags as attribute columns of a point or polygon table: ``LULC_BUNDLE_SHA256`` -> ``lulc_bundle_sha256``.

    Args:
        tags: :meth:`Provenance.to_tags` or :func:`read_provenance_tags`.

    Returns:
        Column name (lower case) -> value, in the tags' order.
    """
    return {str(k).lower(): str(v) for k, v in tags.items()}
