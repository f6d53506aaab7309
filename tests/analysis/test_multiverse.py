"""The multiverse: its effects equal the /nk-response ones; its choices are right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import multiverse as mv
from analysis import stats
from analysis.evidence_view import evidence
from tests.conftest import DATA_DIR

values = st.lists(st.integers(0, 6).map(float), min_size=0, max_size=15)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_fast_delong_equals_the_page_function(pos, neg):
    # integer values make ties common: the midrank handling must agree
    pos, neg = np.array(pos), np.array(neg)
    r, se = mv.rank_biserial_delong(pos, neg)
    ref = stats.stratum_effect("cohort", "x", pos, neg)
    if np.isnan(ref.r):
        assert np.isnan(r)
        return
    assert r == pytest.approx(ref.r, abs=1e-12)
    expected_se = ref.se if ref.message == "" else 0.0  # perfect separation: SE 0
    assert se == pytest.approx(expected_se, abs=1e-12)


def test_estimators_and_partners():
    columns = [
        "frac_nk", "frac_cd8", "score_NK_cells_MCPcounter",
        "score_CD8_T_cells_MCPcounter", "score_NKT_xCell", "score_NK_cells_xCell",
        "score_NK_signature", "score_CD8_signature", "score_T_cells_CD8_quantiseq",
        "score_NK_cells_quantiseq",
    ]  # fmt: skip
    found = mv.nk_estimators(columns)
    assert "score_NKT_xCell" not in found and "score_CD8_signature" not in found
    assert found[0] == "frac_nk" and "score_NK_cells_xCell" in found
    assert mv.cd8_partner("score_NK_cells_MCPcounter", columns) == (
        "score_CD8_T_cells_MCPcounter"
    )
    assert mv.cd8_partner("score_NK_cells_quantiseq", columns) == (
        "score_T_cells_CD8_quantiseq"
    )
    assert mv.cd8_partner("score_NK_cells_xCell", columns) is None
    table = pd.DataFrame(
        {"score_NK_signature": [-1.0, 0.5], "score_CD8_signature": [0.2, -0.3]}
    )
    # z-scores: no ratio is formed
    assert mv.denominators_for("score_NK_signature", table) == ["raw"]


def test_ratio_values_by_hand():
    table = pd.DataFrame(
        {"score_NKcells_EPIC": [0.02, 0.0], "score_CD8_Tcells_EPIC": [0.06, 0.0]}
    )
    nk_cd8 = mv.spec_values(table, "score_NKcells_EPIC", "nk_cd8")
    log2 = mv.spec_values(table, "score_NKcells_EPIC", "log2_nk_cd8")
    assert nk_cd8[0] == pytest.approx(0.25) and np.isnan(nk_cd8[1])
    assert log2[0] == pytest.approx(np.log2(1 / 3)) and np.isnan(log2[1])


def test_demo_multiverse_has_100_specs_and_matches_the_page_spec(demo_dir):
    specs = mv.multiverse(["demo"], DATA_DIR)
    assert len(specs) >= 100
    result = evidence(["demo"], DATA_DIR, metric="nk_lymphocytes",
                      definition="objective", timepoint="pre")  # fmt: skip
    (same,) = [
        s for s in specs
        if (s.metric, s.denominator, s.definition, s.timepoint)
        == ("frac_nk", "lymphocytes", "objective", "pre")
    ]  # fmt: skip
    hk = result.pooled["reml_hk"]
    assert same.k == hk.k
    assert same.r == pytest.approx(hk.r, abs=1e-12)
    assert same.p == pytest.approx(hk.p, abs=1e-12)
    summary = mv.summarize(specs)
    assert summary.lower + summary.higher == summary.n == len(specs)
    assert "specifications" in summary.sentence()
