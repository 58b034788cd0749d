"""Correct the map (issue 17): a simulated user on every independent reference of the sample pack.

Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/bench_correction.py --json correction.json --plot docs/benchmarks/correction_oa.png
    .venv/bin/python benchmarks/bench_correction.py --quick                     # 2 references, N 25/200, 2 seeds

The references (independent of the Dynamic World labels the default model was trained on): OSM land use
over Brandenburg, the Slovenian land-use reference on four dates, the two DFC2020 patches and the
Sen1Floods11 water mask. For each scene and each base bundle (``models/default``; ``models/dynamicworld``
as well unless ``--bases`` says otherwise) the feature cache is built once
(:func:`core.correction.cache.build_cache` with :func:`models.features.feature_forward`). Then, for every
seed and every N of ``--n``, a user is simulated on the **left half** of the scene:

* ``random``: N points drawn stratified from the reference (equal shares per class, capped by the pixels a
  class has; what a user clicking "a few of each" does), labelled with the reference's own class names;
* ``suggested``: 2 random points per class to start, then at every N the min-margin suggestions of the
  current round (:func:`core.correction.session.suggest_points`, spread over the left half) labelled from
  the reference, up to N;

one round is fitted (:func:`core.correction.session.fit_correction`, the product's defaults: 10 % held back,
L2 0.1, the EM prior shift for a scheme of the user's own) and the new map is scored on the **right half**
against the reference, beside the base model and the Dynamic World model (the port ``models/dynamicworld``
and the pack's ``labels_dw.tif``) on the same pixels. Scores are OA and mIoU in the common scheme of
:func:`core.classes.common_scheme` (Dynamic World classes through the crosswalk for OSM, Slovenian land use
and DFC2020; water / not water for Sen1Floods11), so the corrected model (in the reference's classes) and the
base models (in Dynamic World classes) are compared through the same crosswalk; ``oa_own`` is the corrected
model's OA in the reference's own classes.

Also measured:

* ``untouched``: the user labels in the base model's classes (reference crosswalked to Dynamic World names,
  so the replay of :func:`~core.correction.session.fit_correction` is on) at N = 200 and never labels
  ``trees`` (``--untouched-replay 0`` runs it with the uniform replay alone, the method before the untouched-class replay);
  on the classes without a point, the per-class IoU against the reference of the corrected map
  minus that of the base map (goal: within 0.01), and the share of the base map's pixels of those classes
  the corrected map keeps;
* ``mlp``: the logistic head against a 1-hidden-layer MLP (torch, 64 ReLU units, Adam, weight decay) on the
  same training points and the same prior shift, at N = 200 (random);
* ``round``: fit + new map of a 500 x 500 px (25 km² at 10 m) AOI cut from the Brandenburg cache with 200
  points, p50/p95 over 20 rounds, and the feature cache size of that AOI in MB, per base bundle.

``--from-json PATH`` prints the tables and writes the plot of a saved run. ``--dw-seeds`` runs fewer seeds with the Dynamic World port as base (its cache has 153 channels, not 25).
Results print as plain-text tables; ``--json PATH`` writes every run and the summary, ``--plot PATH`` a PNG of
OA against N (one panel per reference; Dynamic World and base as horizontal lines).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from core.classes import ClassScheme, common_scheme  # noqa: E402
from core.correction.cache import build_cache, with_prior_features  # noqa: E402
from core.correction.head import fit_head  # noqa: E402
from core.correction.session import UNTOUCHED_REPLAY, FeatureCache, fit_correction, scene_prior, suggest_points  # noqa: E402
from core.evaluation.metrics import metrics_from_confusion  # noqa: E402
from core.sources.samples import get_scene, load_labels  # noqa: E402
from models.bundle import load_bundle  # noqa: E402
from models.features import feature_count, feature_forward  # noqa: E402

REFERENCES: dict[str, tuple[str, str]] = {
    "brandenburg-osm": ("brandenburg-2017-02-16", "osm"),
    "slovenia-0731": ("slovenia-2015-07-31", "lulc"),
    "slovenia-0820": ("slovenia-2015-08-20", "lulc"),
    "slovenia-0830": ("slovenia-2015-08-30", "lulc"),
    "slovenia-0909": ("slovenia-2015-09-09", "lulc"),
    "dfc2020-test": ("dfc2020-roi0000-test-p0", "dfc"),
    "dfc2020-val": ("dfc2020-roi0000-validation-p0", "dfc"),
    "sen1floods11-water": ("sen1floods11-spain-7370579", "water"),
}
"""Reference key -> (sample scene id, label product of :data:`core.sources.samples.LABEL_PRODUCTS`)."""

BASES = {"default": "models/default", "dynamicworld": "models/dynamicworld"}
DW = "dynamicworld"
UNTOUCHED_CLASS = "trees"
MLP_N = 200
ROUND_AOI_PX = 500  # 500 x 500 px at 10 m = 25 km²


# ----------------------------------------------------------------------------------------------- scenes

class Scene:
    """One reference scene: caches per base bundle, the reference, and the scoring in the common scheme."""

    def __init__(self, key: str, bases: list[str]) -> None:
        sid, product = REFERENCES[key]
        self.key, self.sid = key, sid
        sc = get_scene(sid)
        lab, self.scheme = load_labels(sc, product)
        self.ref = lab.data[0].astype(np.int64)
        h, w = self.ref.shape
        self.cols = np.broadcast_to(np.arange(w)[None], (h, w))
        self.common, self.cw = common_scheme("dynamic_world", self.scheme.name)
        self.ref_to_common = self._lut(self.scheme, lambda ids: ids if self.cw.source != self.scheme.name else self.cw.apply(ids))
        self.dw_to_common = self._lut_dw()
        self.caches: dict[str, FeatureCache] = {}
        self.build_s: dict[str, float] = {}
        img = sc.path / "image_s2.tif"
        for b in sorted(set(bases) | {'default', DW}):
            bundle = load_bundle(REPO_ROOT / BASES[b])
            t0 = time.perf_counter()
            cache, _ = build_cache(img, bundle.card, feature_forward(bundle), channels=feature_count(bundle.model) + len(bundle.card.class_names),
                                   base_names=tuple(bundle.card.class_names))
            self.build_s[b] = time.perf_counter() - t0
            self.caches[b] = cache
        # the product's own-class priors for a base other than the port: EM on the port's features (fit_correction)
        for b in self.caches:
            if b != DW:
                self.caches[b] = with_prior_features(self.caches[b], self.caches[DW], "dynamicworld")
        valid_ref = np.isin(self.ref, self.scheme.ids) & (self.ref_to_common[self.ref.clip(0, 255)] != 255)
        self.valid = valid_ref & np.logical_and.reduce([c.valid for c in self.caches.values()])
        self.left = self.valid & (self.cols < w // 2)
        self.test = self.valid & (self.cols >= w // 2)
        self.w2 = w // 2
        # classes a user can give: at least 2 pixels on the left half
        counts = np.bincount(self.ref[self.left], minlength=256)
        self.own_classes = tuple(c.name for c in self.scheme.classes if counts[c.id] >= 2)
        self.id_of = {c.name: c.id for c in self.scheme.classes}
        self.ref_c = self.ref_to_common[self.ref.clip(0, 255)]
        self.test_ref_c = self.ref_c[:, self.w2:][self.test[:, self.w2:]]
        dwp = load_labels(sc, "dw")[0].data[0].astype(np.int64) if "dw" in sc.labels else None
        self.baselines = {}
        for b, cache in self.caches.items():
            self.baselines[b] = self.score_dw(cache.base_probs.argmax(axis=0))
        if dwp is not None:
            self.baselines["dw_product"] = self.score_dw(np.where(dwp == 255, 0, dwp), extra_invalid=dwp == 255)

    def _lut(self, scheme: ClassScheme, fn) -> np.ndarray:
        ids = np.arange(256)
        out = np.asarray(fn(ids), np.int64)
        out = np.where(np.isin(ids, scheme.ids), out, 255)
        return out

    def _lut_dw(self) -> np.ndarray:
        ids = np.arange(256)
        if self.cw.source == self.scheme.name:  # reference -> DW: DW predictions are in the common scheme already
            return np.where(ids < 9, ids, 255)
        return np.asarray(self.cw.apply(ids), np.int64)  # DW -> water

    def confusion(self, pred_c: np.ndarray, ref_c: np.ndarray) -> dict:
        k = self.common.num_classes
        ok = (pred_c < k) & (ref_c < k)
        cm = np.bincount(ref_c[ok] * k + pred_c[ok], minlength=k * k).reshape(k, k)
        m = metrics_from_confusion(cm, self.common.names)
        return {"oa": m.overall_accuracy, "miou": m.miou, "iou": dict(zip(self.common.names, map(float, m.iou), strict=True))}

    def score_dw(self, dw_map: np.ndarray, extra_invalid: np.ndarray | None = None) -> dict:
        """Score a full-scene map of Dynamic World ids on the right half."""
        pred = self.dw_to_common[dw_map[:, self.w2:].clip(0, 255)]
        sel = self.test[:, self.w2:] if extra_invalid is None else self.test[:, self.w2:] & ~extra_invalid[:, self.w2:]
        return self.confusion(pred[sel], self.ref_c[:, self.w2:][sel])

    def score_own(self, own_idx: np.ndarray, classes: tuple[str, ...]) -> dict:
        """Score a right-half map of indices into ``classes`` (reference class names)."""
        ids = np.array([self.id_of[c] for c in classes])[own_idx]
        sel = self.test[:, self.w2:]
        pred_ref = ids[sel]
        ref = self.ref[:, self.w2:][sel]
        out = self.confusion(self.ref_to_common[pred_ref], self.test_ref_c)
        out["oa_own"] = float((pred_ref == ref).mean())
        return out

    def right_map(self, head, cache: FeatureCache) -> np.ndarray:
        """(K, H, W/2) probabilities of a head on the right half."""
        return head.predict_map(cache.features[:, :, self.w2:])


def stratified(rng: np.random.Generator, labels: np.ndarray, mask: np.ndarray, classes, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Flat indices of ``n`` pixels of ``mask``: equal shares per class (capped by its pixels; the rest spread over the others)."""
    pools = []
    for c in classes:
        m = mask & (labels == c)
        if exclude is not None:
            m &= ~exclude
        pools.append(rng.permutation(np.flatnonzero(m)))
    take = [0] * len(pools)
    left = n
    while left > 0:
        open_ = [i for i, p in enumerate(pools) if take[i] < p.size]
        if not open_:
            break
        share = max(1, left // len(open_))
        for i in open_:
            k = min(share, pools[i].size - take[i], left)
            take[i] += k
            left -= k
            if left == 0:
                break
    return np.concatenate([p[:k] for p, k in zip(pools, take, strict=True)]) if pools else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------------------------- runs

def one_round(s: Scene, cache: FeatureCache, flat: np.ndarray, seed: int):
    """Fit one round on the points ``flat`` (flat pixel indices labelled from the reference); returns (round, scores, seconds)."""
    w = s.ref.shape[1]
    rows, cols = flat // w, flat % w
    names = [s.scheme.classes[s.scheme.ids.index(int(v))].name for v in s.ref[rows, cols]]
    t0 = time.perf_counter()
    rnd = fit_correction(cache, rows, cols, names, classes=s.own_classes, seed=seed)
    probs = s.right_map(rnd.head, cache)
    dt = time.perf_counter() - t0
    return rnd, s.score_own(probs.argmax(axis=0), rnd.classes), dt, probs


def run_scene(s: Scene, bases: list[str], ns: list[int], seeds: dict[str, int], log) -> list[dict]:
    """Random and suggested users over N and seeds (per base bundle), per base bundle."""
    out = []
    own_ids = [s.id_of[c] for c in s.own_classes]
    h, w = s.ref.shape
    for b in bases:
        cache = s.caches[b]
        for seed in range(seeds[b]):
            rng = np.random.default_rng(1000 + seed)
            for n in ns:
                flat = stratified(rng, s.ref, s.left, own_ids, n)
                _, sc, dt, _ = one_round(s, cache, flat, seed)
                out.append({"ref": s.key, "base": b, "strategy": "random", "n": int(flat.size), "n_asked": n, "seed": seed, "fit_s": dt, **sc})
            # suggested: 2 per class, then min-margin suggestions of the current round up to each N
            rng = np.random.default_rng(2000 + seed)
            flat = stratified(rng, s.ref, s.left, own_ids, 2 * len(own_ids))
            chosen = np.zeros((h, w), bool)
            chosen.flat[flat] = True
            rnd, _, _, _ = one_round(s, cache, flat, seed)
            for n in ns:
                need = n - flat.size
                if need > 0:
                    probs = rnd.head.predict_map(cache.features[:, :, : s.w2])  # suggestions lie on the left half
                    cand = (s.left & ~chosen)[:, : s.w2]
                    spacing = max(1, min(16, int(np.sqrt(cand.sum() / (4 * need)))))
                    r, c = suggest_points(probs, cand, need, spacing=spacing)
                    add = r * w + c
                    if add.size < need:  # too few cells: top up at random (stratified)
                        chosen.flat[add] = True
                        add = np.concatenate([add, stratified(rng, s.ref, s.left, own_ids, need - add.size, exclude=chosen)])
                    chosen.flat[add] = True
                    flat = np.concatenate([flat, add])
                rnd, sc, dt, _ = one_round(s, cache, flat, seed)
                out.append({"ref": s.key, "base": b, "strategy": "suggested", "n": int(flat.size), "n_asked": n, "seed": seed, "fit_s": dt, **sc})
            log(f"  {s.key} {b} seed {seed}: done")
    return out


def run_untouched(s: Scene, bases: list[str], seeds: dict[str, int], n: int = 200, untouched_replay: int = UNTOUCHED_REPLAY) -> list[dict]:
    """Labels in the base classes (replay on), one class never labelled; per-class IoU change on untouched classes.

    ``untouched_replay`` is passed to :func:`~core.correction.session.fit_correction` (0: the uniform replay alone).
    """
    if s.cw.source != s.scheme.name:  # water / not water has no Dynamic World name for "not water"
        return []
    dw_names = s.common.names
    ref_dw = s.ref_c  # (H, W) DW ids or 255
    out = []
    for b in bases:
        cache = s.caches[b]
        base_map = cache.base_probs[:, :, s.w2:].argmax(axis=0)
        sel = s.test[:, s.w2:]
        base_sc = s.confusion(base_map[sel], ref_dw[:, s.w2:][sel])
        present = [i for i in range(len(dw_names)) if (s.left & (ref_dw == i)).sum() >= 2]
        given = [i for i in present if dw_names[i] != UNTOUCHED_CLASS]
        for seed in range(seeds[b]):
            rng = np.random.default_rng(3000 + seed)
            flat = stratified(rng, ref_dw, s.left, given, n)
            rows, cols = flat // s.ref.shape[1], flat % s.ref.shape[1]
            names = [dw_names[int(v)] for v in ref_dw[rows, cols]]
            rnd = fit_correction(cache, rows, cols, names, seed=seed, untouched_replay=untouched_replay)
            corr = np.array([dw_names.index(c) for c in rnd.classes])[s.right_map(rnd.head, cache).argmax(axis=0)]
            sc = s.confusion(corr[sel], ref_dw[:, s.w2:][sel])
            untouched = [c for c in range(len(dw_names)) if dw_names[c] not in set(names)
                         and ((base_map[sel] == c).any() or (ref_dw[:, s.w2:][sel] == c).any())]
            rows_ = []
            for c in untouched:
                bm = base_map[sel] == c
                kept = float((corr[sel][bm] == c).mean()) if bm.any() else float("nan")
                d_iou = sc["iou"][dw_names[c]] - base_sc["iou"][dw_names[c]]
                rows_.append({"class": dw_names[c], "base_px": int(bm.sum()), "corr_px": int((corr[sel] == c).sum()),
                              "kept": kept, "d_iou": None if np.isnan(d_iou) else float(d_iou)})
            d = [r["d_iou"] for r in rows_ if r["d_iou"] is not None]
            withheld = [r for r in rows_ if r["class"] == UNTOUCHED_CLASS]
            out.append({"ref": s.key, "base": b, "seed": seed, "n": int(flat.size), "oa": sc["oa"], "miou": sc["miou"],
                        "base_oa": base_sc["oa"], "base_miou": base_sc["miou"], "classes": rows_,
                        "max_abs_d_iou": max(map(abs, d)) if d else None, "min_d_iou": min(d) if d else None,
                        "withheld_kept": withheld[0]["kept"] if withheld else None,
                        "withheld_d_iou": withheld[0]["d_iou"] if withheld else None})
    return out


def fit_mlp(x: np.ndarray, y: np.ndarray, k: int, seed: int, hidden: int = 64, steps: int = 500, wd: float = 1e-3):
    """A 1-hidden-layer MLP (torch) on standardised features; returns float32 (N, F) -> (N, K) probabilities.

    Runs on one thread: on the loaded 2-core machine two threads made 500 steps on 180 points take 50 s instead of 0.7 s.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, k))
    opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=wd)
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    torch.set_num_threads(threads)

    @torch.inference_mode()
    def proba(z: np.ndarray) -> np.ndarray:
        return torch.softmax(net(torch.from_numpy(((z - mu) / sd).astype(np.float32))), dim=1).numpy()

    return proba


def run_mlp(s: Scene, bases: list[str], seeds: dict[str, int], n: int = MLP_N) -> list[dict]:
    """Logistic head (fit_correction) against an MLP on the same held-in points, the same prior shift."""
    from core.correction.session import _held_back

    own_ids = [s.id_of[c] for c in s.own_classes]
    w = s.ref.shape[1]
    out = []
    for b in bases:
        cache = s.caches[b]
        f = cache.features.shape[0]
        for seed in range(seeds[b]):
            rng = np.random.default_rng(1000 + seed)
            flat = stratified(rng, s.ref, s.left, own_ids, n)
            _, sc_lr, dt_lr, _ = one_round(s, cache, flat, seed)
            rows, cols = flat // w, flat % w
            names = [s.scheme.classes[s.scheme.ids.index(int(v))].name for v in s.ref[rows, cols]]
            labels = np.array([s.own_classes.index(nm) for nm in names])
            held = _held_back(labels, np.random.default_rng(seed), 0.1)  # the split fit_correction makes
            x = cache.features[:, rows, cols].T[~held]
            y = labels[~held]
            k = len(s.own_classes)
            t0 = time.perf_counter()
            proba = fit_mlp(x, y, k, seed)
            tp = np.bincount(y, minlength=k) / y.size
            if cache.prior_features is None:  # EM on the MLP's own probabilities
                prior = scene_prior(proba, cache.features, cache.valid, tp, rng=np.random.default_rng(seed))
            else:  # the same priors as fit_correction's: EM of a logistic head on the port's features of the points
                pf = cache.prior_features
                prior_head = fit_head(pf[:, rows, cols].T[~held], y, k, l2=0.1)
                prior = scene_prior(prior_head.predict_proba, pf, cache.valid, tp, rng=np.random.default_rng(seed))
            shift = np.sqrt(prior / np.clip(np.bincount(y, minlength=k) / y.size, 1e-6, None))  # strength 0.5, as the core
            p = proba(cache.features[:, :, s.w2:].reshape(f, -1).T) * shift
            dt = time.perf_counter() - t0
            own = p.argmax(axis=1).reshape(s.ref.shape[0], -1)
            sc = s.score_own(own, s.own_classes)
            out.append({"ref": s.key, "base": b, "seed": seed, "n": int(flat.size), "logistic_oa": sc_lr["oa"], "logistic_miou": sc_lr["miou"],
                        "mlp_oa": sc["oa"], "mlp_miou": sc["miou"], "logistic_s": dt_lr, "mlp_s": dt})
    return out


def run_round_time(s: Scene, bases: list[str], rounds: int = 20, n: int = 200) -> list[dict]:
    """Fit + new map of a 500 x 500 px AOI cut from the scene's cache, 200 points, ``rounds`` seeds."""
    out = []
    a = ROUND_AOI_PX
    own_ids = [i for i in (s.id_of[c] for c in s.own_classes) if (s.valid[:a, :a] & (s.ref[:a, :a] == i)).sum() >= 2]
    for b in bases:
        full = s.caches[b]
        pf = None if full.prior_features is None else np.ascontiguousarray(full.prior_features[:, :a, :a])
        cache = FeatureCache(np.ascontiguousarray(full.features[:, :a, :a]), np.ascontiguousarray(full.base_probs[:, :a, :a]),
                             full.valid[:a, :a].copy(), full.base_names, pf, full.prior_name)
        ref = s.ref[:a, :a]
        mask = s.valid[:a, :a]
        times = []
        for seed in range(rounds):
            rng = np.random.default_rng(4000 + seed)
            flat = stratified(rng, ref, mask, own_ids, n)
            rows, cols = flat // a, flat % a
            names = [s.scheme.classes[s.scheme.ids.index(int(v))].name for v in ref[rows, cols]]
            t0 = time.perf_counter()
            rnd = fit_correction(cache, rows, cols, names, classes=s.own_classes, seed=seed)
            new_map = rnd.head.predict_map(cache.features).argmax(axis=0)
            times.append(time.perf_counter() - t0)
            assert new_map.shape == (a, a)
        km2 = s.ref.shape[0] * s.ref.shape[1] * 1e-4
        out.append({"base": b, "aoi_px": a * a, "aoi_km2": a * a * 1e-4, "rounds": rounds, "p50_s": float(np.percentile(times, 50)),
                    "p95_s": float(np.percentile(times, 95)), "cache_mb": cache.nbytes / 1e6, "channels": int(cache.features.shape[0]),
                    "scene_cache_build_s": s.build_s[b], "scene_km2": km2})
        del cache
    return out


# ----------------------------------------------------------------------------------------------- report

def _ms(vals) -> tuple[float, float]:
    v = np.array([x for x in vals if x is not None and not np.isnan(x)], float)
    return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))


