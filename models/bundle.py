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
import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.card import (
    CARD_VERSION,
    BundleError,
    ModelCard,
    _atomic,
    atomic_folder,
    check_card_schema,
    read_card,
    write_card,
)
from models.dynamicworld import dynamic_world_normalize
from models.registry import create_model

__all__ = ["BundleError", "check_card_schema", "ModelCard", "Bundle", "save_bundle", "load_bundle", "read_card", "write_card", "CARD_VERSION"]

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
        runtime: What calling the bundle runs: ``"torch"``, or ``"onnxruntime"``/``"openvino"`` (fp32 on the CPU,
            the bundle's ONNX export, :func:`models.runtimes.onnx_path_for`, made on the first call); None
            (default): the card's where it applies (:meth:`models.card.ModelCard.default_runtime`; the run policy
            names the same one), PyTorch for a bundle without a folder. :attr:`model` is always the PyTorch
            network (training, features, export).

    Raises:
        ValueError: Unknown precision or runtime.
        BundleError: An ONNX runtime asked for a bundle without a folder, or with bf16 or a GPU.
    """

    def __init__(
        self, model: torch.nn.Module, card: ModelCard, path: Path | None = None, *, device: str = "cpu", precision: str = "fp32",
        runtime: str | None = None,
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
        if runtime is None:
            runtime = card.default_runtime(precision, self.device.type) if path is not None else "torch"
        if runtime not in ("torch", "onnxruntime", "openvino"):
            raise ValueError(f"runtime must be torch, onnxruntime or openvino, got {runtime!r}")
        if runtime != "torch" and (path is None or precision != "fp32" or self.device.type != "cpu"):
            raise BundleError(f"runtime {runtime} runs a saved bundle in fp32 on the CPU; use runtime torch here")
        self.runtime = runtime
        self._onnx = None
        self._onnx_lock = threading.Lock()
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

    def _onnx_forward(self):
        """The ONNX Runtime / OpenVINO forward of this bundle (exported and compiled on first use), or None on torch."""
        if self.runtime == "torch":
            return None
        with self._onnx_lock:
            if self._onnx is None:
                from models.runtimes import (  # models.runtimes imports this module
                    OnnxForward,
                    onnx_metadata,
                    onnx_path_for,
                )

                # the export is keyed by this card's and weights' checksum, so its metadata are this card's
                self._onnx = OnnxForward(onnx_path_for(self.path), self.runtime, metadata=onnx_metadata(self))
        return self._onnx

    def _runs_onnx(self, x: np.ndarray) -> bool:
        # the export's resize is the strided convolution, which PyTorch too uses for even sides of 4 px and more
        return self.runtime != "torch" and x.ndim == 4 and min(x.shape[-2:]) >= 4

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of raw tiles.

        Args:
            x: float32 (B, C, H, W) raw band values in card order (reflectance x 1e4, dB),
                NaN = nodata; H, W multiples of 32.

        Returns:
            float32 (B, K, H, W) softmax probabilities of ``logits / card.temperature`` (calibrated
            when ``fit`` stored a temperature).

        On an ONNX runtime (:attr:`runtime`) the probabilities are the exported graph's, computed the same way.

        Raises:
            BundleError: C differs from the card's band count.
        """
        if self._runs_onnx(x):
            return self._onnx_forward()(x)
        return torch.softmax(self._logits(x) / float(self.card.temperature), dim=1).cpu().numpy()

    def _logits(self, x: np.ndarray) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != len(self.card.bands):
            raise BundleError(f"expected (B, {len(self.card.bands)}, H, W) input, got {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        t = self.normalize(t).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(t).float()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (B, C, H, W) raw band values -> float32 (B, K, H, W) logits (before the temperature).

        Raises:
            BundleError: C differs from the card's band count.
        """
        if self._runs_onnx(x):
            return self._onnx_forward().logits(x)
        return self._logits(x).cpu().numpy()


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

    A new folder is built whole in a hidden folder beside ``path`` and renamed into place
    (:func:`models.card.atomic_folder`), so it appears complete or not at all. An existing folder (other files in it are kept) gets both files written completely to hidden
    temporary files first, then renamed into place one right after the other (the card first); the card
    records the weights' sha256 (``weights_sha256``), so a kill between the two renames leaves a bundle that
    :func:`load_bundle` refuses with a sentence saying so, never one that runs the wrong weights.

    Raises:
        BundleError: The card is inconsistent, or ``path`` is a file.
    """
    card.validate()
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BundleError(f"cannot write a bundle to {path}: it is a file; give a folder")
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        state[k] = v.half() if half and v.is_floating_point() else v
    if not card.created:
        card.created = datetime.now(UTC).isoformat(timespec="seconds")
    fresh = not path.exists() or not any(path.iterdir())  # none yet, or an empty folder (made by an output check)
    with atomic_folder(path) if fresh else contextlib.nullcontext(path) as folder:
        with _atomic(folder / "model.safetensors") as w_tmp, _atomic(folder / "card.json") as c_tmp:
            save_file(state, str(w_tmp), metadata={"format": "pt", "card_version": str(card.version)})
            with open(w_tmp, "rb") as fh:
                card.weights_sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
            c_tmp.write_text(card.to_json() + "\n")
    return path


def load_bundle(path: str | Path, *, device: str = "cpu", precision: str = "fp32", runtime: str | None = None) -> Bundle:
    """Load a bundle folder without unpickling anything.

    Args:
        path: Bundle folder (``card.json`` + ``model.safetensors``).
        device: Torch device.
        precision: See :class:`Bundle`.
        runtime: What calling the bundle runs (see :class:`Bundle`); None: the card's where it applies.

    Returns:
        The bundle, network in eval mode with float32 weights.

    Raises:
        BundleError: Missing files, malformed card, a card naming an unknown architecture or
            encoder (or one that cannot take its band or class count), or weights that do not match
            the card's architecture (wrong band or class count).
    """
    path = Path(path)
    card = read_card(path)
    weights = path / "model.safetensors"
    if not weights.exists():
        raise BundleError(f"bundle {path} has no model.safetensors")
    correction = card.training.get("correction") if isinstance(card.training, dict) else None
    try:
        if isinstance(correction, dict):  # a corrected bundle: the base network plus a fitted 1x1 head
            from models.features import HeadReplaced

            base = create_model(card.arch, card.encoder, in_channels=len(card.bands), num_classes=int(correction["base_classes"]))
            model = HeadReplaced(base, card.num_classes, base_temperature=float(correction.get("base_temperature", 1.0)))
        else:
            model = create_model(card.arch, card.encoder, in_channels=len(card.bands), num_classes=card.num_classes)
    except (KeyError, ValueError, TypeError) as exc:  # unknown architecture or encoder, or a band/class count it cannot take
        raise BundleError(f"card of {path} names a model that cannot be built: {exc.args[0] if exc.args else exc}") from None
    try:
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise BundleError(f"{weights} cannot be read ({exc})") from None
    if card.weights_sha256:
        with open(weights, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != card.weights_sha256:
            raise BundleError(
                f"{weights} is not the file its card.json was saved with (sha256 differs): the bundle was overwritten "
                "only in part (an interrupted save) or one of its files was replaced; save or copy the whole bundle again"
            )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise BundleError(
            f"weights in {weights} do not match the card ({card.arch}/{card.encoder}, "
            f"{len(card.bands)} bands, {card.num_classes} classes): {' '.join(first)}"
        ) from None
    return Bundle(model, card, path, device=device, precision=precision, runtime=runtime)
