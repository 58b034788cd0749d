"""Launch ``python -m trainer fit`` as a separate process and follow it through its CSV log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from app.state import TrainingJob
from core.config import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "trainer" / "configs"


def configs() -> list[str]:
    """Training configurations shipped in ``trainer/configs``."""
    return sorted(str(p.relative_to(REPO_ROOT)) for p in CONFIG_DIR.glob("*.yaml"))


def page_overrides(loss: str = "ce_dice", sampling: str = "uniform", init_from: str = "", batch_size: int | None = None) -> list[str]:
    """``section.key=value`` overrides for the Train page's choices (loss, sampling, fine-tuning, batch size)."""
    out = [f"loss.name={loss}", f"data.sampling={sampling}"]
    if init_from.strip():
        out.append(f"model.init_from={init_from.strip()}")
    if batch_size:
        out.append(f"data.batch_size={int(batch_size)}")
    return out


def config_yaml(config: str, max_epochs: int, overrides: list[str] | None = None) -> str:
    """The YAML the page will run: the chosen config with its overrides applied and validated.

    The text runs as it is with ``python -m trainer fit --config <file>``.

    Raises:
        LulcError: An override the config does not accept (one sentence naming the key).
    """
    import yaml

    from core.errors import LulcError
    from trainer.config import load_config

    try:
        cfg = load_config(REPO_ROOT / config, [*(overrides or []), f"trainer.max_epochs={int(max_epochs)}"])
    except (ValueError, FileNotFoundError) as exc:
        raise LulcError(str(exc)) from None
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def launch(config: str, max_epochs: int, run_name: str | None = None, overrides: list[str] | None = None) -> TrainingJob:
    """Start training in the background; the app stays responsive.

    The run writes to ``runs/<name>``; its bundle lands in ``runs/<name>/bundle`` where the Explore
    and Models pages find it. ``overrides`` are ``section.key=value`` strings (:func:`page_overrides`). A second
    run on the same folder is refused by the trainer itself (its run lock).
    """
    name = run_name or time.strftime("app-%Y%m%d-%H%M%S")
    run_dir = REPO_ROOT / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "trainer.log"
    cmd = [sys.executable, "-m", "trainer", "fit", "--config", str(REPO_ROOT / config), "--set", f"output.dir={run_dir}",
           "--set", "output.bundle_dir=null", "--set", f"trainer.max_epochs={int(max_epochs)}", "--set", "trainer.progress_bar=false"]
    for ov in overrides or []:
        cmd += ["--set", ov]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return TrainingJob(pid=proc.pid, run_dir=str(run_dir), config=config, log_path=str(log), started=time.time())


STOP_MARK = ".stop-requested"
EXIT_MARK = ".exit-status"


def status(job: TrainingJob) -> str:
    """``running``, ``finished`` (bundle written), ``stopped`` (the user pressed Stop) or ``failed``.

    The answer is the same on every call: the exit status is reaped once (``waitpid``) and kept in
    ``<run_dir>/.exit-status``, and a stop request leaves ``<run_dir>/.stop-requested``, so a run the
    user stopped reads as stopped on every refresh, whether the trainer died of SIGTERM or turned it
    into an exit code (128 + 15).
    """
    run_dir = Path(job.run_dir)
    try:
        pid, code = os.waitpid(job.pid, os.WNOHANG)
    except ChildProcessError:  # reaped before, or not our child (the app restarted)
        pid, code = job.pid, None
        if _alive(job.pid) and not (run_dir / EXIT_MARK).exists():
            return "running"
    if pid == 0:
        return "running"
    if code is not None:
        (run_dir / EXIT_MARK).write_text(str(os.waitstatus_to_exitcode(code)))
    if (run_dir / "bundle" / "card.json").exists():
        return "finished"
    stored = (run_dir / EXIT_MARK).read_text().strip() if (run_dir / EXIT_MARK).exists() else ""
    stopped_codes = {str(-signal.SIGTERM), str(-signal.SIGKILL), str(-signal.SIGINT), str(128 + signal.SIGTERM), "130"}
    if (run_dir / STOP_MARK).exists() or stored in stopped_codes:
        return "stopped"
    return "failed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(job: TrainingJob) -> None:
    """Stop the training process group (last.ckpt stays; ``--resume`` continues it)."""
    (Path(job.run_dir) / STOP_MARK).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def progress(job: TrainingJob) -> pd.DataFrame:
    """The run's Lightning CSV log (empty until the first step is logged)."""
    logs = sorted(Path(job.run_dir).glob("logs/version_*/metrics.csv"))
    if not logs:
        return pd.DataFrame()
    try:
        return pd.read_csv(logs[-1])
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return pd.DataFrame()


def latest(log: pd.DataFrame) -> tuple[int, float | None]:
    """(last epoch logged, last validation mIoU or ``None``) of a :func:`progress` log."""
    epoch = int(log["epoch"].max()) if "epoch" in log and log["epoch"].notna().any() else 0
    miou = float(log["val_miou"].dropna().iloc[-1]) if "val_miou" in log and log["val_miou"].notna().any() else None
    return epoch, miou


def log_tail(job: TrainingJob, lines: int = 15) -> str:
    """The last lines of the trainer's output."""
    p = Path(job.log_path)
    return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.exists() else ""
