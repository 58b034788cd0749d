"""The trainer's commands: fit, evaluate, predict.

``fit`` trains with Lightning from a YAML config, keeps ``last.ckpt`` so a killed run resumes with
``--resume``, and writes a model bundle whose card carries the band statistics, the split blocks
and the held-out metrics. ``evaluate`` reproduces those metrics from the bundle alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from tqdm import tqdm

from core.classes import get_scheme
from core.guards import DEFAULT_MAX_PIXELS, check_gsd, check_size
from core.inference import predict_geotiff
from core.outputs import check_outputs
from core.raster import raster_info
from core.sources.samples import get_scene
from models.bundle import ModelCard, load_bundle, save_bundle, write_card
from trainer.config import FitConfig
from trainer.data import LulcDataModule
from trainer.evaluation import evaluate_arrays, evaluate_scene, summarize
from trainer.module import SegmentationTask

__all__ = ["fit", "evaluate", "predict", "INDEPENDENT_LABELS"]

INDEPENDENT_LABELS = ("osm", "water", "dfc")
"""Label products not derived from Dynamic World, reported beside it in the card."""


def _best_state(ckpt: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def fit(cfg: FitConfig, *, resume: bool = False) -> Path | None:
    """Train, test on the held-out blocks, and write the bundle.

    Args:
        cfg: The configuration.
        resume: Continue from ``<output.dir>/checkpoints/last.ckpt`` if it exists (after a kill or
            a stop), otherwise start afresh.

    Returns:
        The bundle folder (on the global-zero process; ``None`` on other DDP ranks).
    """
    L.seed_everything(cfg.seed, workers=True)
    out = cfg.out_dir
    dm = LulcDataModule(cfg)
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
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
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
        tile=256,
        training={
            "data": [s.id for s in dm.scenes if not s.id.startswith("chip:")]
            + ([f"{sum(s.id.startswith('chip:') for s in dm.scenes)} exported chips from {cfg.data.chips_dir}"] if cfg.data.chips_dir else []),
            "labels": cfg.data.labels,
            "chips": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)},
            "chip_size": cfg.data.chip_size,
            "epochs_run": trainer.current_epoch,
            "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            "best_val_miou": float(best.best_model_score) if best.best_model_score is not None else None,
            "config": cfg.to_dict(),
            "blocks": [b.to_dict() for b in dm.blocks if not b.scene.startswith("chip:")],
        },
        notes="Trained on the sample pack only (four scenes); Dynamic World targets are model output, not ground truth.",
    )
    bundle_dir = save_bundle(model, card, cfg.bundle_dir)
    bundle = load_bundle(bundle_dir)  # evaluate exactly what was saved (float16 weights)
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
    card.metrics = {"held_out": results, "precision": "fp32", "tile": card.tile, "overlap": 32}
    write_card(card, bundle_dir)  # the weights on disk are the ones just evaluated
    print(summarize(results))
    print(f"bundle written to {bundle_dir}")
    return bundle_dir


def evaluate(checkpoint: str, scene: str, labels: str, *, split: str = "auto", as_json: bool = False, precision: str = "fp32") -> dict:
    """Print per-class IoU, mIoU and OA of a bundle on a scene (a table, or one JSON object).

    Args:
        checkpoint: Bundle folder.
        scene: Sample scene id or folder.
        labels: Reference label product.
        split: See :func:`trainer.evaluation.scene_windows`.
        as_json: Print one JSON object instead of tables.
        precision: ``fp32``, ``bf16`` or ``auto``.

    Returns:
        The result dict of :func:`trainer.evaluation.evaluate_scene`.
    """
    bundle = load_bundle(checkpoint, precision=precision)
    res = evaluate_scene(bundle, scene, labels, split=split)
    if as_json:
        print(json.dumps(res))
        return res
    from core.metrics import metrics_from_confusion

    m = res["metrics"]
    names = list(m["per_class"])
    print(f"{res['scene']}: {bundle.card.name} vs {labels} labels on {res['windows']}"
          + (f" (crosswalk {res['crosswalk']})" if res["crosswalk"] else ""))
    print(metrics_from_confusion(m["confusion_matrix"], names, excluded_fraction=m["excluded_fraction"] or 0).table())
    if "baseline" in res:
        b = res["baseline"]["metrics"]
        print(f"\n{res['baseline']['labels']} labels vs {labels} on the same pixels:")
        print(metrics_from_confusion(b["confusion_matrix"], list(b["per_class"])).table())
    return res


def predict(checkpoint: str, src: str, dst: str, *, confidence: str | None = None, tile: int = 256, overlap: int = 32, batch_size: int = 8, precision: str = "auto",
            max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Write a class-map COG (and optionally a confidence COG) for a GeoTIFF.

    Args:
        checkpoint: Bundle folder.
        src: Input GeoTIFF; its band descriptions must name the model's bands.
        dst: Output COG of class ids with the input's CRS/transform and the classes' colour table.
        confidence: Optional output COG of float32 confidence.
        tile: Tile side in pixels (multiple of 32).
        overlap: Overlap between neighbouring tiles in pixels (<= tile / 2).
        batch_size: Tiles per forward call.
        precision: ``fp32``, ``bf16`` or ``auto``.
        max_pixels: Refuse inputs with more pixels (H x W), read from the header before any work.

    Returns:
        ``dst``.

    Raises:
        OutputError, SizeLimitError, GsdError: Checked before the model runs (see
            :mod:`core.outputs`, :mod:`core.guards`).
    """
    check_outputs({"--output": dst, "--confidence": confidence}, [src])
    info = raster_info(src)
    check_size(info, max_pixels=max_pixels, name=Path(src).name, hint="crop it, or raise --max-megapixels")
    bundle = load_bundle(checkpoint, precision=precision)
    check_gsd(info["crs"], info["transform"], info["height"], info["width"], bundle.card.gsd_m, name=Path(src).name)
    bundle.check_bands(info["band_names"])
    scheme = get_scheme(bundle.card.scheme_name)
    with tqdm(total=None, unit="tile", desc="predict") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = predict_geotiff(
            src, dst, bundle, bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids, colormap=scheme.colormap(),
            confidence_path=confidence, tile=tile, overlap=overlap, batch_size=batch_size, progress=progress,
        )
    print(f"wrote {out}" + (f" and {confidence}" if confidence else ""))
    return out
