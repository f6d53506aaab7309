"""State composition: counts and CLR by hand, the test against scipy + statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis import composition
from analysis.response import NON_RESPONDER, RESPONDER


def test_state_counts_and_clr_by_hand():
    counts = composition.state_counts(
        np.array([0, 0, 0, 1, 1]),
        np.array([0, 0, 1, 1, -1]),
        ["p0", "p1"],
        ["s0", "s1", "s2"],
    )
    assert counts.to_numpy().tolist() == [[2, 1, 0], [0, 1, 0]]
    values = composition.clr(counts, pseudocount=0.5)
    logs = np.log([2.5, 1.5, 0.5])
    np.testing.assert_allclose(values.loc["p0"], logs - logs.mean())
    np.testing.assert_allclose(values.sum(axis=1), 0, atol=1e-12)


def test_composition_test_matches_scipy_and_bh():
    rng = np.random.default_rng(0)
    n = 24
    shares = rng.dirichlet([40, 30, 20], size=n)
    shares[:12, 0] *= 2.5  # responders hold more of state s0
    counts = pd.DataFrame(
        np.array([rng.multinomial(300, s / s.sum()) for s in shares]),
        index=[f"p{i}" for i in range(n)],
        columns=["s0", "s1", "s2"],
    )
    groups = pd.Series([RESPONDER] * 12 + [NON_RESPONDER] * 12, index=counts.index)
    table = composition.composition_test(counts, groups).set_index("state")
    logs = np.log(counts.to_numpy(float) + 0.5)
    clr = logs - logs.mean(axis=1, keepdims=True)
    pvalues = []
    for j, state in enumerate(counts.columns):
        ref = stats.mannwhitneyu(clr[:12, j], clr[12:, j], alternative="two-sided")
        assert table.loc[state, "U"] == ref.statistic
        np.testing.assert_allclose(table.loc[state, "p"], ref.pvalue)
        pvalues.append(ref.pvalue)
    np.testing.assert_allclose(
        table["p_adj"], multipletests(pvalues, method="fdr_bh")[1]
    )
    assert table.loc["s0", "p_adj"] < 0.01
    assert table.loc["s0", "direction"].startswith("the share of s0 (CLR) is higher")
    assert composition.enough_patients(table.reset_index())
