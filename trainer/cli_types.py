"""argparse value types that name the rule a command-line number broke (used by every command)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
