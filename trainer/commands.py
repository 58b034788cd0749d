"""The trainer's commands: fit, evaluate, predict.

``fit`` trains with Lightning from a YAML config, keeps ``last.ckpt`` so a killed run resumes with
``--resume``, and writes a model bundle whose card carries the band statistics, the split blocks
and the held-out metrics. ``evaluate`` reproduces those metrics from the bundle alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from tqdm import tqdm

from core.classes import get_scheme
from core.inference.policy import DEFAULT_OVERLAP, DEFAULT_TILE, RunPolicy, input_for_file, plan_run
from core.inference.streaming import predict_geotiff
from core.io.guards import DEFAULT_MAX_PIXELS, check_gsd, check_size
from core.io.outputs import check_outputs
from core.io.raster import raster_info
from core.sources.samples import get_scene
from models.bundle import Bundle, ModelCard, load_bundle, save_bundle, write_card
from trainer.config import FitConfig
from trainer.data import LulcDataModule
from trainer.evaluation import evaluate_arrays, evaluate_scene, summarize
from trainer.module import SegmentationTask
from trainer.progress import tqdm_progress

__all__ = ["fit", "evaluate", "predict", "predict_many", "expand_inputs", "INDEPENDENT_LABELS"]

INDEPENDENT_LABELS = ("osm", "water", "dfc", "lulc")
"""Label products not derived from Dynamic World, reported beside it in the card."""


def _best_state(ckpt: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def machine_description(device: str = "cpu") -> str:
    """Where a run happened, in words: CPU model and cores, or the GPU (for the card's training record)."""
    from models.runtimes import cpu_model

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), host {os.cpu_count()} cores"
    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads (CPU)"


AUTO_MEASURE_MIN_TILES = 64
"""``--runtime auto`` measures the runtimes (10-30 s once per machine and bundle) only for inputs of
at least this many tiles (about 2000 x 2000 px at tile 256), where it pays; smaller inputs use a
cached measurement if there is one, else PyTorch."""


def resolve_runtime(checkpoint: str | Path, precision: str = "auto", *, measure: bool = True,
                    quiet: bool = False) -> tuple[str, str]:
    """``--runtime auto``: the fastest usable runtime and precision measured on this machine (cached).

    See :func:`models.runtimes.choose_runtime`. Without a cached measurement and with ``measure``
    False: PyTorch at ``precision`` (fp32 for ``"auto"``: the reference, since bf16 changes some
    labels and is not faster on every CPU with bf16 instructions). Prints the choice unless ``quiet``.
    """
    from models.runtimes import choose_runtime

    got = choose_runtime(checkpoint, measure=measure)
    if got is None:
        precision = "fp32" if precision == "auto" else precision  # the reference, until a measurement says otherwise
        if not quiet:
            print(f"runtime auto: torch {precision} (no measurement on this machine yet; an input of at least "
                  f"{AUTO_MEASURE_MIN_TILES} tiles or --engine dask measures and caches one)")
        return "torch", precision
    runtime, chosen, rows = got
    if not quiet:
        table = ", ".join(f"{r['runtime']} {r['precision']} {r['images_s']:.2f} img/s" + ("" if r["usable"] else " (not chosen: does not reproduce fp32)")
                          for r in rows if "images_s" in r)
        print(f"runtime auto: {runtime} {chosen} (measured on this machine, cached: {table})")
    return runtime, chosen


