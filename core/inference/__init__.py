"""Running a model over rasters of any size.

- ``policy``: the run policy, the one place that decides how a model runs (tile, overlap, full frame,
  batch, nodata handling, precision, runtime, level rule).
- ``tiling``: tiled, overlap-blended inference over any read/forward/write callables (no torch).
- ``streaming``: class maps in memory (app) and GeoTIFF to COG window by window (CLI).
- ``blocks``: the Dask engine for large areas: block plan, one task per block, resumable manifest.
- ``block_sources``: where a block's pixels come from (a GeoTIFF/VRT, or Earth Engine per block).
- ``block_mosaic``: the VRT over the block files and the COG made from it.
"""
