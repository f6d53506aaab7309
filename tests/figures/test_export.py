"""Figure export: sizes, provenance in PNG/SVG/PDF, many points, concurrency.

Tests that render share this process's one Chromium (started once, ~3 s).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from pypdf import PdfReader

from figures import export, export_layout, export_render
from figures.export import ExportError, ExportSettings, read_provenance
from figures.panel import Panel
from tests.conftest import DATA_DIR, ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_browser = pytest.mark.skipif(
    export.browser_path() is None, reason="Chromium is not installed"
)


def _panel(key: str = "demo", title: str = "Demo figure", n: int = 3) -> Panel:
    fig = go.Figure(go.Bar(x=[f"group {i}" for i in range(n)], y=list(range(1, n + 1))))
    fig.update_layout(title=title)
    return Panel(
        key=key,
        title=title,
        figure=fig,
        caption="n=3 groups; test: none.",
        provenance={
            "dataset": "demo",
            "dataset_title": "Synthetic ICB demo cohort",
            "dataset_version": "1.0",
            "synthetic": True,
            "filters": "tumor type: melanoma",
            "metric": "NK / (NK + CD8)",
            "response_definition": "Objective response (CR/PR vs SD/PD)",
            "test": "Mann-Whitney U",
            "p_value": 0.0123,
            "n_per_group": {"Responder": 40, "Non-responder": 60},
        },
    )


# ------------------------------------------------------------------ pure parts


def test_publication_pixels_are_rounded_half_up():
    # 89 / 25.4 * 300 = 1051.18 -> 1051; 183 mm -> 2161.42 -> 2161; 67 mm -> 791.34
    assert export.mm_to_pixels(89, 300) == 1051
    assert export.mm_to_pixels(183, 300) == 2161
    assert export.mm_to_pixels(67, 300) == 791
    assert export.mm_to_pixels(25.4 * 10.5 / 300, 300) == 11  # 10.5 rounds up
    single = export.resolve_size("single")
    assert (single.pixel_width, single.pixel_height, single.dpi) == (1051, 791, 300)
    assert single.width * single.scale == pytest.approx(1051)
    assert single.width_mm == pytest.approx(89, abs=0.05)


@pytest.mark.parametrize(
    "values",
    [
        {"preset": "custom", "width": "wide", "height": 400},
        {"preset": "custom", "width": 50, "height": 400},
        {"preset": "custom", "width": 4000, "height": 4000, "scale": 10},
        {"preset": "poster"},
        {"format": "tiff"},
        {"points": "all"},
    ],
)
def test_bad_settings_are_export_errors(values):
    with pytest.raises(ExportError) as info:
        ExportSettings.from_mapping(values)
    assert "Fix:" in str(info.value)


def test_restyle_scales_fonts_unifies_family_white_background():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], mode="markers", marker_size=6))
    fig.update_layout(
        font_size=13,
        paper_bgcolor="#eee",
        annotations=[{"text": "p=0.01", "font": {"size": 10, "family": "Courier"}}],
    )
    slide = export.restyle(fig, export.resolve_size("slide"))
    layout = slide["layout"]
    assert layout["font"]["size"] == pytest.approx(26)  # 13 px on screen -> 26 px
    assert layout["annotations"][0]["font"] == {
        "size": pytest.approx(20),
        "family": export_layout.FONT_FAMILY,
    }
    assert slide["data"][0]["marker"]["size"] == pytest.approx(12)
    assert layout["paper_bgcolor"] == layout["plot_bgcolor"] == "white"
    assert (layout["width"], layout["height"]) == (1920, 1080)
    # the input is untouched
    assert fig.layout.annotations[0].font.size == 10


def _umap(n_a: int, n_b: int) -> go.Figure:
    rng = np.random.default_rng(1)
    fig = go.Figure()
    for name, n in (("state A", n_a), ("state B", n_b)):
        fig.add_scattergl(
            x=rng.normal(size=n), y=rng.normal(size=n), mode="markers", name=name
        )
    return fig


def test_sample_mode_is_stratified_and_seeded():
    fig = _umap(30_000, 10_000).to_dict()
    out, note = export.prepare_points(
        fig, fmt="svg", mode="sample", limit=4_000, seed=7
    )
    sizes = [len(export_layout.trace_array(t["x"])) for t in out["data"]]
    assert sizes == [3_000, 1_000]  # proportional: 3/4 and 1/4 of 4,000
    assert {t["type"] for t in out["data"]} == {"scatter"}
    assert "seed 7" in note and "4,000 of 40,000" in note
    again, _ = export.prepare_points(fig, fmt="svg", mode="sample", limit=4_000, seed=7)
    other, _ = export.prepare_points(fig, fmt="svg", mode="sample", limit=4_000, seed=8)
    first = export_layout.trace_array(out["data"][0]["x"])
    assert np.array_equal(first, export_layout.trace_array(again["data"][0]["x"]))
    assert not np.array_equal(first, export_layout.trace_array(other["data"][0]["x"]))
    # every kept point is one of the original points of its trace
    original = set(export_layout.trace_array(fig["data"][0]["x"]).tolist())
    assert set(first.tolist()) <= original


def test_sample_mode_stratifies_categorical_colours_within_a_trace():
    colours = np.array(["#111111"] * 900 + ["#222222"] * 100)
    fig = go.Figure(
        go.Scattergl(
            x=np.arange(1000.0), y=np.arange(1000.0), mode="markers",
            marker={"color": colours},
        )
    ).to_dict()  # fmt: skip
    out, _ = export.prepare_points(fig, fmt="pdf", mode="sample", limit=200, seed=0)
    kept = export_layout.trace_array(out["data"][0]["marker"]["color"]).astype(str)
    assert (kept == "#111111").sum() == 180 and (kept == "#222222").sum() == 20


def test_raster_mode_and_small_figures():
    fig = _umap(15_000, 10_000).to_dict()
    raster, note = export.prepare_points(
        fig, fmt="svg", mode="raster", limit=20_000, seed=0
    )
    assert {t["type"] for t in raster["data"]} == {"scattergl"}
    assert "raster layer" in note
    small, note = export.prepare_points(
        _umap(100, 50).to_dict(), fmt="pdf", mode="raster", limit=20_000, seed=0
    )
    assert {t["type"] for t in small["data"]} == {"scatter"}
    assert note.startswith("All 150 points")
    png, note = export.prepare_points(fig, fmt="png", mode="sample", limit=10, seed=0)
    assert png is fig and note == ""


def _sampled_umap(n: int, *, of: int | None = None, title: bool = True) -> dict:
    """A UMAP-like figure that says how many cells it draws, like the CD8 one."""
    fig = _umap(n // 2, n - n // 2)
    of = of or n
    text = f"showing all {n:,} cells" if of == n else f"showing {n:,} of {of:,} cells"
    if title:
        fig.update_layout(title=f"UMAP<br><sup>{text}</sup>")
    sampling = {"drawn": n, "of": of, "unit": "cells", "text": text}
    fig.update_layout(meta={"sampling": sampling})
    return fig.to_dict()


def _texts(fig: dict) -> list[str]:
    layout = fig["layout"]
    return [layout.get("title", {}).get("text") or ""] + [
        a["text"] for a in layout.get("annotations", [])
    ]


def test_a_sampled_export_says_n_of_m_cells_in_the_figure():
    fig = _sampled_umap(40_000)
    out, _ = export.prepare_points(fig, fmt="svg", mode="sample", limit=4_000, seed=1)
    title = out["layout"]["title"]["text"]
    assert "4,000 of 40,000 cells (seeded stratified sample)" in title
    assert "showing all" not in " ".join(_texts(out))
    assert out["layout"]["meta"]["sampling"]["drawn"] == 4_000
    # drawn whole (raster, PNG) the figure keeps its own words
    for fmt, mode in (("svg", "raster"), ("png", "sample")):
        same, _ = export.prepare_points(fig, fmt=fmt, mode=mode, limit=4_000, seed=1)
        assert _texts(same) == _texts(fig)
    # a preset without a title: the note is added, once, at the top left
    bare, _ = export.prepare_points(
        _sampled_umap(40_000, title=False), fmt="pdf", mode="sample", limit=400, seed=1
    )
    notes = [a for a in bare["layout"]["annotations"] if a.get("name")]
    assert [a["text"] for a in notes] == [
        "400 of 40,000 cells (seeded stratified sample)"
    ]
    assert (notes[0]["x"], notes[0]["xanchor"]) == (0, "left")


def test_a_screen_sample_keeps_its_total_through_the_export():
    # 20,000 cells drawn on screen out of 100,000: a 2,000-point export sample is
    # 2,000 of 100,000 cells; drawn whole it still says 20,000 of 100,000
    fig = _sampled_umap(20_000, of=100_000)
    out, _ = export.prepare_points(fig, fmt="svg", mode="sample", limit=2_000, seed=0)
    assert "2,000 of 100,000 cells (seeded stratified sample)" in _texts(out)[0]
    raster, _ = export.prepare_points(
        fig, fmt="svg", mode="raster", limit=2_000, seed=0
    )
    assert _texts(raster) == _texts(fig)  # "showing 20,000 of 100,000 cells"
    bare, _ = export.prepare_points(
        _sampled_umap(20_000, of=100_000, title=False),
        fmt="png", mode="raster", limit=2_000, seed=0,
    )  # fmt: skip
    assert "20,000 of 100,000 cells (seeded stratified sample)" in _texts(bare)


def test_view_hash_names_the_view_and_its_settings():
    svg = ExportSettings(format="svg")
    view = {"dataset": "demo", "filter": {"tumor_type": ["melanoma"]}, "pages": {}}
    other = dict(view, filter={"tumor_type": ["NSCLC"]})
    assert export.view_hash(view, svg) == export.view_hash(dict(view), svg)
    assert export.view_hash(view, svg) != export.view_hash(other, svg)
    assert export.view_hash(view, svg) != export.view_hash(
        view, ExportSettings(format="pdf")
    )
    documents = [
        export.settings_document(
            filter_state=flt, pages={"overview": {}}, export=svg, dataset="demo",
            created=created,
        )
        for flt, created in (
            ({"tumor_type": ["melanoma"]}, "2026-01-01"),
            ({"tumor_type": ["melanoma"]}, "2026-02-02"),
            ({"tumor_type": ["NSCLC"]}, "2026-01-01"),
        )
    ]  # fmt: skip
    names = [export.zip_name(d, "all-pages") for d in documents]
    assert names[0] == names[1] != names[2]
    assert names[0] == f"icb-demo-all-pages-svg-{documents[0]['view_hash']}.zip"


def test_export_all_tables_are_never_empty_and_progress_counts_panels(
    demo_bundle, monkeypatch
):
    from data.view import cohort_view
    from figures.reports import PAGE_BUILDERS

    # the figures themselves are rendered in the zip test below; here the tables
    def fake_figure(panel, settings, **_):
        return export.ExportedFile("x", b"figure", "image/png", {"panel": panel.key})

    monkeypatch.setattr(export, "export_figure", fake_figure)
    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    document = export.settings_document(
        filter_state={"dataset": "demo"},
        pages={page: {} for page in PAGE_BUILDERS},
        export=ExportSettings(format="svg"),
        dataset="demo",
    )
    files: dict[str, bytes] = {}
    steps: list[tuple] = []
    manifest = export.export_pages(
        view, document, files.__setitem__, progress=lambda *a: steps.append(a)
    )
    drawn = [e for e in manifest if e["figure"]]
    assert len(drawn) >= 14
    for entry in drawn:
        lines = files[entry["table"]].decode().strip().splitlines()
        assert len(lines) >= 2, f"{entry['table']} holds no rows"
    umap = files["cd8-states/umap.csv"].decode().splitlines()
    assert umap[0].startswith("cell_id,patient,cd8_state,umap_1,umap_2")
    assert len(umap) == 36_001  # every drawn cell of the demo
    assert files["cd8-states/markers.csv"].decode().startswith("marker,gene,rule")
    # progress: each page announced while building, then once per panel, rising
    building = [s for s in steps if s[1] == 0]
    assert [s[2] for s in building] == [f"building {p}" for p in PAGE_BUILDERS]
    counted = [s for s in steps if s[1] > 0]
    assert [s[0] for s in counted] == list(range(len(manifest) + 1))
    assert {s[1] for s in counted} == {len(manifest)}
    assert counted[-1][2] == "done"


# ------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def renderer():
    """Start this process's Chromium once for the module's rendering tests."""
    if export.browser_path() is None:
        pytest.skip("Chromium is not installed")
    export.render(go.Figure(), fmt="svg", width=200, height=200)
    yield


@pytest.mark.parametrize(
    ("preset", "size"),
    [("slide", (1920, 1080)), ("single", (1051, 791)), ("double", (2161, 1299))],
)
def test_png_has_signature_preset_size_and_provenance(renderer, preset, size):
    settings = ExportSettings(format="png", preset=preset, caption=True)
    out = export.export_figure(_panel(), settings, page="nk-response")
    assert out.content.startswith(PNG_SIGNATURE)
    assert out.filename == f"nk-response-demo-{out.provenance['view_hash']}.png"
    image = Image.open(io.BytesIO(out.content))
    assert image.size == size
    record = json.loads(image.text["icb:provenance"])
    assert record["dataset"] == "demo" and record["synthetic"] is True
    assert record["p_value"] == 0.0123
    assert record["n_per_group"] == {"Responder": 40, "Non-responder": 60}
    assert record["app_version"] == export.APP_VERSION
    assert record["export"]["preset"] == preset
    assert "Synthetic ICB demo cohort" in image.text["Description"]
    if preset != "slide":
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.5)


def test_custom_size_png(renderer):
    settings = ExportSettings(
        format="png", preset="custom", width=500, height=300, scale=2
    )
    out = export.export_figure(_panel(), settings)
    assert Image.open(io.BytesIO(out.content)).size == (1000, 600)


def test_health_reports_the_running_renderer(renderer):
    # the renderer lives in figures.export_render; the health check must see it there
    from components.health import renderer_status

    export.render(go.Figure(), fmt="png", width=100, height=100)
    assert export.renderer_running()
    assert renderer_status()["status"] == "ok"


def test_renderer_chromium_runs_at_lower_cpu_priority(renderer):
    """Exports must not starve other users' callbacks: Chromium is niced."""
    import psutil

    for _ in range(2):  # processes started during a render are reniced at the next
        export.render(go.Figure(go.Bar(x=[1], y=[1])), fmt="png", width=200, height=200)
    children = psutil.Process().children(recursive=True)
    browsers = [c for c in children if "chrom" in c.name().lower()]
    assert browsers, "no Chromium child process found"
    for process in browsers:
        for thread in process.threads():
            nice = os.getpriority(os.PRIO_PROCESS, thread.id)
            assert nice >= export_render.RENDER_NICENESS, (
                process.name(),
                thread.id,
                nice,
            )


