"""The Train page's work: build the configuration, launch ``python -m trainer fit`` as a separate process, follow it.

A run started here lives in ``runs/app-YYYYmmdd-HHMMSS/``: ``train.yaml`` (the exact configuration it runs, also
runnable by hand), ``job.json`` (who started it: :class:`RunInfo`), ``trainer.log`` (the trainer's output),
``progress.json`` (rewritten by the trainer after every batch, see ``trainer/progress.py``), ``checkpoints/last.ckpt``,
``bundle/`` and, at the end, ``comparison.json`` (the new bundle beside the one it started from and the Dynamic World
model on the same held-out pixels). Uploaded training files are saved in ``inputs/`` of the run folder.

Only one training runs at a time on this machine: :func:`running_runs` finds a live run in any ``runs/*`` folder
(its trainer lock ``.fit.lock`` or the process recorded in ``job.json``), whichever session started it, and
:func:`launch` refuses a second one naming it. A live run is shown to every session (:func:`live_job`); only the
session that started it (its :func:`owner_key`, which a reload of the same browser keeps) or an administrator
(``LULC_ADMIN=1`` in the server's environment) may stop it (:func:`can_stop`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from app import charts
from app.state import TrainingJob
from core.config import REPO_ROOT, runs_dir
from core.errors import LulcError
from core.io.outputs import atomic_write_bytes, atomic_write_text

CONFIG_DIR = REPO_ROOT / "trainer" / "configs"
RUNS_DIR = runs_dir()  # $LULC_RUNS_DIR or <repo>/runs: from the environment only, never from the browser
"""Where the page's runs go and where a live run is looked for (tests point it elsewhere)."""
ENCODERS = ("resnet18", "resnet34", "resnet50")
SCHEME_SUFFIXES = (".json", ".csv", ".qml")
JOB_FILE = "job.json"
PROGRESS_FILE = "progress.json"  # written by trainer.progress.ProgressFile (the app does not import the trainer)
COMPARISON_FILE = "comparison.json"  # written by trainer.fit at the end of a run
CONFIG_FILE = "train.yaml"
STOP_MARK = ".stop-requested"
EXIT_MARK = ".exit-status"
LOCK_FILE = ".fit.lock"
ADMIN_ENV = "LULC_ADMIN"
"""``LULC_ADMIN=1`` in the server's environment lets every session stop any run (docs/server.md)."""
XSRF_COOKIE = "_streamlit_xsrf"
"""Streamlit's XSRF cookie: kept by the browser across reloads, so it names the browser that started a run."""
STOP_REFUSED = ("Only the session that started this run can stop it (or an administrator, when the server runs with "
                "LULC_ADMIN=1); it goes on, and this page follows it.")


class TrainingBusyError(LulcError):
    """A training run is live already (started from this or another session)."""


class TrainingInputError(LulcError):
    """An uploaded training file or a page choice that cannot be trained on."""


@dataclass
class RunInfo:
    """What the Train page records about a run it started (``runs/<name>/job.json``).

    Attributes:
        name: Run folder name, ``app-YYYYmmdd-HHMMSS``.
        card_name: The bundle's card name, e.g. ``app-20261202-0710 (fusion, 3 epochs)``.
        config: The shipped configuration it was built from (path relative to the repository).
        max_epochs: Planned epochs.
        init_from: Bundle it started from, or ``None``.
        pid: Trainer process id.
        started: Unix time (s).
        owner: :func:`owner_key` of the session that started it (empty: no session may stop it but an administrator).
    """

    name: str
    card_name: str
    config: str
    max_epochs: int
    init_from: str | None
    pid: int
    started: float
    owner: str = ""


def configs() -> list[str]:
    """Training configurations shipped in ``trainer/configs``."""
    return sorted(str(p.relative_to(REPO_ROOT)) for p in CONFIG_DIR.glob("*.yaml"))


