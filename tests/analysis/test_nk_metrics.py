"""NK metrics and response definitions on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.nk_metrics import (
    available_metrics,
    metric_values,
    patient_metric,
    split_by_metric,
)
from analysis.response import assign_response, available_definitions, default_definition


def _table(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_metrics_by_hand():
    t = _table(
        frac_nk=[0.02, 0.0],
        frac_cd8=[0.18, 0.1],
        frac_cd4=[0.2, 0.1],
        frac_b=[0.1, 0.1],
    )
    assert metric_values(t, "frac_nk").tolist() == [0.02, 0.0]
    assert metric_values(t, "nk_lymphocytes").iloc[0] == pytest.approx(0.02 / 0.5)
    assert metric_values(t, "nk_over_nk_cd8").iloc[0] == pytest.approx(0.1)
    assert metric_values(t, "log2_nk_cd8").iloc[0] == pytest.approx(
        math.log2(0.02 / 0.18)
    )
    assert np.isnan(metric_values(t, "log2_nk_cd8").iloc[1])  # log of 0 is undefined


def test_lymphocyte_label_names_denominator_present():
    labels = {
        m.key: m.label
        for m in available_metrics(_table(frac_nk=[0.1], frac_cd8=[0.2], frac_b=[0.1]))
    }
    assert labels["nk_lymphocytes"] == "NK among lymphocytes, NK / (NK + CD8 + B)"
    score = available_metrics(
        _table(frac_nk=[0.1], frac_cd8=[0.1], score_nk_signature=[1.2])
    )
    assert score[-1].kind == "score" and "not a fraction" in score[-1].label


def test_missing_denominator_part_gives_nan_not_smaller_denominator():
    t = _table(frac_nk=[0.1], frac_cd8=[0.2], frac_cd4=[np.nan], frac_b=[0.1])
    assert np.isnan(metric_values(t, "nk_lymphocytes").iloc[0])


def test_patient_metric_averages_samples_then_ratio():
    samples = _table(
        cohort=["A", "A", "A", "B"],
        patient_id=["P1", "P1", "P1", "P1"],  # same id in two cohorts = two patients
        tumor_type=["m", "m", "m", "n"],
        treatment=["anti-PD-1"] * 4,
        recist=["PR", "PR", "PR", "PD"],
        timepoint=["pre", "pre", "on", "pre"],
        frac_nk=[0.1, 0.3, 0.9, 0.05],
        frac_cd8=[0.3, 0.1, 0.1, 0.05],
    )
    out = patient_metric(samples, "nk_over_nk_cd8", timepoint="pre")
    assert len(out) == 2
    a = out[out["cohort"] == "A"].iloc[0]
    assert a["n_samples"] == 2
    assert a["value"] == pytest.approx(0.2 / (0.2 + 0.2))  # ratio of mean fractions
    assert out[out["cohort"] == "B"]["value"].iloc[0] == pytest.approx(0.5)


def test_split_by_metric():
    values = pd.Series([1.0, 2.0, 3.0, 4.0, np.nan])
    assert split_by_metric(values).tolist()[:4] == [
        "NK-low",
        "NK-low",
        "NK-high",
        "NK-high",
    ]
    assert pd.isna(split_by_metric(values).iloc[4])
    tert = split_by_metric(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), method="tertile")
    assert tert.tolist() == [
        "NK-low",
        "NK-low",
        "NK-mid",
        "NK-mid",
        "NK-high",
        "NK-high",
    ]


def test_response_definitions():
    t = _table(
        recist=["CR", "PR", "SD", "PD", "NE", None],
        response=["R", "R", "R", "NR", None, "NR"],
    )
    assert assign_response(t, "objective").tolist()[:4] == [
        "Responder",
        "Responder",
        "Non-responder",
        "Non-responder",
    ]
    assert assign_response(t, "benefit").iloc[2] == "Responder"
    assert pd.isna(assign_response(t, "objective").iloc[4])
    assert assign_response(t, "reported").iloc[5] == "Non-responder"
    assert available_definitions(t) == ["objective", "benefit", "recist", "reported"]
    no_recist = _table(recist=[None, None], response=["R", "NR"])
    assert default_definition(no_recist) == "reported"
    with pytest.raises(ValueError, match="unknown response definition"):
        assign_response(t, "best")
