"""CLI filters (other than `stats`): values match ignoring case; unknown ones exit 1."""

from __future__ import annotations

import csv
import json

import pytest

from data.errors import DataError
from figures import export
from tests.conftest import DATA_DIR
from tests.test_cli_export import _run


def _settings(tmp_path, flt: dict) -> str:
    document = export.settings_document(
        filter_state=flt,
        pages={"overview": {}},
        export=export.ExportSettings(format="svg"),
        dataset="demo",
    )
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_resolve_cli_filter_matches_values_and_dataset_ignoring_case(demo_bundle):
    from cli import resolve_cli_filter

    flt = resolve_cli_filter(
        {"dataset": "Demo", "tumor_type": ["MELANOMA", "nsclc"], "timepoint": "PRE"},
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    assert flt.dataset == "demo"
    assert flt.tumor_type == ("melanoma", "NSCLC") and flt.timepoint == ("pre",)


def test_resolve_cli_filter_names_the_flag_and_the_valid_values(demo_bundle):
    from cli import resolve_cli_filter

    with pytest.raises(DataError) as caught:
        resolve_cli_filter(
            {"cohort": ["SYN-Z"]}, data_dir=DATA_DIR, default_dataset="demo"
        )
    text = str(caught.value)
    assert "--cohort 'SYN-Z' matches no cohort" in text
    assert "SYN-A, SYN-B, SYN-C" in text


def test_export_with_a_filter_value_that_matches_nothing_exits_1(tmp_path, demo_dir):
    settings = _settings(tmp_path, {"dataset": "demo", "tumor_type": ["martian"]})
    out = tmp_path / "out"
    result = _run("export", "--settings", settings, "--out", str(out))
    assert result.returncode == 1
    assert "`tumor_type` 'martian' matches no tumor type" in result.stderr
    assert "HNSCC, melanoma, NSCLC, RCC, urothelial" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.skipif(export.browser_path() is None, reason="Chromium is not installed")
def test_export_matches_filter_values_ignoring_case(tmp_path, demo_bundle):
    settings = _settings(
        tmp_path, {"dataset": "DEMO", "tumor_type": ["Melanoma"], "timepoint": "PRE"}
    )
    out = tmp_path / "out"
    result = _run("export", "--settings", settings, "--out", str(out))
    assert result.returncode == 0, result.stderr
    cohort = demo_bundle.cohort
    chosen = cohort[
        (cohort["tumor_type"].str.lower() == "melanoma")
        & (cohort["timepoint"].str.lower() == "pre")
    ]
    expected = set(zip(chosen["cohort"], chosen["patient_id"], strict=True))
    with (out / "overview" / "patients.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["cohort"], r["patient_id"]) for r in rows} == expected
    assert {r["tumor_type"] for r in rows} == {"melanoma"}