def config_defaults(config: str) -> dict:
    """The choices a shipped configuration makes, to preset the page's widgets.

    Returns:
        ``{"bands", "scenes" (ids), "files" (list of dicts), "arch", "encoder", "loss", "sampling", "batch_size",
        "max_epochs", "labels", "sensor", "chip_size"}``.

    Raises:
        LulcError: The configuration cannot be read (one sentence).
    """
    from trainer.config import load_config

    try:
        cfg = load_config(REPO_ROOT / config)
    except (ValueError, FileNotFoundError) as exc:
        raise LulcError(str(exc)) from None
    from core.inputs.bands import sensor_of

    try:
        sensor = sensor_of(cfg.data.bands)
    except LulcError:
        sensor = "unknown sensor"
    return {"bands": list(cfg.data.bands), "scenes": [s.id for s in cfg.data.scenes], "files": [f.model_dump() for f in cfg.data.files],
            "encoder": cfg.model.encoder, "loss": cfg.loss.name, "sampling": cfg.data.sampling, "batch_size": cfg.data.batch_size,
            "max_epochs": cfg.trainer.max_epochs, "labels": cfg.data.labels, "sensor": sensor, "arch": cfg.model.arch,
            "chip_size": cfg.data.chip_size}


def page_overrides(loss: str = "ce_dice", sampling: str = "uniform", init_from: str = "", batch_size: int | None = None, *,
                   scenes: list | None = None, files: list[dict] | None = None, encoder: str | None = None) -> list[str]:
    """``section.key=value`` overrides for the Train page's choices.

    Args:
        loss: ``ce_dice`` or ``focal``.
        sampling: ``uniform`` or ``balanced``.
        init_from: Bundle folder to fine-tune from (empty: from scratch).
        batch_size: Chips per batch (``None``: the config's).
        scenes: Sample-scene ids or ``{"id", "split"}`` mappings to train on instead of the config's ``data.scenes``
            (and no file pairs); ``None`` keeps the config's data.
        files: ``{"image", "labels", "scheme"}`` mappings to train on instead of the config's data (no pack scenes).
        encoder: smp encoder name (``None``: the config's).

    Returns:
        Overrides in the form :func:`trainer.config.load_config` takes (values are JSON, which YAML reads as written).
    """
    out = [f"loss.name={loss}", f"data.sampling={sampling}"]
    if init_from.strip():
        out.append(f"model.init_from={init_from.strip()}")
    if batch_size:
        out.append(f"data.batch_size={int(batch_size)}")
    if encoder:
        out.append(f"model.encoder={encoder}")
    return out + data_overrides(scenes=scenes, files=files)


def data_overrides(*, scenes: list | None = None, files: list[dict] | None = None) -> list[str]:
    """Overrides that replace a config's training data by sample scenes or by file pairs (see :func:`page_overrides`)."""
    if files is not None:
        return [f"data.files={json.dumps(files)}", "data.scenes=[]"]
    if scenes is not None:
        return [f"data.scenes={json.dumps(scenes)}", "data.files=[]"]
    return []


def scene_entries(config: str, ids: list[str]) -> list[dict]:
    """The chosen sample scenes as ``data.scenes`` entries, keeping the split a shipped config gives a scene.

    (The DFC2020 patches of ``default.yaml`` are one block each and go whole to ``train``.)
    """
    import yaml

    raw = yaml.safe_load((REPO_ROOT / config).read_text(encoding="utf-8")) or {}
    given = {}
    for s in (raw.get("data") or {}).get("scenes") or []:
        entry = s if isinstance(s, dict) else {"id": s}
        given[entry["id"]] = entry
    return [given.get(i, {"id": i}) for i in ids]


