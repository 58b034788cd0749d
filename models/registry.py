"""Segmentation networks by name (segmentation-models-pytorch), and where bundles live.

Contract: ``create_model(arch, encoder, in_channels, num_classes)`` returns a ``torch.nn.Module``
mapping ``(B, in_channels, H, W)`` float32 to logits ``(B, num_classes, H, W)``; H and W must be
multiples of 32 (five 2x down-samplings in the encoder).

Pretrained encoder weights cannot be downloaded at run time here, so ``encoder_weights`` defaults
to ``None`` (random initialisation). A path to a local ``.safetensors`` file of encoder weights is
loaded into the encoder (for example ImageNet weights fetched once by hand); any other string is
passed to smp, which downloads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from models.card import find_bundles
from models.dynamicworld import DynamicWorldNet

__all__ = ["ARCHITECTURES", "create_model", "load_encoder_weights", "find_bundles"]

ARCHITECTURES: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "deeplabv3plus": "DeepLabV3Plus",
    "dynamicworld": "DynamicWorldNet",
}
"""Architecture name -> network class name: a ``segmentation_models_pytorch`` class, imported only when such a
network is built (importing smp and timm takes 2-6 s on a 2-core machine, which a Dynamic World run does not
need); ``dynamicworld`` is :class:`models.dynamicworld.DynamicWorldNet`, the fixed Dynamic World network, 9 bands
in, 9 classes out, any H and W, which ignores ``encoder``."""


def create_model(
    arch: str = "unet",
    encoder: str = "resnet34",
    *,
    in_channels: int,
    num_classes: int,
    encoder_weights: str | Path | None = None,
) -> torch.nn.Module:
    """Build a segmentation network.

    Args:
        arch: Key of :data:`ARCHITECTURES` (``"unet"``).
        encoder: smp/timm encoder name (``"resnet34"``, ``"resnet18"``, ``"efficientnet-b0"``).
        in_channels: Number of input bands C (any number; the first convolution is sized for it).
        num_classes: Number of output classes K.
        encoder_weights: ``None`` (random), a path to a local ``.safetensors`` encoder state dict,
            or an smp weights name (downloads; fails offline).

    Returns:
        The network in training mode, on the CPU.

    Raises:
        KeyError: Unknown architecture; the message lists the known ones.
        ValueError: Unknown encoder, or encoder weights that do not fit; for ``dynamicworld``, a band
            or class count other than 9.
    """
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    if arch == "dynamicworld":
        return DynamicWorldNet(in_channels=in_channels, num_classes=num_classes)
    import segmentation_models_pytorch as smp

    local = encoder_weights is not None and Path(str(encoder_weights)).suffix == ".safetensors"
    try:
        model = getattr(smp, ARCHITECTURES[arch])(
            encoder_name=encoder,
            encoder_weights=None if local else encoder_weights,
            in_channels=in_channels,
            classes=num_classes,
        )
    except KeyError as exc:
        raise ValueError(f"unknown encoder {encoder!r} for {arch}: {exc}") from None
    if local:
        load_encoder_weights(model, Path(str(encoder_weights)))
    return model


def load_encoder_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a local safetensors state dict into ``model.encoder`` (no unpickling).

    Args:
        model: An smp model (has ``.encoder``).
        path: ``.safetensors`` file whose keys are the encoder's state-dict keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Keys or shapes do not match the encoder (e.g. a different band count in the
            first convolution); the message names the first mismatches.
    """
    if not path.exists():
        raise FileNotFoundError(f"encoder weights {path} not found")
    state = load_file(str(path))
    own = model.encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"encoder weights {path.name} do not fit: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}"
        )
    model.encoder.load_state_dict(state)
