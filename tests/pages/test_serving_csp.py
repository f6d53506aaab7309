"""The app works in Chromium under its Content-Security-Policy (no blocked script,
style, image or connection on any page)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import free_port


def _csp_errors(logs: list[dict]) -> list[str]:
    return [
        entry["message"]
        for entry in logs
        if "Content Security Policy" in entry.get("message", "")
        or "Refused to" in entry.get("message", "")
    ]


@pytest.mark.browser
def test_pages_render_under_csp(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    # the policy is really sent with the page the browser loaded
    policy = dash_duo.driver.execute_script(
        "return fetch(window.location.href).then("
        "r => r.headers.get('Content-Security-Policy'))"
    )
    assert "frame-ancestors 'self'" in policy
    patients = len(demo_bundle.cohort[["cohort", "patient_id"]].drop_duplicates())
    dash_duo.wait_for_text_to_equal("#overview-patients", f"{patients:,}", timeout=30)
    # dash-ag-grid formats the NK column with a JS function string (3 decimals)
    cell = '.ag-cell[col-id="frac_nk_pre"]'
    dash_duo.wait_for_element(".ag-cell", timeout=20)
    # columns off screen are not rendered: scroll the NK column into view
    dash_duo.driver.execute_script(
        "dash_ag_grid.getApi('overview-table').ensureColumnVisible('frac_nk_pre')"
    )
    dash_duo.wait_for_element(cell, timeout=20)
    values = [e.text for e in dash_duo.find_elements(cell) if e.text]
    assert values and all(re.fullmatch(r"\d\.\d{3}", v) for v in values), values
    # the plotly figures drew (SVG main layer present)
    dash_duo.wait_for_element("#overview-composition .main-svg", timeout=20)
    assert _csp_errors(dash_duo.get_logs() or []) == []
    for path, selector in (
        ("/nk-response", "#nk-response-box .main-svg"),
        # the UMAP is a WebGL (regl) trace: its canvas must be there and drawn
        ("/cd8-states", "#cd8-states-umap canvas.gl-canvas-context"),
    ):
        dash_duo.driver.get(dash_duo.server_url + path)
        dash_duo.wait_for_element(selector, timeout=60)
        assert _csp_errors(dash_duo.get_logs() or []) == [], path
