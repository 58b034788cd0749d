"""The run policy: the one place that decides how a model runs on an input.

Every entry point (the app's Explore, Accuracy & area and Change pages, ``python -m trainer predict``
single/batch/``--engine dask``/``--aoi``, ``evaluate``, ``assess``, ``report``, ``change``, the card
assessment tool) asks :func:`plan_run` for a :class:`RunPolicy` and hands it to the tiled predictor
(:func:`core.inference.streaming.predict_raster`, :func:`core.inference.streaming.predict_geotiff`,
:func:`core.inference.blocks.predict_block`), which call :meth:`RunPolicy.run` and nothing else. So one
model on one input gives one map, whichever entry point runs it.

What is decided, from the model's card and the input's header (H, W) only:

- **Tile and overlap**: the card's ``tile`` and the overlap recorded in its metrics (``metrics.overlap``,
  the overlap its held-out figures were measured with), else :data:`DEFAULT_TILE` /
  :data:`DEFAULT_OVERLAP`; a user's ``--tile``/``--overlap`` overrides them.
- **Full-frame pass**: a network that takes any input size (the Dynamic World port) runs over the
  whole input in one pass when the pass fits :data:`FULL_FRAME_MAX_BYTES` of activations; the input
  is reflect-padded at the bottom/right to (H + H % 2, W + W % 2), never to a square. One pass
  reproduces the published model's whole-image runs exactly (the pack's ``labels_dw.tif``); larger
  inputs are tiled like every other model.
- **Batch size**: :data:`DEFAULT_BATCH_SIZE` tiles per forward call unless the user overrides it
  (in fp32 the labels do not depend on it; it only trades memory for speed).
- **Nodata handling**: the ``dynamic_world`` preprocessing sees the valid bands of a partly empty
  pixel (``InputDecision.nodata_per_band``), as the original runs did; other networks see NaN in
  every band of such a pixel. Either way the pixel gets no class.
- **Precision and runtime**: fp32 by default everywhere, on the card's runtime (:func:`default_runtime`):
  PyTorch, the reference, unless the card names an ONNX runtime measured to reproduce its PyTorch fp32
  labels and that runtime is installed (the Dynamic World port's card names OpenVINO: eager PyTorch
  cannot fuse its Mish activations, OpenVINO runs it about 5x faster with logits within 1e-5). bf16
  autocast and other runtimes only when the user asks for them (``--precision bf16``, ``--runtime``;
  the app's precision control); bf16 always runs on PyTorch. ``--runtime auto`` chooses only runtimes
  whose labels reproduce PyTorch fp32 (:func:`models.runtimes.choose_runtime`). The bundle applies the
  same rule when it is called (``ModelCard.default_runtime``), so a caller that hands the bundle
  itself to the predictor (the app) runs the runtime its policy names.
- **Input decision and level rule**: :mod:`core.inputs.decision` (band mapping, scale, offset, level);
  :func:`input_for_file` also reads the processing level of a sample-pack image from its scene.json,
  so the CLI and the app see the same level for the same file. A level the model was not trained on
  runs with a warning that names the domain shift (:func:`core.inputs.decision.decide`), never a refusal that
  one entry point makes and another does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import RunPolicyError
from core.inference.tiling import ForwardFn, ProgressFn, ReadFn, TileGrid, WriteFn, predict_full_frame, predict_tiled
from core.inputs.decision import InputDecision, decide_for_file

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "DEFAULT_BATCH_SIZE",
    "FULL_FRAME_MAX_BYTES",
    "FULL_FRAME_BYTES_PER_PIXEL",
    "PRECISIONS",
    "RUNTIMES",
    "RunCard",
    "RunPolicy",
    "plan_run",
    "default_runtime",
    "model_decision",
    "input_for_file",
]

DEFAULT_TILE = 256
"""Tile side in pixels when the card names none (2.56 km at 10 m GSD; a multiple of 32)."""
DEFAULT_OVERLAP = 32
"""Overlap of neighbouring tiles in pixels when the card records none: 12.5 % of a 256 px tile, the
overlap the shipped default's held-out figures were measured with (its card's ``metrics.overlap``)."""
DEFAULT_BATCH_SIZE = 8
"""Tiles per forward call (8 x 9 x 256 x 256 float32 input = 19 MB)."""
FULL_FRAME_BYTES_PER_PIXEL = {"dynamicworld": 2000}
"""Growth of the peak resident memory over one full-frame forward pass per input pixel, by
architecture (bytes). Measured for the Dynamic World port, torch fp32 on a 2-core AMD EPYC (Zen 4):
1956 bytes/px at 1024 x 1024, 1938 at 1024 x 2048 (``benchmarks/bench_full_frame.py``), rounded up."""
FULL_FRAME_MAX_BYTES = 4 * 2**30
"""Largest full-frame pass (bytes estimated from :data:`FULL_FRAME_BYTES_PER_PIXEL`): about 2.1 Mpx
for Dynamic World, more than the app's 150 km^2 AOI limit (1.5 Mpx at 10 m). A fixed number, not the free memory of the moment, so that the
same input gives the same map on every machine and at every load."""
PRECISIONS = ("fp32", "bf16")
"""fp32: the reference. bf16: autocast, faster on CPUs with native bf16 (AVX-512 BF16, AMX) but it
changes some labels (0.04 % of a pack scene for the default U-Net), so only when asked for."""
RUNTIMES = ("torch", "onnxruntime", "openvino", "auto")
"""Where the network runs (:func:`models.runtimes.load_forward`); ``auto``: the fastest one measured on
this machine whose labels reproduce PyTorch fp32."""


class RunCard(Protocol):
    """What the run policy reads from a model card (:class:`models.card.ModelCard` fits)."""

    name: str
    arch: str
    tile: int
    preprocessing: str
    metrics: dict


def default_runtime(card: RunCard, precision: str = "fp32") -> str:
    """The runtime a model runs on when the user names none: the card's rule, else torch.

    The rule is the card's own (``models.card.ModelCard.default_runtime``: its ``runtime`` for fp32 on the
    CPU where that package is installed, else PyTorch), the one the bundle applies when it is called, so
    the policy names what runs. A card-like object without that method runs on PyTorch.

    Args:
        card: The model's card.
        precision: ``"fp32"`` or ``"bf16"``.

    Returns:
        ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
    """
    rule = getattr(card, "default_runtime", None)
    return str(rule(precision)) if callable(rule) else "torch"


@dataclass(frozen=True)
class RunPolicy:
    """How one model runs on one input, decided once by :func:`plan_run`.

    Attributes:
        model: The card's name (for messages).
        height: Input rows H (pixels).
        width: Input columns W (pixels).
        tile: Tile side T in pixels (ignored when ``full_frame``).
        overlap: Overlap of neighbouring tiles in pixels.
        batch_size: Tiles per forward call.
        full_frame: One pass over the whole input, padded to :attr:`frame`.
        precision: ``"fp32"`` or ``"bf16"``.
        runtime: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (resolved by the caller
            that loads the network, after every input check).
        decision: How the input's pixels are read (:class:`core.inputs.decision.InputDecision`), with the
            model's nodata handling applied; ``None`` when the caller feeds model input directly
            (exported chips).
        reasons: Why tile/overlap/full frame were chosen, in words.
        preprocessing: The card's named preprocessing (``standardize``, ``dynamic_world``).
    """

    model: str
    height: int
    width: int
    tile: int
    overlap: int
    batch_size: int
    full_frame: bool
    precision: str = "fp32"
    runtime: str = "torch"
    decision: InputDecision | None = None
    reasons: tuple[str, ...] = ()
    preprocessing: str = "standardize"

    @property
    def frame(self) -> tuple[int, int]:
        """(H', W') of the full-frame pass: H and W rounded up to even."""
        return self.height + self.height % 2, self.width + self.width % 2

    @property
    def n_tiles(self) -> int:
        """Forward passes of one tile (or one frame) each."""
        return 1 if self.full_frame else TileGrid(self.height, self.width, self.tile, self.overlap).n_tiles

    @property
    def warnings(self) -> tuple[str, ...]:
        """Sentences the user must see: the input decision's, and bf16 when chosen."""
        own = ("precision bf16: faster on CPUs with native bf16, but some labels differ from the fp32 reference",) \
            if self.precision == "bf16" else ()
        return (tuple(self.decision.warnings) if self.decision is not None else ()) + own

    def summary(self) -> str:
        """One line: how the model runs (full frame or tiles, precision, runtime)."""
        if self.full_frame:
            h2, w2 = self.frame
            how = f"one full-frame pass of {h2} x {w2} px"
        else:
            how = f"{self.n_tiles} tile(s) of {self.tile} px, overlap {self.overlap} px, batch {self.batch_size}"
        return f"{how}; {self.runtime} {self.precision}"

    def run(self, read: ReadFn, forward: ForwardFn, write: WriteFn, *, num_classes: int, height: int | None = None,
            width: int | None = None, progress: ProgressFn | None = None) -> int:
        """Run ``forward`` over an input by this policy: the only caller of the tiled predictor.

        Args:
            read: See :data:`core.inference.tiling.ReadFn` (NaN marks nodata).
            forward: See :data:`core.inference.tiling.ForwardFn`.
            write: See :data:`core.inference.tiling.WriteFn`.
            num_classes: K.
            height: Rows of what ``read`` covers (default :attr:`height`; a Dask block's region).
            width: Columns (default :attr:`width`).
            progress: Called with (passes done, passes total).

        Returns:
            The number of forward passes (tiles or 1 frame).

        Raises:
            ValueError: ``forward`` returned the wrong shape.
        """
        h, w = height or self.height, width or self.width
        if self.full_frame:
            predict_full_frame(read, forward, write, height=h, width=w, num_classes=num_classes, progress=progress)
            return 1
        grid = predict_tiled(read, forward, write, height=h, width=w, num_classes=num_classes, tile=self.tile,
                             overlap=self.overlap, batch_size=self.batch_size, progress=progress)
        return grid.n_tiles


