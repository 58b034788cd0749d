"""Imagery as users download it (issue 24): SAFE folder/zip, Landsat C2 L2 scene, STAC Item -> VRT -> the GeoTIFF path.

Each test turns a crop of a pack scene into a product in the real layout (SAFE: MTD XML with the real element
names, JPEG 2000 band files at 10/20/60 m written losslessly by GDAL's JP2OpenJPEG driver; Landsat: SR_B1..SR_B7
COGs at 30 m and an MTL.json; STAC: an Item with Earth Search asset keys over per-band COGs), reads it through
:func:`core.sources.downloads.resolve_input` and :func:`core.inference.policy.input_for_file`, and compares the
model input with the pack GeoTIFF's.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from core.errors import LulcError
from core.inference.policy import input_for_file
from core.io.guards import GsdError, check_gsd
from core.io.raster import raster_info
from core.sources.downloads import ProductError, cloud_mask, is_download_product, resolve_input
from models.bundle import read_card

NZ = "newzealand-2020-10-02"  # L1C, EPSG:32760, baseline < 04.00 (pack README)
SD = "sandiego-2020-06-14"  # L2A, EPSG:4326, before baseline 04.00
L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
NATIVE = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20, "B9": 60, "B10": 60,
          "B11": 20, "B12": 20}
FILE_ID = {b: ("B8A" if b == "B8A" else f"B{int(b[1:]):02d}") for b in L1C_BANDS}
EARTH_SEARCH = {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "rededge1", "B6": "rededge2",
                "B7": "rededge3", "B8": "nir", "B8A": "nir08", "B9": "nir09", "B11": "swir16", "B12": "swir22"}
CROP = 120  # px at 10 m: a multiple of 6 so that the 60 m bands tile it exactly


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def card():
    return read_card(Path(__file__).resolve().parents[2] / "models" / "default")


def pack_crop(data_dir: Path, scene: str, size: int = CROP, off: int = 48):
    """(bands by name as uint16 (H, W), CRS, 10 m transform) of a crop of a pack scene."""
    with rasterio.open(data_dir / "samples" / scene / "image_s2.tif") as s:
        w = Window(off, off, size, size)
        a = s.read(window=w)
        return dict(zip(s.descriptions, a, strict=True)), s.crs, s.window_transform(w)


def write_pack_tif(path: Path, bands: dict, crs, transform) -> Path:
    """The crop as a plain multi-band GeoTIFF (the pack's format): the reference input."""
    names = list(bands)
    with rasterio.open(path, "w", driver="GTiff", width=transform_size(bands), height=transform_size(bands), count=len(names),
                       dtype="uint16", crs=crs, transform=transform, nodata=0) as d:
        d.write(np.stack([bands[n] for n in names]))
        for i, n in enumerate(names, 1):
            d.set_band_description(i, n)
    return path


def transform_size(bands: dict) -> int:
    return next(iter(bands.values())).shape[0]


def coarsen(a: np.ndarray, k: int) -> np.ndarray:
    """Block mean k x k (the way a coarser sensor band integrates the 10 m pixels), rounded to uint16; 0 stays nodata."""
    if k == 1:
        return a.copy()
    h, w = a.shape[0] // k, a.shape[1] // k
    x = a[: h * k, : w * k].astype(np.float64).reshape(h, k, w, k)
    valid = (x > 0).all(axis=(1, 3))
    return np.where(valid, np.rint(x.mean(axis=(1, 3))), 0).astype(np.uint16)


def write_band(path: Path, a: np.ndarray, crs, transform, driver: str = "JP2OpenJPEG") -> None:
    prof = dict(driver=driver, width=a.shape[1], height=a.shape[0], count=1, dtype=a.dtype.name, crs=crs, transform=transform)
    opts = dict(QUALITY=100, REVERSIBLE="YES") if driver == "JP2OpenJPEG" else dict(tiled=True, blockxsize=256, blockysize=256,
                                                                                    compress="deflate")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **prof, **opts) as d:  # no .aux.xml, as in a SAFE
        d.write(a[None])


def scaled(t: Affine, k: int) -> Affine:
    return Affine(t.a * k, 0, t.c, 0, t.e * k, t.f)


