"""Data page: the editable value table recodes values the vocabulary does not know
(issue 14: `mixed`, `Only scanned at baseline` could only be fixed by editing)."""

from __future__ import annotations

import base64
import json

import pytest

from data.bundle import load_bundle
from tests.conftest import copy_tree

TABLE = (
    "# exported from the supplement\n"
    "patient,cancer,drug,BOR\n"
    "P1,melanoma,PD-1/PD-L1,PD*\n"
    "P2,melanoma,PD-1/PD-L1,mixed\n"
    "P3,melanoma,Nivolumab,Only scanned at baseline\n"
    "P4,melanoma,Nivolumab,PR\n"
)
MAPPING = {"sample_id": "patient", "tumor_type": "cancer", "treatment": "drug",
           "recist": "BOR"}  # fmt: skip


@pytest.fixture
def page(tmp_path, monkeypatch, demo_dir):
    import pages.data as data_page

    data_dir = tmp_path / "datasets"
    copy_tree(demo_dir, data_dir / "demo")
    monkeypatch.setattr(data_page, "_data_dir", lambda: data_dir)
    monkeypatch.setattr(data_page, "_staging_dir", lambda: tmp_path / "uploads")
    return data_page, data_dir


def _text(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_value_table_lists_unknown_values_and_its_codes_are_applied(page):
    data_page, data_dir = page
    url = "data:text/csv;base64," + base64.b64encode(TABLE.encode()).decode()
    store, *_ = data_page.receive_upload(url, "s3.csv")
    form = [MAPPING.get(t) for t, _ in data_page.MAP_TARGETS]
    rows = data_page.fill_values(form, store)
    by_value = {(r["column"], r["value"]): r for r in rows}
    assert by_value[("BOR", "mixed")]["reads_as"] == "unknown: give a code"
    assert by_value[("BOR", "PD*")]["reads_as"] == "PD"
    assert by_value[("drug", "PD-1/PD-L1")]["reads_as"] == "anti-PD-(L)1"
    assert by_value[("BOR", "mixed")]["rows"] == 1

    refused = _text(data_page.check_upload(1, store, form, None, None, "s3", rows))
    assert "`mixed` (1 row)" in refused and "`Only scanned at baseline`" in refused

    by_value[("BOR", "mixed")]["code"] = ""  # missing
    by_value[("BOR", "Only scanned at baseline")]["code"] = "NE"
    report = _text(data_page.check_upload(1, store, form, None, None, "s3", rows))
    assert "Valid: 4 samples" in report and "header found on line 2" in report
    saved, _ = data_page.save_upload(
        1, store, form, None, None, "s3", None, None, False, rows
    )
    assert "Saved as `s3`" in _text(saved)
    cohort = load_bundle(data_dir / "s3").cohort
    assert cohort["recist"].fillna("").tolist() == ["PD", "", "NE", "PR"]
    assert cohort["treatment"].tolist()[:2] == ["anti-PD-(L)1"] * 2


@pytest.mark.browser
def test_value_table_edits_recode_in_the_browser(dash_duo, tmp_path, demo_bundle):
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    import app
    from tests.conftest import free_port

    path = tmp_path / "s3.csv"
    path.write_text(TABLE)
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/data")
    dash_duo.wait_for_contains_text("#data-datasets", "demo", timeout=30)
    dash_duo.find_element("#data-upload input[type=file]").send_keys(str(path))
    dash_duo.find_element("#data-set-tumor_type")  # form shown
    dash_duo.wait_for_contains_text("#data-values", "unknown: give a code", timeout=30)

    def set_code(value: str, code: str) -> None:
        rows = dash_duo.driver.find_elements("css selector", "#data-values .ag-row")
        row = next(r for r in rows if f"\n{value}\n" in f"\n{r.text}\n")
        cell = row.find_element("css selector", "[col-id=code]")
        dash_duo.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'});", cell
        )
        ActionChains(dash_duo.driver).move_to_element(cell).click().perform()
        editor = dash_duo.driver.switch_to.active_element
        editor.send_keys(Keys.CONTROL, "a")
        editor.send_keys(Keys.BACKSPACE, code, Keys.ENTER)

    set_code("mixed", "")
    set_code("Only scanned at baseline", "NE")
    # the grid sends its rowData to the server after the edit: let it arrive
    dash_duo.wait_for_element("#data-values .ag-row [col-id=code]", timeout=30)
    dash_duo.wait_for_contains_text("#data-values", "NE", timeout=30)
    time.sleep(1.0)  # the edit reaches the grid's virtualRowData after the render
    button = dash_duo.find_element("#data-check")
    dash_duo.driver.execute_script(
        "arguments[0].scrollIntoView(); arguments[0].click();", button
    )
    dash_duo.wait_for_contains_text("#data-report", "Valid: 4 samples", timeout=30)
    report = dash_duo.find_element("#data-report").text
    assert "`Only scanned at baseline` -> `NE`" in report
    assert "`mixed` -> missing" in report
