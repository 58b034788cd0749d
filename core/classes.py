"""Land-cover class schemes and crosswalks between them.

A :class:`ClassScheme` lists class ids, names and colours, and the id that marks unlabelled pixels
(the ignore index of metrics and losses). A :class:`Crosswalk` maps each id of one scheme to an id
of another (or to "ignore"); :func:`harmonize` brings a prediction and a reference in different
schemes into one, always mapping the finer scheme onto the coarser one.

Sources:
    Dynamic World: Brown et al. (2022), Sci Data 9:251, table 1; ids and palette of
    ``GOOGLE/DYNAMICWORLD/V1``.
    ESA WorldCover 10 m v200: Zanaga et al. (2022), product user manual v2.0, table 1 (ids, colours).
    DFC2020: Robinson et al. (2021), IEEE JSTARS 14 (simplified IGBP, ids 1..10 as in the files).
    OSM and water schemes: the sample pack's README (``../shared/data/README.md``).
    Slovenian land use: eo-learn's LULC classes, as listed in the pack's ``scene.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import SchemeError

__all__ = [
    "NODATA_CLASS",
    "LandCoverClass",
    "ClassScheme",
    "Crosswalk",
    "SCHEMES",
    "CROSSWALKS",
    "get_scheme",
    "register_scheme",
    "scheme_from_dict",
    "scheme_of",
    "get_crosswalk",
    "common_scheme",
    "harmonize",
    "colorize",
]

NODATA_CLASS = 255
"""The one "no class" value of every uint8 class map in this project: predictions where the input had
no data (or outside the AOI), reference labels that are unknown or have no counterpart after a
crosswalk, training targets to ignore (the loss's ``ignore_index``)."""


@dataclass(frozen=True)
class LandCoverClass:
    """One class: integer id, snake_case name, ``#rrggbb`` colour."""

    id: int
    name: str
    color: str


@dataclass(frozen=True)
class ClassScheme:
    """A set of land-cover classes.

    Attributes:
        name: Registry key (``"dynamic_world"``).
        title: Display name.
        classes: The classes in id order.
        ignore_index: Id of unlabelled / nodata pixels (excluded from metrics), or ``None``.
    """

    name: str
    title: str
    classes: tuple[LandCoverClass, ...]
    ignore_index: int | None = NODATA_CLASS

    @property
    def ids(self) -> list[int]:
        """Class ids in order."""
        return [c.id for c in self.classes]

    @property
    def names(self) -> list[str]:
        """Class names in id order."""
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[str]:
        """``#rrggbb`` colours in id order."""
        return [c.color for c in self.classes]

    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore id not counted)."""
        return len(self.classes)

    @property
    def is_contiguous(self) -> bool:
        """True when ids are exactly 0..K-1 (usable directly as tensor indices)."""
        return self.ids == list(range(self.num_classes))

    def colormap(self) -> dict[int, str]:
        """Class id -> colour, for GeoTIFF colour tables."""
        return {c.id: c.color for c in self.classes}

    def to_index(self, labels: np.ndarray) -> np.ndarray:
        """Map class ids to contiguous indices 0..K-1 (ignore and unknown ids -> 255).

        Args:
            labels: Integer array of any shape holding this scheme's ids.

        Returns:
            uint8 array of the same shape.
        """
        lut = np.full(256, NODATA_CLASS, dtype=np.uint8)
        for i, cid in enumerate(self.ids):
            lut[cid] = i
        return lut[labels.astype(np.int64).clip(0, 255)]

    def from_index(self, indices: np.ndarray) -> np.ndarray:
        """Map contiguous indices 0..K-1 back to class ids (the inverse of :meth:`to_index`).

        Args:
            indices: Integer array of any shape; values >= K (e.g. 255) mean "no class".

        Returns:
            uint8 array of class ids; "no class" becomes the ignore id (255 when there is none).
        """
        ignore = self.ignore_index if self.ignore_index is not None else NODATA_CLASS
        lut = np.full(256, ignore, dtype=np.uint8)
        lut[: self.num_classes] = self.ids
        return lut[indices.astype(np.int64).clip(0, 255)]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as stored in model cards."""
        return {
            "name": self.name,
            "title": self.title,
            "ignore_index": self.ignore_index,
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes],
        }


def _scheme(name: str, title: str, rows: list[tuple[int, str, str]], ignore: int | None = NODATA_CLASS) -> ClassScheme:
    return ClassScheme(name, title, tuple(LandCoverClass(i, n, c) for i, n, c in rows), ignore)


