"""The embedded sample pack of real Sentinel-2/Sentinel-1 scenes (``<data dir>/samples``).

Each scene folder holds ``image_s2.tif`` (13 bands L1C or 12 bands L2A without B10, uint16
reflectance x 1e4, nodata 0; the level per scene comes from ``scene.json``),
optionally ``image_s1.tif`` (VV, VH float32 dB, nodata NaN), label rasters and ``scene.json``;
all files of a scene share one grid. Files are read in place (see :func:`core.config.data_dir`).

Scenes without a georeference (the DFC2020 patches) get ``crs=None`` and a local metric transform
built from the nominal 10 m pixel size in ``scene.json``, so that areas can still be computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from affine import Affine
from rasterio.windows import Window

from core.classes import ClassScheme, get_scheme
from core.config import data_dir
from core.errors import SceneNotFoundError
from core.inputs.bands import SENTINEL1, check_band_names
from core.inputs.decision import InputDecision, ModelInputs, decide, prepare_raster
from core.io.guards import check_same_grid
from core.io.raster import GeoRaster, raster_info, read_raster, stack_bands

__all__ = ["LABEL_PRODUCTS", "SampleScene", "list_scenes", "get_scene", "scene_grid", "load_image", "load_preview", "load_labels", "check_label_grid",
           "scene_decision", "scene_level_of_file", "load_model_input"]

LABEL_PRODUCTS: dict[str, tuple[str, str]] = {
    "dw": ("labels_dw.tif", "dynamic_world"),
    "osm": ("labels_osm.tif", "osm"),
    "dfc": ("labels_dfc.tif", "dfc2020"),
    "water": ("labels_water.tif", "water"),
    "lulc": ("labels_lulc.tif", "slovenia_lulc"),
}
"""Label product key -> (file name, class scheme name)."""

S1_BANDS = tuple(b.name for b in SENTINEL1)


@dataclass(frozen=True)
class SampleScene:
    """Metadata of one sample scene (no pixels).

    Attributes:
        id: Folder name, e.g. ``"brandenburg-2017-02-16"``.
        path: Folder path.
        title: Description from ``scene.json``.
        height: Rows H.
        width: Columns W.
        georeferenced: False for scenes without CRS (cannot be placed on a map).
        bounds_lonlat: (west, south, east, north) in degrees, or ``None``.
        s2_bands: Band names of ``image_s2.tif``.
        has_s1: Whether ``image_s1.tif`` exists.
        labels: Label product keys present (subset of :data:`LABEL_PRODUCTS`).
        pixel_size_m: Nominal pixel size in metres (for rasters without a metric CRS).
        date: Sentinel-2 acquisition as written in ``scene.json``.
        info: The parsed ``scene.json``.
        level: Sentinel-2 processing level from ``scene.json``: ``"L1C"``, ``"L2A"`` or ``"unknown"``.
    """

    id: str
    path: Path
    title: str
    height: int
    width: int
    georeferenced: bool
    bounds_lonlat: tuple[float, float, float, float] | None
    s2_bands: tuple[str, ...]
    has_s1: bool
    labels: tuple[str, ...]
    pixel_size_m: float
    date: str
    info: dict = field(repr=False, compare=False, hash=False)
    level: str = "unknown"

    @property
    def bands(self) -> tuple[str, ...]:
        """All band names available in this scene (S2 then S1)."""
        return self.s2_bands + (S1_BANDS if self.has_s1 else ())

    def label_scheme(self, product: str) -> ClassScheme:
        """Class scheme of a label product of this scene."""
        return get_scheme(LABEL_PRODUCTS[_check_product(self, product)][1])


def _samples_dir(root: Path | None) -> Path:
    base = Path(root) if root is not None else data_dir()
    samples = base / "samples" if (base / "samples").is_dir() else base
    if not samples.is_dir():
        raise SceneNotFoundError(
            f"no sample pack at {samples}; set LULC_DATA_DIR to the folder holding samples/ "
            "(default ../shared/data beside the repository)"
        )
    return samples


@lru_cache(maxsize=32)
def _parse_scene(folder: Path) -> SampleScene:
    meta_path = folder / "scene.json"
    if not meta_path.exists() or not (folder / "image_s2.tif").exists():
        raise SceneNotFoundError(f"{folder} is not a sample scene (needs scene.json and image_s2.tif)")
    info = json.loads(meta_path.read_text())
    s2 = info.get("files", {}).get("image_s2.tif", {})
    px = info.get("pixel_size", {})
    georef = info.get("crs") is not None
    return SampleScene(
        id=info.get("id", folder.name),
        path=folder,
        title=info.get("title", folder.name),
        height=int(info["shape"]["height"]),
        width=int(info["shape"]["width"]),
        georeferenced=georef,
        bounds_lonlat=tuple(info["bounds_lonlat"]) if georef and info.get("bounds_lonlat") else None,
        s2_bands=tuple(s2.get("band_order") or (b["name"] for b in s2.get("bands", []))),
        has_s1=(folder / "image_s1.tif").exists(),
        labels=tuple(k for k, (f, _) in LABEL_PRODUCTS.items() if (folder / f).exists()),
        pixel_size_m=10.0 if not georef or "deg" in str(px.get("unit", "")) else float(px.get("x", 10.0)),
        date=str(info.get("acquisition", {}).get("s2", "unknown")),
        info=info,
        level=_level(info),
    )


def _level(info: dict) -> str:
    """``"L1C"``/``"L2A"``/``"unknown"`` from scene.json's ``processing_level.s2`` (``"L2A"``, ``"Level-1C ..."``)."""
    text = str((info.get("processing_level") or {}).get("s2", "")).upper().replace("LEVEL-", "L")
    return "L2A" if "L2A" in text else "L1C" if "L1C" in text else "unknown"


