"""Chain statistics against independent references (scipy, statsmodels, by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.chain import (
    chain_matrix,
    gene_correlations,
    partial_spearman,
    spearman,
)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = z + rng.normal(size=n)
    y = 0.8 * z - 0.5 * x + rng.normal(size=n)
    return x, y, z


def test_spearman_matches_scipy_and_fisher_ci_by_hand():
    x, y, _ = _data()
    c = spearman(x, y)
    rho, p = sps.spearmanr(x, y)
    assert c.rho == pytest.approx(rho) and c.p == pytest.approx(p) and c.n == 40
    se = math.sqrt((1 + rho**2 / 2) / (40 - 3))  # Bonett & Wright (2000)
    assert c.low == pytest.approx(math.tanh(math.atanh(rho) - 1.959964 * se))
    assert c.high == pytest.approx(math.tanh(math.atanh(rho) + 1.959964 * se))
    assert "n = 40" in c.text


def test_spearman_drops_nan_pairs_and_refuses_small_n():
    x = np.array([1, 2, 3, 4, np.nan, 6.0])
    y = np.array([2, 1, 4, 3, 5, np.nan])
    c = spearman(x, y)
    assert c.n == 4 and math.isnan(c.rho) and "too few" in c.message


def test_partial_spearman_equals_statsmodels_ols_on_ranks():
    """Reference: OLS of rank(y) on rank(x) and rank(z) (statsmodels); the partial
    correlation is t / sqrt(t^2 + df) of the x coefficient, with the same p."""
    import statsmodels.api as sm

    x, y, z = _data(n=60, seed=4)
    rx, ry, rz = (sps.rankdata(v) for v in (x, y, z))
    fit = sm.OLS(ry, sm.add_constant(np.column_stack([rx, rz]))).fit()
    t, df = fit.tvalues[1], fit.df_resid
    expected = t / math.sqrt(t**2 + df)
    c = partial_spearman(x, y, z)
    assert c.rho == pytest.approx(expected, abs=1e-10)
    assert c.p == pytest.approx(fit.pvalues[1], rel=1e-8)
    assert c.n == 60
    # and it differs from the plain rho (z confounds x and y)
    assert abs(c.rho - spearman(x, y).rho) > 0.05


def test_partial_spearman_first_order_formula_by_hand():
    x, y, z = _data(n=30, seed=9)
    r = lambda a, b: sps.spearmanr(a, b)[0]  # noqa: E731
    rxy, rxz, ryz = r(x, y), r(x, z), r(y, z)
    hand = (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert partial_spearman(x, y, z).rho == pytest.approx(hand, abs=1e-10)


def test_chain_matrix_is_symmetric_and_has_partials():
    x, y, z = _data(n=50, seed=2)
    table = pd.DataFrame({"nk": x, "prog": y, "cd8": z})
    m = chain_matrix(table, {"nk": "NK", "prog": "program"}, covariate="cd8")
    one = m[(m.x == "nk") & (m.y == "prog")].iloc[0]
    two = m[(m.x == "prog") & (m.y == "nk")].iloc[0]
    assert one.rho == pytest.approx(two.rho) and one.rho == pytest.approx(
        sps.spearmanr(x, y)[0]
    )
    assert one.partial_rho == pytest.approx(partial_spearman(x, y, z).rho)
    assert one.x_label == "NK"


def test_gene_correlations_sorted_by_strength():
    rng = np.random.default_rng(1)
    target = rng.normal(size=30)
    genes = pd.DataFrame(
        {
            "STRONG": -target + rng.normal(0, 0.1, 30),
            "WEAK": rng.normal(size=30),
            "MID": target + rng.normal(0, 1, 30),
            "FLAT": np.ones(30),
        }
    )
    out = gene_correlations(genes, target, top=2)
    assert list(out["gene"]) == ["STRONG", "MID"]
    assert out.loc[0, "rho"] == pytest.approx(sps.spearmanr(genes.STRONG, target)[0])


def test_spearman_with_ties_equals_scipy():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 4, 30).astype(float)
    y = x + rng.integers(0, 3, 30)
    c = spearman(x, y)
    rho, p = sps.spearmanr(x, y)
    assert c.rho == pytest.approx(rho, abs=1e-12) and c.p == pytest.approx(p, rel=1e-9)