def summarise(runs: list[dict], baselines: dict, ns: list[int], bases: list[str], untouched: list[dict], mlp: list[dict]) -> dict:
    """Means and standard deviations over seeds, and the goals."""
    cells = {}
    for r in runs:
        cells.setdefault((r["ref"], r["base"], r["strategy"], r["n_asked"]), []).append(r)
    table = {}
    for (ref, b, st, n), rs in cells.items():
        table[f"{ref}|{b}|{st}|{n}"] = {k: _ms([r[k] for r in rs]) for k in ("oa", "miou", "oa_own", "fit_s")} | {"seeds": len(rs)}
    goals = {}
    if 200 in ns:
        for b in bases:
            for st in ("random", "suggested"):
                beats = {}
                for ref in baselines:
                    oa, dw = table.get(f"{ref}|{b}|{st}|200", {}).get("oa", (float("nan"),))[0], baselines[ref][DW]["oa"]
                    beats[ref] = "tie at 1.000" if min(oa, dw) > 0.9995 else bool(oa > dw)
                goals[f"beats_dw_at_200|{b}|{st}"] = beats
    if untouched:
        per = {}
        for u in untouched:
            per.setdefault((u["ref"], u["base"]), []).append(u)
        goals["untouched"] = {f"{ref}|{b}": {k: _ms([u[k] for u in us]) for k in ("min_d_iou", "max_abs_d_iou", "withheld_kept", "withheld_d_iou",
                                                                               "oa", "base_oa", "miou", "base_miou")}
                              for (ref, b), us in per.items()}
    if mlp:
        per = {}
        for m in mlp:
            per.setdefault((m["ref"], m["base"]), []).append(m)
        goals["mlp"] = {f"{ref}|{b}": {k: _ms([m[k] for m in ms]) for k in ("logistic_oa", "mlp_oa", "logistic_miou", "mlp_miou", "logistic_s", "mlp_s")}
                        for (ref, b), ms in per.items()}
    return {"table": table, "goals": goals}