def test_svg_parses_and_carries_provenance(renderer):
    settings = ExportSettings(format="svg", preset="single", caption=True)
    out = export.export_figure(_panel(), settings, page="nk-response")
    root = ET.fromstring(out.content)  # well-formed XML
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.get("width") == "89.00mm"
    desc = root.find("svg:desc", ns).text
    assert "Mann-Whitney U" in desc and "tumor type: melanoma" in desc
    assert read_provenance(out.content, "svg")["metric"] == "NK / (NK + CD8)"
    # the footnote is drawn in the figure
    assert "Synthetic ICB demo" in "".join(root.itertext())


def test_pdf_carries_provenance_in_document_info(renderer):
    settings = ExportSettings(format="pdf", preset="single")
    out = export.export_figure(_panel(), settings, page="nk-response")
    assert out.content.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(out.content))
    info = reader.metadata
    assert info.title == "Demo figure"
    assert "Mann-Whitney U" in info.subject
    record = json.loads(info["/ICBProvenance"])
    assert record["response_definition"].startswith("Objective response")
    width_pt = float(reader.pages[0].mediabox.width)
    assert width_pt == pytest.approx(89 / 25.4 * 72, abs=1.5)  # 89 mm


def test_many_points_svg_raster_or_sample(renderer):
    panel = Panel("umap", "UMAP", _umap(20_000, 5_000))
    raster = export.export_figure(
        panel, ExportSettings(format="svg", preset="single", points="raster")
    )
    assert b"<image" in raster.content  # the point layer is one embedded image
    assert b'class="point"' not in raster.content
    sample = export.export_figure(
        panel,
        ExportSettings(
            format="svg", preset="single", points="sample", max_vector_points=500
        ),
    )
    assert sample.content.count(b'class="point"') == 500
    note = read_provenance(sample.content, "svg")["export"]["points_note"]
    assert "500 of 25,000" in note
    # the figure itself says it is a sample (this one has no title of its own)
    text = "".join(ET.fromstring(sample.content).itertext())
    assert "500 of 25,000 points (seeded stratified sample)" in text
    pdf = export.export_figure(
        panel, ExportSettings(format="pdf", preset="single", points="raster")
    )
    width_pt = float(PdfReader(io.BytesIO(pdf.content)).pages[0].mediabox.width)
    assert width_pt == pytest.approx(89 / 25.4 * 72, abs=1.5)