def scene_level_of_file(path: str | Path) -> tuple[str, str] | None:
    """(level, reason) for a file that is a sample scene's ``image_s2.tif`` (level from its scene.json).

    Returns ``None`` for any other file, or when scene.json names no level, so that the file's own
    metadata decides (:func:`core.inputs.decision.decide`).
    """
    p = Path(path)
    if p.name != "image_s2.tif" or not (p.parent / "scene.json").exists():
        return None
    try:
        sc = _parse_scene(p.parent.resolve())
    except (SceneNotFoundError, ValueError, KeyError, OSError):
        return None
    return (sc.level, f"scene.json of {sc.id}") if sc.level != "unknown" else None


def scene_metadata(scene: SampleScene) -> dict[str, str]:
    """Radiometric metadata of a scene's ``image_s2.tif`` from ``scene.json``, as tags for :func:`core.inputs.decision.decide`."""
    pl = scene.info.get("processing_level") or {}
    out: dict[str, str] = {}
    text = str(pl.get("s2", ""))
    if "no +1000" in text or "no offset" in text:
        out["RADIOMETRIC_OFFSET"] = "none (scene.json: processing baseline < 04.00)"
    if pl.get("radiometric_offset") and str(pl["radiometric_offset"]).lower().startswith("none"):
        out["RADIOMETRIC_OFFSET"] = f"{pl['radiometric_offset']} (scene.json)"
    if pl.get("processing_baseline"):
        out["PROCESSING_BASELINE"] = str(pl["processing_baseline"])
    if pl.get("product_id") and pl["product_id"] != "unknown":
        out["PRODUCT_ID"] = str(pl["product_id"])
    if scene.date and scene.date != "unknown":
        out["SENSING_DATE"] = scene.date
    return out


@lru_cache(maxsize=32)
def _scene_sample(scene: SampleScene) -> tuple[tuple[str, ...], object, float | None]:
    img = load_image(scene, list(scene.bands))
    step = max(1, int((img.height * img.width / 512**2) ** 0.5))
    return img.band_names, img.data[:, ::step, ::step], img.nodata


