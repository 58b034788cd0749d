"""The one place where a raster becomes model input: band names, scale, radiometric offset, level.

Every source (the sample pack, an uploaded GeoTIFF, ``python -m trainer predict``/``evaluate``/``fit``,
Earth Engine, exported training chips) asks :func:`decide` once per input for an
:class:`InputDecision`, then calls :meth:`InputDecision.apply` on every window it reads. The decision
records what was found and why, prints as one line (:meth:`InputDecision.summary`) and is written
into output GeoTIFFs (:meth:`InputDecision.to_tags`).

What is decided, in this order:

1. **Band names.** File band descriptions (or ``--bands`` names given by the user) are mapped to
   canonical names with :func:`core.inputs.bands.canonical_band` (``b02`` = ``B02`` = ``B2``, ``B08A`` =
   ``B8A``, ``swir16`` = ``B11`` ...). A model band that is missing is filled with the card's band
   mean when the card lists it as optional (the model was trained with band dropout; 0 after
   standardisation), and refused otherwise, naming the missing bands and the spellings tried.
2. **Scale.** Sentinel-2 DN are reflectance x 1e4. Float data whose 99th percentile of valid values
   is at most 2.0 is reflectance 0-1 and multiplied by 1e4. 8-bit data, data without a valid pixel
   and data whose median exceeds 20000 are refused (not Sentinel-2 reflectance).
3. **Radiometric offset.** Products of processing baseline 04.00 and later (all acquisitions from
   2022-01-25, and ESA's reprocessed archive) store ``DN = reflectance x 1e4 + 1000``
   (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000; ESA, "Sentinel-2 Products Specification
   Document" issue 14.9 and the S2 MPC note "Processing Baseline 04.00", 2021). Evidence, strongest
   first: ``--offset 0|1000``; metadata (``*_ADD_OFFSET*`` tags, ``PROCESSING_BASELINE``, a product
   id with ``_N0400_`` or later, a date from 2022-01-25 on); else the pixel test below; else an
   error that names ``--offset``.

   Pixel test (on a sample of at most ~262,000 valid pixels, in DN after scaling; thresholds set
   on the 16 scenes of the sample pack, with and without a +1000 offset added; they are named in
   :mod:`core.inputs.evidence`, which holds the metadata and pixel evidence):

   - *no offset* when at least 1 % of the valid pixels of some band lie below 800 DN (reflectance
     0.08: vegetation in blue/red, water in NIR/SWIR, the L1C cirrus band B10 near 0; with the
     offset such values would be reflectance below -0.02, which products clip);
   - *offset 1000* when B10 is present and its median lies in [1000, 1300) DN (cirrus reads near
     0 without the offset), or when no band has 0.1 % of its pixels below 900 DN and the darkest
     band's 1st percentile lies in [1000, 1400) DN (the dark targets pile up just above 1000);
   - otherwise ambiguous (typically bright scenes of snow, cloud or desert without dark pixels).

4. **Processing level** (L1C top of atmosphere / L2A surface reflectance) from metadata
   (``PROCESSING_LEVEL``, ``PRODUCT_TYPE``, a product id with ``MSIL1C``/``MSIL2A``, ``BOA_*`` vs
   ``RADIO_*`` offsets, the sample pack's ``scene.json``), else unknown. An input whose level is
   not among the card's ``levels`` runs with a warning that names the domain shift and quotes the
   card's measured ``level_agreement`` for that level, or says that none was measured. It is never
   refused for its level: the Dynamic World port (trained on L1C) agrees better with independent
   land cover on the pack's L2A scenes than the U-Net trained on both, so a refusal would leave the
   user a worse model (one rule for every entry point, :mod:`core.inference.policy`).

Sentinel-1 bands (``VV``, ``VH``, dB) pass through unchanged: scale and offset apply to Sentinel-2
bands only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import BandError, LulcError
from core.inputs.bands import LANDSAT_C2_L2, S2_BASELINE_OFFSET_DN, SENSORS, SENTINEL1, band_aliases, canonical_band
from core.inputs.evidence import (
    OFFSET_SINCE,
    file_metadata,
    level_from_metadata,
    offset_from_metadata,
    offset_from_pixels,
)

__all__ = [
    "InputError",
    "ModelInputs",
    "InputDecision",
    "decide",
    "decide_for_file",
    "decide_for_raster",
    "prepare_raster",
    "parse_offset",
    "parse_bands",
    "LEVELS",
]

LEVELS = ("L1C", "L2A")
"""Sentinel-2 processing levels: top-of-atmosphere (L1C) and surface (L2A) reflectance."""

_S1 = {b.name for b in SENTINEL1}
_LANDSAT = {b.name: b for b in LANDSAT_C2_L2}
"""Landsat 8/9 C2 L2 bands: DN -> reflectance x 1e4 (the Sentinel-2 DN unit) by the USGS rule
(DN x 0.0000275 - 0.2) x 1e4; no Sentinel-2 scale or offset test applies to them."""
_LANDSAT_GAIN = np.float32(SENSORS["L8/9"].scale * 1e4)
_LANDSAT_BIAS = np.float32(SENSORS["L8/9"].offset * 1e4)
_NOT_S2 = set(_S1) | set(_LANDSAT)
_SAMPLE_PIXELS = 512 * 512


class InputError(LulcError):
    """The input cannot be read as Sentinel-2 reflectance without a decision from the user."""


class ModelInputs(Protocol):
    """What the input side needs from a model card (:class:`models.bundle.ModelCard` fits)."""

    name: str
    bands: list[str]
    mean: list[float]
    optional_bands: list[str]
    levels: list[str]
    level_agreement: dict


@dataclass(frozen=True)
class InputDecision:
    """How the pixels of one input are read, decided once, with the evidence.

    Attributes:
        bands: Model band names in the model's order (the output's C).
        file_bands: Band names as found in the input (descriptions or ``--bands``), one per band.
        source: For each model band, the 0-based band index in the input, or ``None`` when the band
            is missing and filled with ``fill``.
        fill: For each model band, the value used when it is missing (card mean, raw units), else
            ``None``.
        file_count: Number of bands of the input.
        nodata: Input nodata value (``None``: only NaN, and pixels 0 in every band, are nodata).
        scale: Multiplier to DN (1.0 for DN; 10000.0 for reflectance stored as float 0-1).
        scale_reason: Why.
        offset_dn: DN subtracted from Sentinel-2 bands after scaling (0 or 1000).
        offset_reason: Why.
        level: ``"L1C"``, ``"L2A"`` or ``"unknown"``.
        level_reason: Why.
        missing_optional: Optional model bands the input lacks (filled).
        warnings: Sentences the user must see (level mismatch, filled bands).
        nodata_per_band: ``True``: a nodata value is NaN only in its own band, so the network still
            sees the pixel's other bands (Dynamic World's original runs saw them; its port needs
            this to reproduce them next to partly empty pixels); such a pixel still gets no class.
            ``False`` (default): NaN in every band.
    """

    bands: tuple[str, ...]
    file_bands: tuple[str, ...]
    source: tuple[int | None, ...]
    fill: tuple[float | None, ...]
    file_count: int
    nodata: float | None
    scale: float = 1.0
    scale_reason: str = ""
    offset_dn: int = 0
    offset_reason: str = ""
    level: str = "unknown"
    level_reason: str = ""
    missing_optional: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    nodata_per_band: bool = False

    @property
    def read_indexes(self) -> list[int]:
        """1-based band indexes (rasterio convention) to read from the input, ascending."""
        return sorted({i + 1 for i in self.source if i is not None})

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """Turn one window of the input into model input.

        Args:
            arr: (C_in, H, W) of any dtype: either every band of the input (``file_count``) or only
                the bands :attr:`read_indexes`, in that order.

        Returns:
            float32 (len(bands), H, W) in the model's band order: Sentinel-2 reflectance x 1e4
            (offset removed, values at or below it become 1 DN as in Earth Engine's
            ``*_HARMONIZED`` collections), Sentinel-1 dB unchanged, missing optional bands
            filled; NaN wherever the pixel has no data in any band read.

        Raises:
            BandError: ``arr`` has neither ``file_count`` nor ``len(read_indexes)`` bands.
        """
        idx = self.read_indexes
        if arr.ndim != 3:
            raise BandError(f"expected a (C, H, W) window, got shape {arr.shape}")
        if arr.shape[0] == self.file_count:
            sel = arr[[i - 1 for i in idx]]
        elif arr.shape[0] == len(idx):
            sel = arr
        else:
            raise BandError(
                f"window has {arr.shape[0]} bands; expected all {self.file_count} input bands or the "
                f"{len(idx)} read ones"
            )
        x = sel.astype(np.float32)
        bad = np.isnan(x).any(axis=0) if np.issubdtype(x.dtype, np.floating) else np.zeros(x.shape[1:], bool)
        if self.nodata is not None and not math.isnan(self.nodata):
            bad |= (sel == self.nodata).any(axis=0)
        else:
            bad |= (sel == 0).all(axis=0)  # Sentinel-2 NO_DATA is 0 in every band
        pos = {i: k for k, i in enumerate(idx)}
        out = np.empty((len(self.bands),) + x.shape[1:], dtype=np.float32)
        for k, (name, src, fill) in enumerate(zip(self.bands, self.source, self.fill, strict=True)):
            if src is None:
                out[k] = np.float32(fill)
                continue
            plane = x[pos[src + 1]]
            if name in _LANDSAT:
                plane = plane * _LANDSAT_GAIN + _LANDSAT_BIAS
            elif name not in _S1:
                if self.scale != 1.0:
                    plane = plane * np.float32(self.scale)
                if self.offset_dn:
                    plane = np.maximum(plane - np.float32(self.offset_dn), np.float32(1.0))
            out[k] = plane
            if self.nodata_per_band:
                own = sel[pos[src + 1]]
                out[k][(own == self.nodata) if self.nodata is not None and not math.isnan(self.nodata) else np.isnan(plane)] = np.nan
        if not self.nodata_per_band:
            out[:, bad] = np.nan
        elif bad.any():
            out[:, bad & ~np.isnan(out).any(axis=0)] = np.nan  # e.g. pixels 0 in every band (nodata None)
        return out

    def summary(self) -> str:
        """One line for the CLI and the app: offset, scale, level and band mapping with reasons."""
        mapping = [f"{b}<-{self.file_bands[s]}" for b, s in zip(self.bands, self.source, strict=True)
                   if s is not None and self.file_bands[s] != b]
        parts = [
            f"offset {self.offset_dn} DN ({self.offset_reason})",
            f"scale x{self.scale:g} ({self.scale_reason})",
            f"level {self.level} ({self.level_reason})",
        ]
        if mapping:
            parts.append("bands " + ", ".join(mapping))
        if self.missing_optional:
            parts.append("filled missing optional band(s) " + ", ".join(self.missing_optional) + " with the card mean")
        return "; ".join(parts)

    def to_tags(self) -> dict[str, str]:
        """GeoTIFF tags (default domain) that record this decision in an output file."""
        return {
            "LULC_INPUT_OFFSET_DN": str(self.offset_dn),
            "LULC_INPUT_OFFSET_REASON": self.offset_reason,
            "LULC_INPUT_SCALE": f"{self.scale:g}",
            "LULC_INPUT_SCALE_REASON": self.scale_reason,
            "LULC_INPUT_LEVEL": self.level,
            "LULC_INPUT_LEVEL_REASON": self.level_reason,
            "LULC_INPUT_BANDS": ",".join(
                f"{b}={self.file_bands[s] if s is not None else 'filled'}" for b, s in zip(self.bands, self.source, strict=True)
            ),
            "LULC_INPUT_MISSING_BANDS": ",".join(self.missing_optional),
            "LULC_INPUT_WARNINGS": " | ".join(self.warnings),
        }


def parse_offset(value: str | int | None) -> int | None:
    """``"auto"``/``None`` -> ``None`` (decide), ``"0"``/``"1000"`` -> int.

    Raises:
        InputError: Any other value.
    """
    if value is None or str(value).strip().lower() == "auto":
        return None
    text = str(value).strip()
    if text in ("0", str(S2_BASELINE_OFFSET_DN)):
        return int(text)
    raise InputError(f"offset must be auto, 0 or {S2_BASELINE_OFFSET_DN}, got {value!r}")


def parse_bands(text: str | Sequence[str] | None) -> list[str] | None:
    """``"B1,B2,..."`` -> canonical names (aliases allowed); ``None``/empty -> ``None``.

    Raises:
        BandError: A name is not a known band or alias.
    """
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    if not names:
        return None
    bad = [n for n in names if canonical_band(n) is None]
    if bad:
        raise BandError(
            f"unknown band name(s) {', '.join(bad)} in --bands; use Sentinel-2 names B1..B12, B8A "
            "(or aliases such as B02, b8a, swir16) and VV, VH"
        )
    return [canonical_band(n) for n in names]


# --- the decision -------------------------------------------------------------------------------


def _refuse_other_sensor(card, names: Sequence[str | None], what: str) -> None:
    """Refuse, in one sentence naming both sensors and GSDs, an input of another sensor than the model's (e.g. Landsat for S2).

    Raises:
        BandError: The input's named bands all belong to sensors the model has none of.
    """
    from core.inputs.bands import SENSORS, band_spec

    known = [n for n in names if n]
    if not known:
        return
    have = {band_spec(n).sensor for n in known}
    want = {band_spec(b).sensor for b in card.bands if canonical_band(b)}
    if have and want and not have & want:
        def words(sensors: set[str]) -> str:
            return " + ".join(f"{SENSORS[x].title} ({SENSORS[x].gsd_m:g} m)" for x in sorted(sensors))

        raise BandError(
            f"{what} is {words(have)} imagery (bands {', '.join(known)}) but model {card.name!r} is a {words(want)} model "
            f"(bands {', '.join(card.bands)}): its pixels and bands do not match; use a model trained on this sensor "
            "(python -m trainer fit with these bands) or an image of the model's sensor."
        )



def _resolve_names(file_names: Sequence[str | None], override: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, int]]:
    count = len(file_names)
    if override is not None:
        names = [canonical_band(n) or n for n in override]
        if len(names) != count:
            raise BandError(
                f"--bands gives {len(names)} names but the input has {count} bands; give one name per band in "
                "file order (e.g. 13-band L1C: B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,B10,B11,B12)"
            )
        shown = tuple(names)
    else:
        shown = tuple(n or f"band_{i + 1}" for i, n in enumerate(file_names))
        names = [canonical_band(n) for n in file_names]
    where: dict[str, int] = {}
    for i, n in enumerate(names):
        if n is None:
            continue
        if n in where:
            raise BandError(
                f"bands {where[n] + 1} ({shown[where[n]]}) and {i + 1} ({shown[i]}) are both {n}; "
                "fix the band descriptions or give --bands"
            )
        where[n] = i
    return shown, where


def decide(
    card: ModelInputs,
    file_names: Sequence[str | None],
    sample: np.ndarray,
    *,
    nodata: float | None = None,
    metadata: Mapping[str, str] | None = None,
    bands: Sequence[str] | None = None,
    offset: int | str | None = None,
    level: str | None = None,
    level_reason: str = "",
    what: str = "the input",
) -> InputDecision:
    """Decide how to read an input for a model (see the module docstring for the rules).

    Args:
        card: The model's card (bands, mean, optional_bands, levels, level_agreement, name).
        file_names: The input's band descriptions in file order (``None``/empty where unset).
        sample: (C_in, h, w) pixels of every input band (a decimated read is enough), for the
            scale and pixel offset tests.
        nodata: The input's nodata value.
        metadata: GeoTIFF tags of the dataset and its bands, or a scene's metadata, flattened to
            strings.
        bands: Names for the input's bands in file order, overriding the descriptions (``--bands``).
        offset: ``None``/``"auto"`` to decide, or 0 / 1000 to impose.
        level: Processing level known from outside the file (``"L1C"``, ``"L2A"``; e.g. the
            sample pack's scene.json or the Earth Engine collection); ``None`` to read metadata.
        level_reason: Where ``level`` comes from, for the record.
        what: How to call the input in messages (its file name).

    Returns:
        The decision.

    Raises:
        BandError: A required model band is missing (lists the missing bands and the spellings
            tried), a band name occurs twice, or the missing optional bands are a combination the
            card's ``band_agreement`` did not measure (when it measured any).
        InputError: The values are not Sentinel-2 reflectance (8-bit, empty, too large), or the
            offset is ambiguous (names ``--offset``).
    """
    meta = {str(k): str(v) for k, v in (metadata or {}).items() if v is not None}
    shown, where = _resolve_names(file_names, bands)
    source, fill, missing, warn = _model_bands(card, file_names, bands, shown, where, what)
    scale, scale_reason, valid = _scale(sample, where, nodata, what)
    off, off_reason = _offset(offset, sample, where, valid, scale, meta, what)
    lev, lev_reason = _level(level, level_reason, meta)
    warn += _level_warnings(card, lev, lev_reason, what)
    return InputDecision(
        bands=tuple(card.bands), file_bands=shown, source=source, fill=fill, file_count=len(file_names),
        nodata=nodata, scale=scale, scale_reason=scale_reason, offset_dn=int(off), offset_reason=off_reason,
        level=lev, level_reason=lev_reason, missing_optional=tuple(missing), warnings=tuple(warn),
    )


def _model_bands(card: ModelInputs, file_names: Sequence[str | None], bands: Sequence[str] | None, shown: tuple[str, ...],
                 where: Mapping[str, int], what: str) -> tuple[tuple[int | None, ...], tuple[float | None, ...], list[str], list[str]]:
    """Step 1, band names: (source index per model band, fill per model band, missing optional bands, warnings).

    Raises:
        BandError: A required band is missing, or the missing optional bands are a case the card did not measure.
    """
    missing = [b for b in card.bands if b not in where]
    optional = set(getattr(card, "optional_bands", []) or [])
    required_missing = [b for b in missing if b not in optional]
    if required_missing:
        tried = "; ".join(f"{b}: {', '.join(band_aliases(b))}" for b in required_missing)
        unnamed = all(canonical_band(n) is None for n in (file_names or [])) and bands is None
        hint = (" The input's bands have no names: give them in file order with --bands (CLI) or the band-order "
                "control (app).") if unnamed else " Rename the bands or give --bands in file order."
        _refuse_other_sensor(card, [canonical_band(n) for n in (bands or file_names or [])], what)
        raise BandError(
            f"model {card.name!r} needs band(s) {', '.join(required_missing)} that {what} lacks "
            f"(input bands: {', '.join(shown) or 'none'}; spellings tried: {tried}).{hint}"
            + (f" The model can run without {', '.join(sorted(optional))} only." if optional else "")
        )
    source = tuple(where.get(b) for b in card.bands)
    fill = tuple(None if s is not None else float(card.mean[k]) for k, s in enumerate(source))
    warn: list[str] = []
    if missing:
        measured = getattr(card, "band_agreement", {}) or {}
        agreement = measured.get("+".join(missing))
        if measured and agreement is None:  # the card measured some cases, not this one: its map would be unvouched for
            raise BandError(
                f"{what} lacks {', '.join(missing)}; model {card.name!r} runs without some of its optional bands, but its card "
                f"measured only these cases: without {'; without '.join(k.replace('+', ' and ') for k in measured)} "
                f"(agreement with all bands on held-out blocks: {', '.join(f'{k} {v}' for k, v in measured.items())}). "
                "Supply enough of the missing bands that what is still missing is one of those cases, or use a model "
                "trained on your bands."
            )
        warn.append(
            f"{what} lacks optional band(s) {', '.join(missing)}; filled as in training (band dropout)"
            + (f"; measured agreement with all bands on held-out blocks: {agreement}" if agreement is not None else "")
        )
    return source, fill, missing, warn


def _scale(sample: np.ndarray, where: Mapping[str, int], nodata: float | None, what: str) -> tuple[float, str, np.ndarray | None]:
    """Step 2, scale: (multiplier to DN, reason, valid-pixel mask of the sample or ``None`` without Sentinel-2 pixels).

    Raises:
        InputError: 8-bit data, no valid pixel, float values neither 0-1 nor DN, or a median above 20000 DN.
    """
    s2_idx = sorted(i for n, i in where.items() if n not in _NOT_S2)  # every Sentinel-2 band of the input
    x = sample[s2_idx].astype(np.float64) if s2_idx else np.empty((0, 0))
    valid = None
    if x.size:
        bad = np.isnan(x).any(axis=0)
        if nodata is not None and not math.isnan(nodata):
            bad |= (sample[s2_idx] == nodata).any(axis=0)
        else:
            bad |= (x == 0).all(axis=0)
        valid = ~bad
        vals = x[:, valid]
    else:
        vals = x
    dtype = sample.dtype
    if s2_idx and dtype in (np.uint8, np.int8):
        raise InputError(
            f"{what} is 8-bit (0-255): a rendered picture, not Sentinel-2 reflectance; export the bands as "
            "uint16 DN (reflectance x 1e4) or float reflectance 0-1"
        )
    if s2_idx and vals.shape[-1] == 0:
        raise InputError(f"{what} has no valid Sentinel-2 pixel (all nodata or 0); check the file and its nodata value")
    scale, scale_reason = 1.0, "integer DN = reflectance x 1e4" if np.issubdtype(dtype, np.integer) else "values are DN"
    if s2_idx:
        med = float(np.median(vals))
        p99 = float(np.percentile(vals, 99))
        if np.issubdtype(dtype, np.floating) and p99 <= 2.0:
            scale, scale_reason = 10000.0, f"float values with 99th percentile {p99:.3f}: reflectance 0-1, scaled to DN"
        elif np.issubdtype(dtype, np.floating) and med < 20:
            raise InputError(
                f"{what} holds float values with median {med:.3g} and 99th percentile {p99:.3g}: neither reflectance "
                "0-1 nor DN (reflectance x 1e4); rescale it to one of them"
            )
        if med * scale > 20000:
            raise InputError(
                f"{what} has median value {med * scale:.0f} in its Sentinel-2 bands, above 20000: not Sentinel-2 "
                "reflectance x 1e4 (DN); check the scaling of the export"
            )
    return scale, scale_reason, valid


def _offset(offset: int | str | None, sample: np.ndarray, where: Mapping[str, int], valid: np.ndarray | None, scale: float,
            meta: Mapping[str, str], what: str) -> tuple[int, str]:
    """Step 3, radiometric offset: (0 or 1000 DN, reason); user, then metadata, then date and pixel test.

    Raises:
        InputError: A bad ``offset`` value, or no evidence decides (names ``--offset``).
    """
    forced = parse_offset(offset)
    if not any(n not in _NOT_S2 for n in where):
        return 0, "no Sentinel-2 band"
    if forced is not None:
        return forced, "set by the user (--offset)"
    off, off_reason, acq = offset_from_metadata(meta)
    if off is not None:
        return off, off_reason
    dn = {}
    for n, i in where.items():
        if n in _NOT_S2:
            continue
        v = sample[i].astype(np.float64)
        ok = valid if valid is not None else np.ones(v.shape, bool)
        dn[n] = v[ok] * scale
    pix, pix_reason = offset_from_pixels(dn)
    if acq is not None and acq >= OFFSET_SINCE:
        if pix != 0:
            return S2_BASELINE_OFFSET_DN, f"acquired {acq} (baseline >= 04.00 since {OFFSET_SINCE})"
        return 0, f"acquired {acq}, but {pix_reason}"
    if pix is not None:
        return pix, "pixel test: " + pix_reason + (f" (acquired {acq}, before {OFFSET_SINCE})" if acq is not None else "")
    if acq is not None:
        return 0, f"acquired {acq}, before baseline 04.00 ({OFFSET_SINCE}); pixel test inconclusive"
    raise InputError(
        f"cannot tell whether {what} carries the +1000 DN offset of processing baseline 04.00: {pix_reason}, "
        "and it has no metadata saying so; pass --offset 0 (products before 2022-01-25) or --offset 1000 "
        "(baseline 04.00 or later), or choose the offset in the app"
    )


def _level(level: str | None, level_reason: str, meta: Mapping[str, str]) -> tuple[str, str]:
    """Step 4, processing level: (``"L1C"``, ``"L2A"`` or ``"unknown"``, reason); given by the source, else metadata."""
    if level in LEVELS:
        return level, level_reason or "given by the source"
    found, why = level_from_metadata(meta)
    if found:
        return found, why
    return "unknown", level_reason or "no metadata names the processing level"


def _level_warnings(card: ModelInputs, lev: str, lev_reason: str, what: str) -> list[str]:
    """The warning of a level outside the card's ``levels`` (quoting its measured agreement), or of an unknown level."""
    card_levels = [str(v) for v in (getattr(card, "levels", []) or [])]
    if lev in LEVELS and card_levels and lev not in card_levels:
        measured = (getattr(card, "level_agreement", {}) or {}).get(lev)
        shift = (f"{what} is {lev} ({lev_reason}) but model {card.name!r} was trained on {', '.join(card_levels)}: "
                 f"a domain shift ({', '.join(card_levels)} -> {lev}"
                 + (", top-of-atmosphere -> surface reflectance)" if lev == "L2A" else ", surface -> top-of-atmosphere reflectance)"))
        return [f"{shift}; its card measured on {lev} input: {_fmt_agreement(measured)}" if measured else
                f"{shift}; its card has no measured agreement on {lev} input, so check the map against a reference"]
    if lev == "unknown" and card_levels:
        return [f"the processing level of {what} is unknown; model {card.name!r} was trained on {', '.join(card_levels)}"]
    return []


def _fmt_agreement(measured: object) -> str:
    if isinstance(measured, Mapping):
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in measured.items())
    return str(measured)


