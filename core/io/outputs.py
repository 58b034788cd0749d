"""Safe outputs: checked before any work, written beside the destination, renamed into place.

Every file the project writes for a user (class-map and confidence COGs, chips, CSV/JSON, model
bundles) goes through this module, so that

- an output path that equals an input, two outputs that are the same file, an output under a
  file, an existing folder used as an output file, or a folder that cannot be written is refused
  *before* any work (:func:`check_outputs`);
- a file appears at its output path only when it is complete: it is written to a hidden
  temporary file in the destination folder (same file system) and renamed into place with
  :func:`os.replace`, which POSIX guarantees to be atomic (:func:`atomic_path`);
- the temporary file is removed on every exit path that runs Python code (success, exception,
  Ctrl-C, SIGTERM turned into ``SystemExit`` by the command line). A process killed with SIGKILL
  or a power cut can leave a hidden ``.<name>.*.partial`` file in the destination folder, never a
  file at the output path.

It also writes the crash log of unexpected errors (:func:`write_crash_log`), so that the command
line and the app can show a short message and keep the traceback out of the user's face.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from core.errors import LulcError

__all__ = [
    "OutputError",
    "PARTIAL_MARK",
    "check_outputs",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "log_dir",
    "write_crash_log",
]

PARTIAL_MARK = ".partial"
"""Part of the name of every temporary file (``.<name>.<random>.partial<suffix>``)."""


class OutputError(LulcError):
    """An output path would overwrite an input or another output, or cannot be written."""


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (hard links and symlinks included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_folder(label: str, path: Path, *, create: bool) -> None:
    """Raise :class:`OutputError` unless files can be created in ``path.parent``."""
    parent = path.parent
    existing = _nearest_existing(parent)
    if not existing.is_dir():
        raise OutputError(
            f"cannot write the {label} {path}: {existing} is a file, not a folder; choose an output path in a folder"
        )
    if not create and not parent.exists():
        raise OutputError(f"cannot write the {label} {path}: the folder {parent} does not exist")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"cannot write the {label} {path}: {reason} in {parent}; choose a folder you can write to"
        ) from None


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    inputs: Sequence[str | Path] = (),
    *,
    create_folders: bool = True,
) -> dict[str, Path]:
    """Refuse unsafe output paths before any work is done.

    Args:
        outputs: What each output is called in messages (``"--output"``, ``"confidence output"``)
            -> its path; ``None`` values (optional outputs not asked for) are skipped.
        inputs: Paths of every input the job reads; none of them may be an output.
        create_folders: Create missing parent folders of the outputs (otherwise a missing folder
            is refused).

    Returns:
        The outputs that were given, as ``Path`` objects, in the same order.

    Raises:
        OutputError: An output is an input, two outputs are the same file, an output is an
            existing folder, its folder lies under a file, or its folder cannot be written
            (checked by creating and removing a probe file there). The message names the
            output and what to do.
    """
    given = {label: Path(p).expanduser() for label, p in outputs.items() if p is not None and str(p) != ""}
    ins = [Path(p).expanduser() for p in inputs if p is not None]
    for label, out in given.items():
        for src in ins:
            if _same_file(out, src):
                raise OutputError(
                    f"the {label} {out} is the input file {src}; choose another output path "
                    "(inputs are never overwritten)"
                )
    labels = list(given)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if _same_file(given[a], given[b]):
                raise OutputError(f"the {a} and the {b} are the same file ({given[a]}); give them different paths")
    for label, out in given.items():
        if out.is_dir():
            raise OutputError(f"the {label} {out} is a folder; give a file name such as {out / 'out.tif'}")
        _check_writable_folder(label, out, create=create_folders)
    return given


def _file_mode(path: Path) -> int:
    """Permissions the finished file gets: those of the file it replaces, else 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` only if the block completes.

    Usage::

        with atomic_path("out.tif") as tmp:
            write_something(tmp)      # any writer: GDAL, pandas, safetensors, open()
        # out.tif now exists, complete; on an exception it was not touched

    The temporary file is ``.<name>.<random>.partial<suffix>`` in the same folder (created if
    needed), so the rename is atomic and never copies across file systems. An existing file at
    ``path`` is replaced only at the very end and keeps its permissions.

    Args:
        path: Final output path.

    Yields:
        The temporary path (an empty file already exists there; writers may overwrite it).

    Raises:
        OutputError: The folder cannot be created or written.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_MARK + path.suffix)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose a folder you can write to") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {path}")
        os.chmod(tmp, _file_mode(path))
        with open(tmp, "rb") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


WRITE_FAILURE_WORDS = ("writing", "write failed", "dirty block", "no space left", "file too large", "disk quota")
"""Words of GDAL/OS messages that say a write failed (an output's problem, never the input's)."""


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception in its chain) says that writing failed.

    That is a full disk (``ENOSPC``), a file-size limit (``EFBIG``, ``ulimit -f``), a quota (``EDQUOT``), or a
    GDAL message with one of :data:`WRITE_FAILURE_WORDS` ("An error occurred while writing a dirty block").
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if any(w in str(exc).lower() for w in WRITE_FAILURE_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def writing_outputs(folder: str | Path, names: Sequence[str] = ()) -> Iterator[None]:
    """Turn a failure while writing outputs in ``folder`` into one :class:`OutputError` about space.

    GDAL reports a full disk or a file-size limit as "An error occurred while writing a dirty block", as
    "Write failed", or later, when it reads back one of our own files that was cut short ("classes.tif:
    TIFFReadDirectory: Failed to read directory"); none of these is the input's fault. Inside this block a
    rasterio/GDAL error or OSError that says writing failed (:func:`is_write_failure`), or that names one of
    ``names`` (the block's own intermediate files), becomes "could not write the outputs in <folder> ...".
    Other errors, and those that already name their cause (:class:`core.errors.LulcError`, e.g. a damaged
    input), pass unchanged.

    Raises:
        OutputError: Writing failed.
    """
    from rasterio._err import CPLE_BaseError  # GDAL errors surfaced directly (not re-exported by rasterio.errors)
    from rasterio.errors import RasterioError

    try:
        yield
    except LulcError:
        raise
    except (RasterioError, CPLE_BaseError, OSError) as exc:
        ours = any(n and n in str(e) for e in _chain(exc) for n in names)
        if not (is_write_failure(exc) or ours):
            raise
        detail = next((str(e) for e in _chain(exc) if any(w in str(e).lower() for w in ("no space", "too large", "quota"))), "")
        raise OutputError(
            f"could not write the outputs in {Path(folder)}" + (f" ({detail})" if detail else "")
            + ": the disk is full or a file-size limit was reached; nothing was left at the output paths: "
            "free space or choose another output folder") from None


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def log_dir() -> Path:
    """Folder of crash logs: ``$LULC_LOG_DIR``, else ``$LULC_CACHE_DIR/logs``, else ``~/.cache/lulc-explorer/logs``."""
    if os.environ.get("LULC_LOG_DIR"):
        return Path(os.environ["LULC_LOG_DIR"]).expanduser()
    cache = os.environ.get("LULC_CACHE_DIR")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "lulc-explorer") / "logs"


def write_crash_log(exc: BaseException, context: str = "") -> Path | None:
    """Write the traceback of an unexpected error to a new log file.

    Args:
        exc: The exception (its ``__traceback__`` is written).
        context: What was being done (command line, page), written first.

    Returns:
        The log file path, or ``None`` if no log folder could be written (then the traceback
        goes nowhere rather than in the user's face; the caller still shows its short message).
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"{dt.datetime.now().isoformat(timespec='seconds')} {context}\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "lulc-explorer-logs"):
        try:
            return atomic_write_text(folder / f"crash-{stamp}-{os.getpid()}.log", text)
        except (OSError, LulcError):
            continue
    return None
