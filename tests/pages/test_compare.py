"""Page /compare: URL state, callbacks as functions, and one browser run of the
background job (progress, volcano, table, gene link)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from data.filters import CohortFilter
from data.view import cohort_view
from figures import de
from tests.conftest import DATA_DIR, component_text, free_port


def test_layout_reads_url_and_survives_odd_query():
    from pages import compare

    page = compare.layout(a="response:R", b="state:Naive/stem-like", min_cells="x",
                          covariates="cohort,bogus")  # fmt: skip
    stores = [c for c in page.children if getattr(c, "id", None) == compare.STATE]
    assert stores[0].data == {
        "a": "response:R",
        "b": "state:Naive/stem-like",
        "covariates": "cohort",
        "definition": "",
        "min_cells": "10",
    }
    assert "Compare cell sets" in component_text(page)


def test_state_round_trip_and_gene_link():
    from pages import compare

    state = compare.collect_state("gate", "not:gate", ["tumor_type"], 5, {})
    assert de.Comparison.from_mapping(state) == de.Comparison(
        a="gate", b="not:gate", covariates=("tumor_type",), min_cells=5
    )
    href = compare.cd8_gene_href("GZMB", {"dataset": "demo", "cohort": ["SYN-A"]})
    query = parse_qs(urlparse(href).query)
    assert urlparse(href).path == "/cd8-states"
    assert query == {
        "dataset": ["demo"],
        "cohort": ["SYN-A"],
        "color": ["gene"],
        "gene": ["GZMB"],
    }


def test_no_result_shows_what_to_do():
    from pages import compare

    volcano, caption, rows, _, summary = compare.show_result(None)
    assert "Run comparison" in volcano.layout.annotations[0].text
    assert rows == [] and caption == "" and summary == ""


def test_saved_set_round_trip(tmp_path):
    from data import cellsets_store

    cellsets_store.save_set(tmp_path, "my gate+", "gate")
    cellsets_store.save_set(tmp_path, "naive R", "response:R+state:Naive/stem-like")
    saved = cellsets_store.load_saved_sets(tmp_path)
    assert saved == {"my gate+": "gate", "naive R": "response:R+state:Naive/stem-like"}
    with pytest.raises(cellsets_store.SavedSetError, match="set name"):
        cellsets_store.save_set(tmp_path, "gate", "gate")
    (tmp_path / "cellsets.json").write_text("{not json")
    with pytest.raises(cellsets_store.SavedSetError, match="fix or delete"):
        cellsets_store.load_saved_sets(tmp_path)


@pytest.mark.browser
def test_run_in_background_shows_volcano_table_and_gene_link(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(
        dash_duo.server_url
        + "/compare?cohort=SYN-A&a=response:R&b=response:NR&min_cells=10"
    )
    dash_duo.wait_for_element("#compare-run", timeout=30).click()
    dash_duo.wait_for_contains_text("#compare-status", "Done", timeout=400)
    dash_duo.wait_for_contains_text("#compare-summary", "5 patients", timeout=30)
    title = dash_duo.driver.execute_script(
        "return document.getElementById('compare-volcano')"
        ".querySelector('.gtitle').textContent"
    )
    assert "responders vs non-responders" in title
    # the same comparison computed here (cached by its definition, or run afresh)
    view = cohort_view(
        CohortFilter(dataset="demo", cohort=("SYN-A",)),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    result, _ = de.cached_comparison(
        view, de.Comparison(a="response:R", b="response:NR")
    )
    assert f"{result.de.n_patients['A']} vs {result.de.n_patients['B']}" in title
    first = dash_duo.wait_for_element(
        "#compare-table .ag-row[row-index='0'] .ag-cell[col-id='gene']", timeout=30
    )
    assert first.text == result.de.table["gene"].iloc[0]
    first.click()
    link = dash_duo.wait_for_element("#compare-gene-link a", timeout=20)
    assert f"gene={first.text}" in link.get_attribute("href")
    assert "color=gene" in link.get_attribute("href")


def test_cd8_lasso_summary_links_to_compare(demo_bundle):
    from pages.cd8_states import selection_details

    lasso = {"lassoPoints": {"x": [10000, 40000, 25000], "y": [8000, 8000, 50000]}}
    out = selection_details(lasso, {"dataset": "demo"}, {})
    link = out[-1]
    assert link.href.startswith("/compare?dataset=demo&a=lasso%3A")
    assert "b=not%3Alasso%3A" in link.href
    box = {"range": {"x": [0, 30000], "y": [0, 30000]}}
    assert selection_details(box, {"dataset": "demo"}, {})[-1] is None
