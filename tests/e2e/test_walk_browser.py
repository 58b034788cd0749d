"""End to end in headless Chromium (issue 19): a shared link to Compare, opened in a fresh session, runs the
model on a small AOI of a sample scene; then every page in the sidebar is walked and must show nothing stale
or unreadable.

On each page the visible text (main area) may not hold: a caption or alert naming another sample scene than
the one analysed (on the pages that show the analysis), ``None``, a Python repr (``{'``, a list of floats,
``<... object at 0x...>``), a float with more than 4 decimals, a traceback; and no table (``st.dataframe``
or ``st.table``) may be wider than its box (columns cut off at the right).

With ``LULC_SCREENSHOTS=1`` a full-page screenshot of each page, 1400 px wide, is written to
``docs/screenshots/<page>.png`` (kept under about 400 kB: quantised to 256 colours, or the viewport only);
otherwise to ``artifacts/walk/``.
"""

from __future__ import annotations

import io
import os
import re

from core.config import REPO_ROOT, data_dir
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, pytestmark, server  # noqa: F401  (fixture and skip mark)

SCENE = "brandenburg-2017-02-16"
BBOX = "12.56,52.465,12.633,52.51"  # about 25 km² of Berlin's south-east
LINK = f"/compare?scene={SCENE}&bbox={BBOX}&model=models/default&reference=dw"
SHOWS_ANALYSIS = {"explore", "compare", "correct", "metrics", "accuracy", "export"}
MAX_PNG = 400_000

PROBLEMS = {
    "None": re.compile(r"\bNone\b"),
    "dict repr": re.compile(r"\{'"),
    "list of floats": re.compile(r"\[\s*-?\d+\.\d+\s*,\s*-?\d+\.\d+"),
    "object repr": re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"),
    "float with > 4 decimals": re.compile(r"(?<![\d.])\d+\.\d{5,}(?![\d.])"),
    "traceback": re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+"),
}

# the visible texts that are not the page's own words: captions, alerts, markdown, metrics, tables rendered as HTML
_TEXT_JS = """() => {
  const main = document.querySelector("[data-testid='stMain']") || document.body;
  const pick = (sel) => Array.from(main.querySelectorAll(sel)).filter(e => e.offsetParent !== null).map(e => e.innerText);
  return {
    all: main.innerText,
    notes: pick("[data-testid='stCaptionContainer'], [data-testid='stAlert'], [data-testid='stMarkdownContainer']"),
  };
}"""

# width of every table's content against its box; glide-data-grid scrolls inside .dvn-scroller
_TABLES_JS = """() => Array.from(document.querySelectorAll(
    "[data-testid='stMain'] [data-testid='stDataFrame'], [data-testid='stMain'] [data-testid='stTable']"))
  .filter(e => e.offsetParent !== null)
  .map(e => {
    const box = e.querySelector('.dvn-scroller') || e.querySelector('table')?.parentElement || e;
    return {kind: e.dataset.testid, scroll: box.scrollWidth, client: box.clientWidth,
            text: Array.from(e.querySelectorAll('th, td, [role=columnheader], [role=gridcell]')).map(c => c.textContent).join(' | ')};
  })"""


_HEIGHT_JS = """() => Math.max(...["[data-testid='stMain']", "[data-testid='stAppViewContainer']", "[data-testid='stMainBlockContainer']"]
  .map(q => document.querySelector(q)).filter(Boolean).map(e => e.scrollHeight), document.body.scrollHeight) + 40"""


def _settle(page, timeout: int = 240_000) -> None:
    """Wait until the script run started by the last action has finished and the page has drawn."""
    page.wait_for_timeout(600)
    page.wait_for_function("() => document.querySelector(\"[data-testid='stApp']\")?.dataset.testScriptState === 'notRunning'",
                           timeout=timeout)
    page.wait_for_timeout(1200)


