"""The Dynamic World land-cover network (Brown et al. 2022), ported to pure PyTorch.

Source: Brown, C.F. et al. (2022) "Dynamic World, Near real-time global 10 m land use land cover
mapping", Sci Data 9:251, https://doi.org/10.1038/s41597-022-01307-4; weights and inference graph
from github.com/google/dynamicworld (commit ``0dd288fae5fb5291d988e5ea3c12eb91df481ec5``,
``model/forward/``), Apache License 2.0. The layer names below are the TensorFlow variable names of
that SavedModel (``conv2d_3``, ``batch_normalization_5``, ``depthwise_conv2d_2``), so the converter
maps weights one to one; the wiring follows ``graph_ops.txt`` of ``../shared/models/dynamicworld``.

Network (NCHW here; the original is NHWC)::

    x (B, 9, H, W) --conv2d 3x3 + bn + mish--> 64 ch --antialiased bilinear resize--> (H//2, W//2) = r
    a  = mish(bn_8(dw_3(block(conv2d_2(r), dw_1, conv2d_3, dw_2, conv2d_4))))  + mish(bn_9(conv2d_5(r)))   96 ch
    b  = mish(bn_15(dw_6(block(conv2d_6(a), dw_4, conv2d_7, dw_5, conv2d_8)))) + mish(bn_16(conv2d_9(a)))  144 ch
    c  = mish(bn_2(dw(mish(bn_1(conv2d_1(r))))))                                                          48 ch
    d  = concat(b, c)                                                                                    192 ch
    e  = mish(bn_22(dw_9(block(conv2d_10(d), dw_7, conv2d_11, dw_8, conv2d_12)))) + mish(bn_23(conv2d_13(d)))  144 ch
    logits = conv2d_14(l2_normalize(bilinear_resize(e, (H, W))))                                         9 ch

Every convolution has a bias and is followed by batch normalisation (inference mode, eps 0.001)
and Mish, except the final 1 x 1 classifier. 3 x 3 convolutions use zero padding 1 (TF ``SAME``).

The network is fully convolutional and accepts any H, W >= 2; it is translation-equivariant for
shifts by an even number of pixels (one 2x down-sampling), so tiles with even origins and enough
overlap reproduce a whole-image pass away from the image edge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DynamicWorldNet",
    "DW_BANDS",
    "DW_CLASSES",
    "DW_NORM_P0",
    "DW_NORM_P1",
    "dynamic_world_normalize",
    "state_dict_from_tf",
    "convert_dynamicworld",
]

DW_BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
"""Input bands in network order (Sentinel-2, 10 m grid)."""

DW_CLASSES = [
    "water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub", "built", "bare", "snow_and_ice",
]
"""Output channel order (Dynamic World class ids 0..8)."""

DW_NORM_P0 = [
    1.7417268007636313, 1.7261204997060209, 1.6798346251414997, 1.7734969472909623, 2.289154079164943,
    2.382939712192371, 2.3828939530384052, 2.1952484264967844, 1.554812948247501,
]
"""Per-band centre of the log-scaled input, from the official ``single_image_runner.ipynb``."""

DW_NORM_P1 = [
    2.023298706048351, 2.038905204308012, 2.179592821212937, 2.2890068333026603, 2.6171674549378166,
    2.773418590375327, 2.7578332604178284, 2.789092484314204, 2.4140534947492487,
]
"""Per-band scale of the log-scaled input, same source."""

BN_EPS = 1e-3

# (name, kind, in, out): kind "c3" = 3x3 conv, "c1" = 1x1 conv, "dw" = 3x3 depthwise conv.
# Each unit is followed by the batch norm named in _BN (TF variable names).
_UNITS: list[tuple[str, str, int, int]] = [
    ("conv2d", "c3", 9, 64),
    ("conv2d_1", "c1", 64, 48), ("depthwise_conv2d", "dw", 48, 48),
    ("conv2d_2", "c1", 64, 96), ("depthwise_conv2d_1", "dw", 96, 96), ("conv2d_3", "c1", 96, 96),
    ("depthwise_conv2d_2", "dw", 96, 96), ("conv2d_4", "c1", 96, 96), ("depthwise_conv2d_3", "dw", 96, 96),
    ("conv2d_5", "c1", 64, 96),
    ("conv2d_6", "c1", 96, 144), ("depthwise_conv2d_4", "dw", 144, 144), ("conv2d_7", "c1", 144, 144),
    ("depthwise_conv2d_5", "dw", 144, 144), ("conv2d_8", "c1", 144, 144), ("depthwise_conv2d_6", "dw", 144, 144),
    ("conv2d_9", "c1", 96, 144),
    ("conv2d_10", "c1", 192, 144), ("depthwise_conv2d_7", "dw", 144, 144), ("conv2d_11", "c1", 144, 144),
    ("depthwise_conv2d_8", "dw", 144, 144), ("conv2d_12", "c1", 144, 144), ("depthwise_conv2d_9", "dw", 144, 144),
    ("conv2d_13", "c1", 192, 144),
]
_BN = {
    "conv2d": "batch_normalization", "conv2d_1": "batch_normalization_1",
    "depthwise_conv2d": "batch_normalization_2", "conv2d_2": "batch_normalization_3",
    "depthwise_conv2d_1": "batch_normalization_4", "conv2d_3": "batch_normalization_5",
    "depthwise_conv2d_2": "batch_normalization_6", "conv2d_4": "batch_normalization_7",
    "depthwise_conv2d_3": "batch_normalization_8", "conv2d_5": "batch_normalization_9",
    "conv2d_6": "batch_normalization_10", "depthwise_conv2d_4": "batch_normalization_11",
    "conv2d_7": "batch_normalization_12", "depthwise_conv2d_5": "batch_normalization_13",
    "conv2d_8": "batch_normalization_14", "depthwise_conv2d_6": "batch_normalization_15",
    "conv2d_9": "batch_normalization_16", "conv2d_10": "batch_normalization_17",
    "depthwise_conv2d_7": "batch_normalization_18", "conv2d_11": "batch_normalization_19",
    "depthwise_conv2d_8": "batch_normalization_20", "conv2d_12": "batch_normalization_21",
    "depthwise_conv2d_9": "batch_normalization_22", "conv2d_13": "batch_normalization_23",
}


class _Unit(nn.Module):
    """Convolution (with bias) -> batch norm (eps 0.001) -> Mish.

    Without autograd (``torch.no_grad``/``inference_mode``) in eval mode the batch norm is folded into
    the convolution and Mish runs in place: the folded weights are computed from the current ones
    when first needed (again after any change to them) and kept outside the state dict
    (:meth:`fold`), so the saved weights stay the original's; training, autograd and ONNX export
    run the separate convolution, batch norm and Mish. On the 2-core development machine this cut
    the port's CPU time per batch of 8 x 256 x 256 px from 6.6 s to 5.1 s (docs/benchmarks/peers.md).
    """

    def __init__(self, kind: str, cin: int, cout: int) -> None:
        super().__init__()
        if kind == "c3":
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        elif kind == "dw":
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, groups=cin)
        else:
            self.conv = nn.Conv2d(cin, cout, 1)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self._folded: tuple | None = None  # (weights' device and versions, weight, bias)

    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution with the batch norm folded in (inference mode).

        ``bn(conv(x)) = conv'(x)`` with ``w' = w g / sqrt(v + eps)`` per output channel and
        ``b' = (b - m) g / sqrt(v + eps) + beta`` (g, beta, m, v: the batch norm's weight, bias, running
        mean and variance; Ioffe & Szegedy 2015, eq. in Alg. 2). Computed in float64, stored float32.

        Returns:
            (weight (Cout, Cin/groups, kh, kw), bias (Cout,)), float32, on the convolution's device.
        """
        bn, conv = self.bn, self.conv
        key = (conv.weight.device, *(t._version for t in (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)))
        if self._folded is None or self._folded[0] != key:  # weights loaded or changed in place since: fold again
            with torch.no_grad():
                scale = bn.weight.double() * torch.rsqrt(bn.running_var.double() + bn.eps)
                w = (conv.weight.double() * scale.view(-1, 1, 1, 1)).float()
                b = ((conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()).float()
            self._folded = (key, w.contiguous(memory_format=torch.channels_last), b)
        return self._folded[1], self._folded[2]

    def train(self, mode: bool = True) -> _Unit:
        """Set training mode; drops the folded weights (they are made again from the weights in eval)."""
        self._folded = None
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .float(): fold again from the moved weights
        self._folded = None
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or torch.onnx.is_in_onnx_export():
            return F.mish(self.bn(self.conv(x)))
        w, b = self.fold()
        return F.mish(F.conv2d(x, w, b, padding=self.conv.padding, groups=self.conv.groups), inplace=True)


class DynamicWorldNet(nn.Module):
    """Dynamic World's forward network.

    Args:
        in_channels: Must be 9 (B2, B3, B4, B5, B6, B7, B8, B11, B12 after
            :func:`dynamic_world_normalize`).
        num_classes: Must be 9 (the Dynamic World classes, :data:`DW_CLASSES`).

    Raises:
        ValueError: Other band or class counts (the published weights fix both).
    """

    def __init__(self, in_channels: int = 9, num_classes: int = 9) -> None:
        super().__init__()
        if in_channels != 9 or num_classes != 9:
            raise ValueError(f"Dynamic World takes 9 bands and gives 9 classes, not {in_channels} / {num_classes}")
        self.units = nn.ModuleDict({name: _Unit(kind, cin, cout) for name, kind, cin, cout in _UNITS})
        self.classifier = nn.Conv2d(144, num_classes, 1)  # TF conv2d_14
        taps = torch.tensor(_AA_TAPS)
        # the antialiased 2x resize after conv2d as a depthwise kernel (not in the state dict: a constant)
        self.register_buffer("_aa_kernel", (taps[:, None] * taps[None, :]).expand(64, 1, 4, 4).clone(), persistent=False)

    def _chain(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for n in names:
            x = self.units[n](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for normalised input.

        Args:
            x: float32 (B, 9, H, W), normalised with :func:`dynamic_world_normalize`; H, W >= 2.

        Returns:
            float32 (B, 9, H, W) logits (softmax over dim 1 gives the class probabilities).

        Always computed in float32, also inside a bf16 autocast region: the port must reproduce the
        original's float32 logits (and the antialiased resize has no bf16 kernel on CPU).
        """
        with torch.autocast(x.device.type, enabled=False):
            return self._forward(x.float())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        u = self.units
        x = u["conv2d"](x)
        r = _half_antialiased(x, self._aa_kernel)
        a = self._chain(r, "conv2d_2", "depthwise_conv2d_1", "conv2d_3", "depthwise_conv2d_2", "conv2d_4",
                        "depthwise_conv2d_3") + u["conv2d_5"](r)
        b = self._chain(a, "conv2d_6", "depthwise_conv2d_4", "conv2d_7", "depthwise_conv2d_5", "conv2d_8",
                        "depthwise_conv2d_6") + u["conv2d_9"](a)
        c = self._chain(r, "conv2d_1", "depthwise_conv2d")
        d = torch.cat([b, c], dim=1)
        e = self._chain(d, "conv2d_10", "depthwise_conv2d_7", "conv2d_11", "depthwise_conv2d_8", "conv2d_12",
                        "depthwise_conv2d_9") + u["conv2d_13"](d)
        e = F.interpolate(e, size=(h, w), mode="bilinear", align_corners=False)  # TF half_pixel_centers=True
        e = e * torch.rsqrt(torch.clamp((e * e).sum(dim=1, keepdim=True), min=1e-12))
        return self.classifier(e)


_AA_TAPS = (0.125, 0.375, 0.375, 0.125)


def _half_antialiased(x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """``F.interpolate(x, (H // 2, W // 2), mode="bilinear", antialias=True)`` as a strided depthwise convolution.

    For an exact factor of 2 (H and W even) PyTorch's antialiased bilinear filter is the triangle
    filter stretched by 2: output pixel i takes input pixels 2i - 1 .. 2i + 2 with weights
    (1, 3, 3, 1) / 8 per axis, renormalised by the weight that falls inside the image at the borders
    ((3, 3, 1) / 7 for the first row or column, (1, 3, 3) / 7 for the last; ``aten/src/ATen/native/
    UpSample.h``, ``_compute_indices_weights_aa``). So the resize is a 4 x 4 depthwise convolution with
    stride 2 and zero padding 1, divided by the weight inside the image (the same convolution of ones):
    the same numbers up to float32 rounding (about 1e-7), and exportable to ONNX, which has no
    antialiased resize in opset 18. Odd H or W (a factor other than 2) use ``F.interpolate``.

    Args:
        x: float32 (B, C, H, W).
        kernel: (C, 1, 4, 4) depthwise weights, the outer product of ``_AA_TAPS`` (made when None;
            the network passes a fixed one, so that the ONNX export sees a constant kernel).

    Returns:
        float32 (B, C, H // 2, W // 2).
    """
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or h < 4 or w < 4:
        return F.interpolate(x, size=(h // 2, w // 2), mode="bilinear", align_corners=False, antialias=True)
    if kernel is None:
        taps = torch.tensor(_AA_TAPS, dtype=x.dtype, device=x.device)
        kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, 4, 4)
    y = F.conv2d(x, kernel, stride=2, padding=1, groups=kernel.shape[0])
    # the weight inside the image: 1 inside, 7/8 on border rows/columns, 49/64 at corners (exact in float32)
    inside = F.conv2d(torch.ones_like(x[:1, :1]), kernel[:1], stride=2, padding=1)
    return y.div_(inside)


def dynamic_world_normalize(x: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    """Dynamic World's input transform, per band.

    ``x = log(x * 0.005 + 1); x = (x - p0) / p1; x = exp(5 x - 1); x = x / (x + 1)``
    (official ``single_image_runner.ipynb`` of google/dynamicworld).

    Args:
        x: float32 (B, C, H, W) Sentinel-2 L1C digital numbers (reflectance x 1e4); NaN = nodata.
        p0: (1, C, 1, 1) per-band centres (:data:`DW_NORM_P0`).
        p1: (1, C, 1, 1) per-band scales (:data:`DW_NORM_P1`).

    Returns:
        float32 (B, C, H, W) in (0, 1); NaN stays NaN (the caller fills nodata).
    """
    x = torch.log(x * 0.005 + 1.0)
    x = (x - p0) / p1
    x = torch.exp(5.0 * x - 1.0)
    return x / (x + 1.0)


def state_dict_from_tf(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the SavedModel's variables onto :class:`DynamicWorldNet`'s state dict.

    Args:
        variables: TF name -> array (``conv2d_3/kernel`` HWIO, ``depthwise_conv2d_2/depthwise_kernel``
            (kh, kw, C, 1), ``batch_normalization_5/moving_mean`` ...), e.g. ``np.load(variables.npz)``.

    Returns:
        A state dict (float32) for ``DynamicWorldNet().load_state_dict(..., strict=True)``.

    Raises:
        KeyError: A variable is missing (the message names it).
    """
    def get(name: str) -> torch.Tensor:
        if name not in variables:
            raise KeyError(f"variable {name!r} missing from the Dynamic World weights")
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32).copy())

    sd: dict[str, torch.Tensor] = {}
    for name, kind, _, _ in _UNITS:
        if kind == "dw":
            k = get(f"{name}/depthwise_kernel")  # (kh, kw, C, 1) -> (C, 1, kh, kw)
            sd[f"units.{name}.conv.weight"] = k.permute(2, 3, 0, 1).contiguous()
        else:
            sd[f"units.{name}.conv.weight"] = get(f"{name}/kernel").permute(3, 2, 0, 1).contiguous()
        sd[f"units.{name}.conv.bias"] = get(f"{name}/bias")
        bn = _BN[name]
        sd[f"units.{name}.bn.weight"] = get(f"{bn}/gamma")
        sd[f"units.{name}.bn.bias"] = get(f"{bn}/beta")
        sd[f"units.{name}.bn.running_mean"] = get(f"{bn}/moving_mean")
        sd[f"units.{name}.bn.running_var"] = get(f"{bn}/moving_variance")
        sd[f"units.{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    sd["classifier.weight"] = get("conv2d_14/kernel").permute(3, 2, 0, 1).contiguous()
    sd["classifier.bias"] = get("conv2d_14/bias")
    return sd


_CLASS_COLORS = ["#419bdf", "#397d49", "#88b053", "#7a87c6", "#e49635", "#dfc35a", "#c4281b", "#a59b8f", "#b39fe1"]

LICENSE_TEXT = (
    "Apache-2.0. Dynamic World forward model, Copyright Google LLC, from github.com/google/dynamicworld "
    "(commit 0dd288fae5fb5291d988e5ea3c12eb91df481ec5, model/forward); weights converted unchanged from the "
    "TensorFlow SavedModel to safetensors (float32). Cite: Brown, C.F. et al. (2022) Dynamic World, Near "
    "real-time global 10 m land use land cover mapping. Sci Data 9:251, doi:10.1038/s41597-022-01307-4. "
    "See LICENSE and NOTICE in this folder."
)


def convert_dynamicworld(source_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert the published Dynamic World weights into a model bundle.

    Writes ``model.safetensors`` (float32), ``card.json`` (``arch: "dynamicworld"``,
    ``preprocessing: "dynamic_world"``, the normalisation constants as the card's ``mean``/``std``,
    licence and attribution) and copies ``LICENSE`` and ``NOTICE`` next to them.

    Args:
        source_dir: Folder with ``variables.npz``, ``LICENSE`` and ``NOTICE``
            (``../shared/models/dynamicworld``).
        out_dir: Bundle folder to write (created; existing files replaced).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        FileNotFoundError: A source file is missing.
        KeyError: The weights lack a variable of the network.
    """
    from safetensors.torch import save_file

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    for f in ("variables.npz", "LICENSE", "NOTICE"):
        if not (source_dir / f).exists():
            raise FileNotFoundError(f"{source_dir / f} not found")
    with np.load(source_dir / "variables.npz") as z:
        sd = state_dict_from_tf({k: z[k] for k in z.files})
    DynamicWorldNet().load_state_dict(sd, strict=True)  # fails loudly on any shape mismatch
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"))
    card = {
        "name": "dynamicworld",
        "arch": "dynamicworld",
        "encoder": "none",
        "bands": DW_BANDS,
        "mean": DW_NORM_P0,
        "std": DW_NORM_P1,
        "classes": {
            "name": "dynamic_world",
            "title": "Dynamic World",
            "ignore_index": 255,
            "classes": [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(zip(DW_CLASSES, _CLASS_COLORS, strict=True))],
        },
        "tile": 256,
        "gsd_m": 10.0,
        "training": {
            "source": "Brown et al. (2022); trained by Google on Sentinel-2 L1C with expert and non-expert "
                      "annotations (not by this project)",
            "weights": "github.com/google/dynamicworld@0dd288fae5fb5291d988e5ea3c12eb91df481ec5 model/forward",
        },
        "metrics": {},
        "version": 1,
        "created": "",
        "notes": "Dynamic World (Brown et al. 2022), run locally. Single-date prediction without the cloud masking "
                 "and compositing of the published collection. mean/std hold the normalisation constants P0/P1 "
                 "of the dynamic_world preprocessing, not band statistics. Trained on L1C; on L2A input it runs "
                 "outside its training domain.",
        "preprocessing": "dynamic_world",
        "optional_bands": [],
        "levels": ["L1C"],
        "band_agreement": {},
        "level_agreement": {},
        "license": LICENSE_TEXT,
        # OpenVINO runs the port about 5x faster than eager PyTorch on the CPU (it fuses Mish into the
        # convolutions) with logits within 1e-5 and the same labels (docs/benchmarks/peers.md)
        "runtime": "openvino",
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    for f in ("LICENSE", "NOTICE"):
        shutil.copyfile(source_dir / f, out_dir / f)
    return out_dir


if __name__ == "__main__":  # python -m models.dynamicworld SOURCE_DIR OUT_DIR
    import sys

    if len(sys.argv) != 3:
        print("usage: python -m models.dynamicworld ../shared/models/dynamicworld models/dynamicworld", file=sys.stderr)
        sys.exit(2)
    try:
        print(convert_dynamicworld(sys.argv[1], sys.argv[2]))
    except (FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