DYNAMIC_WORLD = _scheme(
    "dynamic_world",
    "Dynamic World",
    [
        (0, "water", "#419bdf"),
        (1, "trees", "#397d49"),
        (2, "grass", "#88b053"),
        (3, "flooded_vegetation", "#7a87c6"),
        (4, "crops", "#e49635"),
        (5, "shrub_and_scrub", "#dfc35a"),
        (6, "built", "#c4281b"),
        (7, "bare", "#a59b8f"),
        (8, "snow_and_ice", "#b39fe1"),
    ],
)

ESA_WORLDCOVER = _scheme(
    "esa_worldcover",
    "ESA WorldCover",
    [
        (10, "tree_cover", "#006400"),
        (20, "shrubland", "#ffbb22"),
        (30, "grassland", "#ffff4c"),
        (40, "cropland", "#f096ff"),
        (50, "built_up", "#fa0000"),
        (60, "bare_sparse_vegetation", "#b4b4b4"),
        (70, "snow_and_ice", "#f0f0f0"),
        (80, "permanent_water_bodies", "#0064c8"),
        (90, "herbaceous_wetland", "#0096a0"),
        (95, "mangroves", "#00cf75"),
        (100, "moss_and_lichen", "#fae6a0"),
    ],
    ignore=0,
)

OSM = _scheme(
    "osm",
    "OpenStreetMap land use",
    [
        (1, "farm", "#e49635"),
        (2, "forest", "#397d49"),
        (3, "grass", "#88b053"),
        (4, "meadow", "#cdebb0"),
        (5, "residential", "#c4281b"),
        (6, "scrub", "#dfc35a"),
        (7, "water", "#419bdf"),
        (8, "wetland", "#7a87c6"),
    ],
    ignore=0,
)

DFC2020 = _scheme(
    "dfc2020",
    "DFC2020 (simplified IGBP)",
    [
        (1, "forest", "#009900"),
        (2, "shrubland", "#c6b044"),
        (3, "savanna", "#fbff13"),
        (4, "grassland", "#b6ff05"),
        (5, "wetlands", "#27ff87"),
        (6, "croplands", "#c24f44"),
        (7, "urban_built_up", "#a5a5a5"),
        (8, "snow_ice", "#69fff8"),
        (9, "barren", "#f9ffa4"),
        (10, "water", "#1c0dff"),
    ],
    ignore=0,
)

WATER = _scheme("water", "Water / not water", [(0, "not_water", "#d9d9d9"), (1, "water", "#419bdf")])

SLOVENIA_LULC = _scheme(
    "slovenia_lulc",
    "Slovenian land use (eo-learn LULC)",
    [
        (1, "cultivated_land", "#e49635"),
        (2, "forest", "#397d49"),
        (3, "grassland", "#88b053"),
        (4, "shrubland", "#dfc35a"),
        (5, "water", "#419bdf"),
        (6, "wetland", "#7a87c6"),
        (7, "tundra", "#d8c8a0"),
        (8, "artificial_surface", "#c4281b"),
        (9, "bareland", "#a59b8f"),
        (10, "snow_and_ice", "#b39fe1"),
    ],
    ignore=0,
)
"""eo-learn's land-use classes of its Slovenian example patch (national land-use reference as
rasterised by eo-learn; ids and colours from the sample pack's ``scene.json``); 0 = no data."""

SCHEMES: dict[str, ClassScheme] = {s.name: s for s in (DYNAMIC_WORLD, ESA_WORLDCOVER, OSM, DFC2020, WATER, SLOVENIA_LULC)}
"""All known schemes by name."""


def get_scheme(name: str) -> ClassScheme:
    """Return a scheme by name.

    Raises:
        SchemeError: Unknown name; the message lists the known ones.
    """
    try:
        return SCHEMES[name]
    except KeyError:
        raise SchemeError(f"unknown class scheme {name!r}; known: {', '.join(SCHEMES)}") from None


BUILTIN_SCHEMES = frozenset(SCHEMES)
"""Names of the schemes shipped with the project (a user's scheme may not take one of these names)."""


