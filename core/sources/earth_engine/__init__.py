"""Google Earth Engine source: Sentinel-2/Sentinel-1 composites and reference labels for any AOI.

Nothing here imports ``ee`` at import time: the app and the tests run without credentials.

- ``config``: credentials and project (:class:`EarthEngineConfig`), the error family and
  :func:`classify_error` (server failures -> errors a user can act on).
- ``specs``: requests as plain data: :class:`CollectionSpec` builders (:func:`sentinel2_spec`,
  :func:`sentinel1_spec`, :func:`dynamic_world_spec`, :func:`worldcover_spec`), the pixel grid
  (:class:`PixelGrid`, :func:`utm_grid`), and how a model asks for Sentinel-2 (:func:`model_level`,
  :func:`input_decision`).
- ``fetch``: :func:`download` (tiled under the request limits, parallel, retried, cached) through the
  :class:`EarthEngineAdapter` boundary, :func:`fetch_imagery`, and the dry runs :func:`describe_request`
  and :func:`describe_export`.
- ``client``: :class:`LiveEarthEngine`, the adapter; the only module that imports ``ee`` and ``geemap``,
  lazily, on first use.

The names below are re-exported so that ``from core.sources.earth_engine import X`` works for each.
"""

from core.sources.earth_engine.client import LiveEarthEngine
from core.sources.earth_engine.config import (
    CredentialsError,
    EarthEngineConfig,
    EarthEngineError,
    EmptyCollectionError,
    PermissionDeniedError,
    QuotaError,
    TransientError,
    classify_error,
    classify_exception,
)
from core.sources.earth_engine.fetch import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_SIDE,
    EarthEngineAdapter,
    describe_export,
    describe_request,
    download,
    empty_collection_message,
    export_params,
    fetch_imagery,
    pixel_request,
    split_grid,
)
from core.sources.earth_engine.specs import (
    CLOUD_SCORE_PLUS,
    DYNAMIC_WORLD,
    FLOAT_SENTINEL,
    S1_GRD,
    S2_CLOUDLESS,
    S2_L1C,
    S2_L2A,
    WORLDCOVER,
    CollectionSpec,
    PixelGrid,
    check_dates,
    dynamic_world_spec,
    exclusive_end,
    fill_value,
    input_decision,
    model_level,
    sentinel1_spec,
    sentinel2_spec,
    utm_grid,
    worldcover_spec,
)

__all__ = [
    "EarthEngineError", "CredentialsError", "QuotaError", "PermissionDeniedError", "TransientError", "EmptyCollectionError",
    "EarthEngineConfig", "CollectionSpec", "PixelGrid", "EarthEngineAdapter", "LiveEarthEngine",
    "sentinel2_spec", "sentinel1_spec", "dynamic_world_spec", "worldcover_spec", "utm_grid", "split_grid", "download",
    "fetch_imagery", "classify_error", "classify_exception", "exclusive_end", "fill_value", "export_params",
    "describe_request", "describe_export", "empty_collection_message", "model_level", "input_decision", "check_dates",
    "pixel_request", "MAX_REQUEST_BYTES", "MAX_REQUEST_SIDE", "FLOAT_SENTINEL",
    "S2_L1C", "S2_L2A", "CLOUD_SCORE_PLUS", "S2_CLOUDLESS", "S1_GRD", "DYNAMIC_WORLD", "WORLDCOVER",
]
