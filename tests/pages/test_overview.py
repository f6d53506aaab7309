"""Overview page: the callback as a function, and in a real browser."""

from __future__ import annotations

import pytest

from data.filters import CohortFilter
from tests.conftest import component_text, find_component, free_port


def _store(**fields) -> dict:
    return CohortFilter.from_mapping({"dataset": "demo", **fields}).to_dict()


def test_overview_counts_follow_filter(demo_bundle):
    from pages.overview import update_overview

    cohort = demo_bundle.cohort
    expected = cohort[cohort["tumor_type"] == "RCC"][["cohort", "patient_id"]]
    out = update_overview(_store(tumor_type=["RCC"]))
    assert out[0] == f"{len(expected.drop_duplicates()):,}"
    composition = out[4].to_dict()
    assert all("RCC" in str(x) for trace in composition["data"] for x in trace["x"])
    assert (
        f"n={len(expected.drop_duplicates())} patients"
        in composition["layout"]["title"]["text"]
    )


def test_overview_empty_state(demo_bundle):
    from pages.overview import update_overview

    out = update_overview(_store(tumor_type=["RCC"], treatment=["anti-CTLA-4"]))
    assert out[0] == "0"
    content_hidden, empty_hidden = out[8], out[9]
    assert content_hidden is True and empty_hidden is False


OUT = {
    name: i
    for i, name in enumerate(
        (
            *("patients", "samples", "cells", "cohorts", "composition", "response"),
            *("columns", "rows", "content", "empty", "note", "metric_options"),
            *("metric", "definition_options", "definition", "state", "notice"),
            "table_note",
        )
    )
}


def _hand_nk_lymphocytes(cohort, cohort_id, patient_id) -> float:
    """NK / (NK + CD8 + CD4 + B) of the means of the patient's pre samples."""
    rows = cohort[
        (cohort["cohort"] == cohort_id)
        & (cohort["patient_id"] == patient_id)
        & (cohort["timepoint"] == "pre")
    ]
    means = rows[["frac_nk", "frac_cd8", "frac_cd4", "frac_b"]].mean()
    return means["frac_nk"] / means.sum()


def test_overview_table_pins_keys_and_adds_nk_response_gate(demo_bundle):
    from pages.overview import GATE_HEADER, update_overview

    out = update_overview(_store())
    columns = {c["field"]: c for c in out[OUT["columns"]]}
    assert [c["field"] for c in out[OUT["columns"]] if c.get("pinned") == "left"] == [
        "cohort",
        "patient_id",
    ]
    # defaults are the NK page's: NK among lymphocytes, objective response
    assert out[OUT["state"]] == {"metric": "nk_lymphocytes", "definition": "objective"}
    assert columns["nk_value"]["headerName"] == (
        "NK among lymphocytes, NK / (NK + CD8 + CD4 + B), pre-treatment"
    )
    assert columns["response_group"]["headerName"] == (
        "Response: Objective response (CR/PR vs SD/PD)"
    )
    assert columns["gate_pct"]["headerName"] == GATE_HEADER
    assert GATE_HEADER == "% of CD8 cells in the Song et al. gate"
    assert "n_in_gate" in columns and "n_cells" in columns
    # the earlier columns are still there
    assert {"recist", "os_months", "frac_nk_pre", "frac_cd8_pre"} <= set(columns)
    rows = {r["key"]: r for r in out[OUT["rows"]]}
    cohort = demo_bundle.cohort
    first = cohort[cohort["timepoint"] == "pre"].iloc[0]
    key = f"{first['cohort']}|{first['patient_id']}"
    assert rows[key]["nk_value"] == pytest.approx(
        _hand_nk_lymphocytes(cohort, first["cohort"], first["patient_id"])
    )
    recist = first["recist"]
    expected = {"CR": "Responder", "PR": "Responder", "SD": "Non-responder"}.get(
        recist, "Non-responder" if recist == "PD" else "not evaluable"
    )
    assert rows[key]["response_group"] == expected
    assert "n=" in out[OUT["table_note"]]
    assert out[OUT["notice"]] is None


