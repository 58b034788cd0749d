"""Per-pixel features of a segmentation network, and a network whose final layer was replaced.

The interactive correction (:mod:`core.correction`) keeps the network frozen, caches its last feature map
and refits only a final 1x1 layer on the user's points, as the land cover mapping tool of Robinson et al.
(AAAI 2020, microsoft/landcover) and Development Seed's PEARL do. What the head sees per pixel:

* the smp U-Net (and the other smp decoders): the decoder's last feature map, the input of the
  segmentation head (16 channels for the default decoder);
* the Dynamic World port: its penultimate layer (144 channels after the L2 normalisation, the input of its
  1x1 classifier);

each followed by the base network's log-probabilities (K0 channels), so that a head can reproduce the base
model exactly (identity on the log-probabilities) and only move away from it where the points say so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["network_features", "feature_count", "HeadReplaced", "LOG_PROB_FLOOR", "base_of", "head_weights", "head_replaced",
           "save_corrected_bundle"]

LOG_PROB_FLOOR = -20.0
"""Log-probabilities are clamped below at this value (a probability of 2e-9), so features stay finite."""


def network_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last feature map and the logits of a network, in one pass.

    Args:
        model: An smp segmentation model (``encoder``, ``decoder``, ``segmentation_head``) or a
            :class:`models.dynamicworld.DynamicWorldNet`.
        x: float32 (B, C, H, W) normalised input.

    Returns:
        (features float32 (B, F, H, W), logits float32 (B, K0, H, W)).

    Raises:
        TypeError: A network of another kind.
    """
    from models.dynamicworld import DynamicWorldNet

    if isinstance(model, DynamicWorldNet):
        with torch.autocast(x.device.type, enabled=False):
            h, w = x.shape[-2:]
            # the port's forward up to its classifier: the classifier is a 1x1 conv on the features
            feats: list[torch.Tensor] = []
            hook = model.classifier.register_forward_hook(lambda m, i, o: feats.append(i[0]))
            try:
                logits = model._forward(x.float())
            finally:
                hook.remove()
            return feats[0].float(), logits.float()
    if all(hasattr(model, a) for a in ("encoder", "decoder", "segmentation_head")):
        dec = model.decoder(model.encoder(x))
        return dec.float(), model.segmentation_head(dec).float()
    raise TypeError(f"no feature map is known for a {type(model).__name__}")


def feature_count(model: nn.Module) -> int:
    """F, the channels of :func:`network_features` (without the log-probabilities)."""
    from models.dynamicworld import DynamicWorldNet

    if isinstance(model, DynamicWorldNet):
        return int(model.classifier.in_channels)
    conv = next(m for m in model.segmentation_head.modules() if isinstance(m, nn.Conv2d))
    return int(conv.in_channels)


