"""How a raster becomes model input.

- ``bands``: Sentinel-1/2 band names, aliases and specs.
- ``decision``: the input decision (bands, scale, radiometric offset, processing level), made once per
  input and applied to every window.
- ``evidence``: what metadata says (offset, level, acquisition date) and the pixel offset test, with
  its named thresholds.
"""