def test_overview_metric_and_definition_controls(demo_bundle):
    from pages.overview import update_overview

    out = update_overview(_store(), "frac_nk", "benefit", {})
    columns = {c["field"]: c for c in out[OUT["columns"]]}
    assert columns["nk_value"]["headerName"] == (
        "NK cells, fraction of CD45+ cells, pre-treatment"
    )
    assert columns["response_group"]["headerName"] == (
        "Response: Clinical benefit (CR/PR/SD vs PD)"
    )
    assert out[OUT["state"]] == {"metric": "frac_nk", "definition": "benefit"}
    cohort = demo_bundle.cohort
    sd = cohort[(cohort["recist"] == "SD") & (cohort["timepoint"] == "pre")].iloc[0]
    rows = {r["key"]: r for r in out[OUT["rows"]]}
    key = f"{sd['cohort']}|{sd['patient_id']}"
    assert rows[key]["response_group"] == "Responder"  # SD counts as benefit
    pre = cohort[
        (cohort["cohort"] == sd["cohort"])
        & (cohort["patient_id"] == sd["patient_id"])
        & (cohort["timepoint"] == "pre")
    ]
    assert rows[key]["nk_value"] == pytest.approx(pre["frac_nk"].mean())


def test_overview_link_with_unknown_values_shows_notice(demo_bundle):
    from pages.overview import update_overview

    # the dropdowns have no options yet: the values come from the link
    out = update_overview(_store(), None, None, {"metric": "foo", "definition": "nope"})
    text = component_text(out[OUT["notice"]])
    assert "NK metric “foo”" in text and "metric=foo" in text
    assert "showing NK among lymphocytes, NK / (NK + CD8 + CD4 + B) instead" in text
    assert "response definition “nope”" in text and "definition=nope" in text
    assert "showing Objective response (CR/PR vs SD/PD) instead" in text
    assert out[OUT["metric"]] == "nk_lymphocytes"
    assert out[OUT["definition"]] == "objective"
    # a valid link value is honoured without a notice
    out = update_overview(_store(), None, None, {"metric": "log2_nk_cd8"})
    assert out[OUT["notice"]] is None and out[OUT["metric"]] == "log2_nk_cd8"


def test_open_patient_panel_callback(demo_bundle):
    from urllib.parse import parse_qs, urlsplit

    from pages.overview import open_patient, update_overview

    store = _store(tumor_type=["melanoma"])
    out = update_overview(store)
    row = next(r for r in out[OUT["rows"]] if r["n_cells"])
    clicked = {"rowId": row["key"], "colId": "tumor_type", "rowIndex": 0}
    body, title, is_open = open_patient(clicked, store, out[OUT["state"]])
    assert is_open is True
    assert title == f"Patient {row['patient_id']} ({row['cohort']})"
    text = component_text(body)
    assert row["tumor_type"] in text and row["treatment"] in text
    assert f"{row['gate_pct']:.1f}% " in text
    assert f"{row['n_in_gate']} of {row['n_cells']} cells" in text
    assert f"n = {row['n_cells']} CD8 cells" in text
    # one NK row per timepoint, the pre-treatment value equals the table's
    nk = component_text(find_component(body, "overview-nk"))
    assert f"{row['nk_value']:.3g}" in nk
    assert "NK / (NK + CD8) (ratio, 0-1)" in nk
    link = find_component(body, "overview-cd8-link")
    url = urlsplit(link.href)
    assert url.path == "/cd8-states"
    query = parse_qs(url.query)
    assert query["highlight"] == [row["key"]]
    assert "%7C" in url.query  # the | is URL-encoded
    assert query["tumor_type"] == ["melanoma"] and query["dataset"] == ["demo"]
    assert query["metric"] == ["nk_lymphocytes"]


def test_state_mix_in_panel_counts_the_patients_cells(demo_bundle):
    from data.cells import cell_store
    from pages.overview import open_patient, update_overview

    store = _store()
    out = update_overview(store)
    row = next(r for r in out[OUT["rows"]] if r["n_cells"])
    clicked = {"rowId": row["key"], "colId": "cohort", "rowIndex": 0}
    body, _title, _open = open_patient(clicked, store, out[OUT["state"]])
    obs = cell_store(demo_bundle).obs
    cohort = demo_bundle.cohort
    samples = cohort[
        (cohort["cohort"] == row["cohort"])
        & (cohort["patient_id"] == row["patient_id"])
    ]["sample_id"]
    own = obs[obs["sample_id"].astype(str).isin(samples)]
    counts = own["cd8_state"].astype(str).value_counts()
    states = component_text(find_component(body, "overview-states"))
    for state, n in counts.items():
        assert f"{state} {n} {100 * n / len(own):.1f}" in states


def _n_patients(cohort) -> str:
    return str(len(cohort[["cohort", "patient_id"]].drop_duplicates()))


@pytest.mark.browser
def test_overview_filter_changes_counts_in_browser(dash_duo, demo_bundle):
    import app

    cohort = demo_bundle.cohort
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.wait_for_text_to_equal(
        "#overview-patients", _n_patients(cohort), timeout=30
    )
    dash_duo.select_dcc_dropdown("#shell-filter-tumor_type", value="RCC")
    rcc = _n_patients(cohort[cohort["tumor_type"] == "RCC"])
    dash_duo.wait_for_text_to_equal("#overview-patients", rcc, timeout=20)
    dash_duo.wait_for_contains_text("#overview-composition", "RCC", timeout=20)
    assert "tumor_type=RCC" in dash_duo.driver.current_url


