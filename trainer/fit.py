"""``python -m trainer fit``'s work: train with Lightning, test on the held-out blocks, write a bundle.

:func:`fit` trains from a :class:`trainer.config.FitConfig`, keeps ``last.ckpt`` so a killed run
resumes with ``--resume``, and writes a model bundle whose card carries the band statistics, the
split blocks, the temperature fitted on the validation split and the held-out metrics
(:mod:`trainer.scene_scores`; ``python -m trainer evaluate`` reproduces them from the bundle alone).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from core.errors import LulcError
from core.inference.policy import DEFAULT_OVERLAP, DEFAULT_TILE
from core.inputs.bands import SENSORS, sensor_of
from core.sources.samples import get_scene
from models.bundle import Bundle, ModelCard, load_bundle, save_bundle, write_card
from trainer.config import FitConfig
from trainer.data import LulcDataModule, test_block_crops
from trainer.module import SegmentationTask
from trainer.scene_scores import evaluate_arrays, evaluate_scene, summarize

__all__ = ["fit", "run_lock", "RunLockError", "machine_description", "INDEPENDENT_LABELS"]

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


def _lightning_trainer(cfg: FitConfig, ckpt_dir: Path) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning trainer of a config, and its best-checkpoint callback (best by ``val_miou``, plus ``last.ckpt``)."""
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
        logger=CSVLogger(cfg.out_dir, name="logs"),
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        enable_progress_bar=t.progress_bar,
        default_root_dir=cfg.out_dir,
    )
    return trainer, best


def _model_card(cfg: FitConfig, dm: LulcDataModule, trainer: L.Trainer, best: ModelCheckpoint, fit_seconds: float,
                resumed: bool) -> ModelCard:
    """The card of the trained model: bands, statistics, classes and the training record (metrics come later)."""
    pack = [s for s in dm.scenes if not s.id.startswith(("chip:", "file:"))]
    files = [s.id for s in dm.scenes if s.id.startswith("file:")]
    n_chips = sum(s.id.startswith("chip:") for s in dm.scenes)
    return ModelCard(
        name=cfg.name,
        arch=cfg.model.arch,
        encoder=cfg.model.encoder,
        bands=list(cfg.data.bands),
        mean=[round(float(v), 4) for v in dm.mean],
        std=[round(float(v), 4) for v in dm.std],
        classes=dm.scheme.to_dict(),
        tile=DEFAULT_TILE,
        sensor=sensor_of(cfg.data.bands),
        gsd_m=max(SENSORS[s].gsd_m for s in sensor_of(cfg.data.bands).split("+")),
        training={
            "data": [s.id for s in pack] + files + ([f"{n_chips} exported chips from {cfg.data.chips_dir}"] if cfg.data.chips_dir else []),
            "labels": cfg.data.labels,
            "chips": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)},
            "chip_size": cfg.data.chip_size,
            "epochs_run": trainer.current_epoch,
            "run": {"fit_seconds": round(fit_seconds, 1), "machine": machine_description(str(trainer.strategy.root_device)),
                    "resumed": resumed},
            "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            "best_val_miou": float(best.best_model_score) if best.best_model_score is not None else None,
            "config": cfg.to_dict(),
            "blocks": [b.to_dict() for b in dm.blocks if not b.scene.startswith(("chip:", "file:"))],
            **({"files": [f.model_dump() for f in cfg.data.files]} if cfg.data.files else {}),
            "levels": dm.levels,
            "inputs": {s.id: s.input for s in pack},
        },
        levels=[lv for lv in dm.levels if lv != "unknown"],
        optional_bands=list(cfg.data.optional_bands),
        notes=(f"Trained on {len(pack)} sample-pack scene(s)" + (f" and {len(files)} image/label file pair(s)" if files else "") + "; "
               + ("Dynamic World targets are model output, not ground truth." if dm.scheme.name == "dynamic_world" else
                  f"targets in the class scheme {dm.scheme.name!r}.")),
    )