def fit(cfg: FitConfig, *, resume: bool = False, offset: str | int | None = "auto") -> Path | None:
    """Train, test on the held-out blocks, and write the bundle.

    Args:
        cfg: The configuration.
        resume: Continue from ``<output.dir>/checkpoints/last.ckpt`` if it exists (after a kill or
            a stop), otherwise start afresh.
        offset: Radiometric offset of the training images: ``"auto"`` (per image, see
            :mod:`core.inputs.decision`), 0 or 1000.

    Returns:
        The bundle folder (on the global-zero process; ``None`` on other DDP ranks).
    """
    L.seed_everything(cfg.seed, workers=True)
    out = cfg.out_dir
    dm = LulcDataModule(cfg, offset=offset)
    dm.setup()
    task = SegmentationTask.from_config(cfg, len(cfg.data.bands), dm.scheme.names, dm.weights)
    ckpt_dir = out / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:03d}-{val_miou:.4f}", monitor="val_miou", mode="max", save_top_k=1, save_last=True)
    t = cfg.trainer
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        callbacks=[best, EarlyStopping(monitor="val_miou", mode="max", patience=t.patience)],
        logger=CSVLogger(out, name="logs"),
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        enable_progress_bar=t.progress_bar,
        default_root_dir=out,
    )
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if resume and ckpt_path is None:
        print(f"no checkpoint at {last}; starting afresh", file=sys.stderr)
    t_fit = time.perf_counter()
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - t_fit
    if not trainer.is_global_zero:
        return None
    model = task.model
    if best.best_model_path:
        model.load_state_dict(_best_state(best.best_model_path))
    card = ModelCard(
        name=cfg.name,
        arch=cfg.model.arch,
        encoder=cfg.model.encoder,
        bands=list(cfg.data.bands),
        mean=[round(float(v), 4) for v in dm.mean],
        std=[round(float(v), 4) for v in dm.std],
        classes=dm.scheme.to_dict(),
        tile=DEFAULT_TILE,
        training={
            "data": [s.id for s in dm.scenes if not s.id.startswith("chip:")]
            + ([f"{sum(s.id.startswith('chip:') for s in dm.scenes)} exported chips from {cfg.data.chips_dir}"] if cfg.data.chips_dir else []),
            "labels": cfg.data.labels,
            "chips": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)},
            "chip_size": cfg.data.chip_size,
            "epochs_run": trainer.current_epoch,
            "run": {"fit_seconds": round(fit_seconds, 1), "machine": machine_description(str(trainer.strategy.root_device)),
                    "resumed": ckpt_path is not None},
            "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            "best_val_miou": float(best.best_model_score) if best.best_model_score is not None else None,
            "config": cfg.to_dict(),
            "blocks": [b.to_dict() for b in dm.blocks if not b.scene.startswith("chip:")],
            "levels": dm.levels,
            "inputs": {s.id: s.input for s in dm.scenes if not s.id.startswith("chip:")},
        },
        levels=[lv for lv in dm.levels if lv != "unknown"],
        optional_bands=list(cfg.data.optional_bands),
        notes=f"Trained on {len([s for s in dm.scenes if not s.id.startswith('chip:')])} sample-pack scene(s); "
              "Dynamic World targets are model output, not ground truth.",
    )
    bundle_dir = save_bundle(model, card, cfg.bundle_dir)
    bundle = load_bundle(bundle_dir)  # evaluate exactly what was saved (float16 weights)
    from trainer.analyst import validation_calibration  # temperature scaling on the validation split

    calibration = validation_calibration(bundle.model, dm.val_dataloader())
    card.temperature = bundle.card.temperature = calibration.temperature
    results = []
    chips = [s for s in dm.scenes if s.id.startswith("chip:") and s.blocks[0].split == "test"]
    if chips:
        results.append(evaluate_arrays(bundle, chips, cfg.data.labels, dm.scheme.name))
    for s in dm.scenes:
        if s.id.startswith("chip:") or not any(b.split == "test" for b in s.blocks):
            continue
        results.append(evaluate_scene(bundle, s.id, cfg.data.labels, split="test"))
        for other in INDEPENDENT_LABELS:
            if other in get_scene(s.id, cfg.data.data_dir).labels and other != cfg.data.labels:
                results.append(evaluate_scene(bundle, s.id, other, split="test", baseline=cfg.data.labels))
    card.metrics = {"held_out": results, "precision": "fp32", "tile": card.tile, "overlap": DEFAULT_OVERLAP,
                    "calibration": {**calibration.to_dict(), "split": "val"}}
    write_card(card, bundle_dir)  # the weights on disk are the ones just evaluated
    print(summarize(results))
    print(f"bundle written to {bundle_dir}")
    return bundle_dir


