"""Exceptions raised by the library.

Every error the user can cause derives from :class:`LulcError`, a ``ValueError``, so that callers
(the app, the trainer's command line) can show its message instead of a traceback. Messages say
what was wrong and how to fix it.
"""

from __future__ import annotations


class LulcError(ValueError):
    """Base class of all user-facing errors of LULC Explorer."""


class BandError(LulcError):
    """Bands are missing, duplicated or in a count the consumer cannot use."""


class RasterReadError(LulcError):
    """A GeoTIFF cannot be read: missing, corrupt, not georeferenced when it must be."""


class SceneNotFoundError(LulcError):
    """A sample scene or a file of it is not in the data directory."""


class GridMismatchError(LulcError):
    """Two rasters that must share a grid (shape, CRS, transform) do not."""


class SchemeError(LulcError):
    """A class scheme or a crosswalk between two schemes is unknown or does not fit."""


class AOIError(LulcError):
    """An area of interest is invalid, too large or outside the data."""


class NoDataError(LulcError):
    """An input (or the part of it inside the AOI) holds no pixel with data in the bands needed."""