def print_tables(summary: dict, baselines: dict, ns: list[int], bases: list[str], untouched: list[dict], timing: list[dict]) -> None:
    """Plain-text tables: OA and mIoU per reference x N, the baselines, the goals."""
    t = summary["table"]
    for b in bases:
        for st in ("random", "suggested"):
            for metric in ("oa", "miou"):
                print(f"\n{metric.upper()} on the right half, base {b}, {st} points (mean ± sd over seeds)")
                head = f"{'reference':20s} {'DW port':>8s} {'DW label':>8s} {'base':>7s} " + " ".join(f"{'N=' + str(n):>12s}" for n in ns)
                print(head)
                for ref, bl in baselines.items():
                    cells = []
                    for n in ns:
                        m, sd = t.get(f"{ref}|{b}|{st}|{n}", {}).get(metric, (float("nan"), float("nan")))
                        cells.append(f"{m:.3f}±{sd:.3f}".rjust(12))
                    dwl = bl.get("dw_product", {}).get(metric, float("nan"))
                    print(f"{ref:20s} {bl[DW][metric]:8.3f} {dwl:8.3f} {bl[b][metric]:7.3f} " + " ".join(cells))
    g = summary["goals"]
    print("\nGoals")
    for k, v in g.items():
        if k.startswith("beats_dw"):
            print(f"  {k}: {'met' if all(v.values()) else 'NOT met'} ({', '.join(f'{r}: {ok}' for r, ok in v.items())})")
    for k, v in g.get("untouched", {}).items():
        worst = v["min_d_iou"][0]
        if np.isnan(worst):
            print(f"  untouched classes {k}: n/a (no untouched class in the reference or the base map on the right half)")
            continue
        print(f"  untouched classes {k}: worst IoU change {worst:+.4f} ({'met' if worst >= -0.01 else 'NOT met'}, goal >= -0.01), "
              f"max |change| {v['max_abs_d_iou'][0]:.4f}; '{UNTOUCHED_CLASS}' kept {v['withheld_kept'][0]:.3f} of its base pixels, "
              f"IoU change {v['withheld_d_iou'][0]:+.4f}; OA {v['oa'][0]:.3f} (base {v['base_oa'][0]:.3f})")
    if "mlp" in g:
        for k, v in g["mlp"].items():
            print(f"  N={MLP_N} {k}: logistic OA {v['logistic_oa'][0]:.3f}±{v['logistic_oa'][1]:.3f} mIoU {v['logistic_miou'][0]:.3f} "
                  f"({v['logistic_s'][0]:.2f} s) | MLP OA {v['mlp_oa'][0]:.3f}±{v['mlp_oa'][1]:.3f} mIoU {v['mlp_miou'][0]:.3f} ({v['mlp_s'][0]:.2f} s)")
    for r in timing:
        print(f"  round on {r['aoi_km2']:.0f} km² ({r['aoi_px']} px), base {r['base']}: p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s "
              f"({'met' if r['p50_s'] < 2 else 'NOT met'}, goal p50 < 2 s); feature cache {r['cache_mb']:.0f} MB ({r['channels']} channels); "
              f"cache build of the whole scene ({r['scene_km2']:.0f} km²) {r['scene_cache_build_s']:.1f} s")