MTD_L1C = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2020-10-02T22:19:39.024Z</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>2020-10-02T22:19:39.024Z</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{uri}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{lev}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{lev}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Datatake datatakeIdentifier="GS2B_20201002T221939_018696_N{baseline}">
        <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
        <DATATAKE_SENSING_START>2020-10-02T22:19:39.024Z</DATATAKE_SENSING_START>
      </Datatake>
      <Product_Organisation>
        <Granule_List>
          <Granule granuleIdentifier="{granule}" imageFormat="JPEG2000">
{files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
  </n1:General_Info>
  <n1:Product_Image_Characteristics>
    <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
    {quant}
    {offsets}
  </n1:Product_Image_Characteristics>
</n1:Level-1C_User_Product>
"""


def make_safe(root: Path, bands: dict, crs, transform, *, level: str = "1C", offset: int = 0, zip_it: bool = False,
              drop: tuple[str, ...] = (), driver: str = "JP2OpenJPEG", mtd_offset: int | None = None) -> Path:
    """A SAFE product (folder, or zip of it) from 10 m pack bands: real layout, MTD XML, band files at native GSD.

    ``offset`` is added to the valid pixels (+1000 DN of baseline 04.00); ``mtd_offset`` is what the MTD states
    (default: the truth); ``drop`` leaves band files out while the MTD still lists them.
    """
    baseline = "04.00" if offset else "02.09"
    uri = f"S2B_MSIL{level}_20201002T221939_N{baseline.replace('.', '')}_R029_T60HWB_20201002T235959.SAFE"
    granule = f"L{level}_T60HWB_A018696_20201002T221939"
    safe = root / uri
    listed = []
    names = [b for b in L1C_BANDS if b in bands]
    ext = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    for b in names:
        res = NATIVE[b]
        a = coarsen(bands[b], res // 10)
        if offset:
            a = np.where(a > 0, a + offset, 0).astype(np.uint16)
        if level == "1C":
            rel = f"GRANULE/{granule}/IMG_DATA/T60HWB_20201002T221939_{FILE_ID[b]}"
            files = [(rel, a, res)]
        else:
            files = [(f"GRANULE/{granule}/IMG_DATA/R{res}m/T60HWB_20201002T221939_{FILE_ID[b]}_{res}m", a, res)]
            if res == 10 and b == "B2":  # real L2A also ships the 10 m bands at 20 m: the reader must take the 10 m one
                files.append((f"GRANULE/{granule}/IMG_DATA/R20m/T60HWB_20201002T221939_B02_20m", coarsen(bands[b], 2), 20))
        for rel, arr, r in files:
            listed.append(rel)
            if b in drop:
                continue
            (safe / rel).parent.mkdir(parents=True, exist_ok=True)
            write_band(safe / (rel + ext), arr, crs, scaled(transform, r // 10), driver)
    if level == "2A":
        scl = np.full((CROP // 2, CROP // 2), 4, np.uint8)
        scl[:10, :10] = 9  # a cloud (high probability) in the upper-left corner
        rel = f"GRANULE/{granule}/IMG_DATA/R20m/T60HWB_20201002T221939_SCL_20m"
        listed.append(rel)
        write_band(safe / (rel + ext), scl, crs, scaled(transform, 2), driver)
    stated = offset if mtd_offset is None else mtd_offset
    tag = "RADIO_ADD_OFFSET" if level == "1C" else "BOA_ADD_OFFSET"
    offs = "".join(f'<{tag} band_id="{i}">{-stated}</{tag}>' for i in range(13)) if stated or baseline >= "04.00" else ""
    if offs:
        offs = (f"<Radiometric_Offset_List>{offs}</Radiometric_Offset_List>" if level == "1C"
                else f"<BOA_ADD_OFFSET_VALUES_LIST>{offs}</BOA_ADD_OFFSET_VALUES_LIST>")
    quant = ('<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>' if level == "1C" else
             '<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
             "</QUANTIFICATION_VALUES_LIST>")
    xml = MTD_L1C.format(uri=uri, lev=level, baseline=baseline, granule=granule, quant=quant, offsets=offs,
                         files="\n".join(f"            <IMAGE_FILE>{r}</IMAGE_FILE>" for r in listed))
    if level == "2A":
        xml = xml.replace("Level-1C_User_Product", "Level-2A_User_Product").replace("User_Product_Level-1C", "User_Product_Level-2A")
    (safe / f"MTD_MSIL{level}.xml").write_text(xml)
    if not zip_it:
        return safe
    z = root / (uri.removesuffix(".SAFE") + ".zip")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            zf.write(f, f.relative_to(root).as_posix())
    return z


def make_landsat(root: Path, bands: dict, crs, transform, *, qa: bool = True) -> Path:
    """A Landsat 9 C2 L2 scene folder at 30 m from pack bands (3 x 3 means), as USGS delivers it, with MTL.json."""
    scene = "LC09_L2SP_072087_20201002_20201010_02_T1"
    folder = root / scene
    folder.mkdir(parents=True)
    lmap = {"SR_B1": "B1", "SR_B2": "B2", "SR_B3": "B3", "SR_B4": "B4", "SR_B5": "B8A", "SR_B6": "B11", "SR_B7": "B12"}
    t30 = scaled(transform, 3)
    for sr, n in lmap.items():
        refl = coarsen(bands[n], 3) / 10000.0
        dn = np.clip((refl + 0.2) / 0.0000275, 1, 65535).astype(np.uint16)
        write_band(folder / f"{scene}_{sr}.TIF", dn, crs, t30, "GTiff")
    if qa:
        q = np.full((CROP // 3, CROP // 3), 21824, np.uint16)  # clear land (bits 6, 8, 10, 12, 14)
        q[:5, :5] = 22280  # cloud (bit 3) with high confidence
        write_band(folder / f"{scene}_QA_PIXEL.TIF", q, crs, t30, "GTiff")
    params = {f"REFLECTANCE_MULT_BAND_{i}": "2.75E-05" for i in range(1, 8)} | {f"REFLECTANCE_ADD_BAND_{i}": "-0.200000" for i in range(1, 8)}
    (folder / f"{scene}_MTL.json").write_text(json.dumps({"LANDSAT_METADATA_FILE": {
        "PRODUCT_CONTENTS": {"LANDSAT_PRODUCT_ID": scene, "PROCESSING_LEVEL": "L2SP", "COLLECTION_NUMBER": "02"},
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": "LANDSAT_9", "DATE_ACQUIRED": "2020-10-02"},
        "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": params}}))
    return folder


def make_stac(root: Path, bands: dict, crs, transform, *, product_type: str = "S2MSI1C", baseline: str = "02.09",
              scale_offset: float = 0.0, omit_file: str | None = None) -> Path:
    """A STAC Item with Earth Search asset keys over per-band COGs at 10 m (the check's construction), as item.json."""
    from rasterio.warp import transform_bounds

    root.mkdir(parents=True, exist_ok=True)
    assets = {}
    h = transform_size(bands)
    for n, a in bands.items():
        if n not in EARTH_SEARCH:
            continue
        if n != omit_file:
            write_band(root / f"{n}.tif", a, crs, transform, "GTiff")
        assets[EARTH_SEARCH[n]] = {"href": f"./{n}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                                   "roles": ["data"], "eo:bands": [{"name": n, "common_name": EARTH_SEARCH[n]}],
                                   "raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": scale_offset}]}
    x0, y0, x1, y1 = transform_bounds(crs, "EPSG:4326", transform.c, transform.f + transform.e * h, transform.c + transform.a * h,
                                      transform.f)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2B_60HWB_20201002_0_L1C", "bbox": [x0, y0, x1, y1],
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
            "properties": {"datetime": "2020-10-02T22:16:11Z", "platform": "sentinel-2b", "s2:processing_baseline": baseline,
                           "s2:product_type": product_type},
            "links": [], "assets": assets,
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]}
    (root / "item.json").write_text(json.dumps(item))
    return root / "item.json"