def _model_nodata_rule(preprocessing: str, decision: InputDecision | None) -> InputDecision | None:
    if decision is None:
        return None
    return dataclasses.replace(decision, nodata_per_band=preprocessing == "dynamic_world")


def model_decision(card: RunCard, decision: InputDecision) -> InputDecision:
    """An input decision with the model's nodata rule applied (what :func:`plan_run` puts in the policy).

    The ``dynamic_world`` preprocessing sees the valid bands of a partly empty pixel, as the
    original model's runs did (``nodata_per_band``); other models see NaN in all its bands.
    """
    return _model_nodata_rule(str(getattr(card, "preprocessing", "standardize")), decision)


def _card_overlap(card: RunCard) -> int | None:
    metrics = getattr(card, "metrics", None) or {}
    value = metrics.get("overlap") if isinstance(metrics, Mapping) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def full_frame_bytes(arch: str, height: int, width: int) -> int | None:
    """Estimated peak memory of a full-frame pass over an H x W input.

    Args:
        arch: The card's architecture name (``"dynamicworld"``).
        height: Input rows H (pixels).
        width: Input columns W (pixels).

    Returns:
        Bytes: :data:`FULL_FRAME_BYTES_PER_PIXEL` x (H + H % 2) x (W + W % 2); ``None`` for an
        architecture that runs only on tiles.
    """
    per_px = FULL_FRAME_BYTES_PER_PIXEL.get(arch)
    if per_px is None:
        return None
    return per_px * (height + height % 2) * (width + width % 2)


