"""What every command of ``python -m trainer`` shares: the parser, argument types, error handling.

argparse only (plus the standard library), so that ``--help`` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence

__all__ = ["number_in", "run_guarded"]


def number_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False, what: str = "a number") -> Callable[[str], float]:
    """An argparse ``type`` for a float in ``[low, high]`` (``(low, high]`` when ``low_open``).

    Args:
        low: Smallest allowed value.
        high: Largest allowed value.
        low_open: Exclude ``low`` itself (e.g. a standard error must be > 0).
        what: What the number is, for the message (``"an accuracy"``).

    Returns:
        A parser that returns the float or raises ``argparse.ArgumentTypeError`` with the rule.
    """
    rule = f"{'>' if low_open else '>='} {low:g}" if math.isinf(high) else f"in {'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if math.isnan(v) or v < low or (low_open and v == low) or v > high:
            raise argparse.ArgumentTypeError(f"{what} must be {rule}, got {text}")
        return v

    return parse


def _int_at_least(low: int, multiple: int = 1):
    """Parse an integer >= ``low`` (and a multiple of ``multiple``), named in the error."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        if v % multiple:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple}, got {v} (try {max(multiple, v // multiple * multiple)})")
        return v

    return parse


_fraction = number_in(0, 1)
"""A number between 0 and 1 (argparse type)."""


def _classes(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` or ``--scheme``: the classes of the class map(s) an analyst command reads."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", help="model bundle whose card gives the classes of the map(s)")
    g.add_argument("--scheme", help="class scheme of the map(s) when no --checkpoint is given (default dynamic_world)")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line ``error: ...`` (exit 2) instead of usage + error."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _one_line(exc: BaseException) -> str:
    """The message of an expected error as one line (OSErrors with their file name).

    A rasterio read error says only "Read failed. See previous exception"; GDAL's reasons are in
    its chain of causes, so those are shown, with what to do about a damaged file. A GDAL error while
    *writing* (a dirty block flushed to a full disk or past a file-size limit, which GDAL may report
    during a later read) and ``ENOSPC``/``EFBIG`` are said to be about the output and free space, never
    blamed on the input.
    """
    from core.errors import LulcError
    from core.io.outputs import is_write_failure

    if not isinstance(exc, LulcError) and is_write_failure(exc):  # a LulcError says its own sentence; most writers raise OutputError themselves (core.io.outputs.writing_outputs)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return (f"an output could not be written{where}: the disk is full or a file-size limit was reached; nothing was "
                "left at the output paths: free space or choose another output folder")
    if type(exc).__name__ == "RasterioIOError":
        causes, e = [], exc.__cause__ or exc.__context__
        while e is not None and len(causes) < 8:
            causes.append(str(e))
            e = e.__cause__ or e.__context__
        detail = next((c for c in causes if "failed at" in c), causes[0] if causes else str(exc))
        text = f"a raster could not be read ({detail}); the file is damaged or incomplete: re-download or re-export it"
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    # turn a polite kill into SystemExit so that temporary files are removed on the way out
    raise SystemExit(128 + signum)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: bad values, files, configs, permissions, disk space."""
    import yaml

    return (ValueError, OSError, yaml.YAMLError, UnicodeDecodeError)


def run_guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run one command's ``run(args)``: user errors as one line (exit 2), bugs as one line and a crash log (exit 1).

    SIGTERM becomes ``SystemExit`` (temporary files are removed on the way out); Ctrl-C exits 130.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was left at the output paths", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except _expected_errors() as exc:  # user errors: one sentence, no traceback
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: short message here, the traceback in a log file
        from core.io.outputs import write_crash_log

        log = write_crash_log(exc, "python -m trainer " + " ".join(sys.argv[1:] if argv is None else argv))
        where = f"the details are in {log}" if log else "no log file could be written"
        print(f"error: unexpected {type(exc).__name__} ({_one_line(exc)[:200]}); {where}. "
              "Please report it with that file.", file=sys.stderr)
        return 1
