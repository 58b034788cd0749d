"""Distributed block prediction on a 2-worker Dask LocalCluster (worker processes).

The network is a small numpy function whose output at a pixel depends on the whole tile (the
tile's mean), so a block whose tiles were cut differently from the single-process grid would give
different probabilities: equality below is evidence that the halo and alignment are right.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("distributed")

from core.inference.block_sources import RasterSource  # noqa: E402
from core.inference.blocks import (  # noqa: E402
    MANIFEST_NAME,
    BlockFailedError,
    ManifestMismatchError,
    plan_blocks,
    predict_distributed,
)
from core.inference.streaming import predict_geotiff  # noqa: E402
from core.inference.tiling import TileGrid  # noqa: E402
from core.io.raster import write_cog  # noqa: E402
from tests.conftest import S2_BANDS9, make_raster, toy_policy  # noqa: E402

TILE, OVERLAP, BLOCK = 64, 16, 96  # stride 48: blocks of 2 x 2 strides
K = 4
COLORS = {0: "#419bdf", 1: "#397d49", 2: "#88b053", 3: "#7a87c6"}
SENTINEL = 4500  # a value make_raster never draws (300..3999); the failing forward raises on it


class ToyForward:
    """(B, C, T, T) raw values -> (B, K, T, T) softmax; depends on each tile's mean (context)."""

    def __init__(self, fail_marker: str | None = None, transient: bool = True) -> None:
        self.fail_marker = fail_marker
        self.transient = transient

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fail_marker and os.path.exists(self.fail_marker) and (x == SENTINEL).any():
            if self.transient:
                os.remove(self.fail_marker)
            raise RuntimeError("simulated worker failure")
        x = np.nan_to_num(x, nan=0.0) / 1000.0
        ctx = x.mean(axis=(2, 3), keepdims=True)
        logits = np.stack([np.sin(x[:, k] * (k + 1)) + 2.0 * (ctx[:, (k + 1) % x.shape[1]] - ctx[:, k]) for k in range(K)], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class ToyFactory:
    """Picklable zero-argument factory, as the workers need."""

    fail_marker: str | None = None
    transient: bool = True

    def __call__(self) -> ToyForward:
        return ToyForward(self.fail_marker, self.transient)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    r = make_raster(height=250, width=330, seed=3)  # not a multiple of the block or the stride
    r.data[:, :6, :9] = 0  # nodata corner
    r.data[:, 240, 320] = SENTINEL  # only block r2 c3 reads (240, 320), halo included; trips the failing forward
    return write_cog(r, tmp_path / "in.tif")


def _single(src: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    predict_geotiff(src, tmp_path / "single.tif", ToyForward(), toy_policy(TILE, OVERLAP, 3), bands=S2_BANDS9, num_classes=K,
                    colormap=COLORS, confidence_path=tmp_path / "single_conf.tif")
    with rasterio.open(tmp_path / "single.tif") as a, rasterio.open(tmp_path / "single_conf.tif") as b:
        return a.read(1), b.read(1)


def _run(src: Path, out: Path, client, factory=ToyFactory(), **kw):
    kw.setdefault("confidence_path", out.with_name(out.stem + "_conf" + out.suffix))
    return predict_distributed(RasterSource(str(src), tuple(S2_BANDS9)), factory, out, num_classes=K, colormap=COLORS,
                               policy=toy_policy(TILE, OVERLAP, 5), block_size=BLOCK, client=client, **kw)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_blocks_tile_the_grid_on_the_stride():
    bs, blocks = plan_blocks(250, 330, block_size=100, tile=TILE, overlap=OVERLAP)
    assert bs == 96
    cover = np.zeros((250, 330), int)
    for b in blocks:
        cover[b.y0 : b.y0 + b.height, b.x0 : b.x0 + b.width] += 1
        assert b.ry0 % 48 == 0 and b.rx0 % 48 == 0  # local tile grid = a piece of the global one
        assert b.y0 - b.ry0 in (0, 48) and b.x0 - b.rx0 in (0, 48)
        assert b.ry0 + b.rheight == min(250, b.y0 + b.height + OVERLAP)
    assert (cover == 1).all()
    with pytest.raises(ValueError, match="overlap"):
        plan_blocks(100, 100, block_size=64, tile=64, overlap=40)
    assert TileGrid(250, 330, TILE, OVERLAP).stride == 48


def test_distributed_equals_single_process(src, tmp_path, client):
    cls_ref, conf_ref = _single(src, tmp_path)
    res = _run(src, tmp_path / "dist.tif", client)
    assert res.n_blocks == 3 * 4 and sorted(res.computed) == sorted(f"r{i:04d}_c{j:04d}" for i in range(3) for j in range(4))
    assert len({s["pid"] for s in res.stats}) >= 1 and all(s["peak_rss_mb"] > 0 for s in res.stats)
    np.testing.assert_array_equal(_read(tmp_path / "dist.tif"), cls_ref)
    np.testing.assert_allclose(_read(tmp_path / "dist_conf.tif"), conf_ref, atol=1e-6, rtol=0)
    assert (cls_ref[:6, :9] == 255).all()
    with rasterio.open(tmp_path / "dist.tif") as d, rasterio.open(tmp_path / "single.tif") as s:
        assert d.crs == s.crs and d.transform == s.transform and d.nodata == 255
        assert d.colormap(1)[1] == s.colormap(1)[1] == (57, 125, 73, 255)
        assert d.descriptions == ("class",)
    # the VRT in the blocks folder is the same mosaic
    np.testing.assert_array_equal(_read(res.blocks_dir / "classes.vrt"), cls_ref)


def test_resume_redoes_only_missing_blocks(src, tmp_path, client):
    out = tmp_path / "dist.tif"
    first = _run(src, out, client)
    reference = _read(out)
    out.unlink()
    manifest_path = first.blocks_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    # as after a kill: two blocks never recorded, one of whose files was not written either
    del manifest["blocks"]["r0001_c0002"], manifest["blocks"]["r0002_c0003"]
    manifest_path.write_text(json.dumps(manifest))
    (first.blocks_dir / "r0002_c0003.tif").unlink()
    # and one recorded block whose file has gone
    (first.blocks_dir / "r0000_c0000_conf.tif").unlink()
    second = _run(src, out, client)
    assert sorted(second.computed) == ["r0000_c0000", "r0001_c0002", "r0002_c0003"]
    assert len(second.skipped) == 9
    np.testing.assert_array_equal(_read(out), reference)
    third = _run(src, out, client)
    assert third.computed == [] and len(third.skipped) == 12


def test_failing_block_is_reported_and_retried(src, tmp_path, client):
    cls_ref, _ = _single(src, tmp_path)
    marker = tmp_path / "fail-once"
    marker.touch()
    messages: list[str] = []
    res = _run(src, tmp_path / "dist.tif", client, factory=ToyFactory(str(marker)), log=messages.append)
    assert [(k, a) for k, a, _ in res.failures] == [("r0002_c0003", 1)]
    assert "simulated worker failure" in res.failures[0][2]
    assert any("r0002_c0003 failed" in m and "retrying" in m for m in messages)
    np.testing.assert_array_equal(_read(tmp_path / "dist.tif"), cls_ref)


def test_block_failing_every_attempt_leaves_no_output_and_resumes(src, tmp_path, client):
    cls_ref, _ = _single(src, tmp_path)
    marker = tmp_path / "fail-always"
    marker.touch()
    out = tmp_path / "dist.tif"
    with pytest.raises(BlockFailedError, match=r"1 of 12 block\(s\) failed after 2 attempts.*run the same command again"):
        _run(src, out, client, factory=ToyFactory(str(marker), transient=False), retries=1)
    assert not out.exists() and not out.with_name("dist_conf.tif").exists()
    blocks_dir = out.with_name("dist.tif.blocks")
    manifest = json.loads((blocks_dir / MANIFEST_NAME).read_text())
    assert "r0002_c0003" not in manifest["blocks"] and len(manifest["blocks"]) == 11
    assert not (blocks_dir / "r0002_c0003.tif").exists()
    assert not [p for p in blocks_dir.iterdir() if ".partial" in p.name]
    marker.unlink()  # the cause is fixed: the rerun does only the failed block
    res = _run(src, out, client, factory=ToyFactory(str(marker), transient=False))
    assert res.computed == ["r0002_c0003"]
    np.testing.assert_array_equal(_read(out), cls_ref)


def test_other_settings_in_the_blocks_folder_are_refused(src, tmp_path, client):
    out = tmp_path / "dist.vrt"
    res = _run(src, out, client, confidence_path=None)
    assert out.exists() and not (tmp_path / "dist.tif").exists()  # a .vrt output is only the mosaic
    assert _read(out).shape == (250, 330)
    with pytest.raises(ManifestMismatchError, match="tile"):
        predict_distributed(RasterSource(str(src), tuple(S2_BANDS9)), ToyFactory(), out, num_classes=K,
                            policy=toy_policy(96, OVERLAP), block_size=BLOCK, client=client, blocks_dir=res.blocks_dir)


@dataclass(frozen=True)
class FakeEarthEngine:
    """computePixels answered from a local GeoTIFF on the same 10 m grid; each request's size goes to a log file."""

    path: str
    log: str

    def compute_pixels(self, spec, grid) -> np.ndarray:
        from rasterio.windows import Window

        with rasterio.open(self.path) as ds:
            col, row = ~ds.transform * (grid.transform[2], grid.transform[5])
            names = list(ds.descriptions)
            arr = ds.read([names.index(b) + 1 for b in spec.bands], window=Window(round(col), round(row), grid.width, grid.height),
                          boundless=True, fill_value=0)
        with open(self.log, "a") as f:
            f.write(f"{grid.width} {grid.height}\n")
        return arr


@dataclass(frozen=True)
class FakeEarthEngineFactory:
    path: str
    log: str

    def __call__(self) -> FakeEarthEngine:
        return FakeEarthEngine(self.path, self.log)


def test_earth_engine_blocks_are_fetched_per_block_and_equal_single_process(src, tmp_path, client):
    """--aoi mode: every worker fetches only its block and halo; the mosaic equals the single-process map."""
    from core.inference.block_sources import EarthEngineSource
    from core.sources.earth_engine import PixelGrid, sentinel2_spec

    cls_ref, conf_ref = _single(src, tmp_path)
    with rasterio.open(src) as ds:
        grid = PixelGrid("EPSG:32633", tuple(ds.transform)[:6], ds.width, ds.height)
    log = tmp_path / "requests.log"
    source = EarthEngineSource(grid, sentinel2_spec("2021-06-01", "2021-06-30", S2_BANDS9), tuple(S2_BANDS9),
                               FakeEarthEngineFactory(str(src), str(log)))
    out = tmp_path / "ee.tif"
    res = predict_distributed(source, ToyFactory(), out, num_classes=K, colormap=COLORS, policy=toy_policy(TILE, OVERLAP, 5),
                              block_size=BLOCK, client=client, confidence_path=tmp_path / "ee_conf.tif")
    np.testing.assert_array_equal(_read(out), cls_ref)
    np.testing.assert_allclose(_read(tmp_path / "ee_conf.tif"), conf_ref, atol=1e-6, rtol=0)
    sizes = [tuple(map(int, line.split())) for line in log.read_text().split("\n") if line]
    assert len(sizes) == res.n_blocks  # one request per block (each under the request limits)
    assert max(w * h for w, h in sizes) < grid.width * grid.height / 3  # a block and its halo, never the whole AOI
    with rasterio.open(out) as d:
        assert d.crs.to_epsg() == 32633 and d.tags()["LULC_EE_COLLECTION"] == "COPERNICUS/S2_HARMONIZED"
    # a rerun resumes from the manifest without asking Earth Engine again
    log.write_text("")
    again = predict_distributed(source, ToyFactory(), tmp_path / "ee2.tif", num_classes=K, colormap=COLORS,
                                policy=toy_policy(TILE, OVERLAP, 5), block_size=BLOCK, client=client,
                                confidence_path=tmp_path / "ee2_conf.tif", blocks_dir=res.blocks_dir)
    assert sorted(again.skipped) == sorted(res.computed) and log.read_text() == ""


def test_local_cluster_gets_at_most_one_worker_per_block():
    from core.inference.blocks import local_workers

    assert local_workers(2, 1) == 1 and local_workers(4, 12) == 4 and local_workers(3, 2) == 2
    assert local_workers(None, 1000) == (os.cpu_count() or 1) and local_workers(2, 0) == 1


def test_one_worker_runs_the_blocks_in_this_process_without_a_cluster(src, tmp_path, monkeypatch):
    """``workers=1`` (or one block): no LocalCluster is started; same map, manifest and retries as on Dask."""
    import core.inference.blocks as blocks

    def no_cluster(*a, **k):
        raise AssertionError("a cluster was started for one worker's work")

    monkeypatch.setattr(blocks, "_open_client", no_cluster)
    cls_ref, conf_ref = _single(src, tmp_path)
    marker = tmp_path / "fail-once"
    marker.touch()
    messages: list[str] = []
    res = _run(src, tmp_path / "here.tif", None, factory=ToyFactory(str(marker)), workers=1, log=messages.append)
    assert {s["pid"] for s in res.stats} == {os.getpid()} and len(res.computed) == 12
    assert [(k, a) for k, a, _ in res.failures] == [("r0002_c0003", 1)] and any("retrying" in m for m in messages)
    np.testing.assert_array_equal(_read(tmp_path / "here.tif"), cls_ref)
    np.testing.assert_allclose(_read(tmp_path / "here_conf.tif"), conf_ref, atol=1e-6, rtol=0)
    assert len(json.loads((res.blocks_dir / MANIFEST_NAME).read_text())["blocks"]) == 12
    # a block that fails every time: reported, the others kept, as on a cluster
    marker.touch()
    with pytest.raises(BlockFailedError, match=r"1 of 12 block\(s\) failed after 2 attempts"):
        _run(src, tmp_path / "fails.tif", None, factory=ToyFactory(str(marker), transient=False), workers=1, retries=1)
    # one block left to do with two workers asked for: also here
    whole = predict_distributed(RasterSource(str(src), tuple(S2_BANDS9)), ToyFactory(), tmp_path / "one.tif", num_classes=K,
                                colormap=COLORS, policy=toy_policy(TILE, OVERLAP, 5), block_size=4096, workers=2)
    assert whole.n_blocks == 1 and [s["pid"] for s in whole.stats] == [os.getpid()]
    np.testing.assert_array_equal(_read(tmp_path / "one.tif"), cls_ref)
