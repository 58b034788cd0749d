"""Model bundles: safetensors weights plus a JSON card that says how to use them.

A bundle is a folder::

    model.safetensors   the network's state dict (float16 or float32 tensors; no pickle)
    card.json           architecture, bands in order, normalisation, classes with colours,
                        training data, metrics, version

Everything needed to run the model is in the card, so the app never needs the trainer to load one.
Loading reads only tensors and JSON: no code is unpickled.

Normalisation: ``x_norm = (x - mean) / std`` per band on raw values (Sentinel-2 reflectance x 1e4,
Sentinel-1 dB); nodata pixels (NaN) become 0 after normalisation, i.e. the band mean.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.dynamicworld import dynamic_world_normalize
from models.registry import create_model

__all__ = ["BundleError", "check_card_schema", "ModelCard", "Bundle", "save_bundle", "load_bundle", "read_card", "write_card", "CARD_VERSION"]

CARD_VERSION = 1


class BundleError(ValueError):
    """A bundle is missing, malformed, or does not fit the input it is given."""


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_CARD_TYPES: dict[str, tuple[str, object]] = {
    "name": ("text", lambda v: isinstance(v, str)),
    "arch": ("text", lambda v: isinstance(v, str)),
    "encoder": ("text", lambda v: isinstance(v, str)),
    "bands": ("a list of band names", _is_str_list),
    "mean": ("a list of numbers", lambda v: isinstance(v, list) and all(_is_num(x) for x in v)),
    "std": ("a list of numbers", lambda v: isinstance(v, list) and all(_is_num(x) for x in v)),
    "classes": ('an object {"name", "classes": [{"id", "name", "color"}, ...]}', lambda v: isinstance(v, dict)),
    "tile": ("a positive whole number of pixels", lambda v: _is_int(v) and v > 0),
    "gsd_m": ("a positive number of metres", lambda v: _is_num(v) and v > 0),
    "training": ("an object", lambda v: isinstance(v, dict)),
    "metrics": ("an object", lambda v: isinstance(v, dict)),
    "version": ("a whole number", _is_int),
    "created": ("text", lambda v: isinstance(v, str)),
    "notes": ("text", lambda v: isinstance(v, str)),
    "preprocessing": ("text", lambda v: isinstance(v, str)),
    "optional_bands": ("a list of band names", _is_str_list),
    "levels": ("a list of processing levels (L1C, L2A)", _is_str_list),
    "band_agreement": ("an object of band(s) -> number", lambda v: isinstance(v, dict) and all(_is_num(x) for x in v.values())),
    "level_agreement": ("an object of level -> object", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())),
    "license": ("text", lambda v: isinstance(v, str)),
}
"""Card field -> (what it must be, check of its JSON value): the card's schema by type."""


def check_card_schema(d: Mapping[str, object]) -> None:
    """Check the types of a card's fields (as parsed from JSON) before anything uses them.

    Args:
        d: The card as a dict (unknown keys are ignored, for cards from newer versions).

    Raises:
        BundleError: A field has the wrong type, or a class entry lacks an integer ``id`` (0..254),
            a ``name`` or a ``#rrggbb`` ``color``; the message names the field and what it must be.
    """
    for key, (what, ok) in _CARD_TYPES.items():
        if key in d and not ok(d[key]):
            got = d[key]
            shown = f"a list of {len(got)} item(s)" if isinstance(got, list) and key == "classes" else repr(got)[:60]
            raise BundleError(f"card field {key!r} must be {what}, got {shown}; fix card.json or re-export the bundle")
    classes = d.get("classes")
    if isinstance(classes, dict):
        if not isinstance(classes.get("name"), str):
            raise BundleError('card field classes.name must be the scheme name (text, e.g. "dynamic_world")')
        items = classes.get("classes")
        if not isinstance(items, list):
            raise BundleError("card field classes.classes must be a list of {id, name, color} objects")
        for i, c in enumerate(items):
            ok = (isinstance(c, dict) and _is_int(c.get("id")) and 0 <= c["id"] < 255 and isinstance(c.get("name"), str)
                  and isinstance(c.get("color"), str) and len(c["color"]) == 7 and c["color"].startswith("#"))
            if not ok:
                raise BundleError(
                    f"card class {i} must be an object with an integer id (0-254), a name and a #rrggbb color, got {c!r}"[:300]
                )