def _held_out_results(bundle: Bundle, cfg: FitConfig, dm: LulcDataModule) -> list[dict]:
    """Scores on the test split: exported test chips, then each pack scene's test blocks vs its labels and the independent ones."""
    results = []
    chips = [s for s in dm.scenes if s.id.startswith("chip:") and s.blocks[0].split == "test"]
    if chips:
        results.append(evaluate_arrays(bundle, chips, cfg.data.labels, dm.scheme.name))
    files = [s for s in dm.scenes if s.id.startswith("file:")]
    crops = test_block_crops(files)
    if crops:
        results.append({**evaluate_arrays(bundle, crops, "file labels", dm.scheme.name), "scene": "file pairs", "windows": f"{len(crops)} test block(s)"})
    for s in dm.scenes:
        if s.id.startswith(("chip:", "file:")) or not any(b.split == "test" for b in s.blocks):
            continue
        results.append(evaluate_scene(bundle, s.id, cfg.data.labels, split="test"))
        for other in INDEPENDENT_LABELS:
            if other in get_scene(s.id, cfg.data.data_dir).labels and other != cfg.data.labels:
                results.append(evaluate_scene(bundle, s.id, other, split="test", baseline=cfg.data.labels))
    return results


class RunLockError(LulcError):
    """A training run already writes to this output folder."""


@contextmanager
def run_lock(out_dir: Path):
    """Hold ``<out_dir>/.fit.lock`` (this process's pid) for the duration of a run; refuse a second live run.

    A lock left by a process that no longer exists is taken over. DDP worker processes (``LOCAL_RANK``/``NODE_RANK``
    other than 0) run under their launcher's lock.

    Raises:
        RunLockError: Another live process holds the lock.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / ".fit.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            alive = False
            if pid > 0:
                try:
                    os.kill(pid, 0)
                    alive = True
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            if alive:
                raise RunLockError(f"a training run (process {pid}) is already writing to {out_dir}; wait for it to finish or stop it, "
                                   "or set output.dir to another folder") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise RunLockError(f"could not take the run lock {lock}; remove it if no training is running")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def fit(cfg: FitConfig, *, resume: bool = False, offset: str | int | None = "auto") -> Path | None:
    """Train (refused while another run writes to the same ``output.dir``), test on the held-out blocks, write the bundle.

    See :func:`_fit` for the arguments.

    Raises:
        RunLockError: Training started twice on one output folder.
    """
    with run_lock(cfg.out_dir):
        return _fit(cfg, resume=resume, offset=offset)


def _fit(cfg: FitConfig, *, resume: bool = False, offset: str | int | None = "auto") -> Path | None:
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
    dm = LulcDataModule(cfg, offset=offset)
    dm.setup()
    task = SegmentationTask.from_config(cfg, len(cfg.data.bands), dm.scheme.names, dm.weights)
    ckpt_dir = cfg.out_dir / "checkpoints"
    trainer, best = _lightning_trainer(cfg, ckpt_dir)
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
    card = _model_card(cfg, dm, trainer, best, fit_seconds, resumed=ckpt_path is not None)
    bundle_dir = save_bundle(model, card, cfg.bundle_dir)
    bundle = load_bundle(bundle_dir)  # evaluate exactly what was saved (float16 weights)
    from trainer.calibration import validation_calibration  # temperature scaling on the validation split

    calibration = validation_calibration(bundle.model, dm.val_dataloader())
    card.temperature = bundle.card.temperature = calibration.temperature
    results = _held_out_results(bundle, cfg, dm)
    card.metrics = {"held_out": results, "precision": "fp32", "tile": card.tile, "overlap": DEFAULT_OVERLAP,
                    "calibration": {**calibration.to_dict(), "split": "val"}}
    write_card(card, bundle_dir)  # the weights on disk are the ones just evaluated
    print(summarize(results))
    print(f"bundle written to {bundle_dir}")
    return bundle_dir
