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
