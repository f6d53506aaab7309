"""The 404 page: says the page does not exist and links back home, filter kept."""

from __future__ import annotations

import pytest

from tests.conftest import find_component, free_port


def test_not_found_layout_links_home_with_the_global_filter():
    import dash

    import app  # noqa: F401

    page = next(
        p for p in dash.page_registry.values() if p["module"].endswith("not_found_404")
    )
    assert page.get("nav") is False  # not a page of the navigation bar
    layout = page["layout"](
        tumor_type=["melanoma", "NSCLC"], dataset="demo", metric="foo"
    )
    home = find_component(layout, "not-found-home")
    assert home.href == "/?dataset=demo&tumor_type=melanoma&tumor_type=NSCLC"
    assert "does not exist" in str(layout)
    plain = page["layout"]()
    assert find_component(plain, "not-found-home").href == "/"


def test_not_found_page_is_not_in_the_navigation():
    import app

    assert "Page not found" not in str(app.shell_layout())


@pytest.mark.browser
def test_unknown_address_says_so_and_goes_home(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/no-such-page?tumor_type=melanoma")
    dash_duo.wait_for_contains_text("#_pages_content", "does not exist", timeout=30)
    link = dash_duo.wait_for_element("#not-found-home", timeout=10)
    assert link.get_attribute("href").endswith("/?tumor_type=melanoma")
    link.click()
    cohort = demo_bundle.cohort
    melanoma = cohort[cohort["tumor_type"] == "melanoma"]
    n = len(melanoma[["cohort", "patient_id"]].drop_duplicates())
    dash_duo.wait_for_text_to_equal("#overview-patients", f"{n:,}", timeout=30)
    assert "tumor_type=melanoma" in dash_duo.driver.current_url
