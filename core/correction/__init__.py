"""Correct the map and the model learns it: a head refit on a user's points over cached per-pixel features.

The method follows the land cover mapping tool of Robinson et al. (AAAI 2020, "Human-machine collaboration
for fast land cover mapping", microsoft/landcover) and Development Seed's PEARL: the network stays frozen,
its last feature map and base probabilities are cached once per scene, and only a final linear layer
(multinomial logistic regression with L2) is refit on the user's points plus replay ("seed") samples drawn
from the base model's own prediction, so that classes the user did not touch keep their extent and the class
priors are not those of the clicks (each untouched class gets replay samples of its own, weighted by the share of
its area the user's points leave it; :func:`~core.correction.session.fit_correction`). Uncertain pixels are suggested by the min-margin rule (the margin
between the top two probabilities; it beat entropy in microsoft/landcover's simulations).

Modules: :mod:`~core.correction.head` (the logistic head), :mod:`~core.correction.points` (points I/O),
:mod:`~core.correction.session` (rounds, replay, self-check, suggestions, undo).
"""

from core.errors import LulcError

__all__ = ["CorrectionError", "MAX_POINTS"]

MAX_POINTS = 10_000
"""Most points one correction set may hold."""


class CorrectionError(LulcError):
    """A correction set (points, classes) that cannot be used; the message says why in one sentence."""