def scheme_from_dict(d: Mapping[str, object]) -> ClassScheme:
    """A scheme from its JSON form (:meth:`ClassScheme.to_dict`, as stored in a model card).

    Raises:
        SchemeError: A malformed dict (missing name or classes).
    """
    try:
        classes = tuple(LandCoverClass(int(c["id"]), str(c["name"]), str(c["color"])) for c in d["classes"])  # type: ignore[union-attr]
        name = str(d["name"])
    except (KeyError, TypeError, ValueError):
        raise SchemeError("a class scheme needs a name and classes [{id, name, color}, ...]") from None
    ignore = d.get("ignore_index", NODATA_CLASS)
    return ClassScheme(name, str(d.get("title") or name), classes, None if ignore is None else int(ignore))  # type: ignore[arg-type]


def register_scheme(scheme: ClassScheme) -> ClassScheme:
    """Make a user's scheme (from a class file or a card) known to :func:`get_scheme` by its name.

    Registering the same scheme again is a no-op; a built-in scheme's name with other classes, or a name
    already registered with other classes, is refused.

    Raises:
        SchemeError: The name is taken by a different scheme.
    """
    known = SCHEMES.get(scheme.name)
    if known is not None and (known.classes, known.ignore_index) != (scheme.classes, scheme.ignore_index):
        kind = "a built-in scheme" if scheme.name in BUILTIN_SCHEMES else "another scheme with other classes"
        raise SchemeError(f"class scheme name {scheme.name!r} is already {kind}; give your class file another name")
    SCHEMES.setdefault(scheme.name, scheme)
    return SCHEMES[scheme.name]


def scheme_of(card: object) -> ClassScheme:
    """The class scheme of a model card.

    A built-in one by name, else the scheme embedded in the card (its ``classes`` dict), registered so that
    :func:`get_scheme` finds it by name afterwards.

    Args:
        card: A :class:`models.card.ModelCard` (anything with a ``classes`` dict).

    Raises:
        SchemeError: The card's classes are malformed, or name a built-in scheme with other classes.
    """
    d = getattr(card, "classes", None)
    if not isinstance(d, Mapping):
        raise SchemeError("the model card has no classes")
    name = str(d.get("name", ""))
    if name in BUILTIN_SCHEMES:
        return SCHEMES[name]
    embedded = scheme_from_dict(d)
    known = SCHEMES.get(embedded.name)
    if known is not None and known.classes != embedded.classes:
        # two bundles trained on different files of one name: the latest card wins for lookups by name
        SCHEMES[embedded.name] = embedded
        return embedded
    return register_scheme(embedded)


