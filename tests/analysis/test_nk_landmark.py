"""NK vs response analysis: survival only from baseline NK or from a landmark."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.nk_metrics import patient_metric
from analysis.nk_response import analyze_nk_response


def test_on_treatment_nk_draws_no_survival_from_treatment_start(demo_bundle):
    """An on-treatment biopsy needs the patient alive at it: no KM/Cox from t=0."""
    result = analyze_nk_response(demo_bundle.cohort, {"nk_timepoint": "on"})
    assert result.km == {} and result.cox == {}
    assert "immortal-time bias" in result.survival_message
    assert "NK timepoint “pre”" in result.survival_message
    assert "landmark" in result.survival_message
    summary = result.to_dict()
    assert summary["survival"] == {} and summary["landmark_months"] is None
    # response statistics are unaffected
    assert np.isfinite(result.two_group.p)
    pre = analyze_nk_response(demo_bundle.cohort, {"nk_timepoint": "pre"})
    assert pre.survival_message == "" and set(pre.km) == {"os", "pfs"}


@pytest.mark.parametrize("timepoint", ["on", "pre"])
def test_landmark_excludes_early_follow_up_and_counts_from_landmark(
    demo_bundle, timepoint
):
    from lifelines.statistics import logrank_test

    cohort = demo_bundle.cohort
    result = analyze_nk_response(cohort, {"nk_timepoint": timepoint, "landmark": "4.5"})
    assert result.state.landmark == 4.5
    summary = result.to_dict()
    assert summary["landmark_months"] == 4.5
    # independent route: patients with a value, own median split, own filter
    patients = patient_metric(cohort, "nk_lymphocytes", timepoint=timepoint)
    patients = patients[patients["value"].notna()]
    cut = float(np.median(patients["value"]))
    assert summary["nk_groups"]["cutoffs"] == [pytest.approx(cut)]
    for key, time, event in (("os", "os_months", "os_event"),
                             ("pfs", "pfs_months", "pfs_event")):  # fmt: skip
        followed = patients[patients[time].notna()]
        kept = followed[followed[time] > 4.5]
        surv = summary["survival"][key]
        assert surv["n_excluded_before_landmark"] == len(followed) - len(kept) > 0
        assert sum(g["n"] for g in surv["groups"]) == len(kept)
        assert surv["time_origin"].startswith("the landmark (4.5 months")
        low = kept[kept["value"] <= cut]
        high = kept[kept["value"] > cut]
        ref = logrank_test(low[time] - 4.5, high[time] - 4.5, low[event], high[event])
        assert surv["logrank_p"] == pytest.approx(ref.p_value, rel=1e-9)
        assert surv["groups"][0]["n"] == len(low)


def test_cutoffs_and_group_ranges_tertile(demo_bundle):
    cohort = demo_bundle.cohort
    result = analyze_nk_response(cohort, {"split": "tertile", "metric": "frac_nk"})
    values = patient_metric(cohort, "frac_nk", timepoint="pre")["value"].dropna()
    q1, q2 = np.quantile(values, [1 / 3, 2 / 3])
    assert result.cutoffs == pytest.approx((q1, q2))
    ranges = result.to_dict()["nk_groups"]["definitions"]
    assert ranges["NK-low"] == f"NK fraction of CD45+ cells ≤ {q1:.3g}"
    assert ranges["NK-mid"] == f"{q1:.3g} < NK fraction of CD45+ cells ≤ {q2:.3g}"
    n = {g["group"]: g["n"] for g in result.to_dict()["survival"]["os"]["groups"]}
    pre = patient_metric(cohort, "frac_nk", timepoint="pre")
    pre = pre[pre["value"].notna() & pre["os_months"].notna()]
    assert n["NK-low"] == int((pre["value"] <= q1).sum())
    assert n["NK-high"] == int((pre["value"] > q2).sum())


@pytest.mark.parametrize("value", ["-3", "0", "abc", "500", "nan"])
def test_bad_landmark_falls_back_with_a_named_fallback(demo_bundle, value):
    result = analyze_nk_response(demo_bundle.cohort, {"landmark": value})
    assert result.state.landmark is None
    (fallback,) = result.fallbacks
    assert fallback.key == "landmark" and fallback.requested == value
    assert "no landmark" in fallback.shown