def scene_decision(scene: SampleScene | str, card: ModelInputs, *, offset: int | str | None = None) -> InputDecision:
    """How to read a sample scene for a model (:func:`core.inputs.decision.decide`; level from scene.json).

    The decision applies to :func:`load_image` of all the scene's bands (``scene.bands``), which is
    what :func:`load_model_input` reads.

    Raises:
        BandError, InputError: See :func:`core.inputs.decision.decide`.
    """
    sc = get_scene(scene) if isinstance(scene, str) else scene
    names, sample, nodata = _scene_sample(sc)
    return decide(card, list(names), sample, nodata=nodata, metadata=scene_metadata(sc), offset=offset,
                  level=sc.level if sc.level != "unknown" else None,
                  level_reason=f"scene.json of {sc.id}" if sc.level != "unknown" else f"scene.json of {sc.id} gives none",
                  what=f"scene {sc.id}")


def load_model_input(scene: SampleScene | str, decision: InputDecision, window: Window | None = None) -> GeoRaster:
    """A scene's pixels as model input: float32 (C, H, W) in the model's band order, reflectance x 1e4, NaN nodata.

    Args:
        scene: The scene or its id.
        decision: From :func:`scene_decision`.
        window: Pixel window (default whole scene).
    """
    sc = get_scene(scene) if isinstance(scene, str) else scene
    return prepare_raster(load_image(sc, list(sc.bands), window), decision)


def list_scenes(root: str | Path | None = None) -> list[SampleScene]:
    """All scenes of the sample pack, sorted by id.

    Args:
        root: Data directory (holding ``samples/``) or the samples folder; default
            :func:`core.config.data_dir`.

    Raises:
        SceneNotFoundError: The folder does not exist.
    """
    samples = _samples_dir(Path(root) if root else None)
    return [_parse_scene(p.resolve()) for p in sorted(samples.iterdir()) if (p / "scene.json").exists()]


def get_scene(scene_id: str, root: str | Path | None = None) -> SampleScene:
    """One scene by id (or by folder path).

    Raises:
        SceneNotFoundError: No such scene; the message lists the available ids.
    """
    p = Path(scene_id)
    if p.is_dir() and (p / "scene.json").exists():
        return _parse_scene(p.resolve())
    samples = _samples_dir(Path(root) if root else None)
    folder = samples / scene_id
    if not (folder / "scene.json").exists():
        ids = [s.id for s in list_scenes(root)]
        raise SceneNotFoundError(f"no sample scene {scene_id!r} in {samples}; available: {', '.join(ids)}")
    return _parse_scene(folder.resolve())


def _check_product(scene: SampleScene, product: str) -> str:
    if product not in scene.labels:
        raise SceneNotFoundError(
            f"scene {scene.id} has no {product!r} labels; it has {', '.join(scene.labels) or 'none'}"
        )
    return product


def scene_grid(scene: SampleScene) -> tuple[object, Affine]:
    """The scene's CRS and transform, read from the image header (no pixels).

    Returns:
        (CRS or ``None``, affine transform; a local metric one, from the nominal pixel size,
        for scenes without CRS).
    """
    info = raster_info(scene.path / "image_s2.tif")
    if info["crs"] is None:
        s = scene.pixel_size_m
        return None, Affine(s, 0.0, 0.0, 0.0, -s, 0.0)
    return info["crs"], info["transform"]


def _localise(scene: SampleScene, raster: GeoRaster, window: Window | None) -> GeoRaster:
    """Give rasters without CRS a local metric transform (pixel size from scene.json)."""
    meta = {"scene": scene.id, "date": scene.date}
    if raster.crs is not None:
        return replace(raster, meta={**raster.meta, **meta})
    s = scene.pixel_size_m
    r0, c0 = (int(window.row_off), int(window.col_off)) if window is not None else (0, 0)
    transform = Affine(s, 0.0, c0 * s, 0.0, -s, -r0 * s)
    return replace(raster, transform=transform, meta={**raster.meta, **meta})


