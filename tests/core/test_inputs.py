"""Real Sentinel-2 inputs in, the same answer out: offsets, scales, band names, subsets, levels, batches.

Every case starts from a crop of a real pack raster, is rewritten the way users' files come
(+1000 offset with or without the tags that declare it, float 0-1, ``b02`` names, no band
descriptions, bands missing), and must predict what the original predicts, or be refused with a
sentence naming what is wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.errors import BandError
from core.inputs.bands import canonical_band
from core.inputs.decision import InputError, decide, decide_for_file, parse_bands
from core.sources.samples import get_scene, list_scenes, scene_decision
from models.bundle import load_bundle, read_card
from trainer.cli import main
from trainer.predict import predict

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"
CROP = Window(512, 128, 128, 128)  # Brandenburg: fields, forest, lake


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(DEFAULT, precision="fp32")


@pytest.fixture(scope="module")
def crop(data_dir):
    """(13, 128, 128) uint16 DN of Brandenburg, its band names and a GTiff profile."""
    with rasterio.open(data_dir / "samples" / "brandenburg-2017-02-16" / "image_s2.tif") as s:
        prof = s.profile.copy()
        names = list(s.descriptions)
        a = s.read(window=CROP)
        prof.update(driver="GTiff", width=CROP.width, height=CROP.height, transform=s.window_transform(CROP))
    for k in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "predictor"):
        prof.pop(k, None)
    return a, names, prof


def write(path: Path, prof: dict, arr: np.ndarray, names=None, tags=None, nodata="keep") -> Path:
    p = dict(prof, dtype=arr.dtype.name, count=arr.shape[0])
    if nodata != "keep":
        p["nodata"] = nodata
    with rasterio.open(path, "w", **p) as d:
        d.write(arr)
        for i, n in enumerate(names or []):
            d.set_band_description(i + 1, n)
        if tags:
            d.update_tags(**tags)
    return path


def classes(bundle, src: Path, out: Path, **kw) -> np.ndarray:
    predict(bundle, str(src), str(out), tile=128, overlap=0, quiet=True, progress=lambda d, t: None, **kw)
    with rasterio.open(out) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def reference(bundle, crop, tmp_path_factory):
    a, names, prof = crop
    d = tmp_path_factory.mktemp("ref")
    return classes(bundle, write(d / "base.tif", prof, a, names), d / "base_pred.tif")


def same(p: np.ndarray, ref: np.ndarray) -> float:
    return float((p == ref).mean())


@pytest.mark.parametrize("tags", [None, {"PROCESSING_BASELINE": "05.09"}, {"BOA_ADD_OFFSET_B2": "-1000"},
                                  {"PRODUCT_URI": "S2B_MSIL1C_20230601T102559_N0509_R108_T33UUU_20230601T123416.SAFE"}])
def test_offset_1000_is_removed_with_or_without_tags(bundle, crop, reference, tmp_path, tags):
    a, names, prof = crop
    src = write(tmp_path / "offset.tif", prof, np.where(a > 0, a + 1000, 0).astype(np.uint16), names, tags)
    p = classes(bundle, src, tmp_path / "pred.tif")
    assert same(p, reference) >= 0.999
    with rasterio.open(tmp_path / "pred.tif") as ds:
        t = ds.tags()
    assert t["LULC_INPUT_OFFSET_DN"] == "1000"
    assert ("pixel test" in t["LULC_INPUT_OFFSET_REASON"]) == (tags is None)


def test_offset_zero_from_pixels_and_forced_offset(bundle, crop, tmp_path):
    a, names, prof = crop
    src = write(tmp_path / "plain.tif", prof, a, names)
    d = decide_for_file(src, bundle.card)
    assert d.offset_dn == 0 and "below 800 DN" in d.offset_reason
    forced = decide_for_file(src, bundle.card, offset="1000")
    assert forced.offset_dn == 1000 and "--offset" in forced.offset_reason


def test_ambiguous_offset_stops_with_the_option_named(bundle, crop, tmp_path):
    a, names, prof = crop
    bright = np.random.default_rng(0).integers(3000, 6000, size=a.shape, dtype=np.uint16)  # no dark target at all
    src = write(tmp_path / "bright.tif", prof, bright, names)
    with pytest.raises(InputError, match="--offset"):
        decide_for_file(src, bundle.card)


def test_float_reflectance_predicts_as_dn(bundle, crop, reference, tmp_path):
    a, names, prof = crop
    src = write(tmp_path / "float.tif", prof, (a / 10000.0).astype(np.float32), names, nodata=None)
    p = classes(bundle, src, tmp_path / "pred.tif")
    assert same(p, reference) >= 0.999
    assert decide_for_file(src, bundle.card).scale == 10000.0


def test_aliased_names_and_no_names_with_bands(bundle, crop, reference, tmp_path):
    a, names, prof = crop
    aliased = [f"b{int(n[1:]):02d}" if n[1:].isdigit() else n.lower() for n in names]  # b01 .. b8a .. b12
    p = classes(bundle, write(tmp_path / "alias.tif", prof, a, aliased), tmp_path / "alias_pred.tif")
    assert same(p, reference) >= 0.999
    nodesc = write(tmp_path / "nodesc.tif", prof, a)
    p = classes(bundle, nodesc, tmp_path / "nodesc_pred.tif", bands=parse_bands(",".join(names)))
    assert same(p, reference) >= 0.999
    with pytest.raises(BandError, match="--bands"):
        decide_for_file(nodesc, bundle.card)
    with pytest.raises(BandError, match="13 bands"):
        decide_for_file(nodesc, bundle.card, bands=["B2", "B3"])


def test_missing_optional_bands_run_and_missing_required_bands_are_named(bundle, crop, reference, tmp_path):
    a, names, prof = crop
    keep = [i for i, n in enumerate(names) if n not in ("B5", "B12")]
    src = write(tmp_path / "no_b5_b12.tif", prof, a[keep], [names[i] for i in keep])
    # a card without optional bands refuses the input, naming what is missing
    strict = tmp_path / "strict"
    shutil.copytree(DEFAULT, strict)
    card = json.loads((strict / "card.json").read_text())
    card.update(optional_bands=[], band_agreement={})
    (strict / "card.json").write_text(json.dumps(card))
    with pytest.raises(BandError) as err:
        decide_for_file(src, read_card(strict))
    msg = str(err.value)
    assert "B5, B12" in msg and "B05" in msg and "b12" in msg  # names the missing bands and the spellings tried
    lenient = tmp_path / "lenient"
    shutil.copytree(DEFAULT, lenient)
    card = json.loads((lenient / "card.json").read_text())
    card.update(optional_bands=["B5", "B12"], band_agreement={"B5+B12": 0.91})
    (lenient / "card.json").write_text(json.dumps(card))
    dropout = load_bundle(lenient, precision="fp32")
    d = decide_for_file(src, dropout.card)
    assert d.missing_optional == ("B5", "B12") and "0.91" in d.warnings[0]
    out = d.apply(a[keep])
    assert out.shape == (9, 128, 128) and np.allclose(out[dropout.bands.index("B5")], dropout.card.mean[dropout.bands.index("B5")])
    p = classes(dropout, src, tmp_path / "pred.tif")  # runs; this card's weights were not trained with dropout
    assert p.shape == reference.shape and (p != 255).all()
    with rasterio.open(tmp_path / "pred.tif") as ds:
        assert ds.tags()["LULC_INPUT_MISSING_BANDS"] == "B5,B12"


def test_sample_pack_levels_and_l2a_scene_with_l1c_model(data_dir, tmp_path):
    scenes = {s.id: s for s in list_scenes(data_dir)}
    assert scenes["brandenburg-2017-02-16"].level == "L1C"
    l2a = [s for s in scenes.values() if s.level == "L2A"]
    for s in l2a:
        assert "B10" not in s.s2_bands and len(s.s2_bands) == 12
    hungary = get_scene("hungary-2020-04-24", data_dir)
    card = read_card(DEFAULT)
    card.levels = ["L1C"]
    card.level_agreement = {"L2A": {"miou": 0.412, "oa": 0.733, "reference": "dw"}}
    d = scene_decision(hungary, card)
    assert d.level == "L2A" and d.offset_dn == 0
    assert any("trained on L1C" in w and "0.412" in w for w in d.warnings)
    card.level_agreement = {}  # issue 16: one level rule everywhere: run with a warning naming the domain shift, never refuse
    d = scene_decision(hungary, card)
    assert d.level == "L2A"
    assert any("domain shift (L1C -> L2A" in w and "no measured agreement on L2A" in w for w in d.warnings)


def test_not_reflectance_is_refused(bundle, crop, tmp_path):
    a, names, prof = crop
    with pytest.raises(InputError, match="8-bit"):
        decide_for_file(write(tmp_path / "rgb8.tif", prof, (a // 64).astype(np.uint8), names), bundle.card)
    with pytest.raises(InputError, match="no valid"):
        decide_for_file(write(tmp_path / "zeros.tif", prof, np.zeros_like(a), names), bundle.card)
    with pytest.raises(InputError, match="above 20000"):
        decide_for_file(write(tmp_path / "big.tif", prof, (a.astype(np.uint32) * 30).clip(0, 65535).astype(np.uint16), names),
                        bundle.card)


def test_alias_table():
    for spelled, canon in [("b02", "B2"), ("B02_10m", "B2"), ("B08A", "B8A"), ("b8a", "B8A"), ("swir16", "B11"),
                           ("SR_B4", "SR_B4"), ("sr_b5", "SR_B5"), ("vv", "VV")]:
        assert canonical_band(spelled) == canon  # Landsat's SR_B5 is NIR, never Sentinel-2's red-edge B5
    assert canonical_band("band_1") is None and canonical_band("B13") is None


def test_batch_prediction_reports_a_bad_file_and_writes_the_rest(crop, tmp_path, capsys):
    a, names, prof = crop
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        write(folder / f"crop{i}.tif", prof, a, names)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    code = main(["predict", "--checkpoint", str(DEFAULT), "--input", str(folder), "--output", str(tmp_path / "out"),
                 "--tile", "128", "--overlap", "0", "--precision", "fp32"])
    assert code == 2
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [n for n in written if n.endswith(".tif")] == ["crop0_classes.tif", "crop1_classes.tif"]
    assert not [n for n in written if n.startswith(("broken", "."))]  # nothing of the bad file, no temporary file
    assert "catalog.json" in written  # the batch's STAC Catalog lists the maps that were written
    err = capsys.readouterr().err
    assert "broken.tif" in err and "Traceback" not in err


def test_unmeasured_combination_of_missing_optional_bands_is_refused():
    """The default card measured each optional band alone and B5+B12; a 4-band input would be unvouched for."""
    card = read_card(DEFAULT)
    assert "B5+B12" in card.band_agreement
    sample = np.full((4, 8, 8), 1200, np.uint16)
    with pytest.raises(BandError, match="measured only these cases") as err:
        decide(card, ["B2", "B3", "B4", "B8"], sample, nodata=0, what="rgbn.tif")
    assert "B5, B6, B7, B11, B12" in str(err.value) and "B5 and B12" in str(err.value)
    # a measured case runs, quoting its agreement
    names = [b for b in card.bands if b not in ("B5", "B12")]
    d = decide(card, names, np.full((len(names), 8, 8), 1200, np.uint16), nodata=0, what="no_b5_b12.tif")
    assert d.missing_optional == ("B5", "B12") and str(card.band_agreement["B5+B12"]) in d.warnings[0]
