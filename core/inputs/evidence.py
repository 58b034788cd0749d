"""Evidence for the input decision: what metadata says (offset, level, date) and the pixel offset test.

:func:`core.inputs.decision.decide` weighs this evidence (the module docstring of
:mod:`core.inputs.decision` gives the order). The radiometric offset is that of processing
baseline 04.00 and later: ``DN = reflectance x 1e4 + 1000`` (``RADIO_ADD_OFFSET`` /
``BOA_ADD_OFFSET`` = -1000; ESA, "Sentinel-2 Products Specification Document" issue 14.9, and the
S2 MPC note "Processing Baseline 04.00", 2021).

Downloaded products (:mod:`core.sources.downloads`) state their evidence as tags of the VRT they become, read
by :func:`offset_from_metadata` and :func:`level_from_metadata` like any GeoTIFF tag: a SAFE's
``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``, ``PROCESSING_BASELINE`` and ``PRODUCT_TYPE`` from its MTD; a STAC
Item's ``raster:bands`` offset as ``STAC_RASTER_ADD_OFFSET`` (DN), ``s2:processing_baseline`` as
``S2_PROCESSING_BASELINE``, ``s2:product_type`` and ``datetime``.

The pixel test's thresholds below (DN after scaling, i.e. reflectance x 1e4) were set on the 16
scenes of the sample pack, each as shipped (no offset) and with a +1000 DN offset added.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np

from core.inputs.bands import S2_BASELINE_OFFSET_DN

__all__ = [
    "OFFSET_SINCE",
    "offset_from_metadata",
    "level_from_metadata",
    "offset_from_pixels",
    "file_metadata",
    "read_file_metadata",
    "DARK_DN",
    "DARK_SHARE_NO_OFFSET",
    "B10_OFFSET_MEDIAN_MAX_DN",
    "NEAR_OFFSET_DN",
    "NEAR_OFFSET_MAX_SHARE",
    "P1_OFFSET_MAX_DN",
]

OFFSET_SINCE = date(2022, 1, 25)
"""First acquisition day processed with baseline 04.00 (+1000 DN offset) by ESA's ground segment."""

DARK_DN = 800
"""Reflectance 0.08 in DN: dark targets (vegetation in blue/red, water in NIR/SWIR, the L1C cirrus
band B10 near 0) lie below it without the offset; with it they would be reflectance below -0.02,
which products clip."""
DARK_SHARE_NO_OFFSET = 0.01
"""Share (1 %) of some band's valid pixels below :data:`DARK_DN` that rules the offset out."""
B10_OFFSET_MEDIAN_MAX_DN = 1300
"""Cirrus band B10 reads near 0 without the offset: a median in [1000, 1300) DN means the offset."""
NEAR_OFFSET_DN = 900
"""With the offset, valid pixels lie at about 1000 DN or above; fewer than :data:`NEAR_OFFSET_MAX_SHARE`
of them below 900 DN (a margin for noise) in every band is the first half of the dark-pile test."""
NEAR_OFFSET_MAX_SHARE = 0.001
"""Share (0.1 %) of its valid pixels below :data:`NEAR_OFFSET_DN` that every band must stay under (dark-pile test)."""
P1_OFFSET_MAX_DN = 1400
"""Second half of the dark-pile test: the darkest band's 1st percentile in [1000, 1400) DN, dark
targets piled up just above the +1000 offset."""


# --- metadata ----------------------------------------------------------------------------------

_BASELINE_IN_ID = re.compile(r"_N(\d{4})_")
_DATE = re.compile(r"(20\d\d)-?(\d\d)-?(\d\d)")
_DATE_KEYS = ("SENSING", "ACQUISITION", "DATATAKE", "DATE_ACQUIRED", "PRODUCT_START_TIME", "S2_DATE", "DATE", "DATETIME")


def _baseline(text: str) -> float | None:
    """A processing baseline as a number: ``"04.00"``, ``"N0400"`` and ``"0400"`` -> 4.0; ``None`` if unreadable."""
    text = str(text).strip().upper().lstrip("N")
    try:
        return float(text) / 100 if text.isdigit() and len(text) == 4 else float(text)
    except ValueError:
        return None


def offset_from_metadata(meta: Mapping[str, str]) -> tuple[int | None, str, date | None]:
    """The radiometric offset that tags or metadata state, else the acquisition date they give.

    Evidence, strongest first: a ``*ADD_OFFSET*`` value (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``
    = -1000 -> 1000); ``PROCESSING_BASELINE`` (>= 04.00 -> 1000, else 0) or
    ``RADIOMETRIC_OFFSET=none...`` (-> 0); a product id with ``_Nxxxx_``; else the first date in a
    sensing/acquisition key (the caller weighs it against :data:`OFFSET_SINCE`).

    Args:
        meta: Tags and metadata flattened to strings.

    Returns:
        (offset in DN or ``None``, reason, acquisition date or ``None``); the date is only given
        when no offset is stated.
    """
    acq: date | None = None
    for key, value in meta.items():
        k = key.upper()
        if "ADD_OFFSET" in k:
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            return int(round(-v)) if v <= 0 else 0, f"metadata {key}={value}", None
    for key, value in meta.items():
        k = key.upper()
        if k.endswith("PROCESSING_BASELINE") or k == "BASELINE":
            b = _baseline(value)
            if b is not None:
                off = S2_BASELINE_OFFSET_DN if b >= 4.0 else 0
                return off, f"metadata {key}={value} ({'>=' if off else '<'} 04.00)", None
        if k == "RADIOMETRIC_OFFSET" and str(value).lower().startswith("none"):
            return 0, f"metadata {key}={value}", None
    for value in meta.values():
        m = _BASELINE_IN_ID.search(str(value))
        if m:
            b = _baseline(m.group(1))
            off = S2_BASELINE_OFFSET_DN if b >= 4.0 else 0
            return off, f"product id {value} (baseline N{m.group(1)} {'>=' if off else '<'} 04.00)", None
    for key, value in meta.items():
        k = key.upper()
        if k.startswith("TIFFTAG") or not any(d in k for d in _DATE_KEYS):
            continue
        m = _DATE.search(str(value))
        if m:
            try:
                acq = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                continue
            break
    return None, "", acq