def config_yaml(config: str, max_epochs: int, overrides: list[str] | None = None) -> str:
    """The YAML the page will run: the chosen config with its overrides applied and validated.

    The text runs as it is with ``python -m trainer fit --config <file>``.

    Raises:
        LulcError: An override the config does not accept (one sentence naming the key).
    """
    import yaml

    from trainer.config import load_config

    try:
        cfg = load_config(REPO_ROOT / config, [*(overrides or []), f"trainer.max_epochs={int(max_epochs)}"])
    except (ValueError, FileNotFoundError) as exc:
        raise LulcError(str(exc)) from None
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def new_run_name() -> str:
    """A fresh run folder name, ``app-YYYYmmdd-HHMMSS`` (local time)."""
    return time.strftime("app-%Y%m%d-%H%M%S")


def card_name(run_name: str, config: str, max_epochs: int) -> str:
    """The new bundle's card name: run and date (to the minute), configuration and epochs.

    ``app-20261202-071005``, ``trainer/configs/fusion.yaml``, 3 -> ``app-20261202-0710 (fusion, 3 epochs)``.
    """
    short = run_name[:-2] if re.fullmatch(r"app-\d{8}-\d{6}", run_name) else run_name
    return f"{short} ({Path(config).stem}, {int(max_epochs)} epoch{'s' if int(max_epochs) != 1 else ''})"


def save_upload(run_name: str, kind: str, filename: str, data: bytes) -> str:
    """Save an uploaded training file under ``runs/<run_name>/inputs/`` with a generated name; returns its path.

    Args:
        run_name: The run it is for.
        kind: ``image`` (GeoTIFF, saved as ``image.tif``), ``labels`` (GeoTIFF, ``labels.tif``) or ``scheme``
            (class file ``.json``/``.csv``/``.qml``, saved as ``<its name, letters/digits/_- only><suffix>`` so the class
            scheme keeps the user's name).
        filename: The uploaded file's name (for its suffix).
        data: Its bytes.

    Returns:
        The saved path, relative to the repository when inside it (as ``data.files`` takes it).

    Raises:
        TrainingInputError: A file of the wrong type.
    """
    suffix = Path(filename).suffix.lower()
    if kind in ("image", "labels"):
        if suffix not in (".tif", ".tiff"):
            raise TrainingInputError(f"the {kind} file {filename} is not a GeoTIFF (.tif/.tiff)")
        name = f"{kind}.tif"
    elif kind == "scheme":
        if suffix not in SCHEME_SUFFIXES:
            raise TrainingInputError(f"the class file {filename} must be lc.json-style .json, an id,name,color .csv or a QGIS .qml")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(filename).stem).strip("_") or "classes"
        name = f"{stem}{suffix}"
    else:
        raise ValueError(f"unknown upload kind {kind!r}")
    path = RUNS_DIR / run_name / "inputs" / name
    if not (path.exists() and path.read_bytes() == data):
        atomic_write_bytes(path, data)
    return _rel(path)


def check_uploads(files: list[dict]) -> None:
    """Check uploaded pairs before Start: the class file parses, both rasters are GeoTIFFs with a CRS.

    (Grids, sizes and label values are checked by the trainer when it reads the pair.)

    Raises:
        LulcError: One sentence naming the file and the problem.
    """
    import rasterio

    from core.class_files import read_scheme_file

    for f in files:
        read_scheme_file(_abs(f["scheme"]))
        for key in ("image", "labels"):
            try:
                with rasterio.open(_abs(f[key])) as src:
                    crs = src.crs
            except rasterio.errors.RasterioIOError:
                raise TrainingInputError(f"the uploaded {key} file cannot be read as a GeoTIFF; upload a .tif written by GDAL, QGIS or Earth Engine") from None
            if crs is None:
                raise TrainingInputError(f"the uploaded {key} file has no CRS; save it with its coordinate reference system")