def load_image(scene: SampleScene | str, bands: list[str] | tuple[str, ...] | None = None, window: Window | None = None) -> GeoRaster:
    """Read a scene's imagery, bands chosen by name from the S2 and S1 files.

    Args:
        scene: The scene or its id.
        bands: Band names in the wanted order (``None``: the 13 S2 bands). Sentinel-2 names
            (``B1``..``B12``, ``B8A``) come from ``image_s2.tif``, ``VV``/``VH`` from ``image_s1.tif``.
        window: Pixel window to read (default whole scene).

    Returns:
        Only S2 bands: uint16 reflectance x 1e4 with nodata 0. With S1 bands: float32 with
        nodata NaN (S2 values still reflectance x 1e4, S1 in dB).

    Raises:
        SceneNotFoundError: Unknown scene.
        BandError: A band is not in this scene (the message lists the scene's bands).
    """
    sc = get_scene(scene) if isinstance(scene, str) else scene
    wanted = list(bands) if bands is not None else list(sc.s2_bands)
    check_band_names(sc.bands, wanted, what=f"the request for scene {sc.id}")
    s2_names = [b for b in wanted if b in sc.s2_bands]
    s1_names = [b for b in wanted if b in S1_BANDS]
    if not s1_names:
        return _localise(sc, read_raster(sc.path / "image_s2.tif", s2_names, window), window)
    parts = [read_raster(sc.path / "image_s2.tif", s2_names, window)] if s2_names else []
    parts.append(read_raster(sc.path / "image_s1.tif", s1_names, window))
    return _localise(sc, stack_bands(parts, wanted), window)


def check_label_grid(scene: SampleScene, product: str) -> None:
    """Refuse a label product whose file is not on the scene image's grid, from the headers only.

    Raises:
        SceneNotFoundError: The scene has no such product.
        GridMismatchError: CRS, transform or shape differ (see :func:`core.io.guards.check_same_grid`).
    """
    fname = LABEL_PRODUCTS[_check_product(scene, product)][0]
    check_same_grid(raster_info(scene.path / "image_s2.tif"), raster_info(scene.path / fname),
                    what=f"scene {scene.id}", names=("image_s2.tif", fname))


def load_labels(scene: SampleScene | str, product: str = "dw", window: Window | None = None) -> tuple[GeoRaster, ClassScheme]:
    """Read a scene's reference labels.

    Args:
        scene: The scene or its id.
        product: ``"dw"`` (Dynamic World), ``"osm"``, ``"dfc"``, ``"water"`` or ``"lulc"`` (Slovenian
            land-use reference).
        window: Pixel window (default whole scene).

    Returns:
        (uint8 GeoRaster (1, H, W) of class ids, the product's class scheme). Unlabelled pixels
        carry the scheme's ignore id (255 for DW/water, 0 for OSM/DFC2020).

    Raises:
        SceneNotFoundError: Unknown scene or product not available for it.
        GridMismatchError: The label file is not on the image's grid (CRS, transform, shape), so
            its pixels would be compared with the wrong ground; nothing is resampled silently.
    """
    sc = get_scene(scene) if isinstance(scene, str) else scene
    fname, scheme = LABEL_PRODUCTS[_check_product(sc, product)]
    check_label_grid(sc, product)
    lab = read_raster(sc.path / fname, window=window)
    lab = replace(lab, band_names=("label",))
    return _localise(sc, lab, window), get_scheme(scheme)


def load_preview(scene: SampleScene | str, bands: tuple[str, ...] = ("B4", "B3", "B2"), max_size: int = 768) -> GeoRaster:
    """A decimated copy of Sentinel-2 bands for map previews (read from the COG's overviews).

    Args:
        scene: The scene or its id.
        bands: Sentinel-2 band names.
        max_size: Longest side of the result in pixels.

    Returns:
        uint16 GeoRaster (len(bands), h, w) with the transform scaled to the coarser pixels.
    """
    from rasterio.enums import Resampling

    from core.io.raster import _open

    sc = get_scene(scene) if isinstance(scene, str) else scene
    check_band_names(sc.s2_bands, list(bands), what="the preview")
    factor = max(1.0, max(sc.height, sc.width) / max_size)
    h, w = max(1, round(sc.height / factor)), max(1, round(sc.width / factor))
    full = read_raster(sc.path / "image_s2.tif", list(bands), Window(0, 0, 1, 1))
    with _open(sc.path / "image_s2.tif") as ds:
        idx = [sc.s2_bands.index(b) + 1 for b in bands]
        data = ds.read(idx, out_shape=(len(idx), h, w), resampling=Resampling.average)
        transform = ds.transform @ ds.transform.scale(sc.width / w, sc.height / h)
    return _localise(sc, replace(full, data=data, transform=transform), None)
