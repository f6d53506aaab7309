"""Every CD8-page link reproduces its view (issue 12, item 3).

Each URL key is set to each value the demo allows; the URL is opened in a fresh
browser state and the controls, the URL the page writes back and the numbers shown
are compared with the server-side build of the same state. Unknown values show a
notice in the reader's words and the URL is rewritten to what is shown.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from analysis.nk_metrics import available_metrics
from analysis.response import available_definitions
from figures import cd8
from tests.conftest import free_port

GRAPHS = {
    "umap": "cd8-states-umap",
    "gate-box": "cd8-states-box",
    "gate-nk": "cd8-states-nk",
    "sensitivity": "cd8-states-sensitivity",
}
MODIFIED_GATE = "CD69.gt.0.5~BCL2.gt.0~EOMES.gt.0~GZMB.gt.0~HAVCR2.le.0~TNFRSF18.le.0"


def _view():
    from config import get_settings
    from data.view import cohort_view

    settings = get_settings()
    return cohort_view(
        {"dataset": "demo"}, data_dir=settings.data_dir, default_dataset="demo"
    )


def _expected(state: dict) -> tuple[dict, dict, int]:
    """Server side: the parsed state, the panel titles and the cells in the gate."""
    from data.cells import cell_store

    view = _view()
    store = cell_store(view.bundle)
    page = cd8.parse_state(state, samples=view.samples, genes=store.var_names)
    panels = {p.key: p for p in cd8.cd8_panels(view, state)}
    titles = {key: panels[key].figure.layout.title.text or "" for key in GRAPHS}
    data = cd8.cached_cell_data(view, page)
    return page.to_dict(), titles, cd8.evaluate(data, page).n_in


def _link_states() -> list[dict]:
    """Each key at each allowed demo value (several keys per link)."""
    view = _view()
    metrics = [m.key for m in available_metrics(view.samples)]
    definitions = available_definitions(view.samples)
    colors = list(cd8.COLOR_CHOICES)
    states = []
    for i, color in enumerate(colors):
        state = {
            "color": color,
            "metric": metrics[i % len(metrics)],
            "definition": definitions[i % len(definitions)],
        }
        states.append(state)
    states[0].update(gate=MODIFIED_GATE, gate_name="my CD69-high gate")
    states[1].update(gene="CD69")  # colour by gene, a gene other than the default
    states[2].update(highlight="SYN-A|P012")
    states[3].update(accept_missing="1", gate=MODIFIED_GATE)
    # spelled differently (case): honoured, and the URL shows the data's spelling
    states.append({"color": "Gene", "gene": "cd69", "metric": "NK_over_NK_CD8"})
    return states


def _fresh_open(dash_duo, query: dict) -> None:
    driver = dash_duo.driver
    driver.get(dash_duo.server_url + "/")
    driver.delete_all_cookies()
    driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    driver.get(dash_duo.server_url + "/cd8-states?" + urlencode(query))


def _title(dash_duo, graph_id: str) -> str:
    return dash_duo.driver.execute_script(
        "const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "if (!el || !el.layout || !el.layout.title) return '';"
        "return el.layout.title.text || '';",
        graph_id,
    )


def _url_state(dash_duo) -> dict:
    query = parse_qs(urlparse(dash_duo.driver.current_url).query)
    return {key: query.get(key, [""])[0] for key in cd8.PageState().to_dict()}


def _text(dash_duo, selector: str) -> str:
    elements = dash_duo.driver.find_elements("css selector", selector)
    return elements[0].text if elements else ""


@pytest.mark.browser
def test_every_page_key_round_trips_through_a_fresh_browser(dash_duo, demo_bundle):
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    view = _view()
    metric_labels = {m.key: m.label for m in available_metrics(view.samples)}
    for state in _link_states():
        want_url, titles, n_in = _expected(state)
        _fresh_open(dash_duo, state)

        def shown_matches(want_url=want_url, titles=titles, n_in=n_in):
            return (
                _url_state(dash_duo) == want_url
                and _text(dash_duo, "#cd8-states-gate-n") == f"{n_in:,}"
                and all(_title(dash_duo, g) == titles[k] for k, g in GRAPHS.items())
            )

        try:
            until(shown_matches, timeout=90, poll=1)
        except Exception:  # say which part differs
            assert _url_state(dash_duo) == want_url, state
            assert _text(dash_duo, "#cd8-states-gate-n") == f"{n_in:,}", state
            for key, graph in GRAPHS.items():
                assert _title(dash_duo, graph) == titles[key], (state, key)
            raise
        # the link asked only for what the page can show: no notice
        assert not dash_duo.driver.find_elements("css selector", ".link-notice")
        # controls show the link's values, in the reader's words
        shown = want_url  # the canonical spelling of what the link asked for
        assert _text(dash_duo, "#cd8-states-color") == cd8.COLOR_CHOICES[shown["color"]]
        assert _text(dash_duo, "#cd8-states-metric") == metric_labels[shown["metric"]]
        assert _text(dash_duo, "#cd8-states-definition") == (
            cd8.DEFINITIONS[shown["definition"]].label
        )
        if "gene" in state:
            assert _text(dash_duo, "#cd8-states-gene").startswith(shown["gene"])
        if "gate" in state:
            cd69 = dash_duo.find_element(
                'input[id*="cd8-states-threshold"][id*="CD69"]'
            )
            assert float(cd69.get_attribute("value")) == 0.5
        if "gate_name" in state:
            name = dash_duo.find_element("#cd8-states-gate-name")
            assert name.get_attribute("value") == state["gate_name"]
        if "accept_missing" in state:
            box = dash_duo.find_element("#cd8-states-accept-missing")
            assert box.is_selected()
        if "highlight" in state:
            assert "Cells of patient P012 (SYN-A)" in _title(dash_duo, GRAPHS["umap"])
            clear = dash_duo.find_element("#cd8-states-clear-highlight")
            assert clear.is_displayed()
            clear.click()  # "Clear highlight" takes the patient out of the URL
            until(lambda: _url_state(dash_duo)["highlight"] == "", timeout=30)
            until(
                lambda: "Cells of patient" not in _title(dash_duo, "cd8-states-umap"),
                30,
            )


@pytest.mark.browser
def test_metric_and_definition_of_the_link_are_the_ones_shown(dash_duo, demo_bundle):
    """The link of the issue: it opened with NK among lymphocytes and objective
    response (Dash 4's Dropdown dropped a value it had no option for yet)."""
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    _fresh_open(dash_duo, {"metric": "nk_over_nk_cd8", "definition": "benefit"})
    until(lambda: _url_state(dash_duo)["gate"] != "", timeout=60)
    until(lambda: _text(dash_duo, "#cd8-states-metric") == "NK / (NK + CD8)", 30)
    assert _text(dash_duo, "#cd8-states-definition") == (
        "Clinical benefit (CR/PR/SD vs PD)"
    )
    until(lambda: "NK / (NK + CD8)" in _title(dash_duo, GRAPHS["gate-nk"]) or
          "rho" in _title(dash_duo, GRAPHS["gate-nk"]), 30)  # fmt: skip
    state = _url_state(dash_duo)
    assert state["metric"] == "nk_over_nk_cd8" and state["definition"] == "benefit"


@pytest.mark.browser
def test_unknown_link_values_are_named_and_the_url_shows_what_is_shown(
    dash_duo, demo_bundle
):
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    asked = {
        "metric": "foo",
        "color": "purple",
        "gene": "NOTAGENE",
        "definition": "nope",
        "gate": "NOTAGENE.gt.0~CD69.gt.0",
        "highlight": "SYN-A|nobody",
    }
    _fresh_open(dash_duo, asked)
    dash_duo.wait_for_element(".link-notice", timeout=60)
    until(lambda: _url_state(dash_duo)["metric"] == "nk_lymphocytes", timeout=60)
    notice = _text(dash_duo, ".link-notice")
    for words in (
        "NK metric “foo”",
        "showing NK among lymphocytes",
        "Colour cells by “purple”",
        "showing Differentiation state",
        "Gene “NOTAGENE”",
        "showing GZMB",
        "Response definition “nope”",
        "showing Objective response",
        "Phenotype gate “NOTAGENE”",
        "Highlighted patient “SYN-A|nobody”",
        "showing no highlighted patient",
    ):
        assert words in notice, words
    url = _url_state(dash_duo)
    assert url["color"] == "state" and url["gene"] == "GZMB"
    assert url["definition"] == "objective" and url["highlight"] == ""
    # the gate is shown as asked, its missing marker flagged, and the URL keeps it
    assert url["gate"] == "NOTAGENE.gt.0~CD69.gt.0"
    until(lambda: "not in data" in _text(dash_duo, "#cd8-states-gate-rows"), 30)
    assert _text(dash_duo, "#cd8-states-metric").startswith("NK among lymphocytes")


@pytest.mark.browser
def test_a_clicked_patient_goes_into_the_link_and_comes_back(dash_duo, demo_bundle):
    from dash.testing.wait import until
    from selenium.webdriver.common.action_chains import ActionChains

    import app

    dash_duo.start_server(app.app, port=free_port())
    _fresh_open(dash_duo, {})
    until(lambda: "rho" in _title(dash_duo, GRAPHS["gate-nk"]), timeout=90)
    point = dash_duo.driver.find_elements("css selector", "#cd8-states-nk path.point")[
        0
    ]
    dash_duo.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'});", point
    )
    ActionChains(dash_duo.driver).move_to_element(point).pause(0.5).click().perform()
    until(lambda: _url_state(dash_duo)["highlight"] != "", timeout=30)
    clicked = _url_state(dash_duo)
    cohort, patient = clicked["highlight"].split("|")
    label = f"Cells of patient {patient} ({cohort})"
    until(lambda: label in _title(dash_duo, GRAPHS["umap"]), timeout=30)
    # the link, opened afresh, shows the same patient
    _fresh_open(dash_duo, {k: v for k, v in clicked.items() if v})
    until(lambda: label in _title(dash_duo, GRAPHS["umap"]), timeout=90)
    assert _url_state(dash_duo)["highlight"] == clicked["highlight"]
