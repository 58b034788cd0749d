"""The LightningModule: network, loss, augmentation, metrics.

Loss: class-weighted cross-entropy (or focal loss, ``loss.name: focal``, Lin et al. 2017) plus multiclass
Dice (smp), both ignoring index 255, plus
optionally (``loss.soft_weight``) a distillation term: cross-entropy against soft targets (Dynamic
World's per-class probabilities), on pixels that have them (Hinton et al. 2015, "Distilling the
knowledge in a neural network", temperature 1).
Band dropout (``optim.band_dropout``): a training chip loses, with that probability, a random
non-empty subset of ``data.optional_bands``; a dropped band is 0 after normalisation, its training
mean, exactly how prediction fills a missing optional band (:mod:`core.inputs.decision`).
Augmentation (kornia, on the batch): horizontal/vertical flips, 90-degree rotations and Gaussian
noise on the normalised bands; all geometric transforms are exact permutations of pixels, so they
are safe for any number of bands, and the noise leaves band ratios' expectation unchanged.
Validation metrics come from one confusion matrix per epoch (:mod:`core.evaluation.metrics`).
Fine-tuning (``model.init_from``, ``model.encoder_weights``): ``model.freeze_encoder`` keeps the encoder's weights and
BatchNorm statistics as loaded (no gradient, eval mode); only the decoder and the head learn.
Memory format (``trainer.channels_last``): the network's weights and each batch in channels-last (NHWC), off by default.
"""

from __future__ import annotations

from pathlib import Path

import kornia.augmentation as K
import lightning as L
import numpy as np
import torch
from segmentation_models_pytorch.losses import DiceLoss
from torchmetrics.classification import MulticlassConfusionMatrix

from core.classes import NODATA_CLASS
from core.evaluation.metrics import metrics_from_confusion
from models.registry import create_model
from trainer.config import FitConfig

__all__ = ["SegmentationTask"]


def _repo_path(p: str) -> Path:
    """A config path: absolute as given, relative to the repository root otherwise (as ``data.files`` and ``output.dir``)."""
    from core.config import REPO_ROOT

    q = Path(p).expanduser()
    return q if q.is_absolute() else REPO_ROOT / q


