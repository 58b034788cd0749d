"""Exceptions raised by the library: one family, :class:`LulcError`.

Every error the user can cause (a file, a card, an AOI, a setting, a credential) derives from
:class:`LulcError`, a ``ValueError``, so that callers (the app's pages, the trainer's command line)
catch one type and show its message instead of a traceback; anything else is a bug and goes to
the crash log. Messages say what was wrong and how to fix it.

The family (subclasses defined elsewhere stay beside the code that raises them):

- here: :class:`BandError`, :class:`RasterReadError`, :class:`SceneNotFoundError`,
  :class:`GridMismatchError`, :class:`SchemeError`, :class:`AOIError`, :class:`NoDataError`,
  :class:`AssessmentError`;
- ``models.card.BundleError`` (re-exported by ``models.bundle``): a model bundle or card is
  missing, malformed or does not fit its input;
- ``core.io.outputs.OutputError``: an output path would clobber an input or cannot be written;
- ``core.io.guards.SizeLimitError``, ``core.io.guards.GsdError``: too large, or the wrong pixel size;
- ``core.inputs.decision.InputError``: an input needs a decision (offset, level) from the user;
- ``core.sources.earth_engine.EarthEngineError`` and its ``CredentialsError``, ``QuotaError``,
  ``PermissionDeniedError``, ``TransientError``, ``EmptyCollectionError``;
- ``core.inference.blocks.BlockFailedError``, ``core.inference.blocks.ManifestMismatchError``.

This module is a leaf: it imports nothing from the project, so that every package, ``models``
included (which otherwise never imports ``core``), can derive from it
(``tests/test_architecture.py`` checks both).
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


class AssessmentError(LulcError):
    """A sampling design or an accuracy/area estimate cannot be made from what was given.

    A labelled-points file is missing, unreadable or lacks a column, a point names an unknown
    class, a mapped class has no sample point, or a design parameter is out of range.
    """


class RunPolicyError(LulcError):
    """A model cannot run as asked: unknown precision or runtime, or a tile/overlap that does not fit."""
