"""Real ``ee`` expressions of the Earth Engine adapter, built and serialised offline.

earthengine-api ships its own test harness in the wheel: ``ee.apitestcase.ApiTestCase`` loads the
recorded algorithm signatures (``ee/tests/algorithms.json``, via ``GetAlgorithms``), so building an
expression with an unknown algorithm or argument name fails here as it would on the server, and
``UsingCloudApi`` puts a mock in place of the REST client so the request bodies (computePixels,
export, maps, value) can be inspected, and real HTTP error responses can be replayed.
"""

from __future__ import annotations

import io
import json
from unittest import mock

import numpy as np
import pytest

ee = pytest.importorskip("ee")
from ee import apitestcase  # noqa: E402
from googleapiclient.http import HttpMockSequence  # noqa: E402

from core.sources.earth_engine import (  # noqa: E402
    FLOAT_SENTINEL,
    CredentialsError,
    EarthEngineConfig,
    EarthEngineError,
    EmptyCollectionError,
    LiveEarthEngine,
    PermissionDeniedError,
    PixelGrid,
    QuotaError,
    TransientError,
    download,
    dynamic_world_spec,
    sentinel1_spec,
    sentinel2_spec,
    worldcover_spec,
)

GRID = PixelGrid("EPSG:32633", (10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0), 64, 48)


@pytest.fixture
def harness():
    """earthengine-api's ApiTestCase set up around one pytest test (offline, recorded algorithms)."""
    case = apitestcase.ApiTestCase()
    case.setUp()
    try:
        yield case
    finally:
        case.tearDown()


@pytest.fixture
def live(harness):
    adapter = LiveEarthEngine(EarthEngineConfig(project="my-project"))
    adapter._ready = True  # the harness has initialised ee
    return adapter


def graph(obj) -> dict:
    """The serialised Cloud API expression of an ee object, resolved into one tree."""
    return graph_from_encoded(ee.serializer.encode(obj, for_cloud_api=True))


def graph_from_encoded(enc: dict) -> dict:
    """A serialised Cloud API expression (as in a request body) with value references resolved into one tree."""
    values = enc["values"]

    def resolve(node):
        if isinstance(node, str):  # a function body is a reference id
            return resolve(values[node])
        if "valueReference" in node:
            return resolve(values[node["valueReference"]])
        if "functionInvocationValue" in node:
            fi = node["functionInvocationValue"]
            return {"fn": fi["functionName"], "args": {k: resolve(v) for k, v in fi.get("arguments", {}).items()}}
        if "functionDefinitionValue" in node:
            return {"lambda": node["functionDefinitionValue"]["argumentNames"], "body": resolve(node["functionDefinitionValue"]["body"])}
        if "constantValue" in node:
            return node["constantValue"]
        if "arrayValue" in node:
            return [resolve(v) for v in node["arrayValue"]["values"]]
        if "dictionaryValue" in node:
            return {k: resolve(v) for k, v in node["dictionaryValue"]["values"].items()}
        if "argumentReference" in node:
            return {"arg": node["argumentReference"]}
        if "integerValue" in node:
            return int(node["integerValue"])
        raise AssertionError(f"unexpected node {node}")

    return resolve(values[enc["result"]])


