"""Rounds of correction on one scene: fit a head on the user's points plus replay, self-check, suggest, undo.

Sources: Robinson et al., "Human-machine collaboration for fast land cover mapping", AAAI 2020
(microsoft/landcover): frozen network, cached last feature map, a refit final layer, "seed" samples that
keep the original class distribution, min-margin suggestions; Development Seed's PEARL (the same scheme in a
web tool).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.correction import MAX_POINTS, CorrectionError
from core.correction.head import LogisticHead, fit_head

__all__ = ["FeatureCache", "Round", "CorrectionSession", "fit_correction", "prior_shift", "scene_prior", "suggest_points", "base_precision", "is_own_scheme",
           "REPLAY_PER_POINT", "UNTOUCHED_REPLAY"]

REPLAY_PER_POINT = 5
"""Replay samples drawn from the base prediction per user point (at least 1000); together they weigh as much as the points."""

UNTOUCHED_REPLAY = 200
"""Replay samples per untouched base class (one with no user point), drawn from its pixels on the base map."""


@dataclass(frozen=True)
class FeatureCache:
    """What the base model says about every pixel of one scene, computed once.

    Attributes:
        features: float32 (F, H, W): the network's last feature map followed by its K0 log-probabilities
            (:func:`models.features.feature_forward`).
        base_probs: float32 (K0, H, W) base class probabilities.
        valid: bool (H, W): pixels with data.
        base_names: The K0 base class names.
        prior_features: float32 (F2, H, W) features of a second network on which the scene's class priors are
            estimated for a scheme of the user's own (NaN where it has no data; see :func:`fit_correction`), or
            ``None``: the head's own EM on ``features``.
        prior_name: Name of that network (recorded on the corrected bundle's card).
    """

    features: np.ndarray
    base_probs: np.ndarray
    valid: np.ndarray
    base_names: tuple[str, ...]
    prior_features: np.ndarray | None = None
    prior_name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.valid.shape

    @property
    def nbytes(self) -> int:
        """Size of the cache in bytes."""
        extra = 0 if self.prior_features is None else self.prior_features.nbytes
        return int(self.features.nbytes + self.base_probs.nbytes + self.valid.nbytes + extra)


@dataclass(frozen=True)
class Round:
    """One fitted round.

    Attributes:
        head: The fitted head (on the cache's features).
        classes: The K class names of the head, in output order.
        points_per_class: Points given per class.
        held_back: Points held back per class for the self-check.
        agreement: Agreement with the held-back points per class (NaN where none was held back) and ``"all"``.
        replay_map: Base class name -> user class name used for the replay samples.
        number: Round number (1 = the first fit).
        priors: How the scene's class priors were set: ``"replay"`` (a correction within the base scheme),
            ``"em:<network>"`` (EM on that network's features, :attr:`FeatureCache.prior_features`) or
            ``"em:head"`` (EM on the head itself).
    """

    head: LogisticHead
    classes: tuple[str, ...]
    points_per_class: dict[str, int]
    held_back: dict[str, int]
    agreement: dict[str, float]
    replay_map: dict[str, str]
    number: int = 1
    priors: str = "replay"


def is_own_scheme(base_names: tuple[str, ...], names: list[str], merges: dict[str, str] | None = None) -> bool:
    """Whether points of these class names make a scheme of the user's own, as :func:`fit_correction` decides it.

    Args:
        base_names: The cache's K0 base class names.
        names: The points' class names.
        merges: Class -> class it is merged into.

    Returns:
        True when some (merged) name is not among the base classes left after the merges (no replay; EM priors).
    """
    merges = {str(k): str(v) for k, v in (merges or {}).items() if k != v}
    kept = {b for b in base_names if b not in merges}
    return not {merges.get(str(n), str(n)) for n in names} <= kept


def _check_points(cache: FeatureCache, rows: np.ndarray, cols: np.ndarray, names: list[str], classes: tuple[str, ...] | None) -> None:
    n = len(names)
    if n > MAX_POINTS:
        raise CorrectionError(f"{n} points are more than the {MAX_POINTS} a correction set may have.")
    h, w = cache.shape
    if ((rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)).any():
        raise CorrectionError(f"{int(((rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)).sum())} point(s) lie outside the image.")
    on_nodata = ~cache.valid[rows, cols]
    if on_nodata.any():
        raise CorrectionError(f"{int(on_nodata.sum())} point(s) lie on pixels without data; move or remove them.")
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise CorrectionError(f"class name(s) {', '.join(unknown)} are not among the classes ({', '.join(classes)}).")
    counts = Counter(names)
    if len(counts) < 2:
        raise CorrectionError(f"all points are of one class ({next(iter(counts), 'none')}); give points of at least two classes.")
    single = sorted(c for c, k in counts.items() if k < 2)
    if single:
        raise CorrectionError(f"class(es) {', '.join(single)} have only one point; give each class at least two.")


def _held_back(labels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Bool mask of points held back: ``fraction`` of each class (rounded down; none of a class under 10 points... at least 1 from 5)."""
    mask = np.zeros(labels.size, bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(np.floor(fraction * idx.size)) if idx.size >= 10 else (1 if idx.size >= 5 else 0)
        if k:
            mask[rng.choice(idx, k, replace=False)] = True
    return mask


def base_precision(base_at_points: np.ndarray, labels: np.ndarray, base_area: np.ndarray, class_area: np.ndarray) -> np.ndarray:
    """Estimated share of an untouched base class's map area that the user's points do not contradict.

    Points of a labelled class k that lie on pixels the base map calls j say that part of j's area is k. With
    stratified points the share of k's points on j estimates p(base = j | k) (unbiased within a class, whatever
    the points per class), and the area of j taken by labelled classes is ``sum_k area_k p(j | k)``; the
    precision of j is one minus that over j's area (clipped to [0, 1]). This is the confusion-matrix view of
    label shift of Lipton, Wang and Smola, "Detecting and correcting for label shift with black box predictors",
    ICML 2018 (BBSE), applied to the base map; ``area_k`` is the base map's area of k.

    Args:
        base_at_points: int (N,) base map class (0..K0-1) at each (fitted) point.
        labels: int (N,) the points' head classes.
        base_area: float (K0,) share of the valid pixels the base map gives each base class.
        class_area: float (K,) share of the valid pixels the base map gives each head class (its base classes' sum).

    Returns:
        float64 (K0,) in [0, 1]; 1 for a class no point lies on, 0 for a class without area. Meaningful for base
        classes that no point is labelled as (a labelled class's own points count against it too).
    """
    k0 = base_area.size
    taken = np.zeros(k0)
    for k in np.unique(labels):
        on = base_at_points[labels == k]
        taken += class_area[k] * np.bincount(on, minlength=k0) / on.size
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(base_area > 0, 1 - taken / base_area, 0.0)
    return np.clip(prec, 0.0, 1.0)


def fit_correction(cache: FeatureCache, rows: np.ndarray, cols: np.ndarray, names: list[str], *, classes: tuple[str, ...] | None = None,
                   seed: int = 0, hold_back: float = 0.1, l2: float = 0.1, replay_per_point: int = REPLAY_PER_POINT,
                   untouched_replay: int = UNTOUCHED_REPLAY, number: int = 1, merges: dict[str, str] | None = None) -> Round:
    """Fit a head on the user's points plus replay samples from the base prediction.

    Replay (when every class is a base class, a correction within the base scheme), in two parts (the "seed"
    samples of Robinson et al. 2020):

    * pixels drawn uniformly from the valid pixels, labelled with the base map, weighing as much as the points
      together, so that the priors are the base map's areas, not the clicks';
    * for each **untouched** class (a base class without a user point), ``untouched_replay`` pixels of that class
      on the base map, weighing together as much as the points of one labelled class times the class's
      precision estimated from the points (:func:`base_precision`): a class the points keep landing on (a base
      class that is wrong in this scene) is not defended, one they avoid keeps its extent.

    Measured with ``benchmarks/bench_correction.py`` (``models/default``, 200 points, never ``trees``; 3 seeds;
    worst IoU change of an untouched class / mean OA over six references): uniform replay alone -0.052 / 0.551;
    untouched replay at equal weight -0.002 / 0.543 (weighted by precision) or +0.000 / 0.521 (not weighted);
    from the base's confident half only (top 50 % of the base probability) -0.035 / 0.548; a head residual on the
    base log-probabilities (identity fixed, L2 on the change) -0.043 / 0.547 alone, +0.000 / 0.535 with both
    replays; logit adjustment to the base map's priors (Menon et al., "Long-tail learning via logit
    adjustment", ICLR 2021) at strength 0.5 -0.015 / 0.513 (it restores the priors of base classes that are
    wrong in the scene). See ``docs/benchmarks/correction.md``.

    A scheme of the user's own (any class that is not a base class) gets no replay; the head's class priors,
    which are the points' class shares, are moved halfway (in log space) towards the scene's priors estimated
    by EM (:func:`prior_shift`). Where the cache carries :attr:`~FeatureCache.prior_features` (the Dynamic World
    port's 153 features, for a base that is not the port), EM runs on a second head fitted on those features
    of the same points, and the shift is applied to the head on the base's features. Measured with
    ``benchmarks/bench_correction_features.py --priors`` (slovenia-0820, 200 random points, 5 seeds): on
    ``models/default``'s 25 features EM and a head-free estimator (mean matching) both put shrubland at 0.13-0.35
    of the scene (true 0.036), on the port's features at 0.01-0.17, and the ``models/default`` head with the
    port's EM priors beats the Dynamic World model on every own-scheme reference at N = 200, random and
    suggested points (``docs/benchmarks/correction.md``). Measured on the pack (``../shared/checks/14-correct``): mapping base classes to
    the user's by the majority of points on them and replaying them gave OA 0.43/0.46 (Brandenburg
    OSM/Slovenia); no replay 0.52/0.64; the prior shift 0.52/0.83 (Dynamic World 0.47/0.77); L2 0.1 beat
    0.001-0.01.

    Args:
        cache: The scene's feature cache.
        rows: int (N,) point rows on the cache's grid.
        cols: int (N,) point columns.
        names: (N,) class names.
        classes: The head's classes in output order (default: the base classes, less those merged away, when
            every point names one of them; else the points' class names in order of appearance).
        seed: Seed of the held-back split and the replay draw (same seed: same head).
        hold_back: Fraction of each class's points held back for the self-check.
        l2: L2 penalty of the head.
        replay_per_point: Replay samples per point (at least 1000 in all).
        untouched_replay: Replay samples per untouched base class (0: none).
        number: The round's number.
        merges: Class -> class it is merged into: points of the first are taken as the second, and a merged base
            class is replayed as the class it was merged into (so its pixels join that class).

    Returns:
        The round.

    Raises:
        CorrectionError: Points outside the image or on nodata, one point of a class, only one class, more than
            :data:`~core.correction.MAX_POINTS`, or class names not among ``classes``.
    """
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    merges = {str(k): str(v) for k, v in (merges or {}).items() if k != v}
    names = [merges.get(str(n), str(n)) for n in names]
    _check_points(cache, rows, cols, names, classes)
    if classes is None:
        own = is_own_scheme(cache.base_names, names, merges)
        classes = tuple(dict.fromkeys(names)) if own else tuple(b for b in cache.base_names if b not in merges)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names])
    rng = np.random.default_rng(seed)
    held = _held_back(labels, rng, hold_back)
    fmap = cache.features
    f = fmap.shape[0]
    x_pts = fmap[:, rows, cols].T
    base_arg = cache.base_probs.argmax(axis=0)
    # replay: the base classes among the head's classes replay as themselves (a correction within the base
    # scheme); a scheme of the user's own gets no replay but the scene's class priors instead (prior_shift)
    replay_map = {bname: merges.get(bname, bname) for bname in cache.base_names if merges.get(bname, bname) in index}
    lut = np.full(len(cache.base_names), -1)
    for bname, uname in replay_map.items():
        lut[cache.base_names.index(bname)] = index[uname]
    own_scheme = any(c not in cache.base_names for c in classes)
    vr, vc = np.nonzero(cache.valid & (lut[base_arg] >= 0))
    n_train = int((~held).sum())
    n_rep = 0 if own_scheme else min(vr.size, max(1000, replay_per_point * n_train))
    pick = rng.choice(vr.size, n_rep, replace=False) if n_rep else np.zeros(0, np.int64)
    x_rep = fmap[:, vr[pick], vc[pick]].T.reshape(-1, f)
    y_rep = lut[base_arg[vr[pick], vc[pick]]]
    xs, ys, ws = [x_pts[~held], x_rep], [labels[~held], y_rep], [np.ones(n_train), np.full(n_rep, n_train / max(n_rep, 1))]
    if not own_scheme and untouched_replay > 0:
        xs, ys, ws = _untouched_replay(cache, base_arg, lut, labels[~held], rows[~held], cols[~held], len(classes), untouched_replay,
                                       rng, xs, ys, ws)
    x, y, wts = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    head = fit_head(x, y, len(classes), sample_weight=wts, l2=l2)
    priors = "replay"
    if own_scheme:
        tp = np.bincount(labels[~held], minlength=len(classes)) / n_train
        pf = cache.prior_features
        x_prior = None if pf is None else pf[:, rows[~held], cols[~held]].T
        if x_prior is not None and np.isfinite(x_prior).all():
            prior_head = fit_head(x_prior, labels[~held], len(classes), l2=l2)
            head = prior_shift(head, fmap, cache.valid, tp, rng=rng, estimate_on=(prior_head, pf))
            priors = f"em:{cache.prior_name or 'prior features'}"
        else:  # no second network, or a point where it has no data: EM on the head itself
            head = prior_shift(head, fmap, cache.valid, tp, rng=rng)
            priors = "em:head"
    agreement: dict[str, float] = {}
    if held.any():
        pred = head.predict_proba(x_pts[held]).argmax(axis=1)
        truth = labels[held]
        for c in classes:
            m = truth == index[c]
            agreement[c] = float((pred[m] == truth[m]).mean()) if m.any() else float("nan")
        agreement["all"] = float((pred == truth).mean())
    counts = Counter(names)
    return Round(head, tuple(classes), {c: int(counts.get(c, 0)) for c in classes},
                 {c: int((held & (labels == index[c])).sum()) for c in classes}, agreement, replay_map, number, priors)


def _untouched_replay(cache: FeatureCache, base_arg: np.ndarray, lut: np.ndarray, y_fit: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                      k: int, per_class: int, rng: np.random.Generator, xs: list, ys: list, ws: list) -> tuple[list, list, list]:
    """Append the replay of the untouched base classes (see :func:`fit_correction`) to the training lists."""
    valid = cache.valid
    k0 = len(cache.base_names)
    base_area = np.bincount(base_arg[valid], minlength=k0) / max(int(valid.sum()), 1)
    class_area = np.zeros(k)
    np.add.at(class_area, lut[lut >= 0], base_area[lut >= 0])
    prec = base_precision(base_arg[rows, cols], y_fit, base_area, class_area)
    touched = set(np.unique(y_fit).tolist())
    per_labelled = y_fit.size / max(len(touched), 1)
    for j in range(k0):
        if lut[j] < 0 or int(lut[j]) in touched or prec[j] <= 0:
            continue
        vr, vc = np.nonzero(valid & (base_arg == j))
        if not vr.size:
            continue
        pick = rng.choice(vr.size, min(vr.size, per_class), replace=False)
        xs.append(cache.features[:, vr[pick], vc[pick]].T)
        ys.append(np.full(pick.size, lut[j]))
        ws.append(np.full(pick.size, prec[j] * per_labelled / pick.size))
    return xs, ys, ws


def prior_shift(head: LogisticHead, features: np.ndarray, valid: np.ndarray, train_prior: np.ndarray, *,
                rng: np.random.Generator, strength: float = 0.5, max_pixels: int = 200_000,
                estimate_on: tuple[LogisticHead, np.ndarray] | None = None) -> LogisticHead:
    """Move a head's class priors from its training points' towards the scene's (EM of Saerens et al. 2002).

    The head was fitted on points whose class shares (``train_prior``) are the user's clicks, not the scene's
    areas. The scene's priors are estimated by :func:`scene_prior`; the bias moves by
    ``strength * log(scene / train)`` (0.5: halfway in log space, which measured better than the full shift
    on the pack's references).

    Args:
        head: The fitted head.
        features: float32 (F, H, W).
        valid: bool (H, W).
        train_prior: float (K,) class shares of the training points.
        rng: Draws the pixel sample.
        strength: Fraction of the log prior ratio applied.
        max_pixels: Pixels used for EM.
        estimate_on: (a head fitted on the same points with the same classes, its float32 (F2, H, W)
            features): EM runs on that head's probabilities instead of ``head``'s (pixels where the features are
            NaN are left out); ``None``: on ``head`` over ``features``.

    Returns:
        The head with its bias shifted.
    """
    on, x = (head, features) if estimate_on is None else estimate_on
    prior = scene_prior(on.predict_proba, x, valid, train_prior, rng=rng, max_pixels=max_pixels)
    tp = np.clip(np.asarray(train_prior, np.float64), 1e-6, None)
    return LogisticHead(head.weight, (head.bias + strength * np.log(prior / tp)).astype(np.float32))


def scene_prior(predict_proba: Callable[[np.ndarray], np.ndarray], features: np.ndarray, valid: np.ndarray,
                train_prior: np.ndarray, *,
                rng: np.random.Generator, max_pixels: int = 200_000) -> np.ndarray:
    """The scene's class shares, by EM (:func:`em_prior`) on a classifier's probabilities over a pixel sample.

    Args:
        predict_proba: float32 (N, F) features -> (N, K) probabilities of a classifier trained with class
            shares ``train_prior`` (a :meth:`LogisticHead.predict_proba`, or any other head's).
        features: float32 (F, H, W) features of the scene; pixels with a NaN feature (no data for that
            network) are left out.
        valid: bool (H, W) pixels of the scene.
        train_prior: float (K,) class shares of the training points.
        rng: Draws the sample: ``max_pixels`` of the valid pixels without replacement (all where fewer).
        max_pixels: Size of the sample.

    Returns:
        float64 (K,) estimated class shares (floored at 1e-6).
    """
    flat = np.flatnonzero(valid)
    if flat.size > max_pixels:
        flat = np.sort(flat[rng.choice(flat.size, max_pixels, replace=False)])  # gathered in memory order: 4x faster
    probs = np.asarray(predict_proba(np.take(features.reshape(features.shape[0], -1), flat, axis=1).T), np.float64)
    return em_prior(probs[np.isfinite(probs).all(axis=1)], train_prior)


def em_prior(probs: np.ndarray, train_prior: np.ndarray, *, iterations: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Class priors of the pixels behind ``probs``, by EM (Saerens, Latinne, Decaestecker, Neural Computation 2002).

    Args:
        probs: float (N, K) posterior probabilities of a classifier trained with class shares ``train_prior``.
        train_prior: float (K,) class shares of its training samples (floored at 1e-6).
        iterations: Most EM steps.
        tol: Stop when no prior moves by more than this.

    Returns:
        float64 (K,) estimated class shares of the N pixels (floored at 1e-6; they sum to about 1).
    """
    p = np.asarray(probs, np.float64)
    tp = np.clip(np.asarray(train_prior, np.float64), 1e-6, None)
    prior = tp.copy()
    for _ in range(iterations):
        q = p * (prior / tp)
        q /= q.sum(axis=1, keepdims=True)
        new = np.clip(q.mean(axis=0), 1e-6, None)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior


def suggest_points(probs: np.ndarray, valid: np.ndarray, k: int = 20, *, spacing: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most uncertain pixels by min-margin (top-1 minus top-2 probability), spread out spatially.

    At most one pixel per ``spacing`` x ``spacing`` cell is taken (the least certain of the cell), then the
    ``k`` lowest margins over the cells (Robinson et al. 2020: min-margin beat entropy).

    Args:
        probs: float32 (K, H, W) probabilities.
        valid: bool (H, W).
        k: Points to suggest.
        spacing: Cell side in pixels.

    Returns:
        (rows, cols) int arrays of up to ``k`` pixels, most uncertain first.
    """
    top2 = np.sort(probs, axis=0)[-2:]
    margin = np.where(valid, top2[1] - top2[0], np.inf)
    h, w = margin.shape
    cells: dict[tuple[int, int], tuple[float, int, int]] = {}
    order = np.argsort(margin, axis=None)
    for flat in order[: max(k * 50, 1000)]:
        r, c = divmod(int(flat), w)
        if not np.isfinite(margin[r, c]):
            break
        cells.setdefault((r // spacing, c // spacing), (float(margin[r, c]), r, c))
    best = sorted(cells.values())[:k]
    return np.array([b[1] for b in best], np.int64), np.array([b[2] for b in best], np.int64)


@dataclass
class CorrectionSession:
    """Rounds of correction on one scene, each one a checkpoint that :meth:`undo` goes back from.

    Args:
        cache: The scene's feature cache.
        classes: The user's classes in output order (``None``: from each round's points, see :func:`fit_correction`).
        merges: Class -> class it is merged into (see :func:`fit_correction`).
    """

    cache: FeatureCache
    classes: tuple[str, ...] | None = None
    rounds: list[Round] = field(default_factory=list)
    merges: dict[str, str] = field(default_factory=dict)

    def fit(self, rows: np.ndarray, cols: np.ndarray, names: list[str], *, seed: int = 0, l2: float = 0.1) -> Round:
        """Fit a new round on these points (see :func:`fit_correction`); on any error the previous round stays current."""
        rnd = fit_correction(self.cache, rows, cols, names, classes=self.classes, seed=seed, l2=l2, number=len(self.rounds) + 1,
                             merges=self.merges)
        self.rounds.append(rnd)
        return rnd

    @property
    def current(self) -> Round | None:
        """The latest round (``None`` before the first)."""
        return self.rounds[-1] if self.rounds else None

    def undo(self) -> Round | None:
        """Drop the latest round; returns the one now current."""
        if self.rounds:
            self.rounds.pop()
        return self.current

    def probabilities(self) -> np.ndarray:
        """float32 (K, H, W) of the current round (the base probabilities before the first)."""
        rnd = self.current
        return self.cache.base_probs if rnd is None else rnd.head.predict_map(self.cache.features)

    def class_map(self) -> np.ndarray:
        """uint8 (H, W) class indices of the current round, 255 where there is no data."""
        return np.where(self.cache.valid, self.probabilities().argmax(axis=0), 255).astype(np.uint8)

    def suggest(self, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of ``k`` pixels to label next (:func:`suggest_points` on the current map)."""
        return suggest_points(self.probabilities(), self.cache.valid, k)