def _sample_read(ds, max_pixels: int = _SAMPLE_PIXELS) -> np.ndarray:
    """Every band, decimated to at most ``max_pixels`` (nearest neighbour, overviews where present)."""
    factor = max(1.0, math.sqrt(ds.height * ds.width / max_pixels))
    h, w = max(1, int(ds.height / factor)), max(1, int(ds.width / factor))
    return ds.read(out_shape=(ds.count, h, w))


def decide_for_file(
    path: str | Path,
    card: ModelInputs,
    *,
    bands: Sequence[str] | None = None,
    offset: int | str | None = None,
    level: str | None = None,
    level_reason: str = "",
    extra_metadata: Mapping[str, str] | None = None,
) -> InputDecision:
    """:func:`decide` for a GeoTIFF file.

    Band names come from its band descriptions, metadata from its tags, the sample from a
    decimated read (overviews where present).

    Raises:
        RasterReadError: Missing or unreadable file.
        BandError, InputError: See :func:`decide`.
    """
    from rasterio.errors import NotGeoreferencedWarning

    from core.io.raster import _open

    with _open(path) as ds, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        meta = {**file_metadata(ds), **dict(extra_metadata or {})}
        return decide(card, list(ds.descriptions), _sample_read(ds), nodata=ds.nodata, metadata=meta, bands=bands,
                      offset=offset, level=level, level_reason=level_reason, what=Path(path).name)


