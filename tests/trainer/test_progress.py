"""The per-batch progress file a training run rewrites (trainer/progress.py): atomic, one state per batch."""

from __future__ import annotations

import json
import threading

from trainer.progress import MAX_POINTS, ProgressFile, read_progress


def test_progress_file_per_batch(tmp_path):
    path = tmp_path / "run" / "progress.json"
    pf = ProgressFile(path, max_epochs=3)
    assert read_progress(path)["stage"] == "starting" and read_progress(path)["max_epochs"] == 3
    pf.batch(0, 1, 4, 2.5)
    pf.batch(0, 2, 4, float("nan"))  # a NaN loss is no point on the chart
    d = read_progress(path)
    assert (d["stage"], d["epoch"], d["batch"], d["batches"]) == ("training", 0, 2, 4)
    assert d["points"] == [[0.25, 2.5]]
    pf.batch(1, 4, 4, 1.25)
    assert read_progress(path)["points"][-1] == [2.0, 1.25]  # x in epochs: epoch 1 + 4/4
    pf.update(stage="done", bundle="b")
    assert read_progress(path)["stage"] == "done" and read_progress(path)["bundle"] == "b"
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no temporary file left beside it


def test_progress_points_are_capped(tmp_path):
    pf = ProgressFile(tmp_path / "p.json", max_epochs=1)
    for i in range(3 * MAX_POINTS):
        pf.state["batch"] = i
        pf.batch(0, i + 1, 3 * MAX_POINTS, 1.0)
    pts = read_progress(tmp_path / "p.json")["points"]
    assert len(pts) <= MAX_POINTS and pts[0][0] < 0.01 and pts == sorted(pts)


def test_a_reader_never_sees_a_half_written_file(tmp_path):
    path = tmp_path / "progress.json"
    pf = ProgressFile(path, max_epochs=1)
    stop = threading.Event()
    bad = []

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except FileNotFoundError:
                bad.append("missing")
            except ValueError:
                bad.append("partial")

    t = threading.Thread(target=read)
    t.start()
    for i in range(300):
        pf.batch(0, i + 1, 300, 0.5)
    stop.set()
    t.join()
    assert not bad
    assert read_progress(tmp_path / "nothing.json") is None
    (tmp_path / "broken.json").write_text("{")
    assert read_progress(tmp_path / "broken.json") is None


def test_fit_callback_writes_each_batch_and_validation(tmp_path):
    from types import SimpleNamespace

    import torch

    from trainer.fit import BatchProgress

    pf = ProgressFile(tmp_path / "progress.json", max_epochs=2)
    cb = BatchProgress(pf)
    tr = SimpleNamespace(is_global_zero=True, current_epoch=1, num_training_batches=5, sanity_checking=False,
                         callback_metrics={"val_miou": torch.tensor(0.42)})
    cb.on_train_epoch_start(tr, None)
    assert read_progress(pf.path)["batch"] == 0 and read_progress(pf.path)["batches"] == 5
    cb.on_train_batch_end(tr, None, torch.tensor(0.75), None, 2)  # Lightning passes the step's loss (or {"loss": ...})
    d = read_progress(pf.path)
    assert (d["epoch"], d["batch"], d["train_loss"]) == (1, 3, 0.75) and d["points"] == [[1.6, 0.75]]
    cb.on_train_batch_end(tr, None, {"loss": torch.tensor(0.5)}, None, 3)
    assert read_progress(pf.path)["batch"] == 4
    cb.on_validation_start(tr, None)
    assert read_progress(pf.path)["stage"] == "validating"
    cb.on_validation_end(tr, None)
    assert read_progress(pf.path)["val_miou"] == 0.42
    tr.num_training_batches = float("inf")  # an iterable dataset: batches per epoch unknown
    cb.on_train_batch_end(tr, None, torch.tensor(0.5), None, 4)
    assert read_progress(pf.path)["batches"] is None