def model_input(path: str | Path, card) -> tuple[np.ndarray, object]:
    """(float32 (C, H, W) model input, decision) through the existing GeoTIFF path."""
    d = input_for_file(path, card)
    with rasterio.open(path) as ds:
        return d.apply(ds.read()), d


def bilinear_reference(bands: dict, crs, transform, *, offset: int = 0) -> dict:
    """Each band as the product stores it (10/20/60 m), brought back onto the 10 m grid by rasterio.warp (bilinear):
    an implementation of the resampling independent of the VRT's."""
    out = {}
    for b, a in bands.items():
        k = NATIVE[b] // 10
        c = coarsen(a, k)
        if k == 1:
            out[b] = c.astype(np.float32)
            continue
        dst = np.zeros(a.shape, np.float32)
        reproject(c.astype(np.float32), dst, src_transform=scaled(transform, k), src_crs=crs, dst_transform=transform, dst_crs=crs,
                  resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
        out[b] = np.rint(dst)
    return out


# --- the four kinds ------------------------------------------------------------------------------


def test_safe_l1c_folder_with_offset_reads_as_the_pack(tmp_path, data_dir, card):
    bands, crs, t = pack_crop(data_dir, NZ)
    safe = make_safe(tmp_path, bands, crs, t, level="1C", offset=1000)
    assert is_download_product(safe) and not is_download_product(data_dir / "samples" / NZ / "image_s2.tif")
    r = resolve_input(safe)
    assert Path(r.path).suffix == ".vrt" and tmp_path / "cache" in Path(r.path).parents  # in the cache, not beside the input
    assert not list(safe.rglob("*.vrt"))
    assert (r.kind, r.level, r.baseline, r.offset_dn, r.gsd_m) == ("sentinel2-safe", "L1C", "04.00", 1000, 10.0)
    assert "RADIO_ADD_OFFSET" in r.offset_reason and "resampled bilinearly onto the 10 m grid" in r.resampling
    assert r.bands == L1C_BANDS
    x, d = model_input(r.path, card)
    assert d.offset_dn == 1000 and "RADIO_ADD_OFFSET" in d.offset_reason and d.level == "L1C"
    ref, _ = model_input(write_pack_tif(tmp_path / "pack.tif", bands, crs, t), card)
    for k, b in enumerate(card.bands):  # the 10 m bands: the pack's pixels exactly, offset removed
        if NATIVE[b] == 10:
            np.testing.assert_array_equal(x[k], ref[k])
    # the 20 m bands against an independent bilinear resampling (rasterio.warp) of the same 20 m files: identical on
    # 96.0-96.8 % of the pixels of this crop and within 1 DN (the VRT rounds in integers, warp in float) on 100 %
    want = bilinear_reference(bands, crs, t)
    for k, b in enumerate(card.bands):
        if NATIVE[b] != 10:
            w = np.maximum(want[b], 1)
            assert float((x[k] == w).mean()) >= 0.95, b
            assert float((np.abs(x[k] - w) <= 1).mean()) >= 0.999, b


def test_safe_l2a_zip_reads_through_vsizip(tmp_path, data_dir, card):
    bands, crs, t = pack_crop(data_dir, SD)
    bands.pop("B10", None)
    z = make_safe(tmp_path / "dl", bands, crs, t, level="2A", zip_it=True)
    r = resolve_input(z)
    assert (r.level, r.offset_dn, r.kind) == ("L2A", 0, "sentinel2-safe")
    assert "/vsizip/" in Path(r.path).read_text() and not list((tmp_path / "dl").glob("*.vrt"))
    x, d = model_input(r.path, card)
    assert d.level == "L2A" and d.offset_dn == 0
    ref, _ = model_input(write_pack_tif(tmp_path / "pack.tif", bands, crs, t), card)
    k2 = card.bands.index("B2")  # from R10m, not the B02_20m copy
    np.testing.assert_array_equal(x[k2], ref[k2])
    m = cloud_mask(r)
    assert r.mask_kind == "SCL" and m.shape == x.shape[1:] and m[:20, :20].all() and not m[20:, 20:].any()


def test_landsat_scene_is_one_30m_input_refused_by_the_10m_model(tmp_path, data_dir, card):
    bands, crs, t = pack_crop(data_dir, NZ)
    folder = make_landsat(tmp_path, bands, crs, t)
    for p in (folder, next(folder.glob("*_MTL.json"))):
        r = resolve_input(p)
        assert r.kind == "landsat-c2l2" and r.bands == tuple(f"SR_B{i}" for i in range(1, 8)) and r.gsd_m == 30.0
        info = raster_info(r.path)
        assert info["count"] == 7 and info["height"] == CROP // 3
        with pytest.raises(GsdError, match="30 m pixels"):
            check_gsd(info["crs"], info["transform"], info["height"], info["width"], card.gsd_m, name=Path(r.path).name)
    assert cloud_mask(r)[:5, :5].all() and not cloud_mask(r)[5:, 5:].any()
    # and a Landsat model reads it: reflectance by the Collection 2 rule
    from types import SimpleNamespace

    lcard = SimpleNamespace(name="landsat", bands=[f"SR_B{i}" for i in range(1, 8)], mean=[0.0] * 7, optional_bands=[],
                            levels=[], level_agreement={})
    x, _ = model_input(r.path, lcard)
    want = coarsen(bands["B4"], 3).astype(np.float32)
    assert np.abs(x[3] - want).max() <= 1.0  # DN x 0.0000275 - 0.2, in reflectance x 1e4: the pack's B4 within 1 DN


def test_stac_item_over_cogs_equals_the_pack(tmp_path, data_dir, card):
    bands, crs, t = pack_crop(data_dir, NZ)
    item = make_stac(tmp_path / "stac", bands, crs, t)
    r = resolve_input(item)
    assert (r.kind, r.level, r.baseline, r.offset_dn, r.date) == ("stac-item", "L1C", "02.09", 0, "2020-10-02")
    assert r.resampling == ""
    x, d = model_input(r.path, card)
    ref, dref = model_input(write_pack_tif(tmp_path / "pack.tif", bands, crs, t), card)
    assert d.offset_dn == dref.offset_dn == 0
    same = float((x == ref).all(axis=0).mean())
    assert same == 1.0
    # an Earth Search L2A item of baseline >= 04.00 states its offset in raster:bands
    shifted = {n: np.where(a > 0, a + 1000, 0).astype(np.uint16) for n, a in bands.items()}
    item2 = make_stac(tmp_path / "stac2", shifted, crs, t, product_type="S2MSI2A", baseline="05.09", scale_offset=-0.1)
    r2 = resolve_input(item2)
    x2, d2 = model_input(r2.path, card)
    assert (r2.level, d2.offset_dn, d2.level) == ("L2A", 1000, "L2A")
    np.testing.assert_array_equal(x2, ref)


def test_plain_geotiff_passes_through(data_dir):
    src = data_dir / "samples" / NZ / "image_s2.tif"
    r = resolve_input(src)
    assert r.path == str(src) and not r.is_product


# --- bad input: one sentence each ------------------------------------------------------------------


def _one_sentence(exc: BaseException) -> str:
    msg = str(exc)
    assert isinstance(exc, LulcError) and "\n" not in msg and "Traceback" not in msg
    return msg


def test_safe_zip_without_the_needed_bands(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ)
    z = make_safe(tmp_path, bands, crs, t, zip_it=True, drop=("B11", "B12"))
    with pytest.raises(ProductError) as e:
        resolve_input(z)
    msg = _one_sentence(e.value)
    assert "B11" in msg and "B12" in msg and "lists" in msg
    only = {b: bands[b] for b in ("B2", "B3", "B4", "B8")}
    z2 = make_safe(tmp_path / "subset", only, crs, t, zip_it=True)
    with pytest.raises(ProductError, match="lacks band.s. B5, B6, B7, B11, B12"):
        resolve_input(z2, bands=["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"])


def test_truncated_jp2(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ)
    safe = make_safe(tmp_path, bands, crs, t)
    f = next(safe.rglob("*_B11.jp2"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size * 2 // 3])
    with pytest.raises(ProductError) as e:
        resolve_input(safe)
    assert "_B11.jp2 is incomplete" in _one_sentence(e.value) and "download the product again" in str(e.value)
    assert not list((tmp_path / "cache").rglob("*.vrt"))  # refused before anything is written


def test_mtd_that_disagrees_with_the_pixels(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ)
    safe = make_safe(tmp_path, bands, crs, t, offset=0, mtd_offset=1000)  # says +1000, pixels have none
    with pytest.raises(ProductError) as e:
        resolve_input(safe)
    msg = _one_sentence(e.value)
    assert "MTD_MSIL1C.xml states a +1000 DN offset" in msg and "pixels show none" in msg
    assert not list((tmp_path / "cache").rglob("*.vrt"))  # nothing half-written left behind


def test_stac_item_with_missing_or_unreachable_assets(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ)
    item = make_stac(tmp_path / "a", bands, crs, t, omit_file="B11")
    with pytest.raises(ProductError) as e:
        resolve_input(item)
    assert "asset 'swir16' points to ./B11.tif, which does not exist" in _one_sentence(e.value)
    doc = json.loads(item.read_text())
    doc["assets"]["swir16"]["href"] = "http://127.0.0.1:9/B11.tif"  # nothing listens on port 9
    (tmp_path / "a" / "B11.tif").write_bytes(b"")
    item.write_text(json.dumps(doc))
    with pytest.raises(ProductError) as e:
        resolve_input(item)
    assert "asset 'swir16'" in _one_sentence(e.value) and "cannot be read" in str(e.value)
    doc["assets"] = {"visual": dict(doc["assets"]["blue"], roles=["visual"])}  # a true-colour rendering, not a band
    item.write_text(json.dumps(doc))
    with pytest.raises(ProductError, match="has no asset for band"):
        resolve_input(item, bands=["B2"])


def test_landsat_scene_given_to_a_sentinel2_model(tmp_path, data_dir, card):
    bands, crs, t = pack_crop(data_dir, NZ)
    r = resolve_input(make_landsat(tmp_path, bands, crs, t, qa=False))
    info = raster_info(r.path)
    with pytest.raises(GsdError) as e:
        check_gsd(info["crs"], info["transform"], info["height"], info["width"], card.gsd_m, name=Path(r.path).name)
    assert _one_sentence(e.value).startswith("LC09_L2SP_072087_20201002_20201010_02_T1.vrt has 30 m pixels")


def test_renamed_zip_and_a_zip_that_is_no_safe(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ, size=60)
    z = make_safe(tmp_path, {b: bands[b] for b in ("B2", "B3", "B4", "B8")}, crs, t, zip_it=True)
    upload = z.rename(tmp_path / "upload.zip")  # an upload loses the product's name
    assert is_download_product(upload) and resolve_input(upload).name.endswith(".SAFE")
    other = tmp_path / "photos.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("a.txt", "x")
    with pytest.raises(ProductError, match="photos.zip holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml"):
        resolve_input(other)


def test_predict_on_the_resolved_products_gives_the_pack_labels(tmp_path, data_dir):
    """End to end through ``trainer.predict.predict`` on :attr:`ResolvedInput.path` (what the CLI does once wired).

    Measured on this 120 x 120 px crop of newzealand-2020-10-02 with models/default: STAC Item 100 % of labels equal
    to the pack GeoTIFF's; SAFE L1C with offset 99.92 % (its 20/60 m bands are 2 x 2 / 6 x 6 means of the pack's
    pixels, resampled back bilinearly; the pack's own 20 m bands did not come from those pixels).
    """
    from trainer.predict import predict

    bands, crs, t = pack_crop(data_dir, NZ)
    pack = write_pack_tif(tmp_path / "pack.tif", bands, crs, t)
    safe = resolve_input(make_safe(tmp_path, bands, crs, t, offset=1000))
    stac = resolve_input(make_stac(tmp_path / "stac", bands, crs, t))
    model = Path(__file__).resolve().parents[2] / "models" / "default"
    labels = {}
    for name, src in (("pack", str(pack)), ("safe", safe.path), ("stac", stac.path)):
        predict(str(model), src, str(tmp_path / f"{name}_map.tif"), quiet=True)
        with rasterio.open(tmp_path / f"{name}_map.tif") as ds:
            labels[name] = ds.read(1)
    assert float((labels["stac"] == labels["pack"]).mean()) == 1.0
    assert float((labels["safe"] == labels["pack"]).mean()) >= 0.99
    # a window of the VRT is the same pixels as that part of a whole read (windows are resampled as they are read)
    with rasterio.open(safe.path) as ds:
        whole = ds.read()
        np.testing.assert_array_equal(ds.read(window=Window(30, 42, 50, 36)), whole[:, 42:78, 30:80])


def test_what_counts_as_a_download(tmp_path, data_dir):
    assert is_download_product("https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2A_32TQM_20230612_0_L2A")
    assert is_download_product("https://example.org/stac/item.json")
    assert not is_download_product("https://example.org/scene.tif")
    assert not is_download_product(data_dir / "samples" / NZ)  # a pack scene folder of GeoTIFFs
    (tmp_path / "collection.json").write_text(json.dumps({"type": "Collection", "id": "x"}))
    assert not is_download_product(tmp_path / "collection.json")


def test_landsat_mtl_txt_and_level1_refusal(tmp_path, data_dir):
    bands, crs, t = pack_crop(data_dir, NZ, size=60)
    folder = make_landsat(tmp_path, bands, crs, t, qa=False)
    mtl = next(folder.glob("*_MTL.json"))
    mtl.unlink()
    txt = folder / mtl.name.replace(".json", ".txt")
    txt.write_text('GROUP = LANDSAT_METADATA_FILE\n  GROUP = PRODUCT_CONTENTS\n    PROCESSING_LEVEL = "L1TP"\n  END_GROUP = PRODUCT_CONTENTS\n'
                   'END_GROUP = LANDSAT_METADATA_FILE\nEND\n')
    with pytest.raises(ProductError, match="Level-1.*download the Collection 2 Level-2"):
        resolve_input(txt)
    txt.write_text(txt.read_text().replace("L1TP", "L2SP"))
    r = resolve_input(folder)
    assert r.kind == "landsat-c2l2" and r.level == "L2SP" and r.date == "2020-10-02"
    next(folder.glob("*_SR_B6.TIF")).unlink()
    with pytest.raises(ProductError, match=r"lacks band file\(s\) SR_B6"):
        resolve_input(folder)


def test_sfim_sharpening_reduces_the_error_on_a_downsampled_10m_band(tmp_path, data_dir, card):
    """The "20 m" B5 of this product is the pack's 10 m B3 (green) averaged 2 x 2; SFIM with B4 (red) must bring it
    closer to the true 10 m B3 than bilinear resampling does (RMSE on this crop: 36.1 DN bilinear, 32.7 DN SFIM)."""
    bands, crs, t = pack_crop(data_dir, NZ)
    truth = bands["B3"].astype(np.float32)
    bands = dict(bands, B5=bands["B3"])
    safe = make_safe(tmp_path, bands, crs, t, offset=1000)
    plain = resolve_input(safe)
    sharp = resolve_input(safe, sharpen=True)
    assert sharp.path.endswith("_sfim.tif") and "B5 sharpened with B4 (SFIM, Liu 2000)" in sharp.resampling
    x0, _ = model_input(plain.path, card)
    x1, d1 = model_input(sharp.path, card)
    assert d1.offset_dn == 1000  # the evidence travels with the sharpened GeoTIFF
    k = card.bands.index("B5")
    inner = np.s_[2:-2, 2:-2]  # the border pixels have no full 2 x 2 neighbourhood on either side
    rmse = [float(np.sqrt(np.mean((x[k][inner] - truth[inner]) ** 2))) for x in (x0, x1)]
    assert rmse[1] < 0.95 * rmse[0], rmse
    kb = card.bands.index("B2")
    np.testing.assert_array_equal(x1[kb], x0[kb])  # 10 m bands untouched


def test_predict_names_the_product_not_its_cached_vrt_in_the_provenance(tmp_path, data_dir):
    """A map made from a STAC Item (or a SAFE) is tagged with the name the user gave, not the cache's ``.vrt``."""
    from trainer.predict import predict

    bands, crs, t = pack_crop(data_dir, NZ, size=60)
    item = make_stac(tmp_path / "stac", bands, crs, t)
    model = Path(__file__).resolve().parents[2] / "models" / "default"
    predict(str(model), str(item), str(tmp_path / "map.tif"), quiet=True)
    with rasterio.open(tmp_path / "map.tif") as ds:
        name = ds.tags()["LULC_INPUT_NAME"]
    assert name == Path(item).name and not name.endswith(".vrt")
