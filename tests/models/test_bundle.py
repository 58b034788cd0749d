"""Model registry and bundles: round trip, mismatches rejected, local encoder weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.classes import DYNAMIC_WORLD
from models.bundle import Bundle, BundleError, ModelCard, load_bundle, read_card, save_bundle, write_card
from models.registry import create_model, find_bundles

BANDS = ["B2", "B3", "B4", "B8"]


def card(bands=BANDS, encoder="resnet18") -> ModelCard:
    return ModelCard(name="t", arch="unet", encoder=encoder, bands=list(bands), mean=[1000.0] * len(bands),
                     std=[500.0] * len(bands), classes=DYNAMIC_WORLD.to_dict())


def trained_like_model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model("unet", "resnet18", in_channels=len(BANDS), num_classes=9)
    # a few training steps so BatchNorm statistics are not the defaults
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    for _ in range(3):
        x = torch.randn(2, len(BANDS), 64, 64)
        loss = m(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_registry_lists_names_on_unknown_architecture():
    with pytest.raises(KeyError, match="unet"):
        create_model("transformer9000", in_channels=3, num_classes=2)
    m = create_model("unet", "resnet18", in_channels=13, num_classes=4)
    assert m(torch.zeros(1, 13, 64, 64)).shape == (1, 4, 64, 64)


def test_bundle_round_trip_predictions_match(tmp_path):
    model = trained_like_model()
    path = save_bundle(model, card(), tmp_path / "b")
    assert (path / "model.safetensors").exists() and json.loads((path / "card.json").read_text())["bands"] == BANDS
    b = load_bundle(path)
    rng = np.random.default_rng(0)
    x = rng.uniform(200, 3000, (2, len(BANDS), 64, 64)).astype(np.float32)
    ref = Bundle(model, card())(x)
    got = b(x)
    assert got.shape == (2, 9, 64, 64)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    # float16 storage: probabilities within 1e-2, labels nearly all equal
    assert np.abs(got - ref).max() < 2e-2
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.99
    assert b.card.created and b.class_ids == list(range(9))


def test_nodata_nan_is_handled():
    b = Bundle(trained_like_model(), card())
    x = np.full((1, 4, 32, 32), 1000.0, np.float32)
    x[0, :, :4, :4] = np.nan
    assert np.isfinite(b(x)).all()


def test_mismatched_bundles_are_rejected(tmp_path):
    path = save_bundle(trained_like_model(), card(), tmp_path / "b")
    # card says 9 bands but the weights were trained on 4
    c = json.loads((path / "card.json").read_text())
    c["bands"] = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9"]
    c["mean"] = [0.0] * 9
    c["std"] = [1.0] * 9
    (path / "card.json").write_text(json.dumps(c))
    with pytest.raises(BundleError, match="do not match the card"):
        load_bundle(path)


def test_band_check_names_missing_bands(tmp_path):
    b = load_bundle(save_bundle(trained_like_model(), card(), tmp_path / "b"))
    b.check_bands(["B4", "B3", "B2", "B8", "B11"])
    with pytest.raises(BundleError, match="B8"):
        b.check_bands(["B2", "B3", "B4", "VV", "VH"])
    with pytest.raises(BundleError, match="expected"):
        b(np.zeros((1, 3, 32, 32), np.float32))


def test_broken_bundles(tmp_path):
    with pytest.raises(BundleError, match="card.json not found"):
        load_bundle(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_card(tmp_path)
    c = card()
    c.std = [0.0] * 4
    with pytest.raises(BundleError, match="std"):
        c.validate()
    path = save_bundle(trained_like_model(), card(), tmp_path / "ok")
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="cannot be read"):
        load_bundle(path)


def test_local_encoder_weights_are_loaded(tmp_path):
    src = create_model("unet", "resnet18", in_channels=4, num_classes=2)
    weights = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in src.encoder.state_dict().items()}, str(weights))
    m = create_model("unet", "resnet18", in_channels=4, num_classes=2, encoder_weights=str(weights))
    for k, v in src.encoder.state_dict().items():
        assert torch.equal(m.encoder.state_dict()[k], v)
    with pytest.raises(ValueError, match="do not fit"):
        create_model("unet", "resnet18", in_channels=9, num_classes=2, encoder_weights=str(weights))


def test_find_bundles(tmp_path):
    save_bundle(trained_like_model(), card(), tmp_path / "a" / "b1")
    (tmp_path / "c").mkdir()
    # a complete bundle still in its hidden build folder (before the rename into place) is not listed
    save_bundle(trained_like_model(), card(), tmp_path / "runs" / ".bundle.x1.partial")
    assert [p.name for p in find_bundles(tmp_path, tmp_path / "missing")] == ["b1"]
    assert find_bundles(tmp_path / "runs" / ".bundle.x1.partial") != []  # a hidden root itself is searched


def test_bundle_loading_never_unpickles(tmp_path):
    """Weights are read with safetensors only; a pickle file named like the weights is rejected."""
    path = save_bundle(trained_like_model(), card(), tmp_path / "b")
    torch.save(trained_like_model().state_dict(), path / "model.safetensors")  # a pickle in disguise
    with pytest.raises(BundleError):
        load_bundle(path)


def test_bundle_error_is_a_lulc_error():
    """One user-error family: pages and the command line catch LulcError, BundleError included."""
    import models.card
    from core.errors import LulcError

    assert issubclass(BundleError, LulcError) and issubclass(BundleError, ValueError)
    assert models.card.BundleError is BundleError and "bundle is missing" in BundleError.__doc__
    with pytest.raises(LulcError, match="card.json not found"):
        read_card("/nonexistent/bundle")


def test_unreadable_cards_and_unbuildable_models_are_bundle_errors(tmp_path):
    (tmp_path / "dir" / "card.json").mkdir(parents=True)  # a folder where the card should be
    with pytest.raises(BundleError, match="cannot be read"):
        read_card(tmp_path / "dir")
    for field, value, words in (("arch", "transformer9000", "unknown architecture"), ("encoder", "resnet9000", "unknown encoder")):
        c = card()
        setattr(c, field, value)
        path = tmp_path / field
        write_card(c, path)
        (path / "model.safetensors").write_bytes(b"")
        with pytest.raises(BundleError, match=f"cannot be built: .*{words}"):
            load_bundle(path)


def test_a_new_bundle_appears_whole_and_readable_by_others(tmp_path, monkeypatch):
    import hashlib
    import os

    import models.bundle as mb

    out = tmp_path / "runs" / "mine"
    real_save = mb.save_file

    def save_then_look(state, name, metadata):
        real_save(state, name, metadata=metadata)
        assert not out.exists()  # nothing at the destination while the bundle is being written

    monkeypatch.setattr(mb, "save_file", save_then_look)
    save_bundle(trained_like_model(), card(), out)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mine"]  # no hidden build folder left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not the private mode of a temporary folder
    saved = json.loads((out / "card.json").read_text())["weights_sha256"]
    assert saved == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    load_bundle(out)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mb, "save_file", fail)
    with pytest.raises(OSError):
        save_bundle(trained_like_model(), card(), tmp_path / "runs" / "full")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mine"]  # neither the bundle nor its build folder


def test_weights_that_are_not_the_cards_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_bundle(trained_like_model(), card(), a)
    (a / "LICENSE").write_text("mine")
    other = trained_like_model()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_bundle(other, card(), b)
    # an overwrite killed between its two renames: the new card beside the old weights
    (a / "card.json").write_bytes((b / "card.json").read_bytes())
    with pytest.raises(BundleError, match="not the file its card.json was saved with"):
        load_bundle(a)
    save_bundle(other, card(), a)  # saving again over it mends it and keeps the folder's other files
    mended, want = load_bundle(a).model.state_dict(), load_bundle(b).model.state_dict()
    assert all(torch.equal(mended[k], want[k]) for k in want) and (a / "LICENSE").read_text() == "mine"
    older = json.loads((a / "card.json").read_text())
    older.pop("weights_sha256")  # a card from before the field: its weights are not checked
    (a / "card.json").write_text(json.dumps(older))
    load_bundle(a)
