"""Mechanism page in a real browser: a link opens its state, a control changes the
gene view and the address bar."""

from __future__ import annotations

import pytest

from tests.conftest import free_port


@pytest.mark.browser
def test_link_state_and_program_change_in_browser(dash_duo, demo_bundle):
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/mechanism?dataset=demo&program=ra")
    dash_duo.wait_for_contains_text("#mechanism-n", "48 patients", timeout=60)
    dash_duo.wait_for_contains_text(
        "#mechanism-mech-genes", "Retinoic-acid (RAR) targets", timeout=30
    )
    assert (
        "not derived from T cells"
        in dash_duo.find_element("#mechanism-coverage-list").text
    )
    dash_duo.select_dcc_dropdown("#mechanism-program", value="IL-2/STAT5 signalling")
    dash_duo.wait_for_contains_text(
        "#mechanism-mech-genes", "IL-2/STAT5 signalling: per-gene", timeout=30
    )
    until(lambda: "program=il2" in dash_duo.driver.current_url, timeout=20)