class HeadReplaced(nn.Module):
    """A frozen base network whose output is replaced by a 1x1 head on its features and log-probabilities.

    ``forward(x) = head(cat(features(x), clamp(log_softmax(base_logits(x) / T0), LOG_PROB_FLOOR)))``.

    Args:
        base: The base network (its state-dict keys are kept under ``base.``).
        num_classes: K, the classes of the head.
        base_temperature: T0 of the base card (its calibrated probabilities are what the head sees).
    """

    def __init__(self, base: nn.Module, num_classes: int, *, base_temperature: float = 1.0) -> None:
        super().__init__()
        self.base = base
        k0 = self._base_classes(base)
        self.head = nn.Conv2d(feature_count(base) + k0, num_classes, 1)
        self.base_temperature = float(base_temperature)

    @staticmethod
    def _base_classes(base: nn.Module) -> int:
        from models.dynamicworld import DynamicWorldNet

        if isinstance(base, DynamicWorldNet):
            return int(base.classifier.out_channels)
        conv = [m for m in base.segmentation_head.modules() if isinstance(m, nn.Conv2d)][-1]
        return int(conv.out_channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (B, C, H, W) normalised input -> (B, F + K0, H, W): what the head sees."""
        feats, logits = network_features(self.base, x)
        lp = torch.clamp(F.log_softmax(logits / self.base_temperature, dim=1), min=LOG_PROB_FLOOR)
        return torch.cat([feats, lp], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (B, C, H, W) normalised input -> float32 (B, K, H, W) logits."""
        with torch.autocast(x.device.type, enabled=False):
            return self.head(self.features(x).float())


def feature_forward(bundle) -> object:
    """A forward callable for :meth:`core.inference.policy.RunPolicy.run` that returns what a head sees.

    Args:
        bundle: A loaded :class:`models.bundle.Bundle` (its card's normalisation is applied).

    Returns:
        Callable float32 (B, C, T, T) raw band values (NaN = nodata) -> float32 (B, F + K0, T, T): the
        network's last feature map followed by its clamped log-probabilities (see :class:`HeadReplaced`;
        for a corrected bundle, the features of its base network and the base's log-probabilities).
    """
    import numpy as np

    net, temp, _ = base_of(bundle)
    wrapper = HeadReplaced.__new__(HeadReplaced)
    nn.Module.__init__(wrapper)
    wrapper.base, wrapper.base_temperature = net, temp

    @torch.inference_mode()
    def forward(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(bundle.device)
        return wrapper.features(bundle.normalize(t)).cpu().numpy().astype(np.float32)

    return forward


def base_of(bundle) -> tuple[nn.Module, float, tuple[str, ...]]:
    """The base network of a bundle, its temperature and its class names (those of the base for a corrected bundle).

    Args:
        bundle: A loaded :class:`models.bundle.Bundle`.

    Returns:
        (network, T0, the K0 class names).
    """
    if isinstance(bundle.model, HeadReplaced):
        corr = bundle.card.training["correction"]
        return bundle.model.base, bundle.model.base_temperature, tuple(corr["base_class_names"])
    return bundle.model, float(bundle.card.temperature), tuple(bundle.card.class_names)


def head_weights(bundle):
    """The head of a corrected bundle as arrays, or ``None`` for any other bundle.

    Returns:
        (float32 (K, F + K0) weights, float32 (K,) biases) or ``None``.
    """
    if not isinstance(bundle.model, HeadReplaced):
        return None
    return (bundle.model.head.weight.detach().cpu().numpy()[:, :, 0, 0].copy(), bundle.model.head.bias.detach().cpu().numpy().copy())


def head_replaced(base: nn.Module, weight, bias, *, base_temperature: float = 1.0) -> HeadReplaced:
    """``base`` with its output replaced by a 1x1 head of the given weights.

    Args:
        base: The base network (shared, not copied).
        weight: float (K, F + K0) weights (a fitted :class:`core.correction.head.LogisticHead`'s).
        bias: float (K,) biases.
        base_temperature: T0 of the base network.

    Returns:
        The network, in eval mode.

    Raises:
        ValueError: ``weight`` does not have F + K0 columns.
    """
    import numpy as np

    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    model = HeadReplaced(base, int(weight.shape[0]), base_temperature=base_temperature)
    if weight.shape[1] != model.head.in_channels:
        raise ValueError(f"head weights have {weight.shape[1]} inputs; {type(base).__name__} gives {model.head.in_channels}")
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight)[:, :, None, None])
        model.head.bias.copy_(torch.from_numpy(bias))
    return model.eval()


def save_corrected_bundle(bundle, weight, bias, output, *, classes: dict, correction: dict, notes: str = ""):
    """Write a bundle's base network plus a fitted head as a new bundle (:func:`models.bundle.save_bundle`, fp32).

    The card keeps the base card's bands, normalisation, tile and overlap; its classes are ``classes``, its
    ``training`` is ``{"correction": correction}`` (what :func:`models.bundle.load_bundle` needs to rebuild it:
    ``base_classes``, ``base_temperature``, ``base_class_names``), temperature 1 and no held-out metrics of the base.

    Args:
        bundle: The loaded bundle that was corrected (a corrected one: its base network is used).
        weight: float (K, F + K0) head weights.
        bias: float (K,) biases.
        output: Folder of the new bundle.
        classes: The card's ``classes`` dict (K classes).
        correction: The card's ``training.correction`` dict.
        notes: The card's notes.

    Returns:
        The folder.

    Raises:
        BundleError: The card is inconsistent, or ``output`` is a file.
    """
    import dataclasses
    from pathlib import Path

    from models.bundle import save_bundle

    base, base_t, _ = base_of(bundle)
    model = head_replaced(base, weight, bias, base_temperature=base_t)
    out = Path(output)
    overlap = (bundle.card.metrics or {}).get("overlap")
    card = dataclasses.replace(
        bundle.card, name=out.name, classes=classes, temperature=1.0, created="", training={"correction": correction},
        runtime="",  # the base card's runtime was measured on the base network, not on this one: PyTorch
        metrics={"overlap": overlap} if overlap is not None else {}, band_agreement={}, level_agreement={}, notes=notes,
    )
    return save_bundle(model, card, out, half=False)