def level_from_metadata(meta: Mapping[str, str]) -> tuple[str | None, str]:
    """The processing level that metadata names.

    Evidence, strongest first: ``PROCESSING_LEVEL`` / ``PRODUCT_TYPE`` (``2A`` / ``1C``; also prefixed keys such
    as STAC's ``s2:product_type`` and the SAFE MTD's ``Level-1C``/``S2MSI2A`` values), a product id with
    ``MSIL2A`` / ``MSIL1C``, a ``BOA_ADD_OFFSET`` (L2A) or ``RADIO_ADD_OFFSET`` (L1C) key.

    Args:
        meta: Tags and metadata flattened to strings.

    Returns:
        (``"L1C"``, ``"L2A"`` or ``None``, reason; empty when ``None``).
    """
    for key, value in meta.items():
        k, v = key.upper(), str(value).upper()
        if k in ("PROCESSING_LEVEL", "LEVEL", "PRODUCTTYPE") or k.endswith(("PROCESSING_LEVEL", "PRODUCT_TYPE")):
            if "2A" in v:
                return "L2A", f"metadata {key}={value}"
            if "1C" in v:
                return "L1C", f"metadata {key}={value}"
    for value in meta.values():
        v = str(value).upper()
        if "MSIL2A" in v:
            return "L2A", f"product id {value}"
        if "MSIL1C" in v:
            return "L1C", f"product id {value}"
    for key in meta:
        if "BOA_ADD_OFFSET" in key.upper():
            return "L2A", f"metadata {key} (surface reflectance offset)"
        if "RADIO_ADD_OFFSET" in key.upper():
            return "L1C", f"metadata {key} (top-of-atmosphere offset)"
    return None, ""


# --- pixels ------------------------------------------------------------------------------------


def offset_from_pixels(dn: Mapping[str, np.ndarray]) -> tuple[int | None, str]:
    """The pixel test of the module docstring on valid DN values per Sentinel-2 band.

    Args:
        dn: Band name -> 1-D float valid values of that band in DN (after scaling), for every
            Sentinel-2 band of the input, in file order.

    Returns:
        (0, 1000 or ``None`` when ambiguous, reason in words).
    """
    if not dn:
        return None, "no Sentinel-2 band to test"
    below_dark = {b: float((v < DARK_DN).mean()) for b, v in dn.items()}
    worst = max(below_dark, key=below_dark.get)
    if below_dark[worst] >= DARK_SHARE_NO_OFFSET:
        return 0, f"{below_dark[worst]:.0%} of valid {worst} pixels lie below {DARK_DN} DN, impossible with the +1000 offset"
    if "B10" in dn:
        med = float(np.median(dn["B10"]))
        if S2_BASELINE_OFFSET_DN <= med < B10_OFFSET_MEDIAN_MAX_DN:
            return S2_BASELINE_OFFSET_DN, f"cirrus band B10 has median {med:.0f} DN (near 0 without the offset, near 1000 with it)"
    below_near = max(float((v < NEAR_OFFSET_DN).mean()) for v in dn.values())
    p1 = {b: float(np.percentile(v, 1)) for b, v in dn.items()}
    darkest = min(p1, key=p1.get)
    if below_near < NEAR_OFFSET_MAX_SHARE and S2_BASELINE_OFFSET_DN <= p1[darkest] < P1_OFFSET_MAX_DN:
        return S2_BASELINE_OFFSET_DN, (
            f"no band has valid pixels below {NEAR_OFFSET_DN} DN and the darkest 1% of {darkest} lie at "
            f"{p1[darkest]:.0f} DN, just above the +1000 offset"
        )
    return None, (
        f"the darkest 1% of {darkest} lie at {p1[darkest]:.0f} DN and {below_dark[worst]:.2%} of {worst} below {DARK_DN} DN, "
        "which fits neither a +1000 offset nor none with confidence"
    )


# --- files -------------------------------------------------------------------------------------


def file_metadata(ds) -> dict[str, str]:
    """Dataset tags, band tags (``b<i>:KEY``) and the IMAGERY domain of an open rasterio dataset."""
    meta: dict[str, str] = {}
    for ns in (None, "IMAGERY"):
        try:
            meta.update(ds.tags(ns=ns) if ns else ds.tags())
        except Exception:  # noqa: BLE001 - a domain that the driver does not know
            continue
    for i in range(1, ds.count + 1):
        for k, v in ds.tags(i).items():
            meta.setdefault(k, v)
    return meta


def read_file_metadata(path: str | Path) -> dict[str, str]:
    """:func:`file_metadata` of a GeoTIFF on disk (tags only, no pixels).

    Raises:
        RasterReadError: Missing or unreadable file.
    """
    from core.io.raster import _open

    with _open(path) as ds:
        return file_metadata(ds)
