"""Correct the map (issue 17): head features, L2 and prior shift for a scheme of the user's own.

Run from the repository root (the Dynamic World caches of every scene are built once for the DW baseline)::

    nice -n 10 .venv/bin/python benchmarks/bench_correction_features.py [--refs slovenia-0820 ...] [--seeds 5]

Same simulated user as ``benchmarks/bench_correction.py`` (the same scenes, the same stratified random draws
at N = 200 on the left half, the same 10 % held back, scored on the right half in the common scheme), base
``models/default``, labels in the reference's own classes. The own-scheme path of
:func:`core.correction.session.fit_correction` (logistic head, then the EM prior shift of Saerens et al. 2002)
is re-run with:

* features: the cache (16 decoder channels + 9 base log-probabilities) or the cache plus the scene's bands
  as ``log1p(10 * reflectance)`` (reflectance = DN / 1e4, clipped to [0, 2]);
* L2 0.1 (the product) or 0.3;
* prior-shift strength 0.5 (the product), 0.75 or 1.0;
* calibration before EM: none (the product), one temperature (``T``, Guo et al., "On calibration of modern
  neural networks", ICML 2017) or a temperature and one bias per class (``BCTS``, bias-corrected temperature
  scaling of Alexandari et al., "Maximum likelihood with bias-corrected calibration is hard-to-beat at label
  shift adaptation", ICML 2020), fitted by NLL on 5-fold out-of-fold logits of the points.

It prints, per variant, OA minus the Dynamic World port's OA on every reference (mean over seeds), sorted by
the worst reference. ``--priors`` prints instead, per seed, the scene's class shares estimated by EM and by
mean matching (below) beside the true shares, and the OA of the product's head (L2 0.1) with each of them as
priors (``--bases`` picks the base's features: ``default``, ``dynamicworld``, ``default+bands``). Results: ``docs/benchmarks/correction.md`` (*What was tried*).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_correction as bc  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402

from core.correction.head import LogisticHead, fit_head  # noqa: E402
from core.correction.session import FeatureCache, _held_back, em_prior, prior_shift  # noqa: E402
from core.sources.samples import get_scene  # noqa: E402

OWN_SCHEME_REFS = ["slovenia-0820", "slovenia-0830", "slovenia-0909", "slovenia-0731", "brandenburg-osm", "dfc2020-val",
                   "sen1floods11-water"]


def with_bands(scene: bc.Scene, cache: FeatureCache) -> FeatureCache:
    """The cache with the scene's bands appended as float32 ``log1p(10 * reflectance)`` channels."""
    with rasterio.open(get_scene(scene.sid).path / "image_s2.tif") as src:
        img = src.read().astype(np.float32)
    if img.shape[1:] != cache.features.shape[1:]:
        raise SystemExit(f"{scene.key}: image {img.shape} and cache {cache.features.shape} are not on one grid")
    img = np.log1p(10 * np.clip(img, 0, 20000) / 1e4)
    return FeatureCache(np.concatenate([cache.features, img]), cache.base_probs, cache.valid, cache.base_names)


