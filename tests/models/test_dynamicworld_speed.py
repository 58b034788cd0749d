"""The Dynamic World port's inference fast path (batch norm folded, Mish in place) keeps its labels and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.bundle import load_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "dynamicworld"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE, precision="fp32")


def _input(bundle, shape=(2, 9, 96, 128), seed=0):
    x = np.random.default_rng(seed).uniform(300, 5000, shape).astype(np.float32)
    return bundle.normalize(torch.from_numpy(x)).contiguous(memory_format=torch.channels_last)


def _unfolded(model, t):
    with torch.enable_grad():  # autograd on: the separate conv, batch norm and F.mish (the reference path)
        return model(t).detach()


def test_folded_port_reproduces_the_unfolded_logits_and_labels(bundle):
    t = _input(bundle)
    ref = _unfolded(bundle.model, t)
    with torch.inference_mode():
        got = bundle.model(t)
    assert got.shape == ref.shape == (2, 9, 96, 128)
    assert float((got - ref).abs().max()) < 1e-4
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= 0.9999
    assert not torch.equal(got, ref)  # the fast path really ran (different rounding), not the reference again


def test_folding_leaves_the_state_dict_as_saved(bundle):
    from safetensors.torch import load_file

    with torch.inference_mode():
        bundle.model(_input(bundle, (1, 9, 32, 32)))
    saved = load_file(str(BUNDLE / "model.safetensors"))
    sd = bundle.model.state_dict()
    assert sd.keys() == saved.keys()
    assert all(torch.equal(sd[k], saved[k].to(sd[k].dtype)) for k in saved)


def test_folded_weights_follow_weights_loaded_later(bundle):
    model = load_bundle(BUNDLE).model
    t = _input(bundle, (1, 9, 64, 64), seed=1)
    with torch.inference_mode():
        before = model(t)  # folds from the published weights
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["units.conv2d_13.bn.weight"] *= 0.5
    model.load_state_dict(sd)
    with torch.inference_mode():
        after = model(t)
    ref = _unfolded(model, t)
    assert float((after - ref).abs().max()) < 1e-4  # the new weights, not the stale fold
    assert float((after - before).abs().max()) > 1e-3


def test_training_mode_uses_batch_statistics(bundle):
    model = load_bundle(BUNDLE).model.train()
    t = _input(bundle, (2, 9, 32, 32), seed=2)
    with torch.no_grad():
        y_train = model(t)
        model.eval()
        y_eval = model(t)
    assert float((y_train - y_eval).abs().max()) > 1e-3  # train() batch norm uses the batch, not the fold


@pytest.mark.parametrize("shape", [(2, 3, 8, 10), (1, 4, 4, 6), (1, 64, 256, 128)])
def test_strided_convolution_equals_the_antialiased_resize(shape):
    import torch.nn.functional as F

    from models.dynamicworld import _half_antialiased

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3)).contiguous(memory_format=torch.channels_last)
    ref = F.interpolate(x, size=(shape[2] // 2, shape[3] // 2), mode="bilinear", align_corners=False, antialias=True)
    got = _half_antialiased(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-5


def test_odd_sizes_fall_back_to_the_resize():
    import torch.nn.functional as F

    from models.dynamicworld import _half_antialiased

    x = torch.randn(1, 2, 9, 7, generator=torch.Generator().manual_seed(4))
    ref = F.interpolate(x, size=(4, 3), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(_half_antialiased(x), ref)


def test_the_port_runs_without_importing_smp():
    """A Dynamic World run does not pay for segmentation_models_pytorch and timm (2-6 s of start-up on 2 cores)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from models.bundle import load_bundle; b = load_bundle(sys.argv[1]); "
            "p = b(np.full((1, 9, 32, 32), 1000.0, np.float32)); assert p.shape == (1, 9, 32, 32); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('segmentation_models_pytorch', 'timm')))")
    out = subprocess.run([sys.executable, "-c", code, str(BUNDLE)], capture_output=True, text=True, timeout=300,
                         cwd=BUNDLE.parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