def init_from_problem(bundle_path: str, arch: str, encoder: str, n_bands: int) -> str | None:
    """Why a bundle cannot initialise the network to train, or ``None`` when it can.

    Fine-tuning loads every weight but the segmentation head, so architecture, encoder and band count must match.
    """
    from models.card import read_card

    try:
        card = read_card(bundle_path)
    except (LulcError, OSError) as exc:
        return str(exc)
    if card.arch != arch or card.encoder != encoder:
        return f"{Path(bundle_path).name} is a {card.arch}/{card.encoder} network; this training builds {arch}/{encoder}: choose that encoder or another bundle"
    if len(card.bands) != n_bands:
        return f"{Path(bundle_path).name} takes {len(card.bands)} bands, this training {n_bands}: choose a bundle trained on the same bands"
    return None


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def _abs(p: str | Path) -> Path:
    q = Path(p)
    return q if q.is_absolute() else REPO_ROOT / q


def _alive(pid: int) -> bool:
    """A process with this id exists and is not a zombie (a finished child nobody has reaped yet)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def run_info(run_dir: str | Path) -> RunInfo | None:
    """The run's ``job.json`` (:class:`RunInfo`), or ``None`` for a run not started by the page."""
    try:
        return RunInfo(**json.loads((Path(run_dir) / JOB_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _live_pid(run_dir: Path) -> int | None:
    for source in (run_dir / LOCK_FILE, run_dir / JOB_FILE):
        try:
            text = source.read_text().strip()
            pid = int(json.loads(text)["pid"]) if source.name == JOB_FILE else int(text or 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if source.name == JOB_FILE and (run_dir / EXIT_MARK).exists():
            continue
        if _alive(pid):
            return pid
    return None


def running_runs() -> list[tuple[str, str]]:
    """Live training runs in ``runs/*`` (any session's): ``(run folder, progress in words)``.

    A run is live while the process in its trainer lock (``.fit.lock``) or in the page's ``job.json`` exists.
    """
    out = []
    if not RUNS_DIR.is_dir():
        return out
    for d in sorted(RUNS_DIR.iterdir()):
        if d.is_dir() and _live_pid(d) is not None:
            out.append((_rel(d), progress_text(read_progress(d))))
    return out


def busy_message(runs: list[tuple[str, str]]) -> str:
    """One sentence refusing a second training while ``runs`` (from :func:`running_runs`) are live."""
    name, where = runs[0]
    more = f" (and {len(runs) - 1} more)" if len(runs) > 1 else ""
    return (f"A training run is already going: {name}{more}, {where}. One training at a time on this machine: "
            "wait for it to finish or stop it (from the session that started it, or from this page when it is yours).")


@contextlib.contextmanager
def _launch_lock():
    """Serialise check-and-start across sessions (``runs/.launch.lock``, an advisory file lock)."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUNS_DIR / ".launch.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def aoi_chip_points(aoi_geojson: dict, chip_px: int, gsd_m: float = 10.0, max_points: int = 400) -> list[tuple[float, float]]:
    """Centres of chips tiling an AOI, for ``python -m trainer export-chips --points``.

    A grid of spacing ``chip_px * gsd_m`` metres (converted to degrees: 111,320 m per degree of latitude, times
    cos(latitude) for longitude, a spherical approximation good to well under a chip at these sizes) clipped to the AOI
    polygon; the AOI's representative point when no grid point falls inside.

    Args:
        aoi_geojson: The AOI polygon (GeoJSON geometry, lon/lat degrees).
        chip_px: Chip side (pixels).
        gsd_m: Pixel size (metres).
        max_points: Most points returned (the grid is thinned evenly beyond it).

    Returns:
        ``(lon, lat)`` pairs in degrees.
    """
    import math

    from shapely import geometry as sg

    geom = sg.shape(aoi_geojson)
    west, south, east, north = geom.bounds
    lat0 = (south + north) / 2
    dy = chip_px * gsd_m / 111_320.0
    dx = dy / max(math.cos(math.radians(lat0)), 1e-6)
    pts = []
    y = south + dy / 2
    while y < north:
        x = west + dx / 2
        while x < east:
            if geom.contains(sg.Point(x, y)):
                pts.append((round(x, 6), round(y, 6)))
            x += dx
        y += dy
    if not pts:
        p = geom.representative_point()
        pts = [(round(p.x, 6), round(p.y, 6))]
    step = math.ceil(len(pts) / max_points)
    return pts[::step]


def earth_engine_steps(run_name: str, points: list[tuple[float, float]], bands: list[str], start: str, end: str,
                       labels: str = "dw") -> tuple[list[str], list[str]]:
    """The chip export a run does before training, and the data overrides that train on its chips.

    Writes ``runs/<run_name>/inputs/points.csv`` (``id,lon,lat``) and returns (the ``python -m trainer export-chips``
    command into ``runs/<run_name>/chips``, overrides setting ``data.chips_dir`` to it with no pack scenes or files).
    Sentinel-1 VV/VH are exported only when the bands name them.
    """
    run_dir = RUNS_DIR / run_name
    lines = ["id,lon,lat", *(f"aoi-{i:04d},{lon},{lat}" for i, (lon, lat) in enumerate(points))]
    atomic_write_text(run_dir / "inputs" / "points.csv", "\n".join(lines) + "\n")
    s2 = [b for b in bands if b not in ("VV", "VH")]
    chips = run_dir / "chips"
    cmd = [sys.executable, "-m", "trainer", "export-chips", "--points", str(run_dir / "inputs" / "points.csv"), "--out", str(chips),
           "--start", start, "--end", end, "--bands", ",".join(s2), "--labels", labels if labels in ("dw", "worldcover") else "dw"]
    if not {"VV", "VH"} & set(bands):
        cmd.append("--no-s1")
    return cmd, [f"data.chips_dir={json.dumps(str(chips))}", "data.scenes=[]", "data.files=[]"]


def launch(config: str, max_epochs: int, run_name: str | None = None, overrides: list[str] | None = None,
           before: list[str] | None = None, bundle_name: str | None = None, owner: str = "") -> TrainingJob:
    """Start training in the background; the app stays responsive.

    The run writes to ``runs/<name>`` (``app-YYYYmmdd-HHMMSS`` unless ``run_name`` is given); its bundle lands in
    ``runs/<name>/bundle`` where the Explore and Models pages find it (card name ``bundle_name``, e.g. :func:`card_name`). The
    configuration it runs is saved as ``runs/<name>/train.yaml`` (``python -m trainer fit --config`` that file reruns
    it; ``--resume`` continues it from ``last.ckpt``).

    Args:
        config: Shipped configuration (path relative to the repository).
        max_epochs: Epochs.
        run_name: Run folder name (default: a fresh one).
        overrides: ``section.key=value`` strings (:func:`page_overrides`).
        before: A command to run first (the chip export of :func:`earth_engine_steps`); training starts only if it
            succeeds, and Stop ends both.
        bundle_name: The new bundle's card name (default: the configuration's ``name``).
        owner: :func:`owner_key` of the starting session, recorded in ``job.json`` (who may stop it, see :func:`can_stop`).

    Returns:
        The job (process id, run folder, log).

    Raises:
        TrainingBusyError: Another training is live (this or another session); the message names it and its progress.
        LulcError: The configuration with these overrides is not valid.
    """
    name = run_name or new_run_name()
    run_dir = RUNS_DIR / name
    init = next((o.split("=", 1)[1] for o in overrides or [] if o.startswith("model.init_from=")), None)
    label = bundle_name
    with _launch_lock():
        live = running_runs()
        if live:
            raise TrainingBusyError(busy_message(live))
        named = [f"name={json.dumps(label)}"] if label else []
        text = config_yaml(config, max_epochs, [*(overrides or []), *named, f"output.dir={json.dumps(str(run_dir))}",
                                                "output.bundle_dir=null", "trainer.progress_bar=false"])
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, text)
        log = run_dir / "trainer.log"
        cmd = [sys.executable, "-m", "trainer", "fit", "--config", str(run_dir / CONFIG_FILE)]
        if before:
            cmd = ["/bin/sh", "-c", f"{shlex.join(before)} && exec {shlex.join(cmd)}"]
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        info = RunInfo(name=name, card_name=label or yaml_name(text), config=config, max_epochs=int(max_epochs), init_from=init, pid=proc.pid, started=time.time(), owner=owner)
        atomic_write_text(run_dir / JOB_FILE, json.dumps(asdict(info)))
    return TrainingJob(pid=proc.pid, run_dir=str(run_dir), config=config, log_path=str(log), started=info.started)


def yaml_name(text: str) -> str:
    """The ``name`` of a configuration's YAML text."""
    import yaml

    return str((yaml.safe_load(text) or {}).get("name", ""))


def run_label(job: TrainingJob) -> str:
    """The run folder as the user sees it (``runs/app-20261202-071005``, relative to the repository when inside it)."""
    return _rel(Path(job.run_dir))


def resume_command(job: TrainingJob) -> str:
    """The command that continues a stopped run from its ``last.ckpt``."""
    return f"python -m trainer fit --config {_rel(Path(job.run_dir) / CONFIG_FILE)} --resume"


def has_checkpoint(job: TrainingJob) -> bool:
    """True when the run kept ``checkpoints/last.ckpt`` (written at the end of each finished epoch)."""
    return (Path(job.run_dir) / "checkpoints" / "last.ckpt").exists()


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


def owner_key(state, cookies: Mapping[str, str] | None = None) -> str:
    """Who is starting or stopping runs: a hash of the browser's XSRF cookie, else of a token kept in the session.

    The cookie (:data:`XSRF_COOKIE`) stays the same when the page is reloaded, so the browser that started a run can
    still stop it after a reload; without it (XSRF protection off, tests) the session's own random token is used. Only
    the hash is stored (in ``job.json``).

    Args:
        state: The session's ``app.state.AppState`` (``owner_token`` is created on first use).
        cookies: ``st.context.cookies``.

    Returns:
        32 hex digits.
    """
    if not getattr(state, "owner_token", ""):
        state.owner_token = secrets.token_hex(16)
    raw = (cookies or {}).get(XSRF_COOKIE) or state.owner_token
    return hashlib.sha256(f"lulc-run-owner:{raw}".encode()).hexdigest()[:32]


def is_admin() -> bool:
    """True when the server runs with ``LULC_ADMIN=1`` (every session may stop any run)."""
    return os.environ.get(ADMIN_ENV, "").strip() == "1"


def can_stop(job: TrainingJob, owner: str, *, mine: bool = False) -> bool:
    """Whether the session with ``owner`` (:func:`owner_key`) may stop ``job``.

    Args:
        job: A live run.
        owner: The asking session's key.
        mine: The session started the job itself (it holds it since its Start).

    Returns:
        True for the session that started it (``mine``, or the owner recorded in ``job.json``) and for an
        administrator (:func:`is_admin`); False for everyone else, and for a run started outside the app.
    """
    if mine or is_admin():
        return True
    info = run_info(job.run_dir)
    return bool(info is not None and info.owner and secrets.compare_digest(info.owner, owner))


def job_of(run_dir: str | Path) -> TrainingJob | None:
    """The live run in ``run_dir`` as a job any session can follow (its ``job.json``, else its trainer lock), or ``None``."""
    d = Path(run_dir)
    pid = _live_pid(d)
    if pid is None:
        return None
    info = run_info(d)
    started = info.started if info else (d / LOCK_FILE).stat().st_mtime if (d / LOCK_FILE).exists() else time.time()
    return TrainingJob(pid=info.pid if info else pid, run_dir=str(d), config=info.config if info else "",
                       log_path=str(d / "trainer.log"), started=started)


def live_job() -> TrainingJob | None:
    """The first live run in the runs folder (any session's, or one started by hand), for following it, or ``None``."""
    if not RUNS_DIR.is_dir():
        return None
    for d in sorted(RUNS_DIR.iterdir()):
        job = job_of(d) if d.is_dir() else None
        if job is not None:
            return job
    return None


def reclaim(owner: str) -> TrainingJob | None:
    """The live run this browser started, after a reload lost the session (its ``job.json`` owner is ``owner``)."""
    job = live_job()
    if job is None:
        return None
    info = run_info(job.run_dir)
    return job if info is not None and info.owner and secrets.compare_digest(info.owner, owner) else None


def stop(job: TrainingJob, owner: str = "", *, mine: bool = True) -> None:
    """Stop the training process group (``last.ckpt`` stays if an epoch finished; ``--resume`` continues it).

    Args:
        job: The run.
        owner: The asking session's :func:`owner_key`.
        mine: The session started the job itself.

    Raises:
        TrainingBusyError: The asking session may not stop it (:func:`can_stop`): :data:`STOP_REFUSED`.
    """
    if not can_stop(job, owner, mine=mine):
        raise TrainingBusyError(STOP_REFUSED)
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


def read_progress(run_dir: str | Path) -> dict | None:
    """The trainer's per-batch progress (``<run_dir>/progress.json``), or ``None`` before it writes one.

    The file is replaced atomically by the trainer, so a read sees a whole state. Fields: ``stage``, ``epoch`` (0-based),
    ``max_epochs``, ``batch``, ``batches``, ``train_loss``, ``points`` ([epochs, loss] pairs), ``val_miou``, ``updated``.
    """
    try:
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def progress_fraction(prog: dict | None) -> float:
    """Share of the planned training done, 0..1 (epochs done + batches of the current epoch)."""
    if not prog:
        return 0.0
    if prog.get("stage") in ("testing", "comparing", "done"):
        return 1.0
    epochs = max(int(prog.get("max_epochs") or 1), 1)
    batches = prog.get("batches") or 0
    inside = (prog.get("batch") or 0) / batches if batches else 0.0
    return min(1.0, (int(prog.get("epoch") or 0) + inside) / epochs)


def progress_text(prog: dict | None) -> str:
    """Where a run is, in words: ``epoch 2 of 3, batch 5 of 10 (train loss 0.812)``."""
    if not prog:
        return "starting (reading the training data)"
    stage = prog.get("stage")
    if stage == "starting":
        return "starting (reading the training data)"
    if stage == "testing":
        return "training done; scoring the held-out test blocks"
    if stage == "comparing":
        done, total = prog.get("compare_done"), prog.get("compare_total")
        return "comparing with the other models on the test blocks" + (f" ({done} of {total} windows)" if total else "")
    if stage == "done":
        return "finished"
    epoch = int(prog.get("epoch") or 0) + 1
    text = f"epoch {epoch} of {prog.get('max_epochs')}"
    if prog.get("batches"):
        text += f", batch {prog.get('batch') or 0} of {prog['batches']}"
    if stage == "validating":
        text += ", validating"
    if prog.get("train_loss") is not None:
        text += f" (train loss {prog['train_loss']:.3f})"
    return text


def training_figure(log: pd.DataFrame, prog: dict | None) -> go.Figure:
    """Loss and validation mIoU against epochs, with the per-batch train loss inside the current epoch.

    The x axis runs from 0 to the planned epochs and the loss axis from 0 to the largest loss seen, so the chart is
    readable before the first epoch ends (Lightning's CSV log has no epoch row until then).
    """
    fig = charts.training_curves(log)
    points = (prog or {}).get("points") or []
    if points:
        fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines", name="train loss (per batch)",
                        line={"width": 1}, yaxis="y")
    epochs = int((prog or {}).get("max_epochs") or 0) or (int(log["epoch"].max()) + 1 if "epoch" in log and log["epoch"].notna().any() else 1)
    losses = [p[1] for p in points]
    for col in ("train_loss_epoch", "val_loss"):
        if col in log:
            losses += [float(v) for v in log[col].dropna()]
    top = max(losses) * 1.1 if losses else 1.0
    fig.update_layout(xaxis={"range": [0, max(epochs, 1)], "title": "epoch"}, yaxis={"range": [0, top], "title": "loss"})
    return fig


def latest(log: pd.DataFrame) -> tuple[int, float | None]:
    """(last epoch logged, last validation mIoU or ``None``) of a :func:`progress` log."""
    epoch = int(log["epoch"].max()) if "epoch" in log and log["epoch"].notna().any() else 0
    miou = float(log["val_miou"].dropna().iloc[-1]) if "val_miou" in log and log["val_miou"].notna().any() else None
    return epoch, miou


def log_tail(job: TrainingJob, lines: int = 15) -> str:
    """The last lines of the trainer's output."""
    p = Path(job.log_path)
    return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p.exists() else ""


def failure_line(job: TrainingJob) -> str | None:
    """The trainer's own one-line reason (its ``error: ...`` line), if it printed one."""
    lines = [ln for ln in log_tail(job, 60).splitlines() if ln.startswith("error:")]
    return lines[-1].removeprefix("error:").strip() if lines else None


def bundle_path(job: TrainingJob) -> Path:
    """Where the run's bundle is (or will be)."""
    return Path(job.run_dir) / "bundle"


def card_summary(job: TrainingJob) -> list[str]:
    """The finished run's bundle card in a few lines of words (name, data, bands, classes, epochs, scores).

    Raises:
        BundleError: The card cannot be read.
    """
    from models.card import read_card

    card = read_card(bundle_path(job))
    t = card.training or {}
    chips = t.get("chips") or {}
    run = t.get("run") or {}
    classes = ", ".join(card.class_names)
    lines = [f"**{card.name}** — {card.arch} with a {card.encoder} encoder, {card.sensor} at {card.gsd_m:g} m",
             f"Bands: {', '.join(card.bands)}"]
    if classes:
        lines.append(f"Classes: {classes}")
    data = t.get("data") or []
    if data:
        lines.append(f"Trained on: {', '.join(map(str, data))} ({t.get('labels')} labels)")
    if chips:
        lines.append(f"Chips of {t.get('chip_size')} px: {chips.get('train', 0)} train, {chips.get('val', 0)} validation, {chips.get('test', 0)} test")
    ep = f"Epochs run: {t.get('epochs_run')}"
    if t.get("best_val_miou") is not None:
        ep += f"; best validation mIoU {t['best_val_miou']:.3f}"
    if run.get("fit_seconds") is not None:
        ep += f"; {run['fit_seconds']:.0f} s on {run.get('machine', 'this machine')}"
    lines.append(ep)
    return lines


def comparison(job: TrainingJob) -> dict | None:
    """The run's ``comparison.json`` (written by the trainer at the end), or ``None`` before it exists."""
    try:
        return json.loads((Path(job.run_dir) / COMPARISON_FILE).read_text())
    except (OSError, ValueError):
        return None


ROLE_WORDS = {"new": "new bundle", "init_from": "started from", "dynamic_world": "Dynamic World model"}


def comparison_tables(result: dict) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """Per reference: (caption, table of model / role / mIoU / OA with 3 decimals, notes on models left out)."""
    out = []
    for g in result.get("groups") or []:
        rows = [{"model": r["model"], "role": ROLE_WORDS.get(r["role"], r["role"]),
                 "mIoU": "–" if r["miou"] is None else f"{r['miou']:.3f}",
                 "OA": "–" if r["overall_accuracy"] is None else f"{r['overall_accuracy']:.3f}",
                 "crosswalk": r.get("crosswalk") or "same classes"} for r in g["rows"]]
        caption = f"Against {g['reference']} on {g['windows']}: the same {g['pixels']:,} pixels for every model"
        notes = [f"{ROLE_WORDS.get(s['role'], s['role'])} {s['model']} left out: {s['reason']}" for s in g.get("skipped") or []]
        out.append((caption, pd.DataFrame(rows), notes))
    return out