def test_cd8_umap_svg_sample_says_how_many_cells_it_draws(renderer, demo_bundle):
    from data.view import cohort_view
    from figures.reports import build_panels

    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    umap = next(p for p in build_panels("cd8-states", view, {}) if p.key == "umap")
    assert "showing all 36,000 cells" in umap.figure.layout.title.text
    settings = ExportSettings(
        format="svg", preset="slide", points="sample", max_vector_points=1_000,
        caption=True,
    )  # fmt: skip
    out = export.export_figure(umap, settings, page="cd8-states")
    text = "".join(ET.fromstring(out.content).itertext())
    assert "1,000 of 36,000 cells (seeded stratified sample)" in text
    assert out.content.count(b'class="point"') == 1_000
    record = read_provenance(out.content, "svg")
    assert "all 36,000" not in record["caption"]  # the footnote agrees
    assert "1,000 of 36,000 cells" in record["caption"]


def test_file_names_differ_between_views_and_repeat_for_one(renderer, demo_bundle):
    from data.view import cohort_view
    from figures.reports import build_panels

    settings = ExportSettings(format="svg", preset="custom", width=600, height=400)
    named, plain = [], []
    for tumor in (["melanoma"], ["melanoma"], ["NSCLC"]):
        flt = {"dataset": "demo", "tumor_type": tumor}
        view = cohort_view(flt, data_dir=DATA_DIR, default_dataset="demo")
        panel = next(
            p for p in build_panels("overview", view, {}) if p.key == "response"
        )
        state = {"dataset": "demo", "filter": view.filter.to_dict(), "pages": {}}
        out = export.export_figure(panel, settings, page="overview", view_state=state)
        named.append(out.filename)
        # without a view state, the panel's provenance (filters included) names it
        plain.append(export.export_figure(panel, settings, page="overview").filename)
    for names in (named, plain):
        assert names[0] == names[1] != names[2]
        assert names[0].startswith("overview-response-") and names[0].endswith(".svg")