def plan_run(
    card: RunCard,
    height: int,
    width: int,
    *,
    decision: InputDecision | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    runtime: str | None = None,
) -> RunPolicy:
    """Decide how a model runs on an H x W input (see the module docstring for the rules).

    Args:
        card: The model's card (``arch``, ``tile``, ``preprocessing``, ``metrics.overlap``).
        height: Input rows H in pixels.
        width: Input columns W in pixels.
        decision: The input decision (:mod:`core.inputs.decision`); the model's nodata rule is applied to it.
        tile: User override of the tile side (pixels, a multiple of 32); a user tile also turns
            off the full-frame pass.
        overlap: User override of the overlap (pixels, at most tile / 2; the card's overlap is
            shortened to tile / 2 for a smaller user tile).
        batch_size: User override of the tiles per forward call.
        precision: ``"fp32"`` (default, the reference) or ``"bf16"``.
        runtime: One of :data:`RUNTIMES`; None (default): the card's (:func:`default_runtime`).

    Returns:
        The policy.

    Raises:
        RunPolicyError: Unknown precision or runtime, or a tile/overlap that :class:`core.inference.tiling.TileGrid`
            refuses.
    """
    if precision not in PRECISIONS:
        raise RunPolicyError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    card_runtime = runtime is None
    if card_runtime:
        runtime = default_runtime(card, precision)
    if runtime not in RUNTIMES:
        raise RunPolicyError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    reasons = []
    card_tile = int(getattr(card, "tile", 0) or 0) or DEFAULT_TILE
    t = int(tile) if tile else card_tile
    reasons.append("tile set by the user" if tile else f"tile {t} px from the card")
    card_overlap = _card_overlap(card)
    o = int(overlap) if overlap is not None else min(card_overlap if card_overlap is not None else DEFAULT_OVERLAP, t // 2)
    reasons.append("overlap set by the user" if overlap is not None else
                   (f"overlap {o} px from the card" if card_overlap is not None else f"overlap {o} px (default)"))
    need = full_frame_bytes(str(getattr(card, "arch", "")), height, width)
    full = tile is None and need is not None and need <= FULL_FRAME_MAX_BYTES
    if need is not None and tile is None:
        reasons.append("one full-frame pass, as the original model ran" if full else
                       f"tiled: a full-frame pass would need about {need / 2**30:.1f} GiB (limit {FULL_FRAME_MAX_BYTES / 2**30:.0f} GiB)")
    try:
        TileGrid(max(1, height), max(1, width), t, o)  # validate tile/overlap now, before any pixel is read
    except ValueError as exc:
        raise RunPolicyError(f"model {getattr(card, 'name', 'model')!r} cannot run with tile {t} px and overlap {o} px: {exc}") from None
    if card_runtime and runtime != "torch":
        reasons.append(f"runtime {runtime} from the card (it reproduces the PyTorch fp32 labels)")
    prep = str(getattr(card, "preprocessing", "standardize"))
    return RunPolicy(
        model=str(getattr(card, "name", "model")), height=int(height), width=int(width), tile=t, overlap=o,
        batch_size=int(batch_size) if batch_size else DEFAULT_BATCH_SIZE, full_frame=full, precision=precision,
        runtime=runtime, decision=_model_nodata_rule(prep, decision), reasons=tuple(reasons), preprocessing=prep,
    )


def input_for_file(path: str | Path, card, *, bands: Sequence[str] | None = None, offset: int | str | None = None) -> InputDecision:
    """The input decision for a GeoTIFF (:func:`core.inputs.decision.decide_for_file`), with the sample pack's level.

    A file that is a sample-pack scene's image (``<scene>/image_s2.tif`` beside its ``scene.json``)
    gets the scene's processing level from scene.json, as the app does for the same scene; any other
    file gets its level from its own metadata.

    Raises:
        RasterReadError: Missing or unreadable file.
        BandError, InputError: See :func:`core.inputs.decision.decide`.
    """
    from core.sources.samples import scene_level_of_file

    found = scene_level_of_file(path)
    level, reason = found if found else (None, "")
    return decide_for_file(path, card, bands=bands, offset=offset, level=level, level_reason=reason)
