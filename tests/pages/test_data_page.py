"""Data page: dataset list, upload -> preview -> mapping -> check -> save."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from data.bundle import load_bundle
from tests.conftest import copy_tree, free_port, small_cohort, write_bundle
from tests.data.importers.helpers import clinical_text, tree_hash


def _data_url(content: bytes, mime: str = "text/csv") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


@pytest.fixture
def page(tmp_path, monkeypatch, demo_dir):
    """pages.data pointed at a temporary DATA_DIR (demo + one small dataset)."""
    import pages.data as data_page

    data_dir = tmp_path / "datasets"
    copy_tree(demo_dir, data_dir / "demo")
    write_bundle(data_dir / "small", small_cohort())
    monkeypatch.setattr(data_page, "_data_dir", lambda: data_dir)
    monkeypatch.setattr(data_page, "_staging_dir", lambda: tmp_path / "uploads")
    data_page.DATA_DIR_FOR_TEST = data_dir
    return data_page


def _texts(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


def _targets(page) -> list[str]:
    return [t for t, _ in page.MAP_TARGETS]


def test_dataset_table_lists_every_dataset(page, tmp_path):
    data_dir = page.DATA_DIR_FOR_TEST
    (data_dir / "broken").mkdir()
    (data_dir / "broken" / "dataset.json").write_text("{not json")
    text = _texts(page.dataset_table(data_dir))
    assert "Synthetic ICB demo cohort" in text and "synthetic" in text
    # 480 patients of SYN-A/B/C + 460 patient-level ones of the evidence cohorts
    assert "940 patients" in text and "36,000 cells" in text
    assert "Test bundle" in text and "8 patients \\u00b7 12 samples" in text
    assert "/?dataset=small" in text and "/?dataset=demo" in text
    assert "cannot be loaded" in text and "not valid JSON" in text


def test_upload_preview_and_guessed_mapping(page):
    raw = clinical_text().encode()
    store, status, preview, hidden, options, values, name = page.receive_upload(
        _data_url(raw), "My cohort (v2).csv"
    )
    assert hidden is False and name == "My_cohort_v2"
    assert store["filename"] == "My cohort (v2).csv" and len(store["token"]) == 32
    assert "4 rows, 8 columns" in _texts(status)
    assert "Pembrolizumab" in _texts(preview)
    guessed = dict(zip(_targets(page), values, strict=True))
    assert guessed["patient_id"] == "patient" and guessed["tumor_type"] == "cancer"
    assert guessed["treatment"] == "drug" and guessed["recist"] == "BOR"
    assert guessed["os_months"] == "OS_days" and guessed["os_event"] == "OS_status"
    assert options[0] == [
        {"label": c, "value": c} for c in clinical_text().split("\n")[0].split(",")
    ]


def test_oversized_upload_is_refused_before_decoding(page, monkeypatch, tmp_path):
    monkeypatch.setattr(page, "_max_bytes", lambda: 1000)
    out = page.receive_upload(_data_url(b"x" * 5000), "big.csv")
    assert out[0] is None and out[3] is True
    assert "big.csv" in _texts(out[1]) and "limited to" in _texts(out[1])
    assert not (tmp_path / "uploads").exists()  # nothing staged


def test_unreadable_upload_says_why(page):
    raw = clinical_text().replace("P3", "Pé3").encode("latin-1")
    out = page.receive_upload(_data_url(raw), "latin.csv")
    text = _texts(out[1])
    assert "latin.csv" in text and "not UTF-8" in text and "row 4" in text


def _form(page, values: dict[str, str]) -> list:
    return [values.get(t) for t in _targets(page)]


MAPPING = {
    "sample_id": "patient", "tumor_type": "cancer", "treatment": "drug",
    "recist": "BOR", "os_months": "OS_days", "os_event": "OS_status",
    "frac_nk": "NK_pct", "frac_cd8": "CD8_pct",
}  # fmt: skip


def test_check_then_save_then_refuse_overwrite(page):
    data_dir = page.DATA_DIR_FOR_TEST
    store = page.receive_upload(_data_url(clinical_text().encode()), "c.csv")[0]
    report = _texts(page.check_upload(1, store, _form(page, MAPPING), None, None, "c"))
    assert "Valid: 4 samples of 4" in report
    assert "divided by 100" in report and "Pembrolizumab -> anti-PD-1" in report

    saved, table = page.save_upload(
        1, store, _form(page, MAPPING), None, None, "mine", "My cohort", "CC0", False
    )
    assert "Saved as `mine`" in _texts(saved) and "/?dataset=mine" in _texts(saved)
    assert "My cohort" in _texts(table)
    bundle = load_bundle(data_dir / "mine")
    assert bundle.cohort["frac_nk"].tolist() == pytest.approx([0.05, 0.12, 0.03, 0.08])
    assert bundle.meta.license == "CC0" and bundle.meta.synthetic is False

    before = tree_hash(data_dir)
    store2 = page.receive_upload(_data_url(clinical_text().encode()), "c.csv")[0]
    again = page.save_upload(
        1, store2, _form(page, MAPPING), None, None, "mine", None, None, False
    )
    assert "already exists" in _texts(again[0]) and "Replace" in _texts(again[0])
    assert tree_hash(data_dir) == before
    replaced = page.save_upload(
        1, store2, _form(page, MAPPING), "x", None, "mine", "Second", None, True
    )
    assert "Saved as `mine`" in _texts(replaced[0])
    assert load_bundle(data_dir / "mine").meta.title == "Second"


def test_invalid_mapping_and_hostile_name_write_nothing(page):
    data_dir = page.DATA_DIR_FOR_TEST
    store = page.receive_upload(_data_url(clinical_text().encode()), "c.csv")[0]
    before = tree_hash(data_dir)
    bad = dict(MAPPING, recist="drug")
    report = _texts(page.check_upload(1, store, _form(page, bad), None, None, "x"))
    assert (
        "Not valid yet" in report and "`drug`" in report and "rows 2, 3, 4, 5" in report
    )
    out = page.save_upload(1, store, _form(page, bad), None, None, "x", None, None, 0)
    assert "Not saved" in _texts(out[0])
    for name in ("../../etc", "/tmp/x", ".hidden", ""):
        out = page.save_upload(
            1, store, _form(page, MAPPING), None, None, name, None, None, True
        )
        assert "not a valid dataset name" in _texts(out[0])
    assert tree_hash(data_dir) == before


def test_tampered_upload_token_is_refused(page):
    mapping = _form(page, MAPPING)
    store = {"token": "../../etc/passwd", "filename": "x.csv"}
    assert "unknown upload" in _texts(page.check_upload(1, store, mapping, 0, 0, "x"))


def test_server_enforces_the_upload_limit():
    """Flask refuses request bodies above MAX_CONTENT_LENGTH (413), whatever the
    browser-side dcc.Upload max_size says."""
    import app
    from config import get_settings

    server = app.server
    limit = server.config["MAX_CONTENT_LENGTH"]
    assert limit >= get_settings().max_upload_bytes  # base64 of a 50 MB file fits
    client = server.test_client()
    body = b"x" * (limit + 1)
    response = client.post(
        "/_dash-update-component", data=body, content_type="application/json"
    )
    assert response.status_code == 413


@pytest.mark.browser
def test_upload_in_browser_shows_preview_and_report(dash_duo, tmp_path, demo_bundle):
    import app

    path = Path(tmp_path / "clinical.csv")
    path.write_text(clinical_text())
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/data")
    dash_duo.wait_for_contains_text("#data-datasets", "demo", timeout=30)
    dash_duo.find_element("#data-upload input[type=file]").send_keys(str(path))
    dash_duo.wait_for_contains_text("#data-upload-status", "4 rows", timeout=30)
    dash_duo.wait_for_contains_text("#data-preview", "Pembrolizumab", timeout=10)
    dash_duo.find_element("#data-set-tumor_type").send_keys("melanoma")
    button = dash_duo.find_element("#data-check")
    # the report area below may overlap while loading: click the button itself
    dash_duo.driver.execute_script(
        "arguments[0].scrollIntoView(); arguments[0].click();", button
    )
    dash_duo.wait_for_contains_text("#data-report", "Valid: 4 samples", timeout=30)
    report = dash_duo.find_element("#data-report").text
    assert "percentages" in report and "Pembrolizumab -> anti-PD-1" in report
