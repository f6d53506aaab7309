"""Export layout per figure type (no renderer): bands, tables, labels, statistics.

The drawn result (nothing cut off, nothing overlapping) is measured in Chromium by
``test_export_layout.py``; these tests pin the decisions that make it so, and check
the statistic an exported column figure carries against scipy on the panel's data.
"""

from __future__ import annotations

import re

import pytest
from scipy import stats as sps

from figures.export_fit import (
    CAPTION_LEGEND,
    HEADER_LEGEND,
    layout_panel,
    text_width,
    with_caption,
    wrap_px,
)
from figures.export_settings import resolve_size
from figures.reports import build_panels
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def demo_panels():
    from data.view import cohort_view

    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    return {
        page: {p.key: p for p in build_panels(page, view, {})}
        for page in ("overview", "nk-response", "cd8-states")
    }


def _band(fig: dict, legend: str) -> str:
    names = [t["name"] for t in fig["data"] if t.get("legend") == legend]
    return re.sub(r"<br>", " ", " ".join(names)).replace("&lt;", "<")


def test_wrap_keeps_every_line_within_the_width():
    text = "cutaneous melanoma, unresectable stage III or IV " * 3
    lines = wrap_px(text, 9.33, 120)
    assert len(lines) > 3
    assert all(text_width(line, 9.33) <= 120 for line in lines)
    assert " ".join(lines).split() == text.split()


@pytest.mark.parametrize("preset", ["single", "double"])
def test_column_presets_keep_mann_whitney_p_effect_and_n(demo_panels, preset):
    panel = demo_panels["nk-response"]["nk-box"]
    fig = layout_panel(panel, resolve_size(preset))
    assert fig["layout"]["title"]["text"] == ""  # the journal sets the title
    header = _band(fig, HEADER_LEGEND)
    table = panel.table
    resp = table.loc[table["response_group"] == "Responder", "value"]
    non = table.loc[table["response_group"] == "Non-responder", "value"]
    u, p = sps.mannwhitneyu(resp, non, alternative="two-sided")
    r = 1 - 2 * u / (len(resp) * len(non))  # > 0: lower in responders
    assert p < 1e-4 and "p < 0.0001" in header
    assert f"r = {r:.2f}" in header
    assert f"Responder n={len(resp)}" in header
    assert f"Non-responder n={len(non)}" in header


def test_column_preset_keeps_spearman_rho_and_n(demo_panels):
    panel = demo_panels["cd8-states"]["gate-nk"]
    header = _band(layout_panel(panel, resolve_size("single")), HEADER_LEGEND)
    data = panel.table.dropna(subset=["nk_lymphocytes", "gate_fraction"])
    rho, p = sps.spearmanr(data["nk_lymphocytes"], data["gate_fraction"])
    assert f"rho = {rho:.2f}" in header
    assert f"n = {len(data)}" in header
    assert p < 1e-4 and "p < 0.0001" in header


@pytest.mark.parametrize("key", ["nk-km-os", "nk-km-pfs"])
def test_column_preset_keeps_log_rank_and_hazard_ratio(demo_panels, key):
    header = _band(
        layout_panel(demo_panels["nk-response"][key], resolve_size("single")),
        HEADER_LEGEND,
    )
    assert "log-rank p" in header
    assert re.search(r"Cox HR per SD \d\.\d\d \(95% CI \d\.\d\d to \d\.\d\d\)", header)
    assert re.search(r"NK-low n=\d+, NK-high n=\d+", header)


def test_slide_keeps_the_title_in_its_band(demo_panels):
    panel = demo_panels["nk-response"]["nk-roc"]
    fig = layout_panel(panel, resolve_size("slide"))
    auc = panel.provenance["stats"]["auc"]["auc"]
    assert f"AUC = {auc:.2f}" in _band(fig, HEADER_LEGEND)


def test_single_column_logistic_table_keeps_every_row_and_the_formula(demo_panels):
    panel = demo_panels["nk-response"]["nk-logistic"]
    terms = panel.provenance["stats"]["logistic"]["terms"]
    size = resolve_size("single")
    fig = layout_panel(panel, size)
    # drawn as text cells (plotly's table scrolled the rows that did not fit)
    assert not any(t["type"] == "table" for t in fig["data"])
    first_column = [a for a in fig["layout"]["annotations"] if a["x"] == 0]
    assert first_column[0]["text"] == "<b>Term</b>"
    rows = [a["text"].replace("<br>", " ") for a in first_column[1:]]
    # every term of the model (the demo's 11 tumor types and 4 treatments: 14)
    assert len(rows) == len([t for t in terms if t["term"] != "Intercept"]) >= 8
    assert rows[-1].startswith("treatment:")
    header = _band(fig, HEADER_LEGEND)
    assert "response ~ z(metric) + tumor type + treatment" in header
    per_sd = next(t for t in terms if t["term"].startswith("z(metric)"))
    assert f"OR per SD of the metric {per_sd['odds_ratio']:.2f}" in header
    # every row fits above the canvas bottom, at a readable size
    assert min(a["y"] for a in first_column) > 0
    assert all(5 <= a["font"]["size"] <= size.font_px for a in first_column)


def test_caption_band_sits_under_the_legend_not_over_it(demo_panels):
    size = resolve_size("single")
    fig = layout_panel(demo_panels["nk-response"]["nk-km-os"], size)
    legend = fig["layout"]["legend"]
    assert (legend["yref"], legend["yanchor"], legend["y"]) == (
        "container",
        "bottom",
        0.0,
    )
    captioned = with_caption(fig, ["Dataset: demo. " * 30], size)
    band = captioned["layout"][CAPTION_LEGEND]
    assert (band["yref"], band["y"], band["yanchor"]) == ("container", 0.0, "bottom")
    # the figure's legend moved up by the footnote's height
    assert captioned["layout"]["legend"]["y"] > 0.05
    assert "Dataset: demo." in _band(captioned, CAPTION_LEGEND)
    # the bands' hidden subplot lies over the figure's: it must not hide the data
    assert captioned["layout"]["plot_bgcolor"] == "rgba(0,0,0,0)"


def test_48_patient_labels_rotate_and_thin_out_in_a_column(demo_panels):
    fig = layout_panel(demo_panels["cd8-states"]["composition"], resolve_size("single"))
    axis = fig["layout"]["xaxis"]
    assert axis["tickangle"] == -90
    assert 2 <= len(axis["tickvals"]) < 48
    assert axis["ticktext"] == [str(v) for v in axis["tickvals"]]


def test_column_figure_shortens_long_rotated_labels_and_keeps_the_full_names():
    import plotly.graph_objects as go

    from figures.panel import Panel

    names = [f"T{i:02d} carcinoma, advanced or metastatic, any line" for i in range(11)]
    figure = {
        "data": [{"type": "bar", "x": names, "y": list(range(11)), "name": "n"}],
        "layout": {"title": {"text": "Patients per tumor type"}},
    }
    panel = Panel(key="bars", title="bars", figure=go.Figure(figure))
    size = resolve_size("single")
    fig = layout_panel(panel, size)
    axis = fig["layout"]["xaxis"]
    # every category keeps a label (none thinned out), each on one line
    assert len(axis["ticktext"]) == len(names)
    assert all("<br>" not in t and t.endswith("…") for t in axis["ticktext"])
    # nothing is lost: the shortened labels map back to the full names
    full = fig["layout"]["meta"]["icb_shortened"]
    assert [full[t] for t in axis["ticktext"]] == names
