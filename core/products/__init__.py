"""What users take away from a map.

- ``change``: from-to change between two dates on one grid.
- ``polygons``: class maps as polygons with a minimum mapping unit.
- ``report``: the self-contained HTML report.
- ``render``: pictures and colours (composites, class colours, agreement, PNG).
"""
