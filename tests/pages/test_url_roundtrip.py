"""Every link reproduces its view: the sidebar's global keys on every page (browser).

Each URL is opened with a full page load (no state survives one: the filter lives in
the address bar and in-memory Stores only). The expected controls and numbers are
computed here from the data functions, independently of the page callbacks.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from data.filters import QUERY_KEYS, CohortFilter, apply_filter, filter_options
from tests.conftest import free_port

FIELDS = ("tumor_type", "treatment", "cohort", "timepoint", "response")
PAGES = ("/", "/nk-response", "/cd8-states", "/data")
NOTICE = "#shell-link-notice"


def _cases(cohort) -> list[tuple[dict, dict]]:
    """(query asked for, filter expected) pairs: each value of each key, and more."""
    options = filter_options(cohort)
    cases = [({"dataset": ["demo"]}, {"dataset": "demo"})]
    for field in FIELDS:
        cases += [({field: [v]}, {field: [v]}) for v in options[field]]
    multi = {
        "dataset": ["demo"],
        "tumor_type": ["melanoma", "NSCLC"],
        "treatment": ["anti-PD-1", "anti-PD-1 + anti-CTLA-4"],
        "response": ["CR", "PR"],
    }
    cases.append((multi, multi))
    # values match ignoring case; the URL is rewritten to the dataset's spelling
    cases.append(
        (
            {"dataset": ["DEMO"], "tumor_type": ["Melanoma"], "timepoint": ["PRE"]},
            {"dataset": "demo", "tumor_type": ["melanoma"], "timepoint": ["pre"]},
        )
    )
    return cases


def _expected_filter(expected: dict) -> CohortFilter:
    return CohortFilter.from_mapping({"dataset": "demo", **expected})


def _dropdown_value(dash_duo, component_id: str):
    return dash_duo.driver.execute_script(
        "const c = window.dash_component_api.getLayout(arguments[0]);"
        "return c && c.props ? (c.props.value === undefined ? null : c.props.value)"
        " : null;",
        component_id,
    )


def _sidebar(dash_duo) -> dict:
    values = {"dataset": _dropdown_value(dash_duo, "shell-filter-dataset")}
    for field in FIELDS:
        values[field] = list(_dropdown_value(dash_duo, f"shell-filter-{field}") or [])
    return values


def _global_query(url: str) -> dict[str, list[str]]:
    parsed = parse_qs(urlsplit(url).query)
    return {k: v for k, v in parsed.items() if k in QUERY_KEYS}


def _wait(dash_duo, condition, timeout: float = 60, message: str = ""):
    last = {}

    def check(_driver):
        try:
            last["value"] = condition()
        except Exception as err:  # the page may be re-rendering
            last["value"] = repr(err)
            return False
        return last["value"] is True

    try:
        WebDriverWait(dash_duo.driver, timeout, poll_frequency=0.2).until(check)
    except Exception:
        pytest.fail(f"{message}: last seen {last.get('value')!r}")


def _page_number(page: str, flt: CohortFilter, demo_bundle):
    """(css selector, text the page must show) for the filter, or None."""
    samples = apply_filter(demo_bundle.cohort, flt)
    if page == "/":
        patients = len(samples[["cohort", "patient_id"]].drop_duplicates())
        return "#overview-patients", f"{patients:,}", "equal"
    if page == "/nk-response":
        from analysis.nk_response import analyze_nk_response

        result = analyze_nk_response(samples, {})
        if result.empty_message:
            return "#nk-response-summary", result.empty_message, "contains"
        n = result.to_dict()["n_patients"]
        return (
            "#nk-response-summary",
            f"{n} patient{'s' if n != 1 else ''} analysed",
            "contains",
        )
    if page == "/cd8-states":
        from data.cells import cells_per_sample

        cells = cells_per_sample(demo_bundle)
        n_cells = int(samples["sample_id"].map(cells).fillna(0).sum())
        if n_cells == 0:
            return None
        text = f"of {n_cells:,} filtered CD8 cells"
        return "#cd8-states-gate-count", text, "contains"
    return None  # /data lists datasets: no number depends on the filter


def _text_of(dash_duo, selector: str) -> str:
    found = dash_duo.driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_global_filter_keys_round_trip_on_every_page(dash_duo, demo_bundle, page):
    import app

    dash_duo.start_server(app.app, port=free_port())
    for asked, expected in _cases(demo_bundle.cohort):
        url = dash_duo.server_url + page + "?" + urlencode(asked, doseq=True)
        dash_duo.driver.get(url)
        flt = _expected_filter(expected)
        want_sidebar = {"dataset": flt.dataset}
        want_sidebar.update({f: list(getattr(flt, f)) for f in FIELDS})
        _wait(
            dash_duo,
            lambda w=want_sidebar: _sidebar(dash_duo) == w or _sidebar(dash_duo),
            message=f"{url}: sidebar controls",
        )
        want_query = {k: v for k, v in flt.to_dict().items() if v}
        want_query = {
            k: [v] if isinstance(v, str) else list(v) for k, v in want_query.items()
        }
        _wait(
            dash_duo,
            lambda q=want_query: (
                _global_query(dash_duo.driver.current_url) == q
                or dash_duo.driver.current_url
            ),
            message=f"{url}: address bar rewritten to the view shown",
        )
        number = _page_number(page, flt, demo_bundle)
        if number is not None:
            selector, text, how = number
            _wait(
                dash_duo,
                lambda s=selector, t=text, h=how: (
                    (
                        (_text_of(dash_duo, s) == t)
                        if h == "equal"
                        else (t in _text_of(dash_duo, s))
                    )
                    or _text_of(dash_duo, s)
                ),
                message=f"{url}: {selector} should show {text!r}",
            )
        assert _text_of(dash_duo, NOTICE) == "", f"{url}: unexpected link notice"
