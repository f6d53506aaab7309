"""Per-patient overview columns and the patient panel summary, against hand-computed
values on the small two-cohort table of tests/conftest.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import (
    NOT_EVALUABLE,
    cell_patient_codes,
    cells_by_patient,
    overview_table,
    patient_keys,
    patient_summary,
    split_patient_key,
    state_mix,
)
from tests.conftest import small_cohort


def _row(table: pd.DataFrame, key: str) -> pd.Series:
    return table.set_index("key").loc[key]


def test_patient_key_round_trip():
    frame = pd.DataFrame({"cohort": ["SYN-A"], "patient_id": ["P012"]})
    assert patient_keys(frame).tolist() == ["SYN-A|P012"]
    assert split_patient_key("SYN-A|P012") == ("SYN-A", "P012")
    with pytest.raises(ValueError, match=r"<cohort>\|<patient>"):
        split_patient_key("P012")


def test_nk_value_is_pre_treatment_ratio_of_means():
    table = overview_table(
        small_cohort(), metric="nk_over_nk_cd8", definition="objective"
    )
    # A|P1: pre NK 0.02, CD8 0.30 (the on-treatment sample 0.01 / 0.35 is not used)
    assert _row(table, "A|P1")["nk_value"] == pytest.approx(0.02 / 0.32)
    assert _row(table, "A|P1")["nk_n_samples"] == 1
    # B|P2: two pre samples, NK 0.08 and 0.06, CD8 0.12 and 0.14: ratio of means
    assert _row(table, "B|P2")["nk_value"] == pytest.approx(0.07 / (0.07 + 0.13))
    assert _row(table, "B|P2")["nk_n_samples"] == 2
    log2 = overview_table(small_cohort(), metric="log2_nk_cd8", definition="objective")
    assert _row(log2, "A|P4")["nk_value"] == pytest.approx(math.log2(0.06 / 0.10))
    # patient ids repeat across cohorts: A|P1 and B|P1 are two patients
    assert len(table) == 8 and table["key"].is_unique


def test_patient_without_pre_sample_has_no_nk_value():
    samples = small_cohort()
    samples = samples[samples["sample_id"] != "A-P1-pre"]
    table = overview_table(samples, metric="frac_nk", definition="objective")
    assert np.isnan(_row(table, "A|P1")["nk_value"])
    assert _row(table, "A|P1")["nk_n_samples"] == 0


def test_response_group_follows_definition():
    samples = small_cohort()
    objective = overview_table(samples, metric="frac_nk", definition="objective")
    benefit = overview_table(samples, metric="frac_nk", definition="benefit")
    reported = overview_table(samples, metric="frac_nk", definition="reported")
    # A|P3 is SD: non-responder by objective response, responder by clinical benefit
    assert _row(objective, "A|P3")["response_group"] == "Non-responder"
    assert _row(benefit, "A|P3")["response_group"] == "Responder"
    # B|P4 is NE and B|P3 has no RECIST: not evaluable; B|P3 was reported R
    assert _row(objective, "B|P4")["response_group"] == NOT_EVALUABLE
    assert _row(objective, "B|P3")["response_group"] == NOT_EVALUABLE
    assert _row(reported, "B|P3")["response_group"] == "Responder"


def _cells() -> pd.Series:
    # 4 cells of A|P1 (two samples), 2 of B|P1, 1 of a sample outside the cohort
    return pd.Series(
        ["A-P1-pre", "A-P1-pre", "A-P1-on", "A-P1-pre", "B-P1-pre", "B-P1-pre", "X"],
        dtype="category",
    )


def test_cells_map_to_patients_through_samples():
    codes, keys = cell_patient_codes(_cells(), small_cohort())
    assert keys.tolist() == ["A|P1", "B|P1"]
    assert codes.tolist() == [0, 0, 0, 0, 1, 1, -1]
    # the same with plain strings
    codes, keys = cell_patient_codes(_cells().astype(str), small_cohort())
    assert codes.tolist() == [0, 0, 0, 0, 1, 1, -1]


def test_no_sample_left_maps_no_cell():
    samples = small_cohort().iloc[0:0]
    codes, keys = cell_patient_codes(_cells(), samples)
    assert codes.tolist() == [-1] * 7 and len(keys) == 0
    assert cells_by_patient(codes, keys).empty
    table = overview_table(samples, metric="frac_nk", definition="objective")
    assert table.empty


def test_gate_fraction_per_patient_by_hand():
    samples = small_cohort()
    codes, keys = cell_patient_codes(_cells(), samples)
    in_gate = np.array([True, False, True, False, False, False, True])
    cells = cells_by_patient(codes, keys, in_gate)
    assert cells.loc["A|P1"].tolist() == [4, 2, 50.0]
    assert cells.loc["B|P1"].tolist() == [2, 0, 0.0]
    table = overview_table(
        samples, metric="frac_nk", definition="objective", cells=cells
    )
    assert _row(table, "A|P1")["gate_pct"] == pytest.approx(50.0)
    assert _row(table, "A|P1")["n_in_gate"] == 2
    # a patient without CD8 cells: 0 cells, no fraction (not 0 %)
    assert _row(table, "A|P2")["n_cells"] == 0
    assert np.isnan(_row(table, "A|P2")["gate_pct"])


def test_filtered_samples_drop_their_cells():
    samples = small_cohort()
    samples = samples[samples["timepoint"] == "pre"]
    codes, keys = cell_patient_codes(_cells(), samples)
    assert codes.tolist() == [0, 0, -1, 0, 1, 1, -1]
    cells = cells_by_patient(codes, keys)
    assert cells["n_cells"].tolist() == [3, 2]
    assert "gate_pct" not in cells.columns


def test_state_mix_lists_every_state_with_percent():
    states = pd.Series(
        ["Exhausted", "Exhausted", "Naive", "Exhausted"],
        dtype=pd.CategoricalDtype(["Naive", "Exhausted", "Proliferating"]),
    )
    mix = state_mix(states)
    assert mix["cd8_state"].tolist() == ["Naive", "Exhausted", "Proliferating"]
    assert mix["n_cells"].tolist() == [1, 3, 0]
    assert mix["pct"].tolist() == pytest.approx([25.0, 75.0, 0.0])


def test_patient_summary_by_hand():
    samples = small_cohort()
    states = pd.Series(["Naive", "Exhausted", "Exhausted"], dtype="category")
    summary = patient_summary(samples, "A|P1", cell_states=states)
    clinical = dict(summary.clinical)
    assert clinical["Tumor type"] == "melanoma"
    assert clinical["RECIST best overall response"] == "CR"
    assert clinical["Overall survival"] == "30 months (censored)"
    assert summary.n_samples == 2
    nk = summary.nk.set_index("timepoint")
    assert nk.index.tolist() == ["pre", "on"]
    assert nk.loc["pre", "frac_nk"] == pytest.approx(0.02)
    assert nk.loc["on", "frac_nk"] == pytest.approx(0.01)
    assert nk.loc["on", "nk_over_nk_cd8"] == pytest.approx(0.01 / 0.36)
    assert nk.loc["on", "log2_nk_cd8"] == pytest.approx(math.log2(0.01 / 0.35))
    assert nk.loc["pre", "n_samples"] == 1
    assert summary.n_cells == 3
    mix = summary.states.set_index("cd8_state")
    assert mix.loc["Exhausted", "pct"] == pytest.approx(200 / 3)


def test_patient_summary_event_and_missing_values():
    summary = patient_summary(small_cohort(), "A|P4")
    assert dict(summary.clinical)["Overall survival"] == "6 months (died)"
    assert summary.states.empty and summary.n_cells == 0
    nk = summary.nk.set_index("timepoint")
    # two pre samples averaged before the ratio
    b = patient_summary(small_cohort(), "B|P2").nk.set_index("timepoint")
    assert b.loc["pre", "n_samples"] == 2
    assert b.loc["pre", "frac_nk"] == pytest.approx(0.07)
    assert nk.loc["on", "frac_nk"] == pytest.approx(0.07)
    assert (
        dict(patient_summary(small_cohort(), "B|P3").clinical)[
            "RECIST best overall response"
        ]
        == "not reported"
    )
    with pytest.raises(KeyError, match="no sample"):
        patient_summary(small_cohort(), "A|P9")
