"""Band specifications of Sentinel-2 MSI and Sentinel-1 C-SAR, and band handling.

Sentinel-2 digital numbers (DN) are reflectance x 1e4 (top of atmosphere for Level-1C, bottom of
atmosphere for Level-2A). Since processing baseline 04.00 (products from 2022-01-25 on) ESA adds a
radiometric offset of +1000 DN so that negative reflectances survive quantisation
(``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET`` = -1000 in the product metadata; ESA, "Sentinel-2:
Processing Baseline 04.00", S2 MPC news, 2021). :func:`harmonize_s2_dn` removes it, as Earth
Engine's ``*_HARMONIZED`` collections do, so that every model sees one radiometric scale.

Sentinel-1 values are sigma0 backscatter in dB (``10 * log10(linear)``), VV and VH polarisations of
IW GRD products, as in Earth Engine's ``COPERNICUS/S1_GRD``.

Wavelengths and native resolutions: ESA Sentinel-2 User Handbook (2015), table 1 (S2A centres).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import BandError

__all__ = [
    "BandSpec",
    "SENTINEL2_L1C",
    "SENTINEL2_L2A",
    "SENTINEL1",
    "LANDSAT_C2_L2",
    "SensorSpec",
    "SENSORS",
    "sensor_of",
    "S2_BASELINE_OFFSET_DN",
    "band_spec",
    "harmonize_s2_dn",
    "check_band_names",
    "BAND_ALIASES",
    "canonical_band",
    "band_aliases",
]


@dataclass(frozen=True)
class BandSpec:
    """One spectral or radar band.

    Attributes:
        name: Band name as used in files and model cards (``"B8A"``, ``"VV"``).
        sensor: ``"S2"`` or ``"S1"``.
        description: Human description (``"NIR"``).
        unit: Unit of the stored value.
        gsd_m: Native ground sampling distance in metres.
        wavelength_nm: Central wavelength in nm (optical bands), else ``None``.
    """

    name: str
    sensor: str
    description: str
    unit: str
    gsd_m: float
    wavelength_nm: float | None = None


_S2_UNIT = "reflectance x 1e4 (DN)"
_S2 = [
    ("B1", "coastal aerosol", 60, 442.7),
    ("B2", "blue", 10, 492.4),
    ("B3", "green", 10, 559.8),
    ("B4", "red", 10, 664.6),
    ("B5", "red edge 1", 20, 704.1),
    ("B6", "red edge 2", 20, 740.5),
    ("B7", "red edge 3", 20, 782.8),
    ("B8", "NIR", 10, 832.8),
    ("B8A", "narrow NIR", 20, 864.7),
    ("B9", "water vapour", 60, 945.1),
    ("B10", "SWIR cirrus", 60, 1373.5),
    ("B11", "SWIR 1", 20, 1613.7),
    ("B12", "SWIR 2", 20, 2202.4),
]

SENTINEL2_L1C: tuple[BandSpec, ...] = tuple(BandSpec(n, "S2", d, _S2_UNIT, g, w) for n, d, g, w in _S2)
"""The 13 Level-1C bands in product order (TOA reflectance x 1e4)."""

SENTINEL2_L2A: tuple[BandSpec, ...] = tuple(b for b in SENTINEL2_L1C if b.name != "B10")
"""The 12 Level-2A bands (BOA reflectance x 1e4; the cirrus band B10 is not delivered)."""

SENTINEL1: tuple[BandSpec, ...] = (
    BandSpec("VV", "S1", "vertical transmit, vertical receive", "sigma0 dB", 10.0),
    BandSpec("VH", "S1", "vertical transmit, horizontal receive", "sigma0 dB", 10.0),
)
"""Sentinel-1 IW GRD polarisations (sigma0 in dB)."""

_LANDSAT_UNIT = "surface reflectance DN (x 0.0000275 - 0.2)"
LANDSAT_C2_L2: tuple[BandSpec, ...] = (
    BandSpec("SR_B1", "L8/9", "coastal aerosol", _LANDSAT_UNIT, 30.0, 443.0),
    BandSpec("SR_B2", "L8/9", "blue", _LANDSAT_UNIT, 30.0, 482.0),
    BandSpec("SR_B3", "L8/9", "green", _LANDSAT_UNIT, 30.0, 561.4),
    BandSpec("SR_B4", "L8/9", "red", _LANDSAT_UNIT, 30.0, 654.6),
    BandSpec("SR_B5", "L8/9", "NIR", _LANDSAT_UNIT, 30.0, 864.7),
    BandSpec("SR_B6", "L8/9", "SWIR 1", _LANDSAT_UNIT, 30.0, 1608.9),
    BandSpec("SR_B7", "L8/9", "SWIR 2", _LANDSAT_UNIT, 30.0, 2200.7),
)
"""Landsat 8/9 OLI Collection 2 Level-2 surface reflectance bands SR_B1..SR_B7 (USGS, "Landsat 8-9 Collection 2
Level 2 Science Product Guide", LSDS-1619 v6, 2022: reflectance = DN x 0.0000275 - 0.2; 30 m). Named with their
``SR_`` prefix, never folded onto Sentinel-2's numbers: Landsat's B5 is NIR, Sentinel-2's B5 a red edge."""


@dataclass(frozen=True)
class SensorSpec:
    """A sensor as a band specification: its bands, native GSD and the DN -> physical value rule.

    Attributes:
        name: ``"S2"``, ``"S1"``, ``"L8/9"``.
        title: Display name.
        bands: Its bands in product order.
        gsd_m: The ground sampling distance a model of this sensor is trained at.
        scale, offset: physical value = DN x scale + offset (reflectance for optical sensors; dB as stored for S1).
    """

    name: str
    title: str
    bands: tuple[BandSpec, ...]
    gsd_m: float
    scale: float = 1.0
    offset: float = 0.0

    def to_reflectance(self, dn: np.ndarray) -> np.ndarray:
        """DN to physical values (float32)."""
        return (dn.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)


SENSORS: dict[str, SensorSpec] = {
    "S2": SensorSpec("S2", "Sentinel-2 MSI", SENTINEL2_L1C, 10.0, 1e-4, 0.0),
    "S1": SensorSpec("S1", "Sentinel-1 C-SAR (IW GRD, dB)", SENTINEL1, 10.0),
    "L8/9": SensorSpec("L8/9", "Landsat 8/9 OLI Collection 2 Level-2", LANDSAT_C2_L2, 30.0, 0.0000275, -0.2),
}
"""Every sensor the project knows, by name: the one place its bands, GSD and scaling are written."""


def sensor_of(bands: Sequence[str]) -> str:
    """The sensor(s) of a band list, as a card records it: ``"S2"``, ``"S2+S1"``, ``"L8/9"``.

    Raises:
        BandError: An unknown band.
    """
    names = [band_spec(b).sensor for b in bands]
    return "+".join(dict.fromkeys(names))


S2_BASELINE_OFFSET_DN = 1000
"""Radiometric offset added to Sentinel-2 DN from processing baseline 04.00 on (ESA, 2021)."""

_ALL = {b.name: b for b in (*SENTINEL2_L1C, *SENTINEL1, *LANDSAT_C2_L2)}


def band_spec(name: str) -> BandSpec:
    """Return the :class:`BandSpec` of a Sentinel-2, Sentinel-1 or Landsat C2 L2 band by name.

    Raises:
        BandError: Unknown name; the message lists the known ones.
    """
    try:
        return _ALL[name]
    except KeyError:
        raise BandError(f"unknown band {name!r}; known bands: {', '.join(_ALL)}") from None


def harmonize_s2_dn(dn: np.ndarray, processing_baseline: float | str | None) -> np.ndarray:
    """Remove the +1000 DN offset of Sentinel-2 products with processing baseline >= 04.00.

    Args:
        dn: Sentinel-2 DN array of any shape (uint16 or int), 0 = nodata.
        processing_baseline: The product's baseline (``4.0``, ``"04.00"``, ``"N0400"``); ``None``
            or a baseline below 04.00 returns ``dn`` unchanged.

    Returns:
        uint16 array of reflectance x 1e4 on the pre-04.00 scale; nodata (0) stays 0 and values
        at or below the offset become 1 (a dark but valid pixel), as in Earth Engine's
        ``S2_HARMONIZED``.
    """
    if processing_baseline is None:
        return dn
    text = str(processing_baseline).upper().lstrip("N")
    baseline = float(text) / 100 if text.isdigit() and len(text) == 4 else float(text)
    if baseline < 4.0:
        return dn
    out = dn.astype(np.int32) - S2_BASELINE_OFFSET_DN
    out = np.where(dn == 0, 0, np.clip(out, 1, 65535))
    return out.astype(np.uint16)


def check_band_names(available: Sequence[str], required: Sequence[str], *, what: str = "the model") -> None:
    """Check that every band ``required`` is among ``available`` (by name, any order).

    Args:
        available: Band names of the data (e.g. a raster's ``band_names``).
        required: Band names the consumer needs, in its order.
        what: What needs them, for the message.

    Raises:
        BandError: Some bands are missing; the message lists them and what is available.
    """
    missing = [b for b in required if b not in available]
    if missing:
        raise BandError(
            f"{what} needs band(s) {', '.join(missing)} which the input lacks "
            f"(needs {', '.join(required)}; input has {', '.join(available) or 'none'})"
        )
    if len(set(required)) != len(required):
        raise BandError(f"{what} lists a band twice: {', '.join(required)}")


# --- band name aliases ---------------------------------------------------------------------------

BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "B1": ("coastal", "coastal_aerosol", "aerosol", "ultrablue"),
    "B2": ("blue",),
    "B3": ("green",),
    "B4": ("red",),
    "B5": ("rededge1", "red_edge_1", "rededge_1", "re1", "vre1"),
    "B6": ("rededge2", "red_edge_2", "rededge_2", "re2", "vre2"),
    "B7": ("rededge3", "red_edge_3", "rededge_3", "re3", "vre3"),
    "B8": ("nir",),
    "B8A": ("nir08", "narrow_nir", "nir_narrow", "nirn", "re4", "vre4", "rededge4"),
    "B9": ("nir09", "water_vapour", "water_vapor", "wv", "watervapour"),
    "B10": ("cirrus", "swir_cirrus", "nir13"),
    "B11": ("swir16", "swir1", "swir_1"),
    "B12": ("swir22", "swir2", "swir_2"),
    "VV": ("sigma0_vv", "vv_db"),
    "VH": ("sigma0_vh", "vh_db"),
}
"""Canonical band name -> spelled-out aliases (lower case), besides the numeric spellings.

Numeric spellings are recognised by pattern, case-insensitively, with optional prefixes and
suffixes: ``B2 = B02 = b02 = B002 = B2_10m = B02_10m = TOA_B2 = S2_B2``,
(``SR_B1``..``SR_B7`` are Landsat C2 L2 bands of their own, :data:`LANDSAT_C2_L2`),
``B8A = B08A = b8a = B8A_20m``. The spelled-out names are those of the STAC ``eo:bands`` common
names used by Element 84's Earth Search (``coastal``, ``rededge1``, ``nir08``, ``swir16`` ...), of
SNAP / Sentinel Hub band lists and of Earth Engine's ``COPERNICUS/S2*`` collections (which use
``B1`` ... ``B12``, ``B8A``). ``band_<i>`` (a band without description) is deliberately *not* an
alias: a position says nothing about which band it is.
"""

