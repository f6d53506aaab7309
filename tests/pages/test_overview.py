"""Overview page: the callback as a function, and in a real browser."""

from __future__ import annotations

import pytest

from data.filters import CohortFilter
from tests.conftest import free_port


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
