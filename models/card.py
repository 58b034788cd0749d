"""Model cards: the JSON half of a bundle, readable without torch.

A bundle folder holds ``model.safetensors`` (the weights, see :mod:`models.bundle`) and
``card.json``: architecture, bands in order, normalisation, classes with colours, training data,
metrics, version. This module reads, validates, writes and finds cards with the standard library
only (and the leaf :mod:`core.errors`), so that listing and describing bundles (the app's first
page, the Models page) does not import torch or segmentation_models_pytorch; :mod:`models.bundle`
re-exports everything here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from core.errors import LulcError  # the one import of core that models may make: the leaf module of errors

__all__ = ["BundleError", "check_card_schema", "ModelCard", "read_card", "write_card", "find_bundles", "CARD_VERSION"]

CARD_VERSION = 1


class BundleError(LulcError):
    """A bundle is missing, malformed, or does not fit the input it is given.

    A :class:`core.errors.LulcError` (so a ``ValueError``): the one user-error family of the app and
    the command line.
    """


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
    "sensor": ("text (S2, S2+S1, L8/9)", lambda v: isinstance(v, str)),
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
    "runtime": ("one of torch, onnxruntime, openvino (or empty)", lambda v: v in ("", "torch", "onnxruntime", "openvino")),
    "weights_sha256": ("the sha256 of model.safetensors (64 hex digits, or empty)",
                       lambda v: isinstance(v, str) and (v == "" or (len(v) == 64 and all(c in "0123456789abcdef" for c in v)))),
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
        sensor: The sensor(s) of its bands (``"S2"``, ``"S2+S1"``, ``"L8/9"``; ``core.inputs.bands.sensor_of``).
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
        temperature: Softmax temperature T > 0 fitted on the validation split by ``fit``
            (temperature scaling, Guo et al. 2017): probabilities are ``softmax(logits / T)``;
            1.0 = uncalibrated. It never changes the predicted class, only the confidence.
        runtime: The runtime fp32 CPU inference uses by default (``"openvino"``, ``"onnxruntime"``) where its
            package is installed (:meth:`default_runtime`); empty or ``"torch"``: PyTorch. Set only where that
            runtime was measured to reproduce the PyTorch fp32 labels (``models.runtimes.measure_runtimes``).
        weights_sha256: sha256 (hex) of the ``model.safetensors`` this card was saved with, set by
            :func:`models.bundle.save_bundle`; :func:`models.bundle.load_bundle` refuses weights that differ (a
            save interrupted between its two files, or a file replaced by hand). Empty on older cards: not checked.
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
    sensor: str = "S2"
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
    temperature: float = 1.0
    runtime: str = ""
    weights_sha256: str = ""

    def default_runtime(self, precision: str = "fp32", device: str = "cpu") -> str:
        """The runtime this model runs on when nobody names one: :attr:`runtime` where it applies, else torch.

        It applies to fp32 on the CPU when the runtime's package is installed (found by
        :func:`importlib.util.find_spec`, nothing imported; ONNX Runtime and OpenVINO run fp32 on the CPU
        only). The one rule for the bundle (:class:`models.bundle.Bundle`) and the run policy
        (``core.inference.policy.default_runtime``, which calls this method).

        Args:
            precision: ``"fp32"`` or ``"bf16"``.
            device: Torch device type (``"cpu"``, ``"cuda"``).

        Returns:
            ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        """
        import importlib.util

        want = self.runtime or "torch"
        if want not in ("onnxruntime", "openvino") or precision != "fp32" or device != "cpu" or importlib.util.find_spec(want) is None:
            return "torch"
        return want

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
        check_card_schema({f.name: getattr(self, f.name) for f in fields(self)})  # shallow: no deep copy of metrics
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
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float) or not self.temperature > 0:
            raise BundleError(f"card temperature must be a number > 0, got {self.temperature!r}")
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


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside ``path`` that replaces ``path`` only if the block completes.

    (The same scheme as ``core.io.outputs.atomic_path``; ``models`` imports nothing of ``core`` but
    ``core.errors``.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A hidden folder beside ``path`` that becomes ``path`` only if the block completes.

    The folder (``.<name>.<random>.partial``, which :func:`find_bundles` never lists) gets the mode a new
    folder would get (``0o777 & ~umask``, not :func:`tempfile.mkdtemp`'s private 0o700) and is renamed to
    ``path``. A folder already at ``path`` is renamed aside (``.<name>.old-<pid>``) first and removed after, so
    a kill leaves the previous folder or the new one, never a mix of the two; on an error nothing is left.

    Raises:
        OSError: The folder cannot be made or renamed (the previous folder, if any, is unchanged).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        aside = None
        if path.exists():
            aside = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, aside)
        os.replace(tmp, path)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
            JSON, fields of the wrong type, an inconsistent card, or a card that cannot be read
            (permissions, a folder named ``card.json``).
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
    except OSError as exc:  # a folder named card.json, no permission to read it, ...
        raise BundleError(f"{card_path} cannot be read ({exc.strerror or exc})") from None
    card.validate()
    return card


def find_bundles(*roots: str | Path) -> list[Path]:
    """Folders below ``roots`` (searched recursively) that hold a model bundle (``card.json``).

    Folders whose name (below the root) starts with ``.`` are skipped: that is where bundles are
    built before they are renamed into place (``.bundle.*.partial``), so a bundle is never listed
    half-made.

    Returns:
        Sorted bundle folder paths; missing roots are skipped.
    """
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_dir():
            found.update(p.parent.resolve() for p in root.rglob("card.json")
                         if (p.parent / "model.safetensors").exists()
                         and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))
    return sorted(found)
