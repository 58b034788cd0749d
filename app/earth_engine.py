"""The Explore page's Earth Engine extras: geemap layers on the map and the dry run of a request.

Both work from the session's AOI, dates and cloud threshold and the chosen model's bands and
processing level, as :func:`app.services.run_earth_engine` does. ``ee`` and ``geemap`` are imported
by :mod:`core.sources.earth_engine` only, and only when layers are asked for.
"""

from __future__ import annotations

import streamlit as st

from app import services
from app.state import AppState
from core.errors import AOIError
from core.sources.earth_engine import model_level

__all__ = ["aoi_bounds", "map_layers", "dry_run"]


def aoi_bounds(state: AppState) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of the session's AOI.

    Raises:
        AOIError: No AOI, or "Whole scene" (Earth Engine needs an AOI).
    """
    if state.aoi_mode == "Whole scene":
        raise AOIError("Earth Engine needs an AOI: draw one, paste GeoJSON or type a bounding box")
    return tuple(float(v) for v in services._aoi_geometry(state).bounds)


def map_layers(state: AppState) -> list:
    """Folium tile layers from geemap (Sentinel-2 true colour, Dynamic World, WorldCover) of the AOI and dates.

    Kept in the session per (AOI, dates, level, threshold): each costs one ``getMapId`` request.

    Raises:
        AOIError: No AOI.
        EarthEngineError: Credentials, quota or permission problems.
    """
    bounds = aoi_bounds(state)
    level = model_level(services.read_card(state.bundle_path))
    key = ("ee_layers", bounds, state.ee_start, state.ee_end, level, state.ee_cloud)
    cache = st.session_state.setdefault("_ee_layer_cache", {})
    if key not in cache:
        cache.clear()
        cache[key] = services.earth_engine_adapter().map_layers(bounds, state.ee_start, state.ee_end, level=level,
                                                                cloud_threshold=state.ee_cloud)
    return cache[key]


def dry_run(state: AppState) -> dict:
    """The requests *Run model* would send to Earth Engine for the AOI, without credentials.

    Returns:
        JSON-ready dict: the grid, the total number of requests and uncompressed bytes, and one
        entry per product (collection, inclusive dates and ``filterDate``, filters, cloud mask
        and threshold, bands, reducer, tiles, first tile's ``computePixels`` body) from
        :func:`core.sources.earth_engine.describe_request`.

    Raises:
        AOIError: No AOI, or an AOI above the size limit.
        EarthEngineError: Bad dates.
    """
    from rasterio.crs import CRS

    from core.io.raster import grid_area_km2
    from core.sources.earth_engine import (
        describe_request,
        dynamic_world_spec,
        sentinel1_spec,
        sentinel2_spec,
        utm_grid,
        worldcover_spec,
    )

    bounds = aoi_bounds(state)
    card = services.read_card(state.bundle_path)
    level = model_level(card)
    grid = utm_grid(bounds)
    km2 = grid_area_km2(CRS.from_user_input(grid.crs), grid.affine, grid.height, grid.width)
    if km2 > services.MAX_AOI_KM2:
        raise AOIError(f"the AOI's bounding box covers {km2:.0f} km^2, above the {services.MAX_AOI_KM2:.0f} km^2 limit")
    bands = list(card.bands)
    optical = [b for b in bands if b not in ("VV", "VH")]
    specs = []
    if optical:
        specs.append(sentinel2_spec(state.ee_start, state.ee_end, optical, level=level, cloud_threshold=state.ee_cloud))
    if len(optical) < len(bands):
        specs.append(sentinel1_spec(state.ee_start, state.ee_end))
    specs += [dynamic_world_spec(state.ee_start, state.ee_end), worldcover_spec()]
    products = [describe_request(s, grid) for s in specs]
    return {"aoi_lonlat": list(bounds), "level": level, "model_bands": bands,
            "grid": {"crs": grid.crs, "width": grid.width, "height": grid.height, "gsd_m": grid.transform[0]},
            "requests": sum(p["requests"] for p in products), "bytes": sum(p["bytes"] for p in products), "products": products}