@pytest.mark.browser
def test_overview_restores_filter_from_url(dash_duo, demo_bundle):
    import app

    cohort = demo_bundle.cohort
    melanoma = cohort[
        (cohort["tumor_type"] == "melanoma") & (cohort["cohort"] == "SYN-A")
    ]
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/?tumor_type=melanoma&cohort=SYN-A")
    dash_duo.wait_for_text_to_equal(
        "#overview-patients", _n_patients(melanoma), timeout=30
    )
    dash_duo.wait_for_contains_text("#shell-filter-tumor_type", "melanoma", timeout=10)


def _blend_on_white(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of a CSS rgb()/rgba() on white."""
    parts = [float(x) for x in css_color[css_color.index("(") + 1 : -1].split(",")]
    r, g, b = parts[:3]
    alpha = parts[3] if len(parts) == 4 else 1.0
    rgb = [alpha * c + (1 - alpha) * 255 for c in (r, g, b)]
    return (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255


@pytest.mark.browser
def test_every_page_link_is_readable_in_navbar(dash_duo, demo_bundle):
    """Each page's link is visible (dark text on the white bar), not only the active."""
    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.wait_for_element(".shell-nav a.nav-link", timeout=30)
    links = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('.shell-nav a.nav-link'))"
        ".map(a => [a.textContent, a.className, getComputedStyle(a).color])"
    )
    names = [name for name, _cls, _color in links]
    assert {"Cohort overview", "NK vs response", "CD8 states", "Data"} <= set(names)
    for name, cls, color in links:
        if "active" not in cls:  # the active pill is white on blue
            assert _blend_on_white(color) < 0.6, (name, color)


