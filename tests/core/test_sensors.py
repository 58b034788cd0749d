"""Sensors as band specifications in one place (issue 18): Sentinel-2, Sentinel-1, Landsat 8/9 C2 L2."""

from __future__ import annotations

import numpy as np

from core.inputs.bands import LANDSAT_C2_L2, SENSORS, band_spec, canonical_band, sensor_of


def test_landsat_c2_l2_bands_and_scaling():
    assert [b.name for b in LANDSAT_C2_L2] == [f"SR_B{i}" for i in range(1, 8)]
    ls = SENSORS["L8/9"]
    assert ls.gsd_m == 30.0 and band_spec("SR_B5").description == "NIR"
    assert np.allclose(ls.to_reflectance(np.array([7273, 43636], dtype=np.uint16)), [0.0, 1.0], atol=1e-4)
    assert canonical_band("SR_B2") == "SR_B2" and canonical_band("B2") == "B2"


def test_sensor_of_a_band_list():
    assert sensor_of(["B2", "B8", "VV", "VH"]) == "S2+S1"
    assert sensor_of(["SR_B2", "SR_B3"]) == "L8/9"