def test_eight_concurrent_exports_each_get_their_own_figure(renderer):
    results: dict[int, list] = {}

    def work(i: int) -> None:
        panel = _panel(key=f"panel-{i}", title=f"Figure number {i}", n=2 + i)
        out = []
        for fmt in ("svg", "png"):
            # a distinct size per thread: the PNG's pixels prove whose image it is
            settings = ExportSettings(
                format=fmt, preset="custom", width=300 + 10 * i, height=200
            )
            out.append(export.export_figure(panel, settings))
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert sorted(results) == list(range(8))
    for i, (svg, png) in results.items():
        assert read_provenance(svg.content, "svg")["panel"] == f"panel-{i}"
        assert read_provenance(png.content, "png")["panel"] == f"panel-{i}"
        text = "".join(ET.fromstring(svg.content).itertext())
        assert f"Figure number {i}" in text
        assert Image.open(io.BytesIO(png.content)).size == (300 + 10 * i, 200)


def test_export_all_zip_lists_figures_tables_and_settings(renderer, demo_bundle):
    from config import get_settings
    from data.view import cohort_view

    flt = {"dataset": "demo", "tumor_type": ["melanoma"]}
    view = cohort_view(flt, data_dir=DATA_DIR, default_dataset="demo")
    document = export.settings_document(
        filter_state=flt,
        pages={"overview": {}},
        export=ExportSettings(format="svg", preset="slide"),
        dataset="demo",
    )
    steps = []
    data = export.export_zip(view, document, progress=lambda *a: steps.append(a))
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == [
        "manifest.json",
        "overview/composition.csv",
        "overview/composition.svg",
        "overview/patients.csv",
        "overview/response.csv",
        "overview/response.svg",
        "settings.json",
    ]
    archive = zipfile.ZipFile(io.BytesIO(data))
    saved = json.loads(archive.read("settings.json"))
    assert saved["filter"] == flt and saved["pages"] == {"overview": {}}
    record = read_provenance(archive.read("overview/response.svg"), "svg")
    assert record["filters"] == "tumor type: melanoma"
    assert steps[-1][:2] == (3, 3)
    assert get_settings() is not None