@pytest.mark.browser
def test_clicking_a_patient_opens_its_panel_in_browser(dash_duo, demo_bundle):
    """Click a row: the panel shows that patient's values and the UMAP link."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import app
    from pages.overview import update_overview

    store = _store(tumor_type=["melanoma"])
    out = update_overview(store, "nk_over_nk_cd8", "benefit", {})
    row = next(r for r in out[OUT["rows"]] if r["n_cells"])
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(
        dash_duo.server_url
        + "/?dataset=demo&tumor_type=melanoma&metric=nk_over_nk_cd8&definition=benefit"
    )
    dash_duo.wait_for_element("#overview-table .ag-row", timeout=30)
    # the controls read the link, and the NK column says which metric it shows
    dash_duo.wait_for_contains_text("#overview-metric", "NK / (NK + CD8)", timeout=20)
    dash_duo.wait_for_contains_text(
        "#overview-table", "NK / (NK + CD8), pre-treatment", timeout=20
    )
    dash_duo.find_element("#overview-search").send_keys(row["patient_id"])
    matching = sum(r["patient_id"] == row["patient_id"] for r in out[OUT["rows"]])
    rows_shown = "#overview-table .ag-center-cols-container .ag-row"
    WebDriverWait(dash_duo.driver, 20).until(
        lambda driver: (
            len(driver.find_elements(By.CSS_SELECTOR, rows_shown)) == matching
        )
    )
    target = f'{rows_shown}[row-id="{row["key"]}"] .ag-cell[col-id="tumor_type"]'

    def click_row(driver) -> bool:
        # the grid re-positions rows as the search applies: retry until it settles
        try:
            cell = driver.find_element(By.CSS_SELECTOR, target)
            driver.execute_script(
                "arguments[0].scrollIntoView({block: 'center'});", cell
            )
            cell.click()
            return True
        except (ElementClickInterceptedException, StaleElementReferenceException):
            return False
        except NoSuchElementException:
            return False

    WebDriverWait(dash_duo.driver, 20, poll_frequency=0.3).until(click_row)
    dash_duo.wait_for_contains_text(
        "#overview-patient-panel",
        f"Patient {row['patient_id']} ({row['cohort']})",
        timeout=20,
    )
    dash_duo.wait_for_contains_text(
        "#overview-gate",
        f"{row['gate_pct']:.1f}% of the patient's CD8 cells",
        timeout=10,
    )
    assert (
        f"{row['n_in_gate']} of {row['n_cells']} cells"
        in dash_duo.find_element("#overview-gate").text
    )
    clinical = dash_duo.find_element("#overview-clinical").text
    assert row["treatment"] in clinical and "Clinical benefit" in clinical
    nk = dash_duo.find_element("#overview-nk").text
    assert f"{row['nk_value']:.3g}" in nk
    href = dash_duo.find_element("#overview-cd8-link").get_attribute("href")
    assert "/cd8-states?highlight=" + row["key"].replace("|", "%7C") in href
    assert "tumor_type=melanoma" in href and "dataset=demo" in href
    # closed and clicked again, the same patient's panel opens again
    dash_duo.find_element("#overview-patient-panel .btn-close").click()
    dash_duo.wait_for_no_elements("#overview-patient-panel.show", timeout=10)
    WebDriverWait(dash_duo.driver, 20, poll_frequency=0.3).until(click_row)
    dash_duo.wait_for_element("#overview-patient-panel.show #overview-gate", timeout=10)
    # the page state is in the address bar, so the link reproduces the table
    url = dash_duo.driver.current_url
    assert "metric=nk_over_nk_cd8" in url and "definition=benefit" in url


def test_unknown_dataset_is_a_message_not_a_traceback(demo_bundle):
    from pages.overview import open_patient, update_overview

    store = CohortFilter.from_mapping({"dataset": "nope"}).to_dict()
    out = update_overview(store)
    assert "cannot be used" in component_text(out[OUT["notice"]])
    assert out[OUT["content"]] is True
    body, _title, is_open = open_patient({"rowId": "A|P1"}, store, {})
    assert is_open and "cannot be used" in component_text(body)


def _fresh_visit(dash_duo, url: str) -> None:
    """Open ``url`` as a new visitor would: nothing remembered from the last page."""
    driver = dash_duo.driver
    driver.get("about:blank")
    driver.delete_all_cookies()
    driver.get(dash_duo.server_url + "/")
    driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    driver.get(dash_duo.server_url + url)


def test_every_metric_key_sets_the_control(demo_bundle):
    """Every NK metric of the demo (bulk estimator scores included) taken from a
    link is the one the control shows, with no notice; the browser test above
    visits one metric per kind."""
    from analysis.nk_metrics import available_metrics
    from pages.overview import update_overview

    for metric in available_metrics(demo_bundle.cohort):
        out = update_overview(_store(), metric.key, None, {})
        assert out[OUT["metric"]] == metric.key, metric.key
        assert not out[OUT["notice"]], metric.key


@pytest.mark.browser
def test_every_overview_key_round_trips_in_a_fresh_browser(dash_duo, demo_bundle):
    """metric and definition, each allowed value: the controls, the table's note
    (n per response group, patients with a value) and the address bar agree with
    the callback computed server-side for the same link."""
    from selenium.webdriver.support.ui import WebDriverWait

    import app
    from analysis.nk_metrics import available_metrics
    from analysis.response import DEFINITIONS, available_definitions
    from pages.overview import update_overview

    cohort = demo_bundle.cohort
    metrics = available_metrics(cohort)
    # the demo's bulk estimator scores (score_*) share one code path: the browser
    # visits the first; test_every_metric_key_sets_the_control covers all of them
    scores = [m for m in metrics if m.kind == "score"]
    metrics = [m for m in metrics if m.kind != "score"] + scores[:1]
    links = [("metric", m.key, m.label) for m in metrics]
    links += [
        ("definition", d, DEFINITIONS[d].label) for d in available_definitions(cohort)
    ]
    dash_duo.start_server(app.app, port=free_port())
    for key, value, label in links:
        out = update_overview(_store(), *(
            (value, None) if key == "metric" else (None, value)
        ), {})  # fmt: skip
        expected_note = component_text(out[OUT["table_note"]])
        _fresh_visit(dash_duo, f"/?dataset=demo&{key}={value}")
        dash_duo.wait_for_contains_text(f"#overview-{key}", label, timeout=30)
        dash_duo.wait_for_contains_text(
            "#overview-table-note", expected_note[:80], timeout=30
        )
        shown = dash_duo.find_element("#overview-table-note").text
        assert " ".join(shown.split()) == " ".join(expected_note.split()), (key, value)
        WebDriverWait(dash_duo.driver, 20).until(
            lambda driver, k=key, v=value: f"{k}={v}" in driver.current_url
        )
        assert not dash_duo.driver.find_elements("css selector", ".link-notice")


def test_nk_column_shows_three_significant_digits_with_trailing_zeros(demo_bundle):
    from pages.overview import update_overview

    out = update_overview(_store(), None, None, {})
    column = next(c for c in out[OUT["columns"]] if c.get("field") == "nk_value")
    # d3-format: '.3g' keeps trailing zeros (0.0300); '.3~g' would print 0.03
    assert "d3.format('.3g')" in column["valueFormatter"]["function"]