def temperature(z: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the NLL of ``softmax(z / T)`` (golden-section search on log T in [-3, 3])."""
    def nll(log_t: float) -> float:
        q = z / np.exp(log_t)
        q = q - q.max(axis=1, keepdims=True)
        return float((np.log(np.exp(q).sum(axis=1)) - q[np.arange(y.size), y]).mean())
    a, b = -3.0, 3.0
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(c) < nll(d):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def bcts(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Temperature and per-class biases minimising the NLL of ``softmax(z / T + b)`` (Adam, 2,000 full-batch steps; Alexandari et al. 2020)."""
    k = z.shape[1]

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = np.exp(theta[0])
        q = z / t + theta[1:]
        q = q - q.max(axis=1, keepdims=True)
        p = np.exp(q)
        p /= p.sum(axis=1, keepdims=True)
        loss = float((np.log(np.exp(q).sum(axis=1)) - q[np.arange(y.size), y]).mean())
        g = p.copy()
        g[np.arange(y.size), y] -= 1
        g /= y.size
        d_logt = float((g * (-z / t)).sum())
        return loss, np.concatenate([[d_logt], g.sum(axis=0)])

    theta, m, v = np.zeros(k + 1), np.zeros(k + 1), np.zeros(k + 1)
    for t in range(1, 2001):
        g = nll(theta)[1]
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        theta -= 0.02 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    b = theta[1:] - theta[1:].mean()
    return float(np.exp(theta[0])), b


def out_of_fold_logits(x: np.ndarray, y: np.ndarray, k: int, l2: float, seed: int, folds: int = 5) -> np.ndarray:
    """(N, K) logits of each point from a head fitted without its fold (stratified folds)."""
    rng = np.random.default_rng(seed + 77)
    fold = np.zeros(y.size, int)
    for c in np.unique(y):
        m = rng.permutation(np.flatnonzero(y == c))
        fold[m] = np.arange(m.size) % folds
    z = np.zeros((y.size, k))
    for f in range(folds):
        z[fold == f] = fit_head(x[fold != f], y[fold != f], k, l2=l2).logits(x[fold == f])
    return z


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` (K,) onto the probability simplex (Duchi et al., ICML 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    r = np.nonzero(u * np.arange(1, v.size + 1) > (css - 1))[0][-1]
    return np.maximum(v - (css[r] - 1) / (r + 1), 0)


def mean_matching_prior(x: np.ndarray, y: np.ndarray, k: int, scene: np.ndarray, steps: int = 5000) -> np.ndarray:
    """Class shares ``pi`` whose mix of the points' class means matches the scene's mean feature vector.

    ``argmin |M pi - m|^2`` on the simplex, by projected gradient, where ``M`` (F, K) holds each class's mean of
    the standardised features of its points and ``m`` the scene's (zero after standardising): distribution
    matching under target shift with a linear kernel (Zhang, Schölkopf, Muandet, Wang, "Domain adaptation under
    target and conditional shift", ICML 2013). It does not use the head, so it checks EM on the same features.

    Args:
        x: float (N, F) point features.
        y: int (N,) point classes (every class present).
        k: K.
        scene: float (P, F) features of the scene's valid pixels.
        steps: Gradient steps.

    Returns:
        float64 (K,) class shares.
    """
    mu, sd = scene.mean(0), scene.std(0) + 1e-6
    m = np.stack([((x[y == c] - mu) / sd).mean(0) for c in range(k)], 1)
    pi = np.full(k, 1 / k)
    lr = 1 / max(np.linalg.norm(m, 2) ** 2, 1e-9)
    for _ in range(steps):
        pi = project_simplex(pi - lr * (m.T @ (m @ pi)))
    return pi


def diagnose_priors(keys: list[str], seeds: int, n: int, bases: list[str]) -> None:
    """Print, per seed, the EM and mean-matching class shares, the true shares and the OA with each as priors."""
    for key in keys:
        s = bc.Scene(key, ["default"])
        own_ids = [s.id_of[c] for c in s.own_classes]
        index = {c: i for i, c in enumerate(s.own_classes)}
        k, w = len(index), s.ref.shape[1]
        dw = s.baselines[bc.DW]["oa"]
        truth = np.array([(s.ref[s.valid] == i).mean() for i in own_ids])
        truth = truth / truth.sum()
        print(f"{key}: classes {', '.join(s.own_classes)}; true shares {np.round(truth, 3).tolist()}; DW port OA {dw:.3f}")
        for base in bases:
            cache = with_bands(s, s.caches["default"]) if base == "default+bands" else s.caches[base]
            vr, vc = np.nonzero(cache.valid)
            scene = cache.features[:, vr, vc].T.astype(np.float64)
            for seed in range(seeds):
                rng = np.random.default_rng(1000 + seed)
                for n_ in (25, 50, 100, 200, 400):  # the draws of bench_correction's random user
                    flat = bc.stratified(rng, s.ref, s.left, own_ids, n_)
                    if n_ == n:
                        break
                rows, cols = flat // w, flat % w
                labels = np.array([index[s.scheme.classes[s.scheme.ids.index(int(v))].name] for v in s.ref[rows, cols]])
                held = _held_back(labels, np.random.default_rng(seed), 0.1)
                x, y = cache.features[:, rows, cols].T[~held], labels[~held]
                tp = np.bincount(y, minlength=k) / y.size
                head = fit_head(x, y, k, l2=0.1)
                est = {"EM": em_prior(head.predict_proba(scene), tp), "mean matching": mean_matching_prior(x, y, k, scene), "true": truth}
                parts = []
                for name, prior in est.items():
                    for strength in (0.5, 1.0):
                        h = LogisticHead(head.weight, (head.bias + strength * np.log(np.clip(prior, 1e-6, None) / tp)).astype(np.float32))
                        oa = s.score_own(s.right_map(h, cache).argmax(axis=0), s.own_classes)["oa"]
                        parts.append(f"{name} x{strength} {oa - dw:+.3f}")
                print(f"  {base} seed {seed}: EM {np.round(est['EM'], 3).tolist()} mean matching "
                      f"{np.round(est['mean matching'], 3).tolist()}; OA - DW: " + ", ".join(parts), flush=True)


def fit_variant(x, y, k: int, seed: int, l2: float, calibrate: str, strength: float, cache: FeatureCache) -> LogisticHead:
    """Head on the points, optionally calibrated (``"-"``, ``"T"``, ``"BCTS"``), then the product's EM prior shift.

    The shift is :func:`core.correction.session.prior_shift` with one seed, so every variant sees the same
    sample of (at most 200,000) pixels.
    """
    head = fit_head(x, y, k, l2=l2)
    tp = np.bincount(y, minlength=k) / y.size
    if calibrate == "T":
        t = temperature(out_of_fold_logits(x, y, k, l2, seed), y)
        head = LogisticHead((head.weight / t).astype(np.float32), (head.bias / t).astype(np.float32))
    elif calibrate == "BCTS":
        t, b = bcts(out_of_fold_logits(x, y, k, l2, seed), y)
        head = LogisticHead((head.weight / t).astype(np.float32), (head.bias / t + b).astype(np.float32))
    return prior_shift(head, cache.features, cache.valid, tp, rng=np.random.default_rng(0), strength=strength)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", nargs="+", default=OWN_SCHEME_REFS, choices=OWN_SCHEME_REFS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n", type=int, default=200, choices=[25, 50, 100, 200, 400])
    p.add_argument("--features", nargs="+", default=["cache", "cache+bands"], choices=["cache", "cache+bands"])
    p.add_argument("--l2", nargs="+", type=float, default=[0.1, 0.3])
    p.add_argument("--calibration", nargs="+", default=["-", "T", "BCTS"], choices=["-", "T", "BCTS"])
    p.add_argument("--strength", nargs="+", type=float, default=[0.5, 0.75, 1.0])
    p.add_argument("--priors", action="store_true", help="print the prior diagnosis instead of the variants")
    p.add_argument("--bases", nargs="+", default=["default", "default+bands", "dynamicworld"],
                   choices=["default", "default+bands", "dynamicworld"], help="features of the prior diagnosis")
    a = p.parse_args(argv)
    if a.priors:
        diagnose_priors(a.refs, a.seeds, a.n, a.bases)
        return 0
    table: dict[tuple, dict[str, list[float]]] = {}
    for key in a.refs:
        s = bc.Scene(key, ["default"])
        own_ids = [s.id_of[c] for c in s.own_classes]
        w = s.ref.shape[1]
        dw = s.baselines[bc.DW]["oa"]
        index = {c: i for i, c in enumerate(s.own_classes)}
        k = len(s.own_classes)
        for feats in a.features:
            cache = s.caches["default"] if feats == "cache" else with_bands(s, s.caches["default"])
            for seed in range(a.seeds):
                rng = np.random.default_rng(1000 + seed)
                for n in (25, 50, 100, 200, 400):  # bench_correction draws every N in turn from one generator
                    flat = bc.stratified(rng, s.ref, s.left, own_ids, n)
                    if n == a.n:
                        break
                rows, cols = flat // w, flat % w
                labels = np.array([index[s.scheme.classes[s.scheme.ids.index(int(v))].name] for v in s.ref[rows, cols]])
                held = _held_back(labels, np.random.default_rng(seed), 0.1)
                x, y = cache.features[:, rows, cols].T[~held], labels[~held]
                for l2 in a.l2:
                    for cal in a.calibration:
                        for strength in a.strength:
                            head = fit_variant(x, y, k, seed, l2, cal, strength, cache)
                            oa = s.score_own(s.right_map(head, cache).argmax(axis=0), s.own_classes)["oa"]
                            table.setdefault((feats, l2, cal, strength), {}).setdefault(key, []).append(oa - dw)
        print(f"{key}: done (DW port OA {dw:.3f})", flush=True)
    rows_ = sorted(((min(np.mean(v) for v in d.values()), v, d) for v, d in table.items()), key=lambda r: -r[0])
    print("features, L2, calibration, strength | worst | mean | " + " | ".join(a.refs))
    for worst, v, d in rows_:
        means = [np.mean(d[r]) for r in a.refs]
        print(f"{v[0]}, {v[1]}, {v[2]}, {v[3]} | {worst:+.3f} | {np.mean(means):+.3f} | " + " | ".join(f"{m:+.3f}" for m in means))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
