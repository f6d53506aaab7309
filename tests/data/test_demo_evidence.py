"""The demo's eight evidence cohorts: appended after the old ones, heterogeneous."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis import meta
from data.demo import SEED, make_cohort
from data.demo_evidence import EVIDENCE_COHORTS, evidence_cohorts


def test_existing_rows_are_untouched_and_new_ones_follow(demo_bundle):
    cohort = demo_bundle.cohort
    old, _ = make_cohort(np.random.default_rng(SEED))
    head = cohort.iloc[: len(old)]
    assert head["sample_id"].tolist() == old["sample_id"].tolist()
    assert np.allclose(head["frac_nk"], old["frac_nk"])
    assert set(cohort.iloc[len(old) :]["cohort"]) == set(EVIDENCE_COHORTS)
    # the old cohorts carry no bulk estimators
    assert head["score_NKcells_EPIC"].isna().all()


def test_at_least_eight_new_cohorts_of_other_types_and_classes(demo_bundle):
    cohort = demo_bundle.cohort
    assert cohort["cohort"].nunique() >= 11
    new = cohort[cohort["cohort"].isin(EVIDENCE_COHORTS)]
    assert new["cohort"].nunique() >= 8
    assert new["tumor_type"].nunique() >= 7
    classes = {meta.TREATMENT_CLASSES[t] for t in new["treatment"]}
    assert classes == {"PD-1/PD-L1", "CTLA-4", "combination"}
    assert (new["timepoint"] == "on").sum() > 50
    assert demo_bundle.meta.synthetic
    assert "patient-level" in demo_bundle.meta.description


def test_effects_are_heterogeneous_in_both_directions(demo_bundle):
    rows = []
    patients = demo_bundle.cohort[demo_bundle.cohort["timepoint"] == "pre"].copy()
    lymph = patients[["frac_nk", "frac_cd8", "frac_cd4", "frac_b"]].sum(axis=1)
    patients["value"] = patients["frac_nk"] / lymph
    for _, rows_ in patients.groupby("cohort"):
        rows_ = rows_.drop_duplicates("patient_id")
        resp = rows_["recist"].isin(["CR", "PR"])
        known = rows_["recist"].isin(["CR", "PR", "SD", "PD"])
        u = stats.mannwhitneyu(
            rows_.loc[known & resp, "value"], rows_.loc[known & ~resp, "value"]
        ).statistic
        rows.append(1 - 2 * u / ((known & resp).sum() * (known & ~resp).sum()))
    r = pd.Series(rows)
    assert (r > 0.2).sum() >= 4 and (r < -0.2).sum() >= 2


def test_same_seed_same_cohorts():
    a, b = evidence_cohorts(SEED), evidence_cohorts(SEED)
    pd.testing.assert_frame_equal(a, b)
    assert not evidence_cohorts(SEED + 1).equals(a)