@dataclass(frozen=True)
class Crosswalk:
    """A many-to-one mapping of class ids from ``source`` to ``target``.

    Attributes:
        source: Scheme name mapped from.
        target: Scheme name mapped to.
        mapping: Source id -> target id, or ``None`` for "no counterpart" (becomes ignore).
        note: Where the mapping is a judgement call, why.
    """

    source: str
    target: str
    mapping: Mapping[int, int | None]
    note: str = ""

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Map an array of source ids to target ids.

        Args:
            labels: Integer array (any shape) of source-scheme ids.

        Returns:
            uint8 array of target ids; unmapped ids and the source's ignore id become the target's
            ignore id (255 if the target has none).
        """
        tgt = get_scheme(self.target)
        ignore = tgt.ignore_index if tgt.ignore_index is not None else NODATA_CLASS
        lut = np.full(256, ignore, dtype=np.uint8)
        for s, t in self.mapping.items():
            lut[s] = ignore if t is None else t
        return lut[labels.astype(np.int64).clip(0, 255)]

    def table(self) -> list[tuple[str, str]]:
        """(source class name, target class name or "-") pairs, for display."""
        src, tgt = get_scheme(self.source), get_scheme(self.target)
        names = {c.id: c.name for c in tgt.classes}
        return [(c.name, names.get(self.mapping.get(c.id), "-")) for c in src.classes]


CROSSWALKS: dict[tuple[str, str], Crosswalk] = {
    (c.source, c.target): c
    for c in (
        Crosswalk(
            "osm",
            "dynamic_world",
            {1: 4, 2: 1, 3: 2, 4: 2, 5: 6, 6: 5, 7: 0, 8: 3},
            "meadow -> grass; residential -> built; wetland -> flooded_vegetation",
        ),
        Crosswalk(
            "dfc2020",
            "dynamic_world",
            {1: 1, 2: 5, 3: 5, 4: 2, 5: 3, 6: 4, 7: 6, 8: 8, 9: 7, 10: 0},
            "savanna -> shrub_and_scrub (woody cover 10-30 % is closest to DW's scrub)",
        ),
        Crosswalk(
            "esa_worldcover",
            "dynamic_world",
            {10: 1, 20: 5, 30: 2, 40: 4, 50: 6, 60: 7, 70: 8, 80: 0, 90: 3, 95: 3, 100: 7},
            "mangroves -> flooded_vegetation (DW's class covers vegetation intermixed with water); "
            "moss_and_lichen -> bare",
        ),
        Crosswalk(
            "slovenia_lulc",
            "dynamic_world",
            {1: 4, 2: 1, 3: 2, 4: 5, 5: 0, 6: 3, 7: None, 8: 6, 9: 7, 10: 8},
            "cultivated_land -> crops; shrubland -> shrub_and_scrub; wetland -> flooded_vegetation; "
            "artificial_surface -> built; bareland -> bare; tundra has no counterpart (ignored)",
        ),
        Crosswalk(
            "dynamic_world",
            "water",
            {0: 1, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0},
            "only DW 'water' counts as water; flooded_vegetation counts as not water",
        ),
    )
}
"""Known crosswalks by (source, target) scheme names."""


def get_crosswalk(source: str, target: str) -> Crosswalk:
    """Return the crosswalk ``source -> target``.

    Raises:
        SchemeError: No such crosswalk; the message lists the known pairs.
    """
    try:
        return CROSSWALKS[(source, target)]
    except KeyError:
        pairs = ", ".join(f"{s}->{t}" for s, t in CROSSWALKS)
        raise SchemeError(f"no crosswalk from {source!r} to {target!r}; known: {pairs}") from None


def common_scheme(prediction_scheme: str, reference_scheme: str) -> tuple[ClassScheme, Crosswalk | None]:
    """The scheme a prediction and a reference are compared in, and the crosswalk that gets there.

    The finer scheme is mapped onto the coarser: a reference in OSM, DFC2020 or WorldCover is
    crosswalked to Dynamic World; a Dynamic World prediction is crosswalked to the binary water
    scheme to be compared with a water label.

    Args:
        prediction_scheme: Scheme name of the prediction.
        reference_scheme: Scheme name of the reference.

    Returns:
        (common scheme, crosswalk applied or ``None`` when the schemes are equal).

    Raises:
        SchemeError: No crosswalk between the two schemes in either direction.
    """
    if prediction_scheme == reference_scheme:
        return get_scheme(prediction_scheme), None
    if (reference_scheme, prediction_scheme) in CROSSWALKS:
        return get_scheme(prediction_scheme), CROSSWALKS[(reference_scheme, prediction_scheme)]
    if (prediction_scheme, reference_scheme) in CROSSWALKS:
        return get_scheme(reference_scheme), CROSSWALKS[(prediction_scheme, reference_scheme)]
    raise SchemeError(f"no crosswalk between {prediction_scheme!r} and {reference_scheme!r}")


def harmonize(
    prediction: np.ndarray, prediction_scheme: str, reference: np.ndarray, reference_scheme: str
) -> tuple[np.ndarray, np.ndarray, ClassScheme, Crosswalk | None]:
    """Bring a prediction and a reference into their common scheme (see :func:`common_scheme`).

    Args:
        prediction: Integer array (H, W) of ``prediction_scheme`` ids.
        prediction_scheme: Its scheme name.
        reference: Integer array (H, W) of ``reference_scheme`` ids.
        reference_scheme: Its scheme name.

    Returns:
        ``(prediction, reference, scheme, crosswalk)``: both arrays as ids of ``scheme`` (pixels
        without a counterpart set to the scheme's ignore id) and the crosswalk applied, or ``None``.

    Raises:
        SchemeError: No crosswalk between the two schemes in either direction.
    """
    scheme, cw = common_scheme(prediction_scheme, reference_scheme)
    if cw is None:
        return prediction, reference, scheme, None
    if cw.source == reference_scheme:
        return prediction, cw.apply(reference), scheme, cw
    return cw.apply(prediction), reference, scheme, cw


def colorize(labels: np.ndarray, scheme: ClassScheme, alpha_ignore: bool = True) -> np.ndarray:
    """Paint class ids with the scheme's colours.

    Args:
        labels: Integer array (H, W) of class ids.
        scheme: Their scheme.
        alpha_ignore: Make the ignore id and unknown ids transparent.

    Returns:
        uint8 RGBA array (H, W, 4).
    """
    lut = np.zeros((256, 4), dtype=np.uint8)
    if not alpha_ignore:
        lut[:, 3] = 255
    for c in scheme.classes:
        h = c.color.lstrip("#")
        lut[c.id] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return lut[labels.astype(np.int64).clip(0, 255)]
