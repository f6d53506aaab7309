"""/evidence: the callback as a function (same numbers as the CLI), its figures,
the literature cards, and one browser test."""

from __future__ import annotations

import json

import pytest

import cli
from tests.conftest import DATA_DIR, component_text, free_port


@pytest.fixture(scope="module")
def page(demo_dir):
    import app  # noqa: F401 - registers the pages
    from pages import evidence

    return evidence


def test_page_numbers_equal_cli_numbers(page, capsys):
    out = page.compute_page({}, ["demo"], "nk_lymphocytes", "objective", "pre",
                            "tumor_type")  # fmt: skip
    code = cli.main(["--data-dir", str(DATA_DIR), "evidence", "--datasets", "demo",
                     "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    forest = out["figure:evidence-forest"].to_dict()
    # the REML-HK diamond sits at the CLI's pooled r
    diamonds = [t for t in forest["data"] if t["marker"]["symbol"] == "diamond"]
    xs = [float(x) for x in _values(diamonds[0]["x"])]
    assert xs[0] == pytest.approx(report["pooled"]["dl"]["r"], abs=1e-12)
    assert xs[1] == pytest.approx(report["pooled"]["reml_hk"]["r"], abs=1e-12)
    # every cohort's r on the figure is the CLI's
    squares = next(t for t in forest["data"] if t["marker"]["symbol"] == "square")
    rs = sorted(float(x) for x in _values(squares["x"]))
    assert rs == pytest.approx(sorted(c["r"] for c in report["cohorts"]), abs=1e-12)
    assert out["summary"] == report["direction"]
    assert out["state"]["datasets"] == "demo"
    assert "11 cohorts" in out["summary"]


def _values(data):
    import base64

    import numpy as np

    if isinstance(data, dict):  # plotly's typed-array form
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return data


def test_page_panels_state_their_choices(page):
    out = page.compute_page({}, ["demo"], "frac_nk", "reported", "pre",
                            "treatment_class")  # fmt: skip
    title = out["figure:evidence-forest"].layout.title.text
    assert "by treatment class" in title and "SYNTHETIC" in title
    assert "Subgroup differences by treatment class" in title
    assert "Egger" in out["figure:evidence-funnel"].layout.title.text
    spec = out["figure:evidence-multiverse"].layout.title.text
    assert "Of 1" in spec and "specifications" in spec
    adjusted = out["figure:evidence-adjusted"].layout.title.text
    assert "Adjusted for CD8" in adjusted and "frac_cd8" in adjusted


def test_global_filter_applies_across_datasets(page):
    out = page.compute_page({"tumor_type": ["melanoma"]}, ["demo"], "nk_lymphocytes",
                            "objective", "pre", "tumor_type")  # fmt: skip
    assert "2 cohorts" in out["summary"]


def test_no_dataset_and_unknown_metric(page):
    out = page.compute_page({}, [], None, "objective", "pre", "tumor_type")
    assert "No dataset chosen" in component_text(out["summary"])
    out = page.compute_page({}, ["demo"], "score_nothing", "objective", "pre",
                            "tumor_type")  # fmt: skip
    assert out["metric"] == "nk_lymphocytes"


def test_literature_cards_have_direction_and_only_read_dois(page):
    text = component_text(page.literature_cards())
    for study in ("Song", "Pozniak", "Barry", "Lee", "Cursons"):
        assert study in text
    assert "10.1038/s41591-018-0085-8" in text
    assert "check before citing" in text
    dois = [item["doi"] for item in page.LITERATURE if item["doi"]]
    assert all(d.startswith("10.") for d in dois) and len(dois) == 2


def test_layout_reads_state_from_url(page):
    from tests.conftest import find_component

    tree = page.layout(datasets="demo,nope", metric="frac_nk", group_by="x")
    text = component_text(tree)
    assert "nope" in text and "showing demo instead" in text
    # the metric menu has its options at once, so the URL's metric is not dropped
    metric = find_component(tree, page.METRIC)
    assert metric.value == "frac_nk"
    assert "frac_nk" in [o["value"] for o in metric.options]


@pytest.mark.browser
def test_evidence_page_in_browser(dash_duo, page):
    import app as app_module

    dash_duo.start_server(app_module.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/evidence?group_by=treatment_class")
    dash_duo.wait_for_contains_text(f"#{page.SUMMARY}", "Pooled over", timeout=60)
    forest = f"#{page.CARDS['evidence-forest'][0]} .gtitle"
    dash_duo.wait_for_contains_text(forest, "by treatment class", timeout=30)
    # change a control: the forest regroups and the URL keeps the choice
    dash_duo.find_element(f"#{page.GROUP_BY} input[value='tumor_type']").click()
    dash_duo.wait_for_contains_text(forest, "by tumor type", timeout=60)
    assert "group_by=tumor_type" in dash_duo.driver.current_url
    assert "Published findings" in dash_duo.find_element("#evidence-literature").text
