"""Progress of long runs: tqdm bars for the command line, and a small progress file a training run rewrites per batch.

:class:`ProgressFile` is how ``python -m trainer fit`` tells the app where it is inside an epoch: it rewrites
``<output.dir>/progress.json`` atomically (a temporary file renamed over the old one, :func:`core.io.outputs.atomic_write_text`)
after every training batch, so a reader sees either the previous or the new state, never a half-written file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.io.outputs import atomic_write_text

__all__ = ["tqdm_progress", "ProgressFile", "read_progress", "PROGRESS_FILE", "MAX_POINTS"]

PROGRESS_FILE = "progress.json"
"""Name of the progress file inside a run folder."""
MAX_POINTS = 400
"""At most this many per-batch train-loss points are kept in the file (older ones are thinned to every other point)."""


def tqdm_progress(bar: tqdm) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback (tiles, blocks or files) that drives a tqdm bar.

    Args:
        bar: The bar; its total is set from the callback's ``total``.

    Returns:
        The callback, for :meth:`core.inference.policy.RunPolicy.run` and the Dask engine.
    """

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return progress


class ProgressFile:
    """The per-batch progress file of a training run (``<run folder>/progress.json``).

    The JSON object holds ``stage`` (``"starting"``, ``"training"``, ``"validating"``, ``"testing"``, ``"comparing"``,
    ``"done"``), ``epoch`` (0-based, the epoch being trained), ``max_epochs``, ``batch`` (batches done in this epoch,
    1-based after the first), ``batches`` (batches per epoch), ``train_loss`` (loss of the last batch), ``points``
    (``[epoch + batch / batches, loss]`` pairs, the x in epochs, at most :data:`MAX_POINTS`), ``val_miou`` (last
    validation mIoU or ``None``), ``pid``, ``updated`` (Unix time, s) and any extra fields given to :meth:`update`.

    Args:
        path: The file to write (its folder is created).
        max_epochs: Planned epochs (for the reader's progress bar and chart axis).
    """

    def __init__(self, path: str | Path, max_epochs: int) -> None:
        self.path = Path(path)
        self.state: dict[str, Any] = {"stage": "starting", "epoch": 0, "max_epochs": int(max_epochs), "batch": 0, "batches": None,
                                      "train_loss": None, "points": [], "val_miou": None, "pid": os.getpid()}
        self._write()

    def _write(self) -> None:
        self.state["updated"] = round(time.time(), 3)
        atomic_write_text(self.path, json.dumps(self.state))

    def update(self, **fields: Any) -> None:
        """Set fields (e.g. ``stage="testing"``) and rewrite the file atomically."""
        self.state.update(fields)
        self._write()

    def batch(self, epoch: int, batch: int, batches: int | None, loss: float | None) -> None:
        """Record one finished training batch and rewrite the file.

        Args:
            epoch: 0-based epoch.
            batch: Batches finished in this epoch (1 after the first).
            batches: Batches per epoch (``None`` when unknown, e.g. an iterable dataset).
            loss: Training loss of the batch (``None`` or NaN: not recorded as a point).
        """
        points: list = self.state["points"]
        if loss is not None and loss == loss:  # NaN != NaN
            x = epoch + (batch / batches if batches else 0.0)
            points.append([round(x, 4), round(float(loss), 5)])
            if len(points) > MAX_POINTS:
                points[:] = points[::2]
        self.update(stage="training", epoch=int(epoch), batch=int(batch), batches=int(batches) if batches else None,
                    train_loss=None if loss is None else round(float(loss), 5))


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """The progress file's object, or ``None`` when it does not exist (yet) or cannot be parsed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
