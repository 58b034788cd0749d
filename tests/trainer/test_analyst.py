"""The analyst commands end to end: assess (sample + points), change, polygons, report, evaluate --reliability."""

from __future__ import annotations

import re

import pandas as pd
import pyogrio
import pytest
import rasterio

from core.config import DEFAULT_BUNDLE_DIR, data_dir
from trainer.cli import main

SAMPLES = data_dir() / "samples"
SPRING = str(SAMPLES / "hungary-2020-04-24" / "labels_dw.tif")
SUMMER = str(SAMPLES / "hungary-2020-08-12" / "labels_dw.tif")


def test_assess_cli_sample_then_points_gives_area_estimates(tmp_path, capsys):
    pts = tmp_path / "points.gpkg"
    assert main(["assess", "--map", SUMMER, "--sample", str(pts), "--target-se", "0.02", "--min-per-class", "20",
                 "--label-from", SPRING, "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "Olofsson et al. 2014 eq. 13): 400" in out and "demonstration" in out
    assert pyogrio.read_info(pts)["features"] == len(pd.read_csv(tmp_path / "points.csv")) > 300
    est = tmp_path / "estimates.csv"
    assert main(["assess", "--map", SUMMER, "--points", str(tmp_path / "points.csv"), "--out", str(est)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"overall accuracy 0\.\d+ \+- 0\.\d+", out)
    table = pd.read_csv(est)
    assert {"estimated_km2", "ci95_km2", "users_accuracy", "producers_ci95"} <= set(table.columns)
    # the estimated areas add up to the mapped total: area moves between classes, it is not created
    assert table["estimated_km2"].sum() == pytest.approx(table["mapped_km2"].sum(), rel=1e-9)
    assert main(["assess", "--map", SUMMER, "--points", str(tmp_path / "nope.csv")]) == 2
    assert "no points file" in capsys.readouterr().err


def test_change_cli_writes_change_cog_and_transitions_csv(tmp_path, capsys):
    cog, csv = tmp_path / "change.tif", tmp_path / "transitions.csv"
    assert main(["change", "--before", SPRING, "--after", SUMMER, "--out-map", str(cog), "--out-csv", str(csv)]) == 0
    assert "changed" in capsys.readouterr().out
    with rasterio.open(cog) as ds:
        assert ds.count == 1 and ds.dtypes[0] == "uint8" and ds.nodata == 255 and ds.crs.to_epsg() == 4326
    tr = pd.read_csv(csv)
    assert tr.iloc[0]["km2"] >= tr["km2"].max() and tr["pct"].sum() == pytest.approx(100)
    slovenia = str(SAMPLES / "slovenia-2015-08-20" / "labels_dw.tif")
    assert main(["change", "--before", SPRING, "--after", slovenia]) == 2
    assert "same grid" in capsys.readouterr().err


def test_polygon_cli_exports_geopackage_with_minimum_mapping_unit(tmp_path, capsys):
    out = tmp_path / "lulc.gpkg"
    assert main(["polygons", "--map", SUMMER, "--out", str(out), "--mmu", "1"]) == 0
    assert "minimum mapping unit 1.0 ha" in capsys.readouterr().out
    meta, _, _, fields = pyogrio.raw.read(out)
    area = fields[list(meta["fields"]).index("area_ha")]
    assert area.min() >= 1.0 - 1e-6
    assert main(["polygons", "--map", SUMMER, "--out", str(tmp_path / "x.shp")]) == 2


def test_report_cli_writes_self_contained_html_with_provenance(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "--checkpoint", str(DEFAULT_BUNDLE_DIR), "--scene", "slovenia-2015-08-30", "--before", "slovenia-2015-07-31",
                 "--out", str(out)]) == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script" not in html  # self-contained
    assert html.count("data:image/png;base64,") >= 7  # 4 maps + change map + area chart + reliability + net change
    for text in ("Area and accuracy estimates with 95 % confidence intervals", "Olofsson", "DEMONSTRATION", "From-to change matrix",
                 "Expected calibration error", "Bundle SHA-256", "slovenia-2015-07-31", "processing_baseline", "lulc-explorer"):
        assert text in html, text
    from core.products.report import bundle_hash

    assert bundle_hash(DEFAULT_BUNDLE_DIR) in html
    assert main(["report", "--checkpoint", str(DEFAULT_BUNDLE_DIR), "--scene", "slovenia-2015-08-30", "--out", str(tmp_path / "r.pdf")]) == 2
    assert not (tmp_path / "r.pdf").exists()


def test_evaluate_calibration_prints_ece_and_writes_reliability_png(tmp_path, capsys):
    png = tmp_path / "reliability.png"
    assert main(["evaluate", "--checkpoint", str(DEFAULT_BUNDLE_DIR), "--scene", "slovenia-2015-08-20", "--split", "all",
                 "--reliability", str(png)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"expected calibration error 0\.\d{4} before, 0\.\d{4} after", out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_calibration_temperature_from_a_validation_loader():
    """fit's temperature step: an over-sharpened network on validation batches gets T > 1 and a lower ECE."""
    import numpy as np
    import torch

    from trainer.calibration import validation_calibration

    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, size=(6, 5, 16, 16)).astype(np.float32)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random((6, 1, 16, 16)) > p.cumsum(1)).sum(1).astype(np.int64)
    y[:, 0, :] = 255  # unlabelled row
    loader = [(torch.from_numpy(z[i:i + 2]), torch.from_numpy(y[i:i + 2])) for i in range(0, 6, 2)]
    model = torch.nn.Identity()
    sharp = lambda x: 4 * model(x)  # noqa: E731
    sharp.eval = lambda: None
    rep = validation_calibration(sharp, loader)
    assert rep.pixels == 6 * 15 * 16
    assert 3.0 < rep.temperature < 5.5 and rep.ece_after < rep.ece_before / 2
