"""Features of the shipped networks: shapes, and a head that is the identity on the log-probabilities reproduces the base."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bundle import load_bundle
from models.features import HeadReplaced, feature_count, feature_forward


@pytest.mark.parametrize(("path", "n_feat"), [("models/default", 16), ("models/dynamicworld", 144)])
def test_features_and_identity_head(path, n_feat):
    b = load_bundle(path)
    assert feature_count(b.model) == n_feat
    x = np.random.default_rng(0).uniform(300, 3000, (1, len(b.bands), 64, 64)).astype(np.float32)
    f = feature_forward(b)(x)
    assert f.shape == (1, n_feat + b.num_classes, 64, 64) and np.isfinite(f).all()
    net = HeadReplaced(b.model, b.num_classes, base_temperature=float(b.card.temperature))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[:, n_feat:, 0, 0] = torch.eye(b.num_classes)
        got = net(b.normalize(torch.from_numpy(x))).argmax(1).numpy()
    assert (got == b(x).argmax(1)).mean() > 0.999