def nodes(tree):
    """Every dict node of a resolved tree, depth first."""
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from nodes(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from nodes(v)


def calls(tree, name: str) -> list[dict]:
    """Arguments of every invocation of algorithm ``name`` in a resolved tree."""
    return [n["args"] for n in nodes(tree) if n.get("fn") == name]


def fn_names(tree) -> list[str]:
    return [n["fn"] for n in nodes(tree) if "fn" in n]


def loaded(tree) -> set[str]:
    return {a["id"] for a in calls(tree, "ImageCollection.load")}


def date_range(tree) -> tuple[str, str]:
    (r,) = calls(tree, "DateRange")
    return r["start"], r["end"]


def prop_filters(tree) -> set[tuple]:
    """(filter, property, value) of the metadata filters; ``ee.Filter.lte`` is serialised as not(greaterThan)."""
    out = set()
    for name in ("Filter.equals", "Filter.listContains", "Filter.lessThan"):
        for a in calls(tree, name):
            out.add((name, a["leftField"], a["rightValue"]))
    for a in calls(tree, "Filter.not"):
        if a["filter"]["fn"] == "Filter.greaterThan":
            out.add(("lte", a["filter"]["args"]["leftField"], a["filter"]["args"]["rightValue"]))
    return out


def test_harness_rejects_unknown_algorithms_and_argument_names(harness):
    with pytest.raises(AttributeError):
        ee.ImageCollection("X").medianComposite()
    with pytest.raises(ee.EEException, match="Unrecognized argument"):
        ee.ApiFunction.call_("Image.select", ee.Image(1), ["B2"], bandNamez=["x"])


def test_sentinel2_l1c_cloud_score_plus_composite(live):
    spec = sentinel2_spec("2021-06-01", "2021-06-30", ["B2", "B3", "B4", "B8"], level="L1C", cloud_threshold=0.65)
    g = graph(live.request_image(spec, GRID))
    assert loaded(g) == {"COPERNICUS/S2_HARMONIZED", "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"}
    assert date_range(g) == ("2021-06-01", "2021-07-01"), "the last day is inclusive: filterDate ends the day after"
    (bounds,) = [a["rightValue"]["args"]["geometry"] for a in calls(g, "Filter.intersects")]
    assert bounds["fn"] == "GeometryConstructors.Rectangle"
    assert bounds["args"]["coordinates"] == [330000.0, 5822040.0 - 480, 330000.0 + 640, 5822040.0]
    assert bounds["args"]["crs"]["args"]["crs"] == "EPSG:32633" and bounds["args"]["geodesic"] is False
    assert ("lte", "CLOUDY_PIXEL_PERCENTAGE", 60.0) in prop_filters(g)
    (link,) = calls(g, "Image.linkCollection")
    assert link["linkedBands"] == ["cs_cdf"]
    (mask,) = calls(g, "Image.updateMask")
    cmp = mask["mask"]
    assert cmp["fn"] == "Image.gte" and cmp["args"]["image1"]["args"]["bandSelectors"] == ["cs_cdf"]
    assert cmp["args"]["image2"]["args"]["value"] == 0.65, "clear where cs_cdf >= threshold"
    assert ["B2", "B3", "B4", "B8"] in [a["bandSelectors"] for a in calls(g, "Image.select")]
    assert [a["mode"] for a in calls(g, "Image.resample")] == ["bilinear"]
    assert "reduce.median" in fn_names(g) and g["fn"] == "Image.toUint16"
    (unmask,) = calls(g, "Image.unmask")
    assert unmask["value"]["args"]["value"] == 0
    # map order: link -> mask -> select -> resample, then the median
    maps = [m["baseAlgorithm"]["body"]["fn"] for m in calls(g, "Collection.map")]
    assert maps == ["Image.resample", "Image.select", "Image.updateMask", "Image.linkCollection"]


def test_sentinel2_l2a_s2cloudless_composite(live):
    spec = sentinel2_spec("2021-06-01", "2021-06-01", ["B2", "B11"], level="L2A", cloud_mask="s2cloudless", max_scene_cloud=30)
    g = graph(live.request_image(spec, GRID))
    assert loaded(g) == {"COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S2_CLOUD_PROBABILITY"}
    assert date_range(g) == ("2021-06-01", "2021-06-02"), "a single-day range is one day, not empty"
    assert ("lte", "CLOUDY_PIXEL_PERCENTAGE", 30.0) in prop_filters(g)
    (mask,) = calls(g, "Image.updateMask")
    assert mask["mask"]["fn"] == "Image.lt" and mask["mask"]["args"]["image1"]["args"]["bandSelectors"] == ["probability"]
    assert mask["mask"]["args"]["image2"]["args"]["value"] == 40.0


@pytest.mark.parametrize("orbit", ["ASCENDING", "DESCENDING"])
def test_sentinel1_vv_vh_by_orbit(live, orbit):
    g = graph(live.request_image(sentinel1_spec("2021-06-01", "2021-08-31", orbit=orbit), GRID))
    assert loaded(g) == {"COPERNICUS/S1_GRD"} and date_range(g) == ("2021-06-01", "2021-09-01")
    f = prop_filters(g)
    assert ("Filter.equals", "instrumentMode", "IW") in f and ("Filter.equals", "orbitProperties_pass", orbit) in f
    assert {("Filter.listContains", "transmitterReceiverPolarisation", p) for p in ("VV", "VH")} <= f
    assert ["VV", "VH"] in [a["bandSelectors"] for a in calls(g, "Image.select")]
    assert "reduce.median" in fn_names(g) and not calls(g, "Image.updateMask")
    assert calls(g, "Image.unmask")[0]["value"]["args"]["value"] == FLOAT_SENTINEL and g["fn"] == "Image.toFloat"


def test_dynamic_world_mode_and_worldcover(live):
    dw = graph(live.request_image(dynamic_world_spec("2021-06-01", "2021-08-31"), GRID))
    assert loaded(dw) == {"GOOGLE/DYNAMICWORLD/V1"} and "reduce.mode" in fn_names(dw)
    assert ["label"] in [a["bandSelectors"] for a in calls(dw, "Image.select")]
    assert not calls(dw, "Image.resample"), "class labels keep nearest-neighbour resampling"
    assert calls(dw, "Image.unmask")[0]["value"]["args"]["value"] == 255 and dw["fn"] == "Image.toUint8"
    wc = graph(live.request_image(worldcover_spec(), GRID))
    assert loaded(wc) == {"ESA/WorldCover/v200"} and "ImageCollection.mosaic" in fn_names(wc)
    assert not calls(wc, "DateRange") and calls(wc, "Filter.intersects")
    assert calls(wc, "Image.unmask")[0]["value"]["args"]["value"] == 0


def _npy(dtype_fields, h, w, fill):
    arr = np.zeros((h, w), dtype=dtype_fields)
    for name, value in fill.items():
        arr[name] = value
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue(), arr


def test_compute_pixels_request_body_and_nodata(live):
    raw = mock.MagicMock()
    data, arr = _npy([("VV", "<f4"), ("VH", "<f4")], GRID.height, GRID.width, {"VV": -12.5, "VH": -19.0})
    arr["VH"][0, 0] = FLOAT_SENTINEL
    buf = io.BytesIO()
    np.save(buf, arr)
    raw.projects().image().computePixels.return_value.execute.return_value = buf.getvalue()
    spec = sentinel1_spec("2021-06-01", "2021-08-31")
    with apitestcase.UsingCloudApi(cloud_api_resource_raw=raw):
        out = live.compute_pixels(spec, GRID)
    body = raw.projects().image().computePixels.call_args.kwargs["body"]
    assert body["fileFormat"] == "NPY" and body["bandIds"] == ["VV", "VH"]
    assert body["grid"] == {"dimensions": {"width": 64, "height": 48}, "crsCode": "EPSG:32633",
                            "affineTransform": {"scaleX": 10.0, "shearX": 0.0, "translateX": 330000.0, "shearY": 0.0,
                                                "scaleY": -10.0, "translateY": 5822040.0}}
    assert body["expression"] == ee.serializer.encode(live.request_image(spec, GRID), for_cloud_api=True)
    assert out.shape == (2, 48, 64) and out.dtype == np.float32 and out[0, 5, 5] == -12.5
    assert np.isnan(out[1, 0, 0]) and np.isfinite(out[1, 1:]).all(), "the -9999 fill arrives as NaN"


@pytest.mark.parametrize("kind,dest_key", [("gcs", "cloudStorageDestination"), ("drive", "driveDestination")])
def test_batch_export_declares_nodata_on_the_chip_grid(live, kind, dest_key):
    res = mock.MagicMock()
    res.projects().image().export.return_value.execute.return_value = {"name": "projects/my-project/operations/TASK42"}
    bodies = {}
    for spec, fill in ((sentinel2_spec("2021-06-01", "2021-08-31", ["B2", "B3"]), 0.0),
                       (sentinel1_spec("2021-06-01", "2021-08-31"), FLOAT_SENTINEL),
                       (dynamic_world_spec("2021-06-01", "2021-08-31"), 255.0)):
        with apitestcase.UsingCloudApi(cloud_api_resource=res):
            assert live.export(spec, GRID, f"pt1_{spec.bands[0]}", kind, "dest") == "TASK42"
        body = res.projects().image().export.call_args.kwargs["body"]
        bodies[spec.collection] = body
        opts = body["fileExportOptions"]
        assert opts["fileFormat"] == "GEO_TIFF" and opts["geoTiffOptions"]["noData"] == {"floatValue": fill}
        assert opts[dest_key]["bucket" if kind == "gcs" else "folder"] == "dest"
        assert body["maxPixels"] == {"value": str(64 * 48)}
        g = graph_from_encoded(body["expression"])
        rps = calls(g, "Image.reproject")
        assert rps and all(rp["crs"]["args"]["crs"] == "EPSG:32633" and rp["crsTransform"] == list(GRID.transform) for rp in rps)
        (clip,) = calls(g, "Image.clipToBoundsAndScale")
        assert clip["geometry"]["args"]["coordinates"] == [0, 0, 64, 48]
        assert calls(g, "Image.unmask")[0]["value"]["args"]["value"] == fill
    assert set(bodies) == {"COPERNICUS/S2_HARMONIZED", "COPERNICUS/S1_GRD", "GOOGLE/DYNAMICWORLD/V1"}


def test_empty_collection_is_reported_before_compositing(live, harness):
    ee.data.computeValue = harness.old_compute_value  # the real request path, to the mocked REST client
    res = mock.MagicMock()
    res.projects().value().compute().execute.return_value = {"result": 0}
    raw = mock.MagicMock()
    spec = sentinel2_spec("2021-06-01", "2021-06-01", ["B2"], cloud_threshold=0.7)
    with apitestcase.UsingCloudApi(cloud_api_resource=res, cloud_api_resource_raw=raw):
        with pytest.raises(EmptyCollectionError) as e:
            download(live, spec, GRID, sleep=lambda s: None)
    msg = str(e.value)
    assert "2021-06-01 and 2021-06-01" in msg and "inclusive" in msg
    assert "west 12." in msg and "north 52." in msg, "the AOI is named in lon/lat"
    assert "0.7" in msg and "60 %" in msg, "the cloud thresholds are named"
    assert not raw.projects().image().computePixels.called, "no pixels are requested for an empty collection"
    body = res.projects().value().compute.call_args.kwargs["body"]
    g = graph_from_encoded(body["expression"])
    assert g["fn"] == "Collection.size" and date_range(g) == ("2021-06-01", "2021-06-02")


def _error(status: int, message: str, grpc_status: str, reason: str | None = None) -> tuple[dict, bytes]:
    err = {"code": status, "message": message, "status": grpc_status}
    if reason:
        err["errors"] = [{"reason": reason, "message": message}]
    return {"status": str(status)}, json.dumps({"error": err}).encode()


REQUEST_SIZE = "Total request size (56623104 bytes) must be less than or equal to 50331648 bytes."


@pytest.mark.parametrize("response,expected", [
    (_error(400, REQUEST_SIZE, "INVALID_ARGUMENT"), "permanent"),
    (_error(404, "Image.load: Image asset 'x' not found (does not exist or caller does not have access).", "NOT_FOUND"), "permanent"),
    (_error(503, "The service is currently unavailable.", "UNAVAILABLE"), TransientError),
    (_error(429, "Too many concurrent aggregations.", "RESOURCE_EXHAUSTED"), TransientError),
    (_error(429, "Quota exceeded for quota metric 'Compute requests' of service earthengine.", "RESOURCE_EXHAUSTED",
            "quotaExceeded"), QuotaError),
    (_error(403, "Permission denied: the caller does not have permission.", "PERMISSION_DENIED"), PermissionDeniedError),
    (_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"), CredentialsError),
])
def test_errors_are_classified_by_http_status_and_reason(live, response, expected):
    ee.data.setMaxRetries(0)  # ee's own retries would replay the mocked response
    spec = sentinel2_spec("2021-06-01", "2021-08-31", ["B2"])
    with apitestcase.UsingCloudApi(mock_http=HttpMockSequence([response] * 10)):
        with pytest.raises(EarthEngineError) as e:
            live.compute_pixels(spec, GRID)
    if expected == "permanent":
        assert type(e.value) is EarthEngineError and "HTTP" in str(e.value)
    else:
        assert type(e.value) is expected


def test_request_size_error_is_permanent_and_not_retried(live):
    ee.data.setMaxRetries(0)
    tries = []
    original = live.compute_pixels

    def counting(spec, grid):
        tries.append(grid)
        return original(spec, grid)

    live.compute_pixels = counting
    live.count_images = lambda spec, grid: 12
    with apitestcase.UsingCloudApi(mock_http=HttpMockSequence([_error(400, REQUEST_SIZE, "INVALID_ARGUMENT")] * 10)):
        with pytest.raises(EarthEngineError, match="request size") as e:
            download(live, sentinel2_spec("2021-06-01", "2021-08-31", ["B2"]), GRID, sleep=lambda s: None)
    assert not isinstance(e.value, TransientError) and len(tries) == 1


def test_geemap_layers_for_the_map(live, harness):
    ee.data.getMapId = harness.old_get_map_id  # the real getMapId, to the mocked REST client
    res = mock.MagicMock()
    res.projects().maps().create().execute.return_value = {"name": "projects/my-project/maps/MAPID"}
    with apitestcase.UsingCloudApi(cloud_api_resource=res):
        layers = live.map_layers((12.55, 52.47, 12.62, 52.51), "2021-06-01", "2021-08-31", level="L2A", cloud_threshold=0.6)
    import folium

    assert len(layers) == 3 and all(isinstance(lyr, folium.raster_layers.TileLayer) for lyr in layers)
    assert all("maps/MAPID/tiles/{z}/{x}/{y}" in lyr.tiles for lyr in layers)
    assert "Sentinel-2 L2A" in layers[0].layer_name and "Dynamic World" in layers[1].layer_name
    bodies = [c.kwargs["body"] for c in res.projects().maps().create.call_args_list if "body" in c.kwargs]
    assert len(bodies) == 3
    s2 = graph_from_encoded(bodies[0]["expression"])
    assert "COPERNICUS/S2_SR_HARMONIZED" in loaded(s2) and date_range(s2) == ("2021-06-01", "2021-09-01")
    (vis,) = calls(s2, "Image.visualize")
    assert vis["bands"] == ["B4", "B3", "B2"] and vis["min"] == 0 and vis["max"] == 3000
    wc = graph_from_encoded(bodies[2]["expression"])
    (remap,) = calls(wc, "Image.remap")
    assert remap["from"][:2] == [10, 20] and remap["to"][:2] == [0, 1]


def _authorized_user(tmp_path):
    p = tmp_path / "application_default_credentials.json"
    p.write_text(json.dumps({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com", "client_secret": "s",
                             "refresh_token": "1//refresh", "quota_project_id": "adc-project"}))
    return p


def test_application_default_credentials_in_google_application_credentials(tmp_path, monkeypatch, harness):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(_authorized_user(tmp_path)))
    monkeypatch.delenv("EARTHENGINE_SERVICE_ACCOUNT_KEY", raising=False)
    monkeypatch.delenv("EARTHENGINE_PROJECT", raising=False)
    monkeypatch.setenv("EE_CONFIG_DIR", str(tmp_path / "none"))
    seen = {}
    monkeypatch.setattr(ee, "Initialize", lambda creds=None, project=None, **kw: seen.update(creds=creds, project=project))
    cfg = EarthEngineConfig.from_env()
    assert cfg.configured, cfg.problems()
    assert cfg.credentials_source.startswith("application-default credentials")
    LiveEarthEngine(cfg).initialize()
    import google.oauth2.credentials

    assert isinstance(seen["creds"], google.oauth2.credentials.Credentials)
    assert seen["creds"].refresh_token == "1//refresh" and seen["project"] == "adc-project"


def test_service_account_key_and_gcloud_adc_lookup(tmp_path, monkeypatch, harness):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key": "k",
                               "project_id": "sa-project"}))
    made = {}
    monkeypatch.setattr(ee, "ServiceAccountCredentials",
                        lambda email, key_file=None, key_data=None: made.setdefault("sa", (email, json.loads(key_data))))
    monkeypatch.setattr(ee, "Initialize", lambda creds=None, project=None, **kw: made.update(init=(creds, project)))
    LiveEarthEngine(EarthEngineConfig(service_account_key=str(key))).initialize()
    assert made["sa"][0] == "sa@p.iam.gserviceaccount.com" and made["init"][1] == "sa-project"
    # nothing configured but gcloud's application-default file: it is found
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    _authorized_user(gcloud)
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "EARTHENGINE_SERVICE_ACCOUNT_KEY", "EARTHENGINE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EE_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    assert EarthEngineConfig.from_env().configured
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "service_account"}')
    assert any("lacks client_email" in p for p in EarthEngineConfig(project="p", service_account_key=str(bad)).problems())
    with pytest.raises(CredentialsError, match="lacks client_email"):
        LiveEarthEngine(EarthEngineConfig(project="p", service_account_key=str(bad))).initialize()
