"""`cli.py stats` prints the numbers the /nk-response page shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scipy import stats as sps

from analysis.nk_metrics import patient_metric
from analysis.response import assign_response
from data.filters import CohortFilter
from data.view import cohort_view
from figures.reports import build_panels
from tests.conftest import DATA_DIR, ROOT, small_cohort


def _run(*args: str):
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_json_equals_page_builder(demo_dir):
    result = _run(
        "stats", "--dataset", "demo", "--tumor-type", "melanoma", "NSCLC",
        "--metric", "nk_over_nk_cd8", "--response", "benefit", "--split", "tertile",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    view = cohort_view(
        CohortFilter(dataset="demo", tumor_type=("melanoma", "NSCLC")),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    state = {
        "metric": "nk_over_nk_cd8",
        "definition": "benefit",
        "nk_timepoint": "pre",
        "split": "tertile",
    }
    panels = build_panels("nk-response", view, state)
    page = json.loads(json.dumps(panels[0].provenance["stats"]))
    assert {k: printed[k] for k in page} == page  # to the last digit
    assert printed["filters"] == "tumor type: melanoma, NSCLC"
    # and the headline numbers are right by an independent route
    pre = patient_metric(view.samples, "nk_over_nk_cd8", timepoint="pre")
    groups = assign_response(pre, "benefit")
    r = pre.loc[groups == "Responder", "value"]
    nr = pre.loc[groups == "Non-responder", "value"]
    ref = sps.mannwhitneyu(r, nr)
    assert printed["mann_whitney"]["p"] == pytest.approx(ref.pvalue)
    assert printed["groups"][0]["n"] == len(r)
    assert printed["n_excluded_no_response"] == int(groups.isna().sum())
    for key in ("auc", "strata", "pooled", "survival", "logistic"):
        assert printed[key]
    assert printed["survival"]["os"]["cox_unadjusted"]["hr"] > 0


def test_cli_text_output_and_bad_metric(bundle_factory):
    path = bundle_factory(small_cohort())  # no frac_cd4/b; 8 patients
    ok = _run("stats", "--dataset", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "Too few patients" in ok.stdout or "patients analysed" in ok.stdout
    bad = _run("stats", "--dataset", str(path), "--metric", "frac_cd4")
    assert bad.returncode == 1
    assert "Fix: this dataset offers --metric frac_nk" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_unknown_dataset():
    result = _run("stats", "--dataset", "no-such-dataset", "--json")
    assert result.returncode == 1
    assert "no dataset named" in result.stderr and "Traceback" not in result.stderr
