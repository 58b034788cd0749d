"""How a raster becomes model input.

- ``bands``: Sentinel-1/2 band names, aliases and specs.
- ``decision``: the input decision (bands, scale, radiometric offset, processing level), made once per
  input and applied to every window.
"""
