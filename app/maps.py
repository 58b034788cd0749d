"""The folium map: scene footprints, imagery and results as image overlays, a drawing tool.

Leaflet's JavaScript and CSS are served by the app itself (``app/static/vendor``, Streamlit static
serving) instead of folium's CDN defaults, so the map renders with no internet. Without internet
there are no basemap tiles either, so the imagery and the results are drawn as image overlays;
online, street and satellite basemaps are offered.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import folium
import numpy as np
from folium.plugins import Draw

from core.products.render import to_png, to_webp, warp_for_web
from core.sources.samples import SampleScene

STATIC = "/app/static/vendor"


class OfflineMap(folium.Map):
    """A folium Map whose Leaflet comes from the app, not a CDN."""

    default_js = [("leaflet", f"{STATIC}/leaflet/leaflet.js")]
    default_css = [("leaflet_css", f"{STATIC}/leaflet/leaflet.css")]


class OfflineDraw(Draw):
    """folium's Draw plugin with Leaflet.draw served by the app."""

    default_js = [("leaflet_draw_js", f"{STATIC}/leaflet-draw/leaflet.draw.js")]
    default_css = [("leaflet_draw_css", f"{STATIC}/leaflet-draw/leaflet.draw.css")]


BASEMAPS = {
    "OpenStreetMap": ("OpenStreetMap", None),
    "Satellite (Esri World Imagery)": (
        "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
        "Tiles © Esri — Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community",
    ),
}


def overlay_data_url(rgba: np.ndarray, imagery: bool = False) -> str:
    """A ``data:`` URL of an RGBA (H, W, 4) uint8 picture for a map overlay, encoded for speed.

    Args:
        rgba: The picture.
        imagery: True for a true-colour picture of the imagery: lossy WebP with its alpha
            (:func:`core.products.render.to_webp`, about 7x fewer bytes than PNG). False for class maps
            and other pictures whose colours are data: lossless PNG (zlib level 1), so every pixel keeps
            its class colour exactly.
    """
    if imagery:
        return "data:image/webp;base64," + base64.b64encode(to_webp(rgba)).decode()
    return "data:image/png;base64," + base64.b64encode(to_png(rgba, compress_level=1)).decode()


def build_map(
    scenes: Sequence[SampleScene],
    *,
    selected: str | None = None,
    overlays: Sequence[tuple] = (),
    aoi_geojson: dict | None = None,
    basemap: str | None = None,
    draw: bool = True,
    tile_layers: Sequence[folium.raster_layers.TileLayer] = (),
) -> folium.Map:
    """Build the map.

    Args:
        scenes: Sample scenes; georeferenced ones are drawn as footprints with their id.
        selected: Scene id to centre on (highlighted).
        overlays: (name, RGBA picture (H, W, 4) uint8, CRS, transform, opacity[, "imagery"]) drawn as image
            overlays; those marked ``"imagery"`` (true colour) are sent as lossy WebP, the others (class maps)
            as lossless PNG (:func:`overlay_data_url`).
        aoi_geojson: The current AOI (lon/lat) to outline.
        basemap: Key of :data:`BASEMAPS`, or ``None`` for no tiles (offline).
        draw: Add the rectangle/polygon drawing tool.
        tile_layers: Extra tile layers, e.g. Earth Engine layers from geemap
            (:meth:`core.sources.earth_engine.LiveEarthEngine.map_layers`); they need internet.

    Returns:
        The folium map.
    """
    geo = [s for s in scenes if s.bounds_lonlat]
    focus = next((s for s in geo if s.id == selected), geo[0] if geo else None)
    if focus is not None:
        w, s_, e, n = focus.bounds_lonlat
        center = ((s_ + n) / 2, (w + e) / 2)
    else:
        center = (50.0, 10.0)
    m = OfflineMap(location=center, zoom_start=12, tiles=None, control_scale=True)
    if basemap:
        tiles, attr = BASEMAPS[basemap]
        folium.TileLayer(tiles=tiles, attr=attr, name=basemap).add_to(m)
    for sc in geo:
        w, s_, e, n = sc.bounds_lonlat
        folium.Rectangle(
            bounds=[(s_, w), (n, e)], color="#ff7800" if sc.id == selected else "#3388ff", weight=3 if sc.id == selected else 1.5,
            fill=False, tooltip=f"{sc.id}: {sc.title}",
        ).add_to(m)
    placed = []
    for name, rgba, crs, transform, opacity, *kind in overlays:
        if crs is None:
            continue
        warped, (south, west, north, east) = warp_for_web(rgba, crs, transform)
        placed.append([(south, west), (north, east)])
        folium.raster_layers.ImageOverlay(image=overlay_data_url(warped, imagery=kind == ["imagery"]), bounds=[(south, west), (north, east)], opacity=opacity,
                                          name=name, interactive=False).add_to(m)
    for layer in tile_layers:
        layer.add_to(m)
    if aoi_geojson:
        folium.GeoJson(aoi_geojson, name="AOI", style_function=lambda _: {"color": "#e31a1c", "weight": 2, "fill": False}).add_to(m)
    if draw:
        OfflineDraw(export=False, draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                                                "rectangle": True, "polygon": True}, edit_options={"edit": False, "remove": True}).add_to(m)
    if placed and (selected is None or focus is None or focus.id != selected):
        m.fit_bounds(placed[0])  # an upload or Earth Engine result: show it, not a sample scene
    elif focus is not None:
        w, s_, e, n = focus.bounds_lonlat
        m.fit_bounds([(s_, w), (n, e)])
    if overlays or basemap or tile_layers:
        folium.LayerControl(collapsed=True).add_to(m)
    return m
