"""Optional sharpening of the 20 m Sentinel-2 bands with a 10 m band: SFIM.

Smoothing Filter-based Intensity Modulation (Liu, J. G., 2000, "Smoothing Filter-based Intensity Modulation: a
spectral preserving image fusion technique for improving spatial details", International Journal of Remote
Sensing 21(18), 3461-3472) injects the relative spatial detail of a high-resolution band ``pan`` into a
low-resolution band ``b`` brought onto the fine grid::

    sharpened = up(b) x pan / smooth(pan)

where ``smooth(pan)`` is ``pan`` degraded to the resolution of ``b`` (mean of the 2 x 2 10 m pixels of each 20 m
pixel) and brought back with the same interpolation as ``b`` (bilinear), so that where ``pan`` has no detail
finer than 20 m the ratio is 1 and ``up(b)`` is unchanged. The ratio is taken on reflectance, i.e. after
removing a +1000 DN offset, which is added back afterwards.

Each 20 m band is sharpened with the 10 m band nearest in wavelength (:data:`PAN_FOR`); 60 m bands (B1, B9,
B10) stay bilinear. The sharpened image is written as a tiled GeoTIFF in the cache, block by block of rows,
so a 110 km tile is never held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.sources.downloads.vrt import BandFile, Grid, write_band_vrt

__all__ = ["PAN_FOR", "sfim", "write_sharpened"]

PAN_FOR = {"B5": "B4", "B6": "B8", "B7": "B8", "B8A": "B8", "B11": "B8", "B12": "B8"}
"""The 10 m band that sharpens each 20 m band: the nearest in wavelength (B5 704 nm <- B4 665 nm; B6, B7, B8A
and the SWIR bands <- B8 833 nm, the only 10 m band beyond the red edge; ESA Sentinel-2 User Handbook, table 1)."""

_ROWS = 512


def sfim(up: np.ndarray, pan: np.ndarray, smooth: np.ndarray, *, offset: float = 0.0) -> np.ndarray:
    """SFIM of one band (formula in the module docstring).

    Args:
        up: (H, W) the 20 m band bilinearly resampled onto the 10 m grid, DN (0 = nodata).
        pan: (H, W) the 10 m band, DN.
        smooth: (H, W) ``pan`` degraded to 20 m and resampled back like ``up``, DN.
        offset: DN offset of all three (1000 for baseline >= 04.00), removed before the ratio and added back.

    Returns:
        float32 (H, W) sharpened DN; ``up`` unchanged where ``smooth`` carries no reflectance (<= offset) and 0 where
        any input is nodata (0).
    """
    o = np.float32(offset)
    u, p, s = (np.asarray(a, np.float32) - o for a in (up, pan, smooth))
    ok = s > 0
    out = np.where(ok, u * np.where(ok, p, 1) / np.where(ok, s, 1), u) + o
    out[(up == 0) | (pan == 0) | (smooth == 0)] = 0
    return out.astype(np.float32)


def write_sharpened(vrt: Path, bands: list[BandFile], grids: list[Grid], fine: Grid, dst: Path, *, offset: int,
                    metadata: dict[str, str], resampling: str = "bilinear") -> tuple[Path, list[str]]:
    """Write the VRT's image with its 20 m bands sharpened by :func:`sfim` as a tiled uint16 GeoTIFF.

    Args:
        vrt: The bilinear VRT (:func:`core.sources.downloads.vrt.write_band_vrt`) on the 10 m grid ``fine``.
        bands: Its bands (same order as the VRT's).
        grids: Their native grids (10, 20 or 60 m).
        fine: The 10 m grid.
        dst: Output GeoTIFF (in the cache), written atomically.
        offset: DN offset stated by the product (0 or 1000).
        metadata: Tags for the GeoTIFF (the product's evidence); ``LULC_RESAMPLING`` gets the sharpening lines.
        resampling: The interpolation the VRT used for the 20 m bands, used again for ``smooth(pan)``.

    Returns:
        (``dst``, one line per sharpened band, e.g. ``"B11 sharpened with B8 (SFIM, Liu 2000)"``).
    """
    import rasterio
    from rasterio.windows import Window

    from core.io.outputs import atomic_path

    names = [b.name for b in bands]
    todo = {}
    for k, (b, g) in enumerate(zip(bands, grids, strict=True)):
        pan = PAN_FOR.get(b.name)
        if pan not in names or abs(g.res - 2 * fine.res) > 1e-6 * g.res:
            continue
        p = names.index(pan)
        coarse = write_band_vrt(dst.with_name(f"{dst.stem}_{pan}_{b.name}_20m.vrt"), [bands[p]], [grids[p]], metadata={},
                                resampling="average", what=b.name, grid=g)[0]
        smooth = write_band_vrt(dst.with_name(f"{dst.stem}_{pan}_{b.name}_smooth.vrt"), [BandFile(pan, str(coarse), pan)], [g],
                                metadata={}, resampling=resampling, what=b.name, grid=fine)[0]
        todo[k] = (p, smooth)
    lines = [f"{names[k]} sharpened with {names[p]} (SFIM, Liu 2000)" for k, (p, _) in todo.items()]
    if dst.is_file():  # made before from the same product (the cache key covers its path, size and time)
        return dst, lines
    tags = {**metadata, "LULC_RESAMPLING": "; ".join([metadata.get("LULC_RESAMPLING", ""), *lines]).strip("; ")}
    with rasterio.open(vrt) as src:
        prof = dict(driver="GTiff", width=src.width, height=src.height, count=src.count, dtype="uint16", crs=src.crs,
                    transform=src.transform, nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                    BIGTIFF="IF_SAFER")
        smooth_ds = {k: rasterio.open(s) for k, (_, s) in todo.items()}
        try:
            with atomic_path(dst) as tmp, rasterio.open(tmp, "w", **prof) as out:
                for r0 in range(0, src.height, _ROWS):
                    w = Window(0, r0, src.width, min(_ROWS, src.height - r0))
                    x = src.read(window=w)
                    y = x.astype(np.float32)
                    for k, (p, _) in todo.items():
                        y[k] = sfim(x[k], x[p], smooth_ds[k].read(1, window=w), offset=offset)
                    y = np.where(x == 0, 0, np.clip(np.rint(y), 1, 65535))
                    out.write(y.astype(np.uint16), window=w)
                for i, n in enumerate(names, 1):
                    out.set_band_description(i, n)
                out.update_tags(**tags)
        finally:
            for ds in smooth_ds.values():
                ds.close()
    return dst, lines
