"""Work of ``python -m trainer finetune``: correct a model with a user's points on one scene.

The network stays frozen; its last feature map and base probabilities are cached over the scene by the run
policy, a logistic head is fitted on the points plus replay samples of the base prediction
(:mod:`core.correction`; Robinson et al. AAAI 2020, microsoft/landcover; PEARL), and the base network plus the
head (a 1x1 convolution, :class:`models.features.HeadReplaced`) is written as a new bundle whose card names the
user's classes. The app's Correct page calls the same functions.
"""

from __future__ import annotations

from pathlib import Path

from core.config import DW_BUNDLE_DIR
from core.correction.cache import build_cache, with_prior_features
from core.correction.card import PALETTE, card_fields, class_colors, replay_head
from core.correction.points import read_points, to_pixels
from core.correction.session import FeatureCache, Round, fit_correction, is_own_scheme
from core.errors import LulcError
from core.io.outputs import check_outputs
from models.bundle import Bundle, load_bundle
from models.features import base_of, feature_count, feature_forward, head_weights, save_corrected_bundle

__all__ = ["scene_cache", "prior_cache", "corrected_bundle", "finetune", "class_colors", "PALETTE"]


def scene_cache(bundle: Bundle, src: str | Path, *, progress=None) -> tuple[FeatureCache, dict]:
    """The feature cache of a scene under a bundle (for a corrected bundle, replay follows its own map).

    Returns:
        (cache, grid) as :func:`core.correction.cache.build_cache`.
    """
    base, _, base_names = base_of(bundle)
    cache, grid = build_cache(src, bundle.card, feature_forward(bundle), channels=feature_count(base) + len(base_names),
                              base_names=base_names, progress=progress)
    head = head_weights(bundle)
    if head is not None:  # replay the corrected map, in the corrected classes
        cache = replay_head(cache, *head, tuple(bundle.card.class_names))
    return cache, grid


def prior_cache(src: str | Path, cache: FeatureCache, *, progress=None) -> tuple[FeatureCache, str]:
    """``cache`` with the Dynamic World port's features of ``src`` attached for the prior estimate of an own-class correction.

    For a base that is not the port (:func:`core.correction.session.fit_correction`); the Correct page does the
    same (:func:`app.correction.attach_prior_features`).

    Returns:
        (the cache, ``""``) or, where the port cannot run on ``src`` (a band it needs is missing), (``cache``
        unchanged, a sentence saying so: the priors then come from EM on the head alone).
    """
    try:
        port = load_bundle(DW_BUNDLE_DIR)
        pb, _, pnames = base_of(port)
        pc, _ = build_cache(src, port.card, feature_forward(port), channels=feature_count(pb) + len(pnames), base_names=pnames,
                            progress=progress)
    except LulcError as exc:
        return cache, f"the scene's class priors come from the head alone: the Dynamic World port cannot run on it ({exc})"
    return with_prior_features(cache, pc, port.card.name), ""


def corrected_bundle(bundle: Bundle, rnd: Round, output: str | Path, *, rounds: int = 1, colors: dict[str, str] | None = None,
                     merges: dict[str, str] | None = None) -> Path:
    """Write the base network plus the round's head as a bundle at ``output``; returns the folder.

    The card: the base card's bands, normalisation, tile and overlap; the user's classes (names and colours); in
    ``training.correction`` the base bundle and its sha256, the base classes, points per class, rounds and the
    held-back agreement (:func:`core.correction.card.card_fields`, :func:`models.features.save_corrected_bundle`).
    """
    out = Path(output)
    _, base_t, base_names = base_of(bundle)
    classes, correction = card_fields(rnd, name=out.name, base_bundle=bundle.path, base_class_names=base_names, base_temperature=base_t,
                                      base_training=bundle.card.training, rounds=rounds, colors=colors, merges=merges)
    notes = f"{bundle.card.name} corrected with {sum(rnd.points_per_class.values())} points"
    return save_corrected_bundle(bundle, rnd.head.weight, rnd.head.bias, out, classes=classes, correction=correction, notes=notes)


def finetune(checkpoint: str, src: str, points: str, output: str, *, class_column: str = "class", seed: int = 0,
             merges: dict[str, str] | None = None, quiet: bool = False) -> tuple[Path, Round]:
    """Correct ``checkpoint`` with the points on ``src`` and write the corrected bundle to ``output``.

    Every input is checked (outputs, points, classes) before the model runs, and nothing is written on an error.
    ``merges`` (class -> class it is merged into) does what the Correct page's *Merge* does.

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
    note = ""
    if bundle.card.arch != "dynamicworld" and is_own_scheme(cache.base_names, list(pts.names), merges):
        if not quiet:
            print(f"{Path(src).name}: classes of your own; caching the Dynamic World port's features for the class priors ...", flush=True)
        cache, note = prior_cache(src, cache)
    rnd = fit_correction(cache, rows, cols, list(pts.names), seed=seed, merges=merges)
    out = corrected_bundle(bundle, rnd, output, merges=merges)
    if not quiet:
        agree = rnd.agreement.get("all")
        print(f"classes: {', '.join(f'{c} ({n})' for c, n in rnd.points_per_class.items())}; replay {rnd.replay_map}")
        print(f"agreement with your held-back points: {agree:.3f}" if agree is not None else "no points held back")
        if note:
            print(note)
        print(f"wrote {out} (feature cache {cache.nbytes / 1e6:.0f} MB)")
    return out, rnd