_NUMERIC = re.compile(r"^(?:S2[AB]?_|TOA_|BOA_)?B0*(1[0-2]|[1-9]A?)(?:_\d{2}M)?$")
_BY_ALIAS = {a: canon for canon, aliases in BAND_ALIASES.items() for a in aliases}


def canonical_band(name: str | None) -> str | None:
    """The canonical band name (``"B2"``, ``"B8A"``, ``"VV"``) of a spelling found in a file.

    Matching is case-insensitive; spaces, dots and hyphens count as underscores.

    Args:
        name: A band description or name (``"b02"``, ``"B8A_20m"``, ``"swir16"``, ``"VV"``).

    Returns:
        The canonical name, or ``None`` when the spelling is not a known alias (including empty
        names and GDAL's positional ``band_1``, ``Band 2``: a position is not a name).

    Source: the alias table :data:`BAND_ALIASES` and the numeric pattern described there.
    """
    if not name:
        return None
    key = re.sub(r"[\s\-.]+", "_", str(name).strip()).upper()
    if key in _ALL:
        return key
    m = _NUMERIC.match(key)
    if m:
        canon = f"B{m.group(1)}"
        return canon if canon in _ALL else None
    return _BY_ALIAS.get(key.lower())


def band_aliases(name: str) -> tuple[str, ...]:
    """Spellings accepted for a canonical band (for messages): ``B2, B02, b02, B2_10m, blue``."""
    if name not in _ALL:
        return (name,)
    if name.startswith("B"):
        num = name[1:]
        padded = num.zfill(2) if num[-1].isdigit() else num.zfill(3)
        numeric = (name, f"B{padded}", f"b{padded}".lower(), f"{name}_{int(_ALL[name].gsd_m)}m")
    else:
        numeric = (name, name.lower())
    return tuple(dict.fromkeys((*numeric, *BAND_ALIASES.get(name, ()))))
