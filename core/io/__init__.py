"""Raster I/O and safe outputs.

- ``raster``: the GeoRaster container (C, H, W) with CRS, transform, nodata and band names; GeoTIFF/COG
  reading and writing.
- ``outputs``: outputs that never overwrite an input or leave half a file (temporary file + rename).
- ``guards``: header checks before any pixel is read (size, GSD, grid).
"""