def evaluate(checkpoint: str, scene: str, labels: str, *, split: str = "auto", as_json: bool = False, precision: str = "fp32",
             offset: str | int | None = "auto") -> dict:
    """Print per-class IoU, mIoU and OA of a bundle on a scene (a table, or one JSON object).

    Args:
        checkpoint: Bundle folder.
        scene: Sample scene id or folder.
        labels: Reference label product.
        split: See :func:`trainer.evaluation.scene_windows`.
        as_json: Print one JSON object instead of tables.
        precision: ``fp32``, ``bf16`` or ``auto``.
        offset: Radiometric offset of the scene: ``"auto"``, 0 or 1000 (see :mod:`core.inputs.decision`).

    Returns:
        The result dict of :func:`trainer.evaluation.evaluate_scene`.
    """
    bundle = load_bundle(checkpoint, precision=precision)
    res = evaluate_scene(bundle, scene, labels, split=split, offset=offset)
    if as_json:
        print(json.dumps(res))
        return res
    from core.evaluation.metrics import metrics_from_confusion

    m = res["metrics"]
    names = list(m["per_class"])
    print(f"{res['scene']}: {bundle.card.name} vs {labels} labels on {res['windows']}"
          + (f" (crosswalk {res['crosswalk']})" if res["crosswalk"] else ""))
    print(f"input: {res['input']}")
    for w in res.get("input_warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(metrics_from_confusion(m["confusion_matrix"], names, excluded_fraction=m["excluded_fraction"] or 0).table())
    if "baseline" in res:
        b = res["baseline"]["metrics"]
        print(f"\n{res['baseline']['labels']} labels vs {labels} on the same pixels:")
        print(metrics_from_confusion(b["confusion_matrix"], list(b["per_class"])).table())
    return res


def forward_for(bundle: Bundle, policy: RunPolicy, *, measure: bool = False, quiet: bool = False) -> tuple[object, RunPolicy]:
    """The forward pass a policy asks for, with ``runtime="auto"`` resolved (:func:`resolve_runtime`).

    Args:
        bundle: The loaded bundle (PyTorch).
        policy: From :func:`core.inference.policy.plan_run`.
        measure: With ``runtime="auto"``: measure the runtimes now if nothing is cached.
        quiet: Do not print the runtime choice.

    Returns:
        (forward callable, the policy with the runtime and precision that run).
    """
    runtime, precision = policy.runtime, policy.precision
    if runtime == "auto":  # after every input check: a refused input never costs a measurement
        runtime, precision = resolve_runtime(bundle.path, precision, measure=measure, quiet=quiet)
    policy = dataclasses.replace(policy, runtime=runtime, precision=precision)
    if runtime != "torch":
        from models.runtimes import load_forward

        return load_forward(bundle.path, runtime=runtime, precision=precision), policy
    if bundle.precision != precision:
        bundle = load_bundle(bundle.path, precision=precision)
    return bundle, policy


def predict(checkpoint: str | Bundle, src: str, dst: str, *, confidence: str | None = None, tile: int | None = None,
            overlap: int | None = None, batch_size: int | None = None, precision: str = "fp32",
            max_pixels: int = DEFAULT_MAX_PIXELS, offset: str | int | None = "auto", bands: Sequence[str] | None = None,
            progress: Callable[[int, int], None] | None = None, quiet: bool = False, runtime: str = "torch") -> Path:
    """Write a class-map COG (and optionally a confidence COG) for a GeoTIFF.

    How the input is read (band names and aliases, scale, +1000 offset, level, filled optional
    bands) is decided once by :func:`core.inference.policy.input_for_file`, how the model runs by
    :func:`core.inference.policy.plan_run` (the same policy as the app's); both are printed, and the
    input decision is written into the outputs' tags (``LULC_INPUT_*``).

    Args:
        checkpoint: Bundle folder, or an already loaded bundle (batch prediction loads it once).
        src: Input GeoTIFF; its band descriptions name its bands (aliases such as ``b02`` work), or
            ``bands`` does.
        dst: Output COG of class ids with the input's CRS/transform and the classes' colour table.
        confidence: Optional output COG of float32 confidence.
        tile: Tile side in pixels (multiple of 32); default the card's (see :mod:`core.inference.policy`).
        overlap: Overlap between neighbouring tiles in pixels (<= tile / 2); default the card's.
        batch_size: Tiles per forward call; default :data:`core.inference.policy.DEFAULT_BATCH_SIZE`.
        precision: ``fp32`` (default, the reference) or ``bf16``.
        max_pixels: Refuse inputs with more pixels (H x W), read from the header before any work.
        offset: ``"auto"``, 0 or 1000: the radiometric offset of the input (see :mod:`core.inputs.decision`).
        bands: Names of the input's bands in file order (``--bands``), overriding its descriptions.
        progress: Called with (tiles done, tiles total) instead of a tile progress bar.
        quiet: Do not print the decision and the output paths.
        runtime: ``torch`` (default), ``onnxruntime`` or ``openvino`` (:func:`models.runtimes.load_forward`), or
            ``auto``: the fastest one measured on this machine whose labels reproduce PyTorch fp32
            (:func:`resolve_runtime`; measured for inputs of at least :data:`AUTO_MEASURE_MIN_TILES` tiles).

    Returns:
        ``dst``.

    Raises:
        OutputError, SizeLimitError, GsdError: Checked before the model runs (see
            :mod:`core.io.outputs`, :mod:`core.io.guards`).
        BandError, InputError: The input cannot be read as the model's input (see
            :func:`core.inputs.decision.decide`).
    """
    check_outputs({"--output": dst, "--confidence": confidence}, [src])
    info = raster_info(src)
    check_size(info, max_pixels=max_pixels, name=Path(src).name, hint="crop it, or raise --max-megapixels")
    bundle = checkpoint if isinstance(checkpoint, Bundle) else load_bundle(checkpoint)
    check_gsd(info["crs"], info["transform"], info["height"], info["width"], bundle.card.gsd_m, name=Path(src).name)
    decision = input_for_file(src, bundle.card, bands=bands, offset=offset)
    policy = plan_run(bundle.card, info["height"], info["width"], decision=decision, tile=tile, overlap=overlap,
                      batch_size=batch_size, precision=precision, runtime=runtime)
    if not quiet:
        print(f"{Path(src).name}: {policy.decision.summary()}")
        for w in policy.warnings:
            print(f"warning: {w}", file=sys.stderr)
    forward, policy = forward_for(bundle, policy, measure=policy.n_tiles >= AUTO_MEASURE_MIN_TILES, quiet=quiet)
    if not quiet:
        print(f"run: {policy.summary()}")
    scheme = get_scheme(bundle.card.scheme_name)
    kwargs = dict(bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids, colormap=scheme.colormap(),
                  confidence_path=confidence)
    if progress is not None:
        out = predict_geotiff(src, dst, forward, policy, progress=progress, **kwargs)
    else:
        with tqdm(total=None, unit="tile", desc="predict") as bar:
            out = predict_geotiff(src, dst, forward, policy, progress=tqdm_progress(bar), **kwargs)
    if not quiet:
        print(f"wrote {out}" + (f" and {confidence}" if confidence else ""))
    return out


RASTER_SUFFIXES = (".tif", ".tiff")


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Input files from paths and folders (a folder gives its ``*.tif``/``*.tiff``, sorted, not recursive).

    Raises:
        FileNotFoundError: A path does not exist, or a folder holds no GeoTIFF.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {p} holds no .tif/.tiff file")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    return list(dict.fromkeys(files))


def predict_many(checkpoint: str, inputs: Sequence[str], output: str, *, confidence: str | None = None, tile: int | None = None,
                 overlap: int | None = None, batch_size: int | None = None, precision: str = "fp32", max_pixels: int = DEFAULT_MAX_PIXELS, offset: str | int | None = "auto",
                 bands: Sequence[str] | None = None, runtime: str = "torch") -> int:
    """Predict several GeoTIFFs (files and/or folders) with one model load and one progress bar.

    Writes ``<output>/<stem>_classes.tif`` (and ``<confidence>/<stem>_confidence.tif``) per input.
    A file that fails is reported with its reason and the others go on.

    Args:
        checkpoint: Bundle folder (loaded once).
        inputs: Files and folders.
        output: Output folder (created).
        confidence: Optional folder for confidence COGs (may be ``output``).
        tile: Tile side in pixels, as in :func:`predict` (default the card's).
        overlap: Tile overlap in pixels (default the card's).
        batch_size: Tiles per forward call.
        precision: ``fp32`` (default) or ``bf16``.
        max_pixels: Size limit per input (H x W).
        offset: ``"auto"``, 0 or 1000, for every input.
        bands: ``--bands`` names, for every input.
        runtime: ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (measured once, see :func:`resolve_runtime`).

    Returns:
        The number of inputs that failed (0 = all written).

    Raises:
        FileNotFoundError: An input path does not exist or a folder holds no GeoTIFF.
        BundleError: The bundle cannot be loaded.
    """
    files = expand_inputs(inputs)
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--output {out_dir} is a file; with several inputs or a folder, --output must be a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    conf_dir = Path(confidence) if confidence else None
    if conf_dir is not None:
        conf_dir.mkdir(parents=True, exist_ok=True)
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"several inputs are named {', '.join(dupes)}; their outputs would collide: predict them into different folders")
    if runtime == "auto":
        runtime, precision = resolve_runtime(checkpoint, precision, measure=len(files) >= 8)
    bundle = load_bundle(checkpoint)
    failed: list[tuple[Path, str]] = []
    with tqdm(total=len(files), unit="file", desc="predict") as bar:
        for f in files:
            bar.set_postfix_str(f.name)
            try:
                dst = out_dir / f"{f.stem}_classes.tif"
                conf = conf_dir / f"{f.stem}_confidence.tif" if conf_dir is not None else None
                predict(bundle, str(f), str(dst), confidence=str(conf) if conf else None, tile=tile, overlap=overlap,
                        batch_size=batch_size, precision=precision, max_pixels=max_pixels, offset=offset, bands=bands,
                        progress=lambda d, t: None, quiet=True, runtime=runtime)
                decision = read_decision_tags(dst)
                tqdm.write(f"{f.name}: {decision}")
            except (ValueError, OSError) as exc:
                failed.append((f, " ".join(str(exc).split())))
                tqdm.write(f"error: {f.name}: {failed[-1][1]}", file=sys.stderr)
            bar.update(1)
    print(f"wrote {len(files) - len(failed)} of {len(files)} class maps to {out_dir}" + (f"; {len(failed)} failed:" if failed else ""))
    for f, msg in failed:
        print(f"  {f}: {msg}", file=sys.stderr)
    return len(failed)


def read_decision_tags(path: str | Path) -> str:
    """The input decision recorded in an output's tags, as one line."""
    import rasterio

    with rasterio.open(path) as ds:
        t = ds.tags()
    return (f"offset {t.get('LULC_INPUT_OFFSET_DN')} DN ({t.get('LULC_INPUT_OFFSET_REASON')}); scale x{t.get('LULC_INPUT_SCALE')}; "
            f"level {t.get('LULC_INPUT_LEVEL')}" + (f"; filled {t['LULC_INPUT_MISSING_BANDS']}" if t.get("LULC_INPUT_MISSING_BANDS") else "")
            + (f"; warning: {t['LULC_INPUT_WARNINGS']}" if t.get("LULC_INPUT_WARNINGS") else ""))
