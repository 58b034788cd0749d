"""What a corrected bundle says about itself, and how its map is replayed: shared by the app and the CLI.

``python -m trainer finetune`` and the app's Correct page both turn a :class:`~core.correction.session.Round`
into a bundle's card fields with :func:`card_fields` and, when the model being corrected is itself a
corrected bundle, replay that bundle's head over the scene's feature cache with :func:`replay_head`, so the
two entry points write the same card and fit on the same replay map. No torch here (the bundle itself is
written by :func:`models.features.save_corrected_bundle`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from core.classes import SCHEMES
from core.correction.session import FeatureCache, Round

__all__ = ["PALETTE", "class_colors", "card_fields", "replay_head", "file_sha256", "METHOD"]

PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1")
"""Colours of user classes whose name matches no built-in class (Sasha Trubetskoy's 20 distinct colours)."""

METHOD = ("frozen network, logistic head (L2) on its last feature map and log-probabilities, fitted on the points plus "
          "replay samples of the base map and of its untouched classes (Robinson et al. AAAI 2020; PEARL); for classes of "
          "the user's own, no replay and the class priors moved halfway to the scene's, estimated by EM (Saerens et al. 2002)")
"""The method, as the card's ``training.correction.method`` names it."""


def class_colors(names: tuple[str, ...] | list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """A colour per class name: the user's (``overrides``), else the built-in class's of the same name, else :data:`PALETTE`.

    Args:
        names: Class names.
        overrides: Name -> ``#rrggbb`` chosen by the user (wins over everything).

    Returns:
        Name -> ``#rrggbb`` for every name.
    """
    overrides = overrides or {}
    builtin: dict[str, str] = {}
    for scheme in SCHEMES.values():
        for c in scheme.classes:
            builtin.setdefault(c.name.lower(), c.color)
    taken = set(builtin.values()) | set(overrides.values())
    out, free = {}, iter(p for p in PALETTE if p not in taken)
    for n in names:
        out[n] = overrides.get(n) or builtin.get(n.lower()) or next(free, PALETTE[len(out) % len(PALETTE)])
    return out


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_fields(rnd: Round, *, name: str, base_bundle: str | Path | None, base_class_names: tuple[str, ...], base_temperature: float,
                base_training: dict | None = None, rounds: int = 1, colors: dict[str, str] | None = None,
                merges: dict[str, str] | None = None) -> tuple[dict, dict]:
    """The ``classes`` and ``training.correction`` card fields of a corrected bundle.

    Args:
        rnd: The fitted round.
        name: The new bundle's name (the scheme is called ``corrected_<name>``).
        base_bundle: Folder of the bundle that was corrected (its ``model.safetensors`` is hashed); ``None``: unknown.
        base_class_names: The K0 classes of the base network.
        base_temperature: T0 of the base network.
        base_training: The corrected bundle's ``training`` field (a corrected one counts its rounds on).
        rounds: Rounds of this correction.
        colors: Class name -> colour chosen by the user (others by :func:`class_colors`).
        merges: Base class -> user class merged into it (recorded on the card).

    Returns:
        (classes dict ``{"name", "title", "ignore_index", "classes": [{"id", "name", "color"}]}``, correction dict).
    """
    col = class_colors(rnd.classes, colors)
    classes = {"name": f"corrected_{name}", "title": f"Corrected classes ({name})", "ignore_index": 255,
               "classes": [{"id": i, "name": n, "color": col[n]} for i, n in enumerate(rnd.classes)]}
    src = Path(base_bundle) if base_bundle else None
    weights = src / "model.safetensors" if src else None
    prior = (base_training or {}).get("correction", {}) if isinstance(base_training, dict) else {}
    correction = {
        "base_bundle": str(src) if src else "",
        "base_sha256": file_sha256(weights) if weights is not None and weights.is_file() else "",
        "base_classes": len(base_class_names), "base_class_names": list(base_class_names), "base_temperature": float(base_temperature),
        "points_per_class": dict(rnd.points_per_class), "held_back_per_class": dict(rnd.held_back),
        "rounds": int(rounds) + int(prior.get("rounds", 0)),
        "held_back_agreement": {k: (None if np.isnan(v) else round(float(v), 4)) for k, v in rnd.agreement.items()},
        "replay": dict(rnd.replay_map), "method": METHOD, "priors": rnd.priors,
    }
    if merges:
        correction["merges"] = dict(merges)
    return classes, correction


def replay_head(cache: FeatureCache, weight: np.ndarray, bias: np.ndarray, class_names: tuple[str, ...]) -> FeatureCache:
    """The cache with its base probabilities replaced by those of a corrected bundle's head.

    A corrected bundle's feature cache holds its *base* network's features; its replay (and the map before the
    first round) must be the corrected bundle's own map, so ``softmax(W x + b)`` over the cache's features
    replaces the base probabilities (the head of :class:`models.features.HeadReplaced`).

    Args:
        cache: Features (F, H, W) of the base network (features then log-probabilities).
        weight: float32 (K, F) head weights.
        bias: float32 (K,) head biases.
        class_names: The K classes of the corrected bundle.

    Returns:
        A new cache whose ``base_probs`` are float32 (K, H, W) and ``base_names`` ``class_names``.

    Raises:
        ValueError: ``weight`` does not have F columns.
    """
    f, h, w = cache.features.shape
    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    if weight.shape[1] != f:
        raise ValueError(f"head weights have {weight.shape[1]} inputs; the cache has {f} features")
    z = (weight @ cache.features.reshape(f, -1) + bias[:, None]).reshape(-1, h, w)
    p = np.exp(z - z.max(axis=0, keepdims=True))
    return dataclasses.replace(cache, base_probs=(p / p.sum(axis=0, keepdims=True)).astype(np.float32), base_names=tuple(class_names))
