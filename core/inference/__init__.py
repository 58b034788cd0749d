"""Running a model over rasters of any size.

- ``policy``: the run policy, the one place that decides how a model runs (tile, overlap, full frame,
  batch, nodata handling, precision, runtime, level rule).
- ``tiling``: tiled, overlap-blended inference over any read/forward/write callables (no torch).
- ``streaming``: class maps in memory (app) and GeoTIFF to COG window by window (CLI).
- ``blocks``: Dask blocks for large areas, resumable.
"""