def _screenshot(page, name: str) -> None:
    from PIL import Image

    out = REPO_ROOT / "docs" / "screenshots" if os.environ.get("LULC_SCREENSHOTS") == "1" else ARTIFACTS / "walk"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    size = page.viewport_size
    # Streamlit scrolls inside its own container, so a "full page" screenshot needs a viewport as tall as the content
    for full in (True, False):
        if full:
            height = size["height"]
            for _ in range(4):  # a taller viewport can lay the page out taller again (charts, maps): grow until it fits
                tall = min(page.evaluate(_HEIGHT_JS), 8000)
                if tall <= height:
                    break
                height = tall
                page.set_viewport_size({"width": size["width"], "height": height})
                page.wait_for_timeout(1500)
        img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        page.set_viewport_size(size)
        buf = io.BytesIO()
        img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        if buf.tell() <= MAX_PNG or not full:
            path.write_bytes(buf.getvalue())
            page.wait_for_timeout(500)
            return


def _problems(page, name: str, other_scenes: list[str]) -> list[str]:
    texts = page.evaluate(_TEXT_JS)
    found = []
    for what, rx in PROBLEMS.items():
        m = rx.search(texts["all"])
        if m:
            found.append(f"{name}: {what} {texts['all'][max(0, m.start() - 40):m.end() + 20]!r}")
    if name in SHOWS_ANALYSIS:
        for note in texts["notes"]:
            stale = [s for s in other_scenes if s in note]
            if stale:
                found.append(f"{name}: stale caption naming {stale[0]}: {note[:100]!r}")
    tables = page.evaluate(_TABLES_JS)
    if any(t["scroll"] > t["client"] + 2 for t in tables):  # a grid still laying out measures narrow: measure again
        page.wait_for_timeout(3000)
        again = page.evaluate(_TABLES_JS)
        tables = again if len(again) == len(tables) else tables
    for i, t in enumerate(tables):
        head = t["text"][:80]
        if t["scroll"] > t["client"] + 2:
            found.append(f"{name}: table {i + 1} ({t['kind']}) cut off ({t['scroll']} px of content in {t['client']} px): {head!r}")
        for what, rx in PROBLEMS.items():  # the cells (glide-data-grid keeps the visible ones in an accessible DOM table)
            m = rx.search(t["text"])
            if m:
                found.append(f"{name}: table {i + 1} shows {what} {t['text'][max(0, m.start() - 40):m.end() + 20]!r}")
    return found


def test_a_link_runs_the_model_then_every_page_is_current_and_readable(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from core.sources.samples import list_scenes

    others = [s.id for s in list_scenes(data_dir()) if s.id != SCENE]
    problems, cells = [], 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                                    "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)  # a loaded machine draws slowly
        page.goto(server + LINK, timeout=180_000, wait_until="domcontentloaded")
        page.get_by_text("This link opens").wait_for(timeout=120_000)  # a fresh session: the link's selection, not yet run
        assert SCENE in page.locator("[data-testid='stAlert']").first.inner_text()
        page.get_by_role("button", name="Run model").click()
        page.locator("[data-testid='stImage'] img").nth(4).wait_for(timeout=300_000)  # the Compare panels of the run
        _settle(page)
        assert f"scene={SCENE}" in page.url and "bbox=" in page.url  # the address bar reopens this analysis

        nav = page.locator("[data-testid='stSidebarNav'] a")
        nav.first.wait_for()
        names = [nav.nth(i).get_attribute("href").split("?")[0].rstrip("/").rsplit("/", 1)[-1] for i in range(nav.count())]
        names = ["explore" if n in ("", "127.0.0.1") or n.startswith("127.0.0.1:") else n for n in names]
        assert {"explore", "compare", "metrics", "accuracy", "change", "export", "train", "models"} <= set(names), names
        for i, name in enumerate(names):
            page.locator("[data-testid='stSidebarNav'] a").nth(i).click()
            _settle(page)
            if name == "change":  # the page's own analysis: two dates of Dynamic World labels (no model run needed)
                page.get_by_test_id("stRadioGroup").get_by_text("Dynamic World labels").click()
                _settle(page)
                page.get_by_role("button", name="Compute change").click()
                page.get_by_text("Changed share").wait_for(timeout=300_000)
                _settle(page)
            if name in SHOWS_ANALYSIS - {"explore"}:
                assert f"scene={SCENE}" in page.url, (name, page.url)  # the link follows the user
            problems += _problems(page, name, others)
            cells += sum(len(t["text"]) for t in page.evaluate(_TABLES_JS))
            _screenshot(page, name)
        browser.close()
    assert cells, "no table cell text found: the cell checks would see nothing"
    assert not problems, "\n".join(problems)
