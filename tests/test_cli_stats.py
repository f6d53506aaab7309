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
    assert "Fix: --metric one of frac_nk" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_unknown_dataset():
    result = _run("stats", "--dataset", "no-such-dataset", "--json")
    assert result.returncode == 1
    assert "no dataset named" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def no_recist_hnscc(tmp_path_factory, demo_bundle):
    """The demo with RECIST removed for HNSCC (the study-reported R/NR kept)."""
    from tests.conftest import write_bundle

    cohort = demo_bundle.cohort.copy()
    cohort["recist"] = cohort["recist"].astype(object)
    cohort.loc[cohort["tumor_type"] == "HNSCC", "recist"] = None
    return write_bundle(tmp_path_factory.mktemp("mixed") / "mixed", cohort)


def test_cli_objective_on_view_without_recist_exits_1_naming_definitions(
    no_recist_hnscc,
):
    """Was: exit 0, the reported R/NR analysed under --response objective."""
    path = str(no_recist_hnscc)
    bad = _run("stats", "--dataset", path, "--tumor-type", "HNSCC",
               "--response", "objective", "--json")  # fmt: skip
    assert bad.returncode == 1, bad.stdout[:300]
    assert bad.stdout == ""
    assert "--response objective" in bad.stderr
    assert "not available for this view" in bad.stderr
    assert "--response one of reported" in bad.stderr
    assert "Traceback" not in bad.stderr
    # the definition the view offers works, and is the one reported
    ok = _run("stats", "--dataset", path, "--tumor-type", "HNSCC",
              "--response", "reported", "--json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["response_definition"]["key"] == "reported"
    # a view with RECIST somewhere keeps objective response
    mixed = _run("stats", "--dataset", path, "--tumor-type", "HNSCC", "melanoma",
                 "--response", "objective", "--json")  # fmt: skip
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["response_definition"]["key"] == "objective"


def test_cli_filter_value_matching_nothing_exits_1_listing_values(demo_dir):
    for flag, value, listed in (
        ("--tumor-type", "martian", "HNSCC, melanoma, NSCLC, RCC, urothelial"),
        ("--cohort", "SYN-Z", "SYN-A, SYN-B, SYN-C"),
        ("--treatment", "aspirin", "anti-PD-1"),
    ):
        result = _run("stats", "--dataset", "demo", flag, value)
        assert result.returncode == 1, result.stdout[:200]
        assert f"{flag} {value!r} matches no" in result.stderr
        assert listed in result.stderr and "Traceback" not in result.stderr


def test_cli_filter_values_match_case_insensitively(demo_dir):
    upper = _run("stats", "--tumor-type", "Melanoma", "--cohort", "syn-a", "--json")
    exact = _run("stats", "--tumor-type", "melanoma", "--cohort", "SYN-A", "--json")
    assert upper.returncode == exact.returncode == 0, upper.stderr
    assert json.loads(upper.stdout) == json.loads(exact.stdout)
    assert json.loads(upper.stdout)["filters"] == "tumor type: melanoma; cohort: SYN-A"


def test_cli_landmark_and_direction_in_words(demo_dir):
    on = _run("stats", "--timepoint", "on")
    assert on.returncode == 0, on.stderr
    assert "immortal-time bias" in on.stdout and "--landmark MONTHS" in on.stdout
    assert "Direction: NK among lymphocytes is lower in responders" in on.stdout
    assert "of responder/non-responder pairs the responder has the lower" in on.stdout
    result = _run("stats", "--timepoint", "on", "--landmark", "3", "--json")
    printed = json.loads(result.stdout)
    assert printed["landmark_months"] == 3.0
    assert printed["survival"]["os"]["time_origin"].startswith("the landmark (3 ")
    assert printed["survival"]["os"]["n_excluded_before_landmark"] > 0
    assert printed["mann_whitney"]["direction"].endswith(
        f"(r = {printed['mann_whitney']['rank_biserial_r']:.2f})"
    )
    bad = _run("stats", "--landmark", "-3")
    assert bad.returncode == 1 and "--landmark -3" in bad.stderr
    assert "Traceback" not in bad.stderr