@dataclass
class ModelCard:
    """Self-description of a model bundle.

    Attributes:
        name: Short name (``"default"``).
        arch: Architecture key (``"unet"``), see :data:`models.registry.ARCHITECTURES`.
        encoder: Encoder name (``"resnet18"``).
        bands: Input band names in the order the network expects.
        mean: Per-band mean of raw values, same order as ``bands``.
        std: Per-band standard deviation of raw values.
        classes: Class scheme dict: ``{"name", "title", "ignore_index", "classes": [{"id", "name",
            "color"}]}``; output channel k is ``classes[k]``.
        tile: Tile side used in training/inference (pixels).
        gsd_m: Ground sampling distance the model was trained at (metres).
        training: Free-form description of the training data and run.
        metrics: Evaluation results (per split / scene).
        version: Card format version.
        created: ISO time of writing.
        notes: Free text (e.g. why this encoder).
        preprocessing: Named input normalisation: ``"standardize"`` (``(x - mean) / std`` per band on
            raw values) or ``"dynamic_world"`` (Dynamic World's log/percentile/sigmoid transform,
            Brown et al. 2022); see :meth:`Bundle.normalize`.
        optional_bands: Bands of ``bands`` the model can run without (it was trained with band
            dropout); a missing optional band is filled with its card ``mean`` (0 after
            standardisation), as in training.
        levels: Sentinel-2 processing levels seen in training (``["L1C", "L2A"]``); empty = unknown.
        band_agreement: Measured label agreement with the all-bands prediction on held-out blocks
            when bands are missing, keyed by the missing band(s) (``{"B5": 0.97, "B5+B12": 0.93}``).
        level_agreement: Measured agreement on held-out blocks per input level when it differs from
            what a user might expect (``{"L2A": {"miou": 0.5, "oa": 0.8, "reference": "dw"}}``).
        license: Licence of the weights (``"Apache-2.0"``) and attribution, where not our own.
    """

    name: str
    arch: str
    encoder: str
    bands: list[str]
    mean: list[float]
    std: list[float]
    classes: dict
    tile: int = 256
    gsd_m: float = 10.0
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    version: int = CARD_VERSION
    created: str = ""
    notes: str = ""
    preprocessing: str = "standardize"
    optional_bands: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    band_agreement: dict = field(default_factory=dict)
    level_agreement: dict = field(default_factory=dict)
    license: str = ""

    @property
    def num_classes(self) -> int:
        """K, the number of output channels."""
        return len(self.classes["classes"])

    @property
    def class_names(self) -> list[str]:
        """Class names by output channel."""
        return [c["name"] for c in self.classes["classes"]]

    @property
    def scheme_name(self) -> str:
        """Name of the class scheme (``"dynamic_world"``)."""
        return str(self.classes["name"])

    def validate(self) -> None:
        """Check internal consistency.

        Raises:
            BundleError: A field of the wrong type (see :func:`check_card_schema`), lengths of
                bands/mean/std differ, std <= 0, no classes, wrong version.
        """
        check_card_schema(asdict(self))
        if self.version != CARD_VERSION:
            raise BundleError(f"card version {self.version} is not supported (expected {CARD_VERSION})")
        if not (len(self.bands) == len(self.mean) == len(self.std)) or not self.bands:
            raise BundleError(
                f"card lists {len(self.bands)} bands, {len(self.mean)} means and {len(self.std)} stds"
            )
        if any(s <= 0 for s in self.std):
            raise BundleError("card has a non-positive std")
        if not self.classes.get("classes"):
            raise BundleError("card has no classes")
        if self.preprocessing not in ("standardize", "dynamic_world"):
            raise BundleError(f"card names unknown preprocessing {self.preprocessing!r} (known: standardize, dynamic_world)")
        extra = [b for b in self.optional_bands if b not in self.bands]
        if extra:
            raise BundleError(f"card lists optional band(s) {', '.join(extra)} that are not among its bands")

    def to_json(self) -> str:
        """The card as indented JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        """Build from a parsed card.json.

        Raises:
            BundleError: Not a JSON object, missing fields, or fields of the wrong type.
        """
        if not isinstance(d, dict):
            raise BundleError(
                f"card.json must hold one JSON object with the card's fields (name, arch, bands, classes, ...), "
                f"got a {type(d).__name__}"
            )
        check_card_schema(d)
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise BundleError(f"card.json is incomplete: {exc}") from None


def _bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Bundle:
    """A loaded model: network in eval mode plus its card, callable on raw band values.

    Args:
        model: The network.
        card: Its card.
        path: Folder it was loaded from, if any.
        device: Torch device for inference (``"cpu"`` by default).
        precision: ``"fp32"``, ``"bf16"`` (autocast), or ``"auto"``: bf16 where the CPU has
            native bf16 (oneDNN reports support, e.g. AVX-512 BF16/AMX) or on CUDA, else fp32.
    """

    def __init__(
        self, model: torch.nn.Module, card: ModelCard, path: Path | None = None, *, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        self.model = model.eval().to(device).to(memory_format=torch.channels_last)
        self.card = card
        self.path = path
        self.device = torch.device(device)
        if precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {precision!r}")
        if precision == "auto":
            precision = "bf16" if (self.device.type == "cuda" or _bf16_supported()) else "fp32"
        self.precision = precision
        self._mean = torch.tensor(card.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(card.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    @property
    def bands(self) -> list[str]:
        """Input band names in order."""
        return list(self.card.bands)

    @property
    def any_size(self) -> bool:
        """``True`` if the network takes any H, W (Dynamic World), not only multiples of 32."""
        return self.card.arch == "dynamicworld"

    @property
    def num_classes(self) -> int:
        """K."""
        return self.card.num_classes

    @property
    def class_ids(self) -> list[int]:
        """Class id of each output channel."""
        return [int(c["id"]) for c in self.card.classes["classes"]]

    def check_bands(self, available: Sequence[str]) -> None:
        """Raise :class:`BundleError` unless every band of the card is in ``available``.

        The message names the missing bands and what the input has, e.g. a bundle trained on
        Sentinel-1 VV/VH given a scene without radar.
        """
        missing = [b for b in self.card.bands if b not in available]
        if missing:
            raise BundleError(
                f"model {self.card.name!r} needs band(s) {', '.join(missing)} that the input lacks "
                f"(model bands: {', '.join(self.card.bands)}; input: {', '.join(available) or 'none'})"
            )

    def check_scheme(self, scheme_name: str, known_crosswalks: Sequence[tuple[str, str]] = ()) -> None:
        """Raise :class:`BundleError` unless predictions can be compared with ``scheme_name``.

        Args:
            scheme_name: The reference labels' scheme.
            known_crosswalks: (source, target) scheme pairs that can be converted.
        """
        mine = self.card.scheme_name
        if scheme_name == mine or (scheme_name, mine) in known_crosswalks or (mine, scheme_name) in known_crosswalks:
            return
        raise BundleError(f"model classes ({mine}) cannot be compared with {scheme_name} labels: no crosswalk")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) raw values -> normalised by the card's named ``preprocessing``, NaN (nodata) -> 0.

        ``"standardize"``: ``(x - mean) / std`` per band. ``"dynamic_world"``: Dynamic World's
        ``log(x * 0.005 + 1)``, ``(x - mean) / std``, ``exp(5 x - 1)``, ``x / (x + 1)`` with the card's
        ``mean``/``std`` holding its constants (Brown et al. 2022; :func:`models.dynamicworld.dynamic_world_normalize`);
        there nodata enters as DN 0, as in the original runs that made the pack's ``labels_dw.tif``
        (filling 0 after the transform instead changes the labels of neighbouring pixels).

        Raises:
            BundleError: Unknown preprocessing name.
        """
        if self.card.preprocessing == "dynamic_world":
            return dynamic_world_normalize(torch.nan_to_num(x, nan=0.0), self._mean, self._std)
        if self.card.preprocessing != "standardize":
            raise BundleError(f"unknown preprocessing {self.card.preprocessing!r} (known: standardize, dynamic_world)")
        return torch.nan_to_num((x - self._mean) / self._std, nan=0.0)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of raw tiles.

        Args:
            x: float32 (B, C, H, W) raw band values in card order (reflectance x 1e4, dB),
                NaN = nodata; H, W multiples of 32.

        Returns:
            float32 (B, K, H, W) softmax probabilities.

        Raises:
            BundleError: C differs from the card's band count.
        """
        if x.ndim != 4 or x.shape[1] != len(self.card.bands):
            raise BundleError(f"expected (B, {len(self.card.bands)}, H, W) input, got {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        t = self.normalize(t).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model(t)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside ``path`` that replaces ``path`` only if the block completes.

    (The same scheme as ``core.outputs.atomic_path``; ``models`` does not import ``core``.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def save_bundle(model: torch.nn.Module, card: ModelCard, path: str | Path, *, half: bool = True) -> Path:
    """Write a bundle folder.

    Args:
        model: Network whose state dict is saved.
        card: Its card (validated; ``created`` filled in if empty).
        path: Folder (created).
        half: Store floating-point tensors as float16 (halves the size; BatchNorm running stats and
            weights of a trained U-Net keep their predictions, see the bundle round-trip test).

    Returns:
        The folder path.

    Both files are written completely to hidden temporary files in the folder first and then
    renamed into place one right after the other, so an error or a kill while writing leaves the
    previous bundle (or none), never a truncated file.

    Raises:
        BundleError: The card is inconsistent, or ``path`` is a file.
    """
    card.validate()
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BundleError(f"cannot write a bundle to {path}: it is a file; give a folder")
    path.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        state[k] = v.half() if half and v.is_floating_point() else v
    if not card.created:
        card.created = datetime.now(UTC).isoformat(timespec="seconds")
    with _atomic(path / "model.safetensors") as w_tmp, _atomic(path / "card.json") as c_tmp:
        save_file(state, str(w_tmp), metadata={"format": "pt", "card_version": str(card.version)})
        c_tmp.write_text(card.to_json() + "\n")
    return path


def write_card(card: ModelCard, path: str | Path) -> Path:
    """Write (or rewrite) ``card.json`` of a bundle folder without touching its weights.

    Fills ``created`` if empty.

    Raises:
        BundleError: The card is inconsistent (see :meth:`ModelCard.validate`).
    """
    card.validate()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not card.created:
        card.created = datetime.now(UTC).isoformat(timespec="seconds")
    with _atomic(path / "card.json") as tmp:
        tmp.write_text(card.to_json() + "\n")
    return path


def read_card(path: str | Path) -> ModelCard:
    """Read and validate ``card.json`` of a bundle folder.

    Raises:
        BundleError: No card, a file that is not a card (e.g. a Lightning ``.ckpt``), malformed
            JSON, fields of the wrong type, or an inconsistent card.
    """
    path = Path(path)
    if path.is_file() and path.suffix != ".json":
        raise BundleError(
            f"{path} is a file, not a model bundle: give the bundle folder (card.json + model.safetensors). "
            "A Lightning .ckpt is not a bundle; python -m trainer fit writes one to <output.dir>/bundle"
        )
    card_path = path / "card.json" if path.is_dir() else path
    if not card_path.exists():
        raise BundleError(f"no model bundle at {path}: card.json not found")
    try:
        card = ModelCard.from_dict(json.loads(card_path.read_text(encoding="utf-8")))
    except UnicodeDecodeError:
        raise BundleError(f"{card_path} is not a text (UTF-8) JSON file") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{card_path} is not valid JSON: {exc}") from None
    card.validate()
    return card


def load_bundle(path: str | Path, *, device: str = "cpu", precision: str = "fp32") -> Bundle:
    """Load a bundle folder without unpickling anything.

    Args:
        path: Bundle folder (``card.json`` + ``model.safetensors``).
        device: Torch device.
        precision: See :class:`Bundle`.

    Returns:
        The bundle, network in eval mode with float32 weights.

    Raises:
        BundleError: Missing files, malformed card, or weights that do not match the card's
            architecture (wrong band or class count).
    """
    path = Path(path)
    card = read_card(path)
    weights = path / "model.safetensors"
    if not weights.exists():
        raise BundleError(f"bundle {path} has no model.safetensors")
    model = create_model(card.arch, card.encoder, in_channels=len(card.bands), num_classes=card.num_classes)
    try:
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise BundleError(f"{weights} cannot be read ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise BundleError(
            f"weights in {weights} do not match the card ({card.arch}/{card.encoder}, "
            f"{len(card.bands)} bands, {card.num_classes} classes): {' '.join(first)}"
        ) from None
    return Bundle(model, card, path, device=device, precision=precision)