def test_missing_chromium_is_a_clear_message(tmp_path):
    script = (
        "from figures import export\n"
        "from figures.export import RendererUnavailable\n"
        "import plotly.graph_objects as go\n"
        "try:\n"
        "    export.render(go.Figure(), fmt='png', width=100, height=100)\n"
        "except RendererUnavailable as err:\n"
        "    print('MESSAGE', err)\n"
    )
    env = dict(os.environ, BROWSER_PATH=str(tmp_path / "no-such-chromium"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "MESSAGE" in result.stdout
    assert "no-such-chromium" in result.stdout
    assert "apt-get install chromium" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_size_too_small_for_the_figure_says_so(renderer, demo_bundle):
    """300 x 200 px leaves the overview's response bars no plot height once the
    title band and legend have their room: plotly's 'axis scaling' error becomes
    a message that names the size and the fix (issue 13: the layout does not yet
    shrink its bands to fit any custom size)."""
    from data.view import cohort_view
    from figures.reports import build_panels

    flt = {"dataset": "demo", "tumor_type": ["melanoma"]}
    view = cohort_view(flt, data_dir=DATA_DIR, default_dataset="demo")
    panel = next(p for p in build_panels("overview", view, {}) if p.key == "response")
    settings = ExportSettings(format="svg", preset="custom", width=300, height=200)
    with pytest.raises(ExportError, match="leaves no room for the plot"):
        export.export_figure(panel, settings, page="overview")
