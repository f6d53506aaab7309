"""Every link reproduces its view: the sidebar's global keys on every page (browser).

Each URL is opened as in a fresh browser: cookies and web storage are cleared, then
the page is loaded in full (the app keeps no other client state: the filter lives in
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


def _open_fresh(dash_duo, url: str) -> None:
    """Load ``url`` with nothing left from earlier pages (cookies, web storage)."""
    driver = dash_duo.driver
    driver.delete_all_cookies()
    if driver.current_url.startswith("http"):
        driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(url)


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
        _open_fresh(dash_duo, url)
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


def _nav_click(dash_duo, name: str) -> None:
    link = dash_duo.driver.find_element(By.LINK_TEXT, name)
    link.click()


def _path_and_query(url: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(url)
    return parts.path, parse_qs(parts.query)


@pytest.mark.browser
def test_unknown_link_values_get_a_notice_that_outlives_the_url_rewrite(
    dash_duo, demo_bundle
):
    import time

    import app

    cohort = demo_bundle.cohort
    title = demo_bundle.meta.title
    syn_a = cohort[cohort["cohort"] == "SYN-A"]
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(
        dash_duo.server_url + "/?dataset=nope&tumor_type=martian&cohort=syn-a"
    )
    for text in (
        "Dataset “nope”",
        "dataset=nope",
        f"showing the default dataset “{title}” instead",
        "Tumor type “martian”",
        "tumor_type=martian",
        "showing all tumor types instead",
    ):
        dash_duo.wait_for_contains_text(NOTICE, text, timeout=30)
    # the address bar now says what is shown; the notice is still there
    _wait(
        dash_duo,
        lambda: (
            _global_query(dash_duo.driver.current_url)
            == {"dataset": ["demo"], "cohort": ["SYN-A"]}
            or dash_duo.driver.current_url
        ),
        message="address bar rewritten",
    )
    patients = len(syn_a[["cohort", "patient_id"]].drop_duplicates())
    dash_duo.wait_for_text_to_equal("#overview-patients", f"{patients:,}", timeout=30)
    time.sleep(1.5)  # let every callback that follows the rewrite settle
    assert "Tumor type “martian”" in _text_of(dash_duo, NOTICE)

    # same view on another page (nav link): the notice about the link stays
    _nav_click(dash_duo, "NK vs response")
    _wait(
        dash_duo,
        lambda: (
            _path_and_query(dash_duo.driver.current_url)[0] == "/nk-response"
            or dash_duo.driver.current_url
        ),
        message="navigated",
    )
    dash_duo.wait_for_contains_text("#nk-response-summary", "analysed", timeout=60)
    assert "Tumor type “martian”" in _text_of(dash_duo, NOTICE)

    # the user changes a filter: the notice goes
    dash_duo.select_dcc_dropdown("#shell-filter-tumor_type", value="RCC")
    _wait(
        dash_duo,
        lambda: _text_of(dash_duo, NOTICE) == "" or _text_of(dash_duo, NOTICE),
        timeout=20,
        message="notice gone after a filter change",
    )
    assert "tumor_type=RCC" in dash_duo.driver.current_url

    # every page names an unknown value it was linked with
    for page in PAGES:
        dash_duo.driver.get(dash_duo.server_url + page + "?tumor_type=martian")
        dash_duo.wait_for_contains_text(NOTICE, "Tumor type “martian”", timeout=30)
        dash_duo.wait_for_contains_text(NOTICE, "all tumor types", timeout=5)
        _wait(
            dash_duo,
            lambda: (
                "tumor_type" not in _global_query(dash_duo.driver.current_url)
                or dash_duo.driver.current_url
            ),
            message=f"{page}: martian dropped from the address bar",
        )


SHARED = {"metric": ["frac_nk"], "definition": ["benefit"]}


def _choose_on_nk_page(dash_duo) -> None:
    """Open the NK page for melanoma and choose a metric and a response definition."""
    from analysis.response import DEFINITIONS

    dash_duo.driver.get(dash_duo.server_url + "/nk-response?tumor_type=melanoma")
    dash_duo.wait_for_contains_text("#nk-response-summary", "analysed", timeout=60)
    dash_duo.select_dcc_dropdown(
        "#nk-response-metric", value="NK cells, fraction of CD45+ cells"
    )
    dash_duo.select_dcc_dropdown(
        "#nk-response-definition", value=DEFINITIONS["benefit"].label
    )
    _wait(dash_duo, lambda: _carries(dash_duo, "/nk-response"), message="NK URL")


def _carries(dash_duo, path: str, url: str | None = None):
    """True when ``url`` (default: the address bar) is ``path`` with the shared keys."""
    url = url or dash_duo.driver.current_url
    got_path, query = _path_and_query(url)
    wanted = dict(SHARED, tumor_type=["melanoma"])
    ok = got_path == path and all(query.get(k) == v for k, v in wanted.items())
    return ok or url


def _nav_href(dash_duo, name: str) -> str:
    return dash_duo.driver.find_element(By.LINK_TEXT, name).get_attribute("href")


@pytest.mark.browser
def test_nav_links_carry_the_shared_metric_and_definition(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    _choose_on_nk_page(dash_duo)
    # the links themselves (what "copy link" or a middle click gives)
    for name, path in (("Cohort overview", "/"), ("CD8 states", "/cd8-states")):
        _wait(
            dash_duo,
            lambda n=name, p=path: _carries(dash_duo, p, _nav_href(dash_duo, n)),
            timeout=20,
            message=f"the {name} link carries the metric and definition",
        )

    _nav_click(dash_duo, "Cohort overview")
    _wait(dash_duo, lambda: _carries(dash_duo, "/"), message="overview keeps them")
    dash_duo.wait_for_contains_text("#overview-patients", "", timeout=30)
    _wait(
        dash_duo,
        lambda: _carries(
            dash_duo, "/nk-response", _nav_href(dash_duo, "NK vs response")
        ),
        timeout=20,
        message="links on the overview still carry them",
    )

    _nav_click(dash_duo, "NK vs response")
    _wait(dash_duo, lambda: _carries(dash_duo, "/nk-response"), message="NK again")
    _wait(
        dash_duo,
        lambda: (
            (
                _dropdown_value(dash_duo, "nk-response-metric"),
                _dropdown_value(dash_duo, "nk-response-definition"),
            )
            == ("frac_nk", "benefit")
            or _dropdown_value(dash_duo, "nk-response-metric")
        ),
        message="NK page controls restored",
    )


@pytest.mark.browser
def test_cd8_page_opens_with_the_metric_the_nav_link_carries(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    _choose_on_nk_page(dash_duo)
    _nav_click(dash_duo, "CD8 states")
    _wait(
        dash_duo,
        lambda: (
            (
                _dropdown_value(dash_duo, "cd8-states-metric"),
                _dropdown_value(dash_duo, "cd8-states-definition"),
            )
            == ("frac_nk", "benefit")
            or _dropdown_value(dash_duo, "cd8-states-metric")
        ),
        timeout=30,
        message="CD8 page controls",
    )