def plot(path: str, summary: dict, baselines: dict, ns: list[int], bases: list[str]) -> None:
    """OA against N, one panel per reference; DW port, DW label and base as horizontal lines."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = list(baselines)
    cols = min(4, len(refs))
    rows = (len(refs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharex=True)
    t = summary["table"]
    style = {("default", "random"): ("#1f77b4", "-"), ("default", "suggested"): ("#1f77b4", "--"),
             ("dynamicworld", "random"): ("#d62728", "-"), ("dynamicworld", "suggested"): ("#d62728", "--")}
    for ax, ref in zip(axes.flat, refs, strict=False):
        for b in bases:
            for st in ("random", "suggested"):
                pts = [(n, *t[f"{ref}|{b}|{st}|{n}"]["oa"]) for n in ns if f"{ref}|{b}|{st}|{n}" in t]
                if pts:
                    x, m, sd = map(np.array, zip(*pts, strict=True))
                    color, ls = style.get((b, st), ("k", "-"))
                    ax.errorbar(x, m, yerr=sd, color=color, ls=ls, marker="o", ms=3, capsize=2, label=f"corrected ({b}, {st})")
        bl = baselines[ref]
        ax.axhline(bl[DW]["oa"], color="#d62728", lw=1, ls=":", label="Dynamic World port")
        if "dw_product" in bl:
            ax.axhline(bl["dw_product"]["oa"], color="#ff9896", lw=1, ls="-.", label="Dynamic World label")
        ax.axhline(bl["default"]["oa"], color="#1f77b4", lw=1, ls=":", label="base (models/default)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_title(ref, fontsize=10)
        ax.set_ylabel("OA (right half)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(refs):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("points N (left half)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    """Parse options, run the simulation on each reference, print the tables; write JSON and the plot if asked."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", nargs="+", default=list(REFERENCES), choices=list(REFERENCES), help="references (default all)")
    p.add_argument("--n", nargs="+", type=int, default=[25, 50, 100, 200, 400], help="points per round (default 25 50 100 200 400)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per cell (default 5)")
    p.add_argument("--bases", nargs="+", default=["default", "dynamicworld"], choices=list(BASES), help="base bundles corrected")
    p.add_argument("--dw-seeds", type=int, help="seeds for the dynamicworld base (default --seeds)")
    p.add_argument("--skip", nargs="*", default=[], choices=["untouched", "mlp", "round"], help="parts left out")
    p.add_argument("--untouched-replay", type=int, default=UNTOUCHED_REPLAY,
                   help=f"replay samples per untouched class in the untouched-class run (default {UNTOUCHED_REPLAY}; 0: uniform replay alone)")
    p.add_argument("--quick", action="store_true", help="brandenburg-osm and slovenia-0820, N 25 200, 2 seeds, default base")
    p.add_argument("--json", metavar="PATH", help="write every run and the summary as JSON")
    p.add_argument("--plot", metavar="PATH", help="write the OA-against-N plot (PNG)")
    p.add_argument("--from-json", metavar="PATH", help="print the tables and write the plot of a saved --json run (nothing is run)")
    a = p.parse_args(argv)
    if a.from_json:
        d = json.loads(Path(a.from_json).read_text())
        ns, bases = sorted(set(d["options"]["n"])), d["options"]["bases"]
        print_tables(d["summary"], d["baselines"], ns, bases, d["untouched"], d["round"])
        if a.plot:
            plot(a.plot, d["summary"], d["baselines"], ns, bases)
        return 0
    if a.quick:
        a.refs, a.n, a.seeds, a.bases = ["brandenburg-osm", "slovenia-0820"], [25, 200], 2, ["default"]
    seeds = {b: a.seeds for b in a.bases}
    if DW in seeds and a.dw_seeds is not None:
        seeds[DW] = a.dw_seeds
    ns = sorted(set(a.n))
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    runs, untouched, mlp, timing, baselines, build = [], [], [], [], {}, {}
    for key in a.refs:
        log(f"{key}: caching features ({', '.join(sorted(set(a.bases) | {DW}))})")
        s = Scene(key, a.bases)
        baselines[key] = s.baselines
        build[key] = s.build_s
        runs += run_scene(s, a.bases, ns, seeds, log)
        if "untouched" not in a.skip:
            untouched += run_untouched(s, a.bases, seeds, untouched_replay=a.untouched_replay)
        if "mlp" not in a.skip and MLP_N in ns:
            mlp += run_mlp(s, a.bases, seeds)
        if "round" not in a.skip and key == "brandenburg-osm":
            timing = run_round_time(s, a.bases)
        del s
        gc.collect()
    summary = summarise(runs, baselines, ns, a.bases, untouched, mlp)
    print_tables(summary, baselines, ns, a.bases, untouched, timing)
    wall = time.perf_counter() - t_start
    print(f"\nwall {wall:.0f} s on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"options": vars(a), "baselines": baselines, "cache_build_s": build, "runs": runs,
                                            "untouched": untouched, "mlp": mlp, "round": timing, "summary": summary,
                                            "wall_s": wall, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, indent=1, default=float))
    if a.plot:
        plot(a.plot, summary, baselines, ns, a.bases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
