"""Work of ``python -m trainer finetune``: correct a model with a user's points on one scene.

The network stays frozen; its last feature map and base probabilities are cached over the scene by the run
policy, a logistic head is fitted on the points plus replay samples of the base prediction
(:mod:`core.correction`; Robinson et al. AAAI 2020, microsoft/landcover; PEARL), and the base network plus the
head (a 1x1 convolution, :class:`models.features.HeadReplaced`) is written as a new bundle whose card names the
user's classes. The app's Correct page calls the same functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from core.classes import SCHEMES
from core.correction.cache import build_cache
from core.correction.points import read_points, to_pixels
from core.correction.session import FeatureCache, Round, fit_correction
from core.io.outputs import check_outputs
from models.bundle import Bundle, ModelCard, load_bundle, save_bundle
from models.features import HeadReplaced, feature_count, feature_forward

__all__ = ["scene_cache", "corrected_bundle", "finetune", "class_colors", "PALETTE"]

PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1")
"""Colours of user classes whose name matches no built-in class (Sasha Trubetskoy's 20 distinct colours)."""


def class_colors(names: tuple[str, ...]) -> dict[str, str]:
    """A colour per class name: that of the built-in class of the same name if any, else from :data:`PALETTE`."""
    builtin: dict[str, str] = {}
    for scheme in SCHEMES.values():
        for c in scheme.classes:
            builtin.setdefault(c.name.lower(), c.color)
    out, free = {}, iter(p for p in PALETTE if p not in builtin.values())
    for n in names:
        out[n] = builtin.get(n.lower()) or next(free, PALETTE[len(out) % len(PALETTE)])
    return out


def _base_of(bundle: Bundle) -> tuple[torch.nn.Module, float, tuple[str, ...]]:
    """(base network, its temperature, its class names) of a bundle (the base of a corrected one)."""
    if isinstance(bundle.model, HeadReplaced):
        corr = bundle.card.training["correction"]
        return bundle.model.base, bundle.model.base_temperature, tuple(corr["base_class_names"])
    return bundle.model, float(bundle.card.temperature), tuple(bundle.card.class_names)


def scene_cache(bundle: Bundle, src: str | Path, *, progress=None) -> tuple[FeatureCache, dict]:
    """The feature cache of a scene under a bundle (for a corrected bundle, replay follows its own map).

    Returns:
        (cache, grid) as :func:`core.correction.cache.build_cache`.
    """
    base, _, base_names = _base_of(bundle)
    channels = feature_count(base) + len(base_names)
    cache, grid = build_cache(src, bundle.card, feature_forward(bundle), channels=channels, base_names=base_names, progress=progress)
    if isinstance(bundle.model, HeadReplaced):  # replay the corrected map, in the corrected classes
        w = bundle.model.head.weight.detach().numpy()[:, :, 0, 0]
        b = bundle.model.head.bias.detach().numpy()
        f, h, wd = cache.features.shape
        z = (w @ cache.features.reshape(f, -1) + b[:, None]).reshape(-1, h, wd)
        p = np.exp(z - z.max(axis=0, keepdims=True))
        cache = dataclasses.replace(cache, base_probs=(p / p.sum(axis=0, keepdims=True)).astype(np.float32),
                                    base_names=tuple(bundle.card.class_names))
    return cache, grid


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def corrected_bundle(bundle: Bundle, rnd: Round, output: str | Path, *, rounds: int = 1) -> Path:
    """Write the base network plus the round's head as a bundle at ``output``; returns the folder.

    The card: the base card's bands, normalisation, tile and overlap; the user's classes (names and colours); in
    ``training.correction`` the base bundle and its sha256, the base classes, points per class, rounds and the
    held-back agreement.
    """
    base, base_t, base_names = _base_of(bundle)
    model = HeadReplaced(base, rnd.head.num_classes, base_temperature=base_t)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(rnd.head.weight)[:, :, None, None])
        model.head.bias.copy_(torch.from_numpy(rnd.head.bias))
    out = Path(output)
    colors = class_colors(rnd.classes)
    classes = {"name": f"corrected_{out.name}", "title": f"Corrected classes ({out.name})", "ignore_index": 255,
               "classes": [{"id": i, "name": n, "color": colors[n]} for i, n in enumerate(rnd.classes)]}
    src_path = Path(bundle.path) if bundle.path else None
    base_corr = bundle.card.training.get("correction", {}) if isinstance(bundle.card.training, dict) else {}
    correction = {
        "base_bundle": str(src_path) if src_path else "", "base_sha256": _sha256(src_path / "model.safetensors") if src_path else "",
        "base_classes": len(base_names), "base_class_names": list(base_names), "base_temperature": base_t,
        "points_per_class": rnd.points_per_class, "held_back_per_class": rnd.held_back,
        "rounds": int(rounds) + int(base_corr.get("rounds", 0)),
        "held_back_agreement": {k: (None if np.isnan(v) else round(v, 4)) for k, v in rnd.agreement.items()},
        "replay": rnd.replay_map, "method": "frozen network, logistic head (L2) on its last feature map and log-probabilities, "
        "fitted on the points plus replay samples of the base map (Robinson et al. AAAI 2020; PEARL)",
    }
    overlap = (bundle.card.metrics or {}).get("overlap")
    card: ModelCard = dataclasses.replace(
        bundle.card, name=out.name, classes=classes, temperature=1.0, created="", training={"correction": correction},
        metrics={"overlap": overlap} if overlap is not None else {}, band_agreement={}, level_agreement={},
        notes=f"{bundle.card.name} corrected with {sum(rnd.points_per_class.values())} points",
    )
    return save_bundle(model, card, out, half=False)


def finetune(checkpoint: str, src: str, points: str, output: str, *, class_column: str = "class", seed: int = 0,
             quiet: bool = False) -> tuple[Path, Round]:
    """Correct ``checkpoint`` with the points on ``src`` and write the corrected bundle to ``output``.

    Every input is checked (outputs, points, classes) before the model runs, and nothing is written on an error.

    Raises:
        CorrectionError, BundleError, OutputError, RasterReadError, BandError: One sentence each.
    """
    check_outputs({"--output": Path(output) / "model.safetensors"}, [src, points, Path(checkpoint) / "model.safetensors"])
    pts = read_points(points, class_column=class_column)
    import rasterio

    with rasterio.open(src) as ds:
        rows, cols = to_pixels(pts, ds.crs, ds.transform, ds.height, ds.width)
    bundle = load_bundle(checkpoint)
    if not quiet:
        print(f"{Path(src).name}: caching features of {bundle.card.name} ...", flush=True)
    cache, _ = scene_cache(bundle, src)
    rnd = fit_correction(cache, rows, cols, list(pts.names), seed=seed)
    out = corrected_bundle(bundle, rnd, output)
    if not quiet:
        agree = rnd.agreement.get("all")
        print(f"classes: {', '.join(f'{c} ({n})' for c, n in rnd.points_per_class.items())}; replay {rnd.replay_map}")
        print(f"agreement with your held-back points: {agree:.3f}" if agree is not None else "no points held back")
        print(f"wrote {out} (feature cache {cache.nbytes / 1e6:.0f} MB)")
    return out, rnd
