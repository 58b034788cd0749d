"""The LightningModule: network, loss, augmentation, metrics.

Loss: class-weighted cross-entropy plus multiclass Dice (smp), both ignoring index 255.
Augmentation (kornia, on the batch): horizontal/vertical flips, 90-degree rotations and Gaussian
noise on the normalised bands; all geometric transforms are exact permutations of pixels, so they
are safe for any number of bands, and the noise leaves band ratios' expectation unchanged.
Validation metrics come from one confusion matrix per epoch (:mod:`core.metrics`).
"""

from __future__ import annotations

import kornia.augmentation as K
import lightning as L
import numpy as np
import torch
from segmentation_models_pytorch.losses import DiceLoss
from torchmetrics.classification import MulticlassConfusionMatrix

from core.metrics import metrics_from_confusion
from models.registry import create_model
from trainer.config import FitConfig

__all__ = ["SegmentationTask"]

IGNORE = 255


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
        self.model = create_model(m["arch"], m["encoder"], in_channels=in_channels, num_classes=self.num_classes, encoder_weights=m["encoder_weights"])
        self.ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32), ignore_index=IGNORE)
        self.dice = DiceLoss(mode="multiclass", ignore_index=IGNORE)
        self.dice_weight = float(cfg["loss"]["dice_weight"])
        self.augment = K.AugmentationSequential(
            K.RandomHorizontalFlip(),
            K.RandomVerticalFlip(),
            K.RandomRotation90(times=(0, 3), p=0.75),
            K.RandomGaussianNoise(std=float(cfg["optim"]["noise_std"]), p=0.5),
            data_keys=["input", "mask"],
        )
        self.val_cm = MulticlassConfusionMatrix(self.num_classes, ignore_index=IGNORE)
        self.test_cm = MulticlassConfusionMatrix(self.num_classes, ignore_index=IGNORE)

    @classmethod
    def from_config(cls, cfg: FitConfig, in_channels: int, class_names: list[str], class_weights: np.ndarray) -> SegmentationTask:
        """Build from a :class:`FitConfig`."""
        return cls(cfg.to_dict(), in_channels, list(class_names), [float(w) for w in class_weights])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of normalised input (B, C, H, W)."""
        return self.model(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.ce(logits, y)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, y)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            x, ym = self.augment(x, y.unsqueeze(1).float())
            y = ym.squeeze(1).round().long()
        loss = self._loss(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], cm: MulticlassConfusionMatrix, prefix: str) -> None:
        x, y = batch
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
        opt = torch.optim.AdamW(self.parameters(), lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(self.cfg["trainer"]["max_epochs"])))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
