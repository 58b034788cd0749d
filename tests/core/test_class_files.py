"""Class schemes from files (lc.json, CSV, QGIS .qml) and a card's own scheme (issue 18)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from core.class_files import parse_color, read_scheme_file
from core.classes import SCHEMES, get_scheme, register_scheme, scheme_of
from core.errors import LulcError, SchemeError

QML = """<!DOCTYPE qgis><qgis><pipe><rasterrenderer type="paletted" band="1"><colorPalette>
<paletteEntry value="10" color="#006400" label="Forest" alpha="255"/>
<paletteEntry value="20" color="#ffbb22" label="Shrub land" alpha="255"/>
</colorPalette></rasterrenderer></pipe></qgis>"""


def test_lc_json(tmp_path):
    p = tmp_path / "lc.json"
    p.write_text(json.dumps({"values": [1, 2, 3], "label": ["forest", "grass", "water"], "palette": ["397d49", "#88b053", "#419bdf"]}))
    s = read_scheme_file(p)
    assert s.name == "lc" and s.ids == [1, 2, 3] and s.names == ["forest", "grass", "water"]
    assert s.colors[0] == "#397d49" and s.ignore_index == 0


def test_csv_and_ignore_row(tmp_path):
    p = tmp_path / "classes.csv"
    p.write_text("id,name,color\n# comment\n10,Built up,#fa0000\n20,Water,\"0,100,200\"\n255,nodata,#000000\n")
    s = read_scheme_file(p)
    assert s.ids == [10, 20] and s.names == ["built_up", "water"] and s.colors[1] == "#0064c8" and s.ignore_index == 255


def test_qml(tmp_path):
    p = tmp_path / "style.qml"
    p.write_text(QML)
    s = read_scheme_file(p)
    assert s.ids == [10, 20] and s.names == ["forest", "shrub_land"]


@pytest.mark.parametrize("text, words", [
    ("id,name,color\n1,a,#ff0000\n1,b,#00ff00\n", ["line 3", "used twice"]),
    ("id,name,color\n1,a,#ff0000\n2,b,notacolour\n", ["line 3", "notacolour"]),
    ("id,name\n1,a\n", ["line 1", "color"]),
    ("id,name,color\nx,a,#ff0000\n", ["line 2", "whole number"]),
])
def test_bad_csv_names_the_line(tmp_path, text, words):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(SchemeError) as e:
        read_scheme_file(p)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_bad_json_names_the_field(tmp_path):
    p = tmp_path / "lc.json"
    p.write_text(json.dumps({"values": [1, 2], "label": ["a"], "palette": ["#ff0000", "#00ff00"]}))
    with pytest.raises(LulcError, match="'label' has 1 entries"):
        read_scheme_file(p)
    p.write_text('{"values": [1,\n 2,]}')
    with pytest.raises(SchemeError, match="line 2"):
        read_scheme_file(p)
    p.write_text(json.dumps({"values": [1], "label": ["a"], "palette": ["#ff0000"], "ignore": 1}))
    with pytest.raises(SchemeError, match="ignore value 1"):
        read_scheme_file(p)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(SchemeError, match="must be .json"):
        read_scheme_file(tmp_path / "x.txt")


def test_parse_color():
    assert parse_color("#abc", "x") == "#aabbcc" and parse_color("255,0,0,255", "x") == "#ff0000"


def test_scheme_of_card_registers_its_own_scheme(tmp_path):
    p = tmp_path / "my_classes.json"
    p.write_text(json.dumps({"values": [1, 2], "label": ["a", "b"], "palette": ["#ff0000", "#00ff00"]}))
    s = read_scheme_file(p)
    card = SimpleNamespace(classes=s.to_dict())
    SCHEMES.pop("my_classes", None)
    assert scheme_of(card) == s and get_scheme("my_classes") == s
    assert scheme_of(SimpleNamespace(classes=get_scheme("dynamic_world").to_dict())).name == "dynamic_world"
    with pytest.raises(SchemeError, match="built-in"):
        register_scheme(read_scheme_file(p, name="dynamic_world"))
    SCHEMES.pop("my_classes", None)


def test_wales_class_file():
    from core.config import data_dir

    p = data_dir() / "extra" / "wales-aberystwyth-2021-05-27" / "labels_rsgislib.json"
    if not p.exists():
        pytest.skip("sample pack v3 not present")
    s = read_scheme_file(p)
    assert s.names == ["forest", "grass", "urban", "water"] and s.ignore_index == 0