class SegmentationTask(L.LightningModule):
    """Semantic segmentation of multispectral chips.

    Args:
        cfg: The run configuration (saved as hyper-parameters, so checkpoints describe themselves).
        in_channels: Number of bands C.
        class_names: K class names.
        class_weights: float32 (K,) cross-entropy weights.
    """

    def __init__(self, cfg: dict, in_channels: int, class_names: list[str], class_weights: list[float]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = cfg
        m = cfg["model"]
        self.num_classes = len(class_names)
        self.class_names = list(class_names)
        weights = m["encoder_weights"]
        if weights is not None and str(weights).endswith(".safetensors"):
            weights = str(_repo_path(weights))
        self.model = create_model(m["arch"], m["encoder"], in_channels=in_channels, num_classes=self.num_classes, encoder_weights=weights)
        if m.get("init_from"):
            self._init_from(str(_repo_path(m["init_from"])))
        self.freeze_encoder = bool(m.get("freeze_encoder", False))
        if self.freeze_encoder:
            encoder = getattr(self.model, "encoder", None)
            if encoder is None:
                raise ValueError(f"model.freeze_encoder: architecture {m['arch']!r} has no separate encoder to freeze")
            encoder.requires_grad_(False)
            encoder.eval()
        self.channels_last = bool(cfg.get("trainer", {}).get("channels_last", False))
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32), ignore_index=NODATA_CLASS)
        self.dice = DiceLoss(mode="multiclass", ignore_index=NODATA_CLASS)
        self.dice_weight = float(cfg["loss"]["dice_weight"])
        self.loss_name = str(cfg["loss"].get("name", "ce_dice"))
        self.gamma = float(cfg["loss"].get("gamma", 2.0))
        self.augment = K.AugmentationSequential(
            K.RandomHorizontalFlip(),
            K.RandomVerticalFlip(),
            K.RandomRotation90(times=(0, 3), p=0.75),
            K.RandomGaussianNoise(std=float(cfg["optim"]["noise_std"]), p=0.5),
            data_keys=["input", "mask"],
        )
        d = cfg["data"]
        self.optional_idx = [list(d["bands"]).index(b) for b in d.get("optional_bands") or []]
        self.band_dropout = float(cfg["optim"].get("band_dropout", 0.0))
        self.soft_weight = float(cfg["loss"].get("soft_weight", 0.0))
        self.val_cm = MulticlassConfusionMatrix(self.num_classes, ignore_index=NODATA_CLASS)
        self.test_cm = MulticlassConfusionMatrix(self.num_classes, ignore_index=NODATA_CLASS)

    def _init_from(self, path: str) -> None:
        """Load a whole-network state dict (``.safetensors``, no pickle) as the starting point.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: Keys or shapes differ (other architecture, band or class count).
        """
        from safetensors.torch import load_file

        p = Path(path)
        if p.is_dir():
            p = p / "model.safetensors"
        if not p.exists():
            raise FileNotFoundError(f"model.init_from {path} not found (give a bundle folder or its model.safetensors)")
        state = {k: v.float() for k, v in load_file(p).items()}
        own = self.model.state_dict()
        head = [k for k, v in state.items() if k in own and own[k].shape != v.shape and k.startswith("segmentation_head")]
        if head:  # other classes: a new head, the rest of the network fine-tuned
            state = {k: v for k, v in state.items() if k not in head}
            for k in head:
                state[k] = own[k]
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"model.init_from {path} does not fit the network: {str(exc).splitlines()[0]}") from None

    def train(self, mode: bool = True) -> SegmentationTask:
        """Set training mode; a frozen encoder (``model.freeze_encoder``) stays in eval mode, keeping its BatchNorm statistics."""
        super().train(mode)
        if getattr(self, "freeze_encoder", False):
            self.model.encoder.eval()
        return self

    @classmethod
    def from_config(cls, cfg: FitConfig, in_channels: int, class_names: list[str], class_weights: np.ndarray) -> SegmentationTask:
        """Build from a :class:`FitConfig`."""
        return cls(cfg.to_dict(), in_channels, list(class_names), [float(w) for w in class_weights])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of normalised input (B, C, H, W) (in channels-last memory format with ``trainer.channels_last``)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def focal(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Focal loss (Lin et al. 2017): mean over labelled pixels of -w_y (1 - p_y)^gamma log p_y."""
        valid = y != NODATA_CLASS
        if not valid.any():
            return logits.sum() * 0.0
        logp = torch.log_softmax(logits.float(), dim=1)
        yy = torch.where(valid, y, torch.zeros_like(y))
        logpt = logp.gather(1, yy[:, None]).squeeze(1)
        w = self.ce.weight.to(logits.device)[yy]
        fl = -w * (1.0 - logpt.exp()).clamp(min=0.0) ** self.gamma * logpt
        return fl[valid].sum() / w[valid].sum().clamp(min=1e-12)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.focal(logits, y) if self.loss_name == "focal" else self.ce(logits, y)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, y)
        if self.soft_weight and soft is not None and soft.numel():
            has = soft.sum(1) > 0.5  # (B, H, W): pixels with soft targets
            if has.any():
                ce = -(soft * torch.log_softmax(logits, dim=1)).sum(1)
                loss = loss + self.soft_weight * ce[has].mean()
        return loss

    def drop_bands(self, x: torch.Tensor) -> torch.Tensor:
        """Zero a random non-empty subset of the optional bands in a random share of the chips.

        Args:
            x: float32 (B, C, H, W) normalised chips.

        Returns:
            The same tensor, modified in place.
        """
        if not self.band_dropout or not self.optional_idx:
            return x
        n = len(self.optional_idx)
        for i in torch.nonzero(torch.rand(x.shape[0]) < self.band_dropout).flatten().tolist():
            k = int(torch.randint(1, n + 1, (1,)))
            for j in torch.randperm(n)[:k].tolist():
                x[i, self.optional_idx[j]] = 0.0
        return x

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        soft = batch[2] if len(batch) > 2 else None
        with torch.no_grad():
            m = y.unsqueeze(1).float() if soft is None else torch.cat([y.unsqueeze(1).float(), soft], dim=1)
            x, m = self.augment(x, m)
            y = m[:, 0].round().long()
            soft = None if soft is None else m[:, 1:]
            x = self.drop_bands(x)
        loss = self._loss(self(x), y, soft)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, ...], cm: MulticlassConfusionMatrix, prefix: str) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log(f"{prefix}_loss", self._loss(logits, y), on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        cm.update(logits.argmax(1), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_cm, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_cm, "test")

    def _log_cm(self, cm: MulticlassConfusionMatrix, prefix: str) -> None:
        m = metrics_from_confusion(cm.compute().cpu().numpy(), self.class_names)
        self.log(f"{prefix}_miou", m.miou, prog_bar=True, sync_dist=True)
        self.log(f"{prefix}_oa", m.overall_accuracy, sync_dist=True)
        cm.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_cm(self.val_cm, "val")

    def on_test_epoch_end(self) -> None:
        self._log_cm(self.test_cm, "test")

    def configure_optimizers(self):
        o = self.cfg["optim"]
        params = [p for p in self.parameters() if p.requires_grad]  # a frozen encoder is not optimised (nor decayed)
        opt = torch.optim.AdamW(params, lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(self.cfg["trainer"]["max_epochs"])))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
