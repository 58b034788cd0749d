"""The Earth Engine adapter: :class:`LiveEarthEngine` turns specs into ``ee`` expressions and pixels.

This is the only module that imports ``ee`` (and ``geemap``), and it does so lazily inside
:class:`LiveEarthEngine`: nothing is initialised at import time, so the app and the tests run
without credentials. Tests substitute a fake at the :class:`core.sources.earth_engine.fetch.EarthEngineAdapter`
boundary (recorded responses, transient errors, quota errors), or build the real expressions with
earthengine-api's offline harness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from core.sources.earth_engine.config import (
    CredentialsError,
    EarthEngineConfig,
    EarthEngineError,
    TransientError,
    classify_exception,
)
from core.sources.earth_engine.fetch import export_params, pixel_request
from core.sources.earth_engine.specs import (
    CLOUD_SCORE_PLUS,
    FLOAT_SENTINEL,
    S2_CLOUDLESS,
    CollectionSpec,
    PixelGrid,
    dynamic_world_spec,
    exclusive_end,
    fill_value,
    sentinel2_spec,
    utm_grid,
    worldcover_spec,
)

__all__ = ["LiveEarthEngine"]


def _ee():
    import ee  # noqa: PLC0415 - lazy on purpose: importing core must not load ee

    return ee


@dataclass
class LiveEarthEngine:
    """The real adapter: builds ``ee`` expressions from specs and calls ``ee.data.computePixels``.

    Earth Engine is initialised on first use, not on construction, so an instance can be built
    offline; without credentials the first request raises :class:`CredentialsError`. The
    expression builders (:meth:`collection`, :meth:`image`, :meth:`request_image`) need an
    initialised ``ee`` but no network; the tests build them with earthengine-api's offline harness.
    """

    config: EarthEngineConfig = field(default_factory=EarthEngineConfig.from_env)
    _ready: bool = False

    def credentials(self):
        """The google-auth credentials of the configured credentials file, or ``None`` for ``earthengine authenticate``'s.

        A service-account key gives ``ee.ServiceAccountCredentials``; any other file
        (application-default user credentials, workload identity) is loaded with
        ``google.auth.load_credentials_from_file`` and Earth Engine's OAuth scopes.

        Raises:
            CredentialsError: The file is missing, not JSON, or of an unknown type.
        """
        path = self.config.credentials_file()
        if path is None:
            return None
        info, problem = self.config._file_info()
        if problem:
            raise CredentialsError(f"Earth Engine is not configured: {problem}")
        ee = _ee()
        if info.get("type") == "service_account":
            return ee.ServiceAccountCredentials(info["client_email"], key_data=json.dumps(info))
        import google.auth  # noqa: PLC0415 - comes with earthengine-api

        creds, _ = google.auth.load_credentials_from_file(str(path), scopes=ee.oauth.SCOPES)
        return creds

    def initialize(self) -> None:
        """Authenticate and initialise Earth Engine (once).

        Raises:
            CredentialsError: Missing project or credentials, or the server refused them.
        """
        if self._ready:
            return
        problems = self.config.problems()
        if problems:
            raise CredentialsError("Earth Engine is not configured: " + "; ".join(problems))
        creds = self.credentials()
        ee = _ee()
        project = self.config.effective_project
        try:
            if creds is not None:
                ee.Initialize(creds, project=project)
            else:
                ee.Initialize(project=project)
        except Exception as exc:  # ee raises EEException and google-auth errors
            raise CredentialsError(f"Earth Engine refused the {self.config.credentials_source} for project {project}: {exc}") from None
        self._ready = True

    def collection(self, spec: CollectionSpec, grid: PixelGrid):
        """The ``ee.ImageCollection`` of a spec: date, bounds and metadata filters, cloud mask, band selection.

        The bounds filter is the grid's footprint in its own CRS; dates are ``filterDate(start,
        end + 1 day)`` (``spec.end`` is inclusive). Cloud Score+ and s2cloudless are linked per
        scene by ``system:index`` (``ImageCollection.linkCollection``) and mask pixels with
        ``cs_cdf < threshold`` or ``probability >= threshold``.
        """
        ee = _ee()
        rect = ee.Geometry.Rectangle(list(grid.footprint()), proj=grid.crs, geodesic=False)
        col = ee.ImageCollection(spec.collection).filterBounds(rect)
        if spec.start is not None:
            col = col.filterDate(spec.start, exclusive_end(spec.end))
        for prop, op, value in spec.filters:
            f_ = {"lt": ee.Filter.lt, "lte": ee.Filter.lte, "eq": ee.Filter.eq, "contains": ee.Filter.listContains}[op]
            col = col.filter(f_(prop, value))
        thr = spec.cloud_threshold
        if spec.cloud_mask == "cloud_score_plus":
            col = col.linkCollection(ee.ImageCollection(CLOUD_SCORE_PLUS), ["cs_cdf"]).map(
                lambda img: img.updateMask(img.select("cs_cdf").gte(thr)))
        elif spec.cloud_mask == "s2cloudless":
            col = col.linkCollection(ee.ImageCollection(S2_CLOUDLESS), ["probability"]).map(
                lambda img: img.updateMask(img.select("probability").lt(thr)))
        col = col.select(list(spec.bands))
        if spec.resampling == "bilinear":
            col = col.map(lambda img: img.resample("bilinear"))
        return col

    def image(self, spec: CollectionSpec, region: PixelGrid):
        """The composite ``ee.Image`` of a spec (masked where no clear pixel), reduced with ``spec.reducer``."""
        col = self.collection(spec, region)
        return {"median": col.median, "mode": col.mode, "first": col.mosaic}[spec.reducer]()

    def request_image(self, spec: CollectionSpec, grid: PixelGrid):
        """The image sent for pixels and exports: the composite unmasked with :func:`fill_value`, cast to ``spec.dtype``."""
        img = self.image(spec, grid).unmask(fill_value(spec))
        cast = {"uint8": img.toUint8, "uint16": img.toUint16, "int16": img.toInt16, "float32": img.toFloat}.get(spec.dtype)
        return cast() if cast else img

    def count_images(self, spec: CollectionSpec, grid: PixelGrid) -> int:
        """Images left after the filters (one ``computeValue`` request)."""
        self.initialize()
        ee = _ee()
        try:
            return int(ee.data.computeValue(self.collection(spec, grid).size()))
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        """Fetch one tile with ``ee.data.computePixels`` (NUMPY_NDARRAY), classify failures."""
        self.initialize()
        ee = _ee()
        try:
            arr = ee.data.computePixels({"expression": self.request_image(spec, grid), **pixel_request(spec, grid)})
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:  # the HTTP client's network errors
            raise TransientError(f"Earth Engine request failed: {exc}") from None
        out = np.stack([np.asarray(arr[b]) for b in spec.bands]).astype(spec.dtype)
        if np.issubdtype(out.dtype, np.floating):
            out[~np.isfinite(out) | (out == FLOAT_SENTINEL)] = np.nan
        return out

    def export_task(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str):
        """The (unstarted) ``ee.batch.Task`` of a GeoTIFF export; parameters from :func:`export_params`."""
        ee = _ee()
        params = {"image": self.request_image(spec, grid), **export_params(spec, grid, name)}
        if kind == "gcs":
            return ee.batch.Export.image.toCloudStorage(bucket=destination, **params)
        if kind == "drive":
            return ee.batch.Export.image.toDrive(folder=destination, **params)
        raise EarthEngineError(f"batch export kind must be gcs or drive, got {kind!r}")

    def export(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> str:
        """Start a batch export of a GeoTIFF named ``name`` on ``grid``, masked pixels declared nodata.

        ``kind="gcs"`` uses ``Export.image.toCloudStorage`` (``destination`` = bucket), ``"drive"``
        uses ``Export.image.toDrive`` (``destination`` = folder).

        Returns:
            The Earth Engine task id (follow it with ``earthengine task list``).

        Raises:
            EarthEngineError: Classified as for pixel requests (transient ones may be resubmitted).
        """
        self.initialize()
        ee = _ee()
        task = self.export_task(spec, grid, name, kind, destination)
        try:
            task.start()
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None
        return str(task.id)

    def map_layers(self, bounds_lonlat: tuple[float, float, float, float], start: str, end: str, *, level: str = "L1C",
                   cloud_threshold: float | None = None) -> list:
        """Folium tile layers of the AOI, drawn by Earth Engine through geemap (``EEFoliumTileLayer``).

        The Sentinel-2 median composite in true colour (B4, B3, B2, 0-3000 reflectance x 1e4),
        Dynamic World (mode) and ESA WorldCover, each in its class colours (:mod:`core.classes`).
        Nothing is downloaded: each layer costs one ``getMapId`` request and the browser fetches
        the tiles.

        Returns:
            ``folium.raster_layers.TileLayer`` subclasses, ready for ``add_to(map)``.

        Raises:
            EarthEngineError: As for pixel requests (credentials, quota, permission, network).
        """
        self.initialize()
        ee = _ee()
        try:
            return self._map_layers(bounds_lonlat, start, end, level, cloud_threshold)
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None

    def _map_layers(self, bounds_lonlat, start, end, level, cloud_threshold) -> list:
        from geemap.ee_tile_layers import EEFoliumTileLayer  # noqa: PLC0415 - lazy: geemap pulls in ipyleaflet

        from core.classes import get_scheme

        grid = utm_grid(bounds_lonlat, 10.0)
        s2 = self.image(sentinel2_spec(start, end, ["B4", "B3", "B2"], level=level, cloud_threshold=cloud_threshold), grid)
        layers = [EEFoliumTileLayer(s2, {"bands": ["B4", "B3", "B2"], "min": 0, "max": 3000},
                                    name=f"Earth Engine: Sentinel-2 {level} true colour {start}..{end}")]
        for spec, scheme_name, title in ((dynamic_world_spec(start, end), "dynamic_world", "Dynamic World (mode)"),
                                         (worldcover_spec(), "esa_worldcover", "ESA WorldCover 2021")):
            scheme = get_scheme(scheme_name)
            img = self.image(spec, grid).remap(scheme.ids, list(range(scheme.num_classes)))
            layers.append(EEFoliumTileLayer(img, {"min": 0, "max": scheme.num_classes - 1,
                                                  "palette": [c.lstrip("#") for c in scheme.colors]},
                                            name=f"Earth Engine: {title}", shown=False, opacity=0.7))
        return layers


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a failed connection (retried as transient)."""
    out: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import httplib2  # noqa: PLC0415

        out.append(httplib2.HttpLib2Error)
    except ImportError:  # pragma: no cover
        pass
    try:
        from google.auth.exceptions import TransportError  # noqa: PLC0415

        out.append(TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)
