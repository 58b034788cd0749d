"""Progress bars of the command line: the one adapter from ``progress(done, total)`` callbacks to tqdm."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

__all__ = ["tqdm_progress"]


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