def decide_for_raster(
    raster,
    card: ModelInputs,
    *,
    bands: Sequence[str] | None = None,
    offset: int | str | None = None,
    level: str | None = None,
    level_reason: str = "",
    metadata: Mapping[str, str] | None = None,
    what: str | None = None,
) -> InputDecision:
    """:func:`decide` for an in-memory :class:`core.io.raster.GeoRaster` (names from ``band_names``).

    Metadata is the raster's ``meta`` (string values) merged with ``metadata``.
    """
    h, w = raster.height, raster.width
    step = max(1, int(math.sqrt(h * w / _SAMPLE_PIXELS)))
    names = [None if n.startswith("band_") else n for n in raster.band_names]
    meta = {k: str(v) for k, v in dict(raster.meta).items() if isinstance(v, str | int | float)}
    meta.update(metadata or {})
    return decide(card, names, raster.data[:, ::step, ::step], nodata=raster.nodata, metadata=meta, bands=bands,
                  offset=offset, level=level, level_reason=level_reason,
                  what=what or str(raster.meta.get("name") or raster.meta.get("scene") or "the input"))


def prepare_raster(raster, decision: InputDecision):
    """Apply a decision to a whole in-memory raster.

    Returns:
        float32 :class:`core.io.raster.GeoRaster` (len(decision.bands), H, W) in the model's band
        order, nodata NaN, ``meta["input_decision"]`` = the decision.
    """
    data = decision.apply(raster.data)
    return replace(raster, data=data, nodata=float("nan"), band_names=decision.bands,
                   meta={**dict(raster.meta), "input_decision": decision})
