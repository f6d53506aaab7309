"""Pooling across cohorts, checked against statsmodels, scipy and metafor's example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import combine_effects

from analysis import meta

# BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg): tpos, tneg, cpos, cneg.
# The 2x2 counts and the log risk ratios they give were read from the metafor
# project's page "Testing Factors and Linear Combinations of Parameters".
BCG = np.array(
    [
        [4, 119, 11, 128], [6, 300, 29, 274], [3, 228, 11, 209],
        [62, 13536, 248, 12619], [33, 5036, 47, 5761], [180, 1361, 372, 1079],
        [8, 2537, 10, 619], [505, 87886, 499, 87892], [29, 7470, 45, 7232],
        [17, 1699, 65, 1600], [186, 50448, 141, 27197], [5, 2493, 3, 2338],
        [27, 16886, 29, 17825],
    ],
    dtype=float,
)  # fmt: skip


def bcg_log_rr() -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d = BCG.T
    y = np.log(a / (a + b)) - np.log(c / (c + d))
    v = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)
    return y, v


def test_bcg_log_rr_as_metafor_prints_them():
    y, v = bcg_log_rr()
    assert y[:3] == pytest.approx([-0.8893, -1.5854, -1.3481], abs=1e-4)
    assert v[-1] == pytest.approx(0.0714, abs=1e-4)


def test_dl_matches_statsmodels_combine_effects():
    y, v = bcg_log_rr()
    ours = meta.pool_dl(y, v)
    ref = combine_effects(y, v, method_re="dl")
    assert ref.tau2 > 0  # statsmodels does not truncate at 0; here it need not
    assert ours.tau2 == pytest.approx(ref.tau2, rel=1e-10)
    assert ours.estimate == pytest.approx(ref.mean_effect_re, rel=1e-10)
    assert ours.se == pytest.approx(ref.sd_eff_w_re, rel=1e-10)
    assert ours.q == pytest.approx(ref.q, rel=1e-10)
    assert ours.i2 == pytest.approx(ref.i2, rel=1e-10)


def test_dl_matches_metafor_test_suite():
    # metafor tests/testthat/test_misc_metan_vs_rma.uni_with_dat.bcg.r:
    # rma(yi, vi, data=dat, method="DL"): -0.7141, CI -1.0644 to -0.3638
    y, v = bcg_log_rr()
    ours = meta.pool_dl(y, v)
    assert ours.estimate == pytest.approx(-0.7141, abs=1e-4)
    assert ours.ci_low == pytest.approx(-1.0644, abs=1e-4)
    assert ours.ci_high == pytest.approx(-0.3638, abs=1e-4)


def _neg_restricted_loglik(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    w = 1 / (v + tau2)
    mu = (w * y).sum() / w.sum()
    return 0.5 * (np.log(v + tau2).sum() + np.log(w.sum()) + (w * (y - mu) ** 2).sum())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reml_tau2_maximises_the_restricted_likelihood(seed):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, 9)
    y = rng.normal(0.2, 0.3, 9) + rng.normal(0, np.sqrt(v))
    best = optimize.minimize_scalar(
        _neg_restricted_loglik, bounds=(0, 10), args=(y, v), method="bounded",
        options={"xatol": 1e-12},
    )  # fmt: skip
    assert meta.reml_tau2(y, v) == pytest.approx(best.x, abs=1e-6)


def test_reml_hartung_knapp_matches_metafor_bcg_example():
    # metafor: rma(yi, vi, data=dat.bcg log RR, method="REML", test="knha").
    # REML tau^2 = 0.3132, estimate -0.7145 (metafor documentation of rma.uni);
    # with test="knha": se 0.1808, t(12) = -3.9522, p = 0.0019, CI -1.1084 to
    # -0.3206, as printed in metafor's worked example of `rma(yi, vi, data=dat,
    # test="knha")` on dat.bcg (re-read 2026-12-01 in a public copy of that output).
    y, v = bcg_log_rr()
    hk = meta.pool_reml_hk(y, v)
    assert hk.tau2 == pytest.approx(0.3132, abs=1e-4)
    assert hk.estimate == pytest.approx(-0.7145, abs=1e-4)
    assert hk.se == pytest.approx(0.1808, abs=1e-4)
    assert hk.estimate / hk.se == pytest.approx(-3.9522, abs=1e-3)
    assert hk.p == pytest.approx(0.0019, abs=1e-4)
    assert hk.ci_low == pytest.approx(-1.1084, abs=1e-4)
    assert hk.ci_high == pytest.approx(-0.3206, abs=1e-4)


def test_hartung_knapp_formula_by_hand():
    y = np.array([0.1, 0.4, -0.2, 0.3])
    v = np.array([0.04, 0.02, 0.05, 0.03])
    hk = meta.pool_reml_hk(y, v)
    w = 1 / (v + hk.tau2)
    mu = (w * y).sum() / w.sum()
    se = math.sqrt((w * (y - mu) ** 2).sum() / (3 * w.sum()))
    assert hk.estimate == pytest.approx(mu)
    assert hk.se == pytest.approx(se)
    assert hk.ci_high == pytest.approx(mu + stats.t.ppf(0.975, 3) * se)
    # prediction interval, Higgins et al. 2009: t(k-2) and tau^2 + se^2
    half = stats.t.ppf(0.975, 2) * math.sqrt(hk.tau2 + se**2)
    assert (hk.pi_low, hk.pi_high) == pytest.approx((mu - half, mu + half))


def test_homogeneous_studies_give_zero_tau2_and_no_prediction_below_three():
    hk = meta.pool_reml_hk([0.2, 0.21, 0.19], [0.1, 0.1, 0.1])
    assert hk.tau2 == 0.0 and hk.i2 == 0.0
    two = meta.pool_dl([0.2, 0.3], [0.1, 0.1])
    assert math.isnan(two.pi_low)
    one = meta.pool_reml_hk([0.2], [0.1])
    assert not one.ok and "Fewer than two" in one.message


# ------------------------------------------------------------- per cohort


def _patients(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n, shift, tumor, treatment in [
        ("A", 30, -0.8, "melanoma", "anti-PD-1"),
        ("B", 24, 0.0, "NSCLC", "anti-PD-L1"),
        ("C", 40, 0.5, "melanoma", "anti-CTLA-4"),
    ]:
        recist = rng.choice(["CR", "PR", "SD", "PD"], size=n)
        responder = np.isin(recist, ["CR", "PR"])
        value = rng.normal(size=n) + shift * responder
        for i in range(n):
            rows.append((cohort, f"P{i}", tumor, treatment, recist[i], value[i]))
    frame = pd.DataFrame(
        rows,
        columns=["cohort", "patient_id", "tumor_type", "treatment", "recist", "value"],
    )
    frame["response"] = np.where(frame["recist"].isin(["CR", "PR"]), "R", "NR")
    return frame


def test_cohort_effects_match_scipy_mannwhitneyu():
    patients = _patients()
    effects = meta.cohort_effects_from_patients(
        patients, dataset="d", definition="objective"
    )
    assert [e.cohort for e in effects] == ["A", "B", "C"]
    for e in effects:
        rows = patients[patients["cohort"] == e.cohort]
        resp = rows["recist"].isin(["CR", "PR"])
        test = stats.mannwhitneyu(rows.loc[resp, "value"], rows.loc[~resp, "value"])
        n1, n2 = resp.sum(), (~resp).sum()
        assert (e.n_responders, e.n_non_responders) == (n1, n2)
        assert e.r == pytest.approx(1 - 2 * test.statistic / (n1 * n2))
        assert e.auc == pytest.approx((1 + e.r) / 2)
        assert e.p == pytest.approx(test.pvalue)
        assert e.z == pytest.approx(np.arctanh(e.r))
        assert e.se_z == pytest.approx(e.se / (1 - e.r**2))
    assert effects[0].treatment_class == "PD-1/PD-L1"
    assert effects[2].treatment_class == "CTLA-4"


def test_pooled_r_is_tanh_of_pooled_z_from_statsmodels():
    effects = meta.cohort_effects_from_patients(
        _patients(), dataset="d", definition="objective"
    )
    pooled = meta.pool(effects)
    z = np.array([math.atanh(e.r) for e in effects])
    var = np.array([(e.se / (1 - e.r**2)) ** 2 for e in effects])
    ref = combine_effects(z, var, method_re="dl")
    expected_tau2 = max(ref.tau2, 0.0)
    assert pooled["dl"].tau2 == pytest.approx(expected_tau2, abs=1e-12)
    if ref.tau2 > 0:
        assert pooled["dl"].r == pytest.approx(math.tanh(ref.mean_effect_re))
    json = pooled["reml_hk"].to_json()
    assert set(json) >= {"k", "r", "ci_low", "ci_high", "p", "tau2", "i2"}
    assert json["r"] == pytest.approx(math.tanh(pooled["reml_hk"].estimate))


def test_leave_one_out_pools_the_others():
    effects = meta.cohort_effects_from_patients(
        _patients(), dataset="d", definition="objective"
    )
    loo = meta.leave_one_out(effects)
    assert [lo.cohort for lo in loo] == ["A", "B", "C"]
    rest = [e for e in effects if e.cohort != "A"]
    expected = meta.pool_reml_hk([e.z for e in rest], [e.se_z**2 for e in rest])
    assert loo[0].pooled.estimate == pytest.approx(expected.estimate)
    assert loo[0].pooled.k == 2


def _fake(n: int, seed: int = 4) -> list[meta.CohortEffect]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = float(np.tanh(rng.normal(0.1, 0.2)))
        out.append(
            meta.CohortEffect(
                "d", f"C{i}", ["melanoma", "NSCLC"][i % 2],
                ["PD-1/PD-L1", "CTLA-4", "combination"][i % 3], 20, 20,
                r=r, se=float(rng.uniform(0.08, 0.3)),
            )
        )  # fmt: skip
    return out


def test_egger_matches_scipy_linregress():
    effects = _fake(12)
    egger = meta.egger_test(effects)
    se = np.array([e.se_z for e in effects])
    z = np.array([e.z for e in effects])
    ref = stats.linregress(1 / se, z / se)
    assert egger.intercept == pytest.approx(ref.intercept)
    assert egger.se == pytest.approx(ref.intercept_stderr)
    t = ref.intercept / ref.intercept_stderr
    assert egger.p == pytest.approx(2 * stats.t.sf(abs(t), len(effects) - 2))
    few = meta.egger_test(effects[:9])
    assert math.isnan(few.p) and "at least 10" in few.message


def test_subgroup_q_between_by_hand():
    effects = _fake(8)
    test = meta.subgroup_test(effects, by="tumor_type")
    means, weights = [], []
    for tumor in ("NSCLC", "melanoma"):
        members = [e for e in effects if e.tumor_type == tumor]
        ref = combine_effects(
            np.array([e.z for e in members]),
            np.array([e.se_z**2 for e in members]),
            method_re="dl",
        )
        tau2 = max(ref.tau2, 0.0)
        w = 1 / (np.array([e.se_z**2 for e in members]) + tau2)
        means.append((w * [e.z for e in members]).sum() / w.sum())
        weights.append(w.sum())
    means, weights = np.array(means), np.array(weights)
    grand = (weights * means).sum() / weights.sum()
    q = (weights * (means - grand) ** 2).sum()
    assert test.q_between == pytest.approx(q)
    assert test.p == pytest.approx(stats.chi2.sf(q, 1))
    assert test.df == 1


def test_every_checkpoint_treatment_has_a_class():
    """Imports map pooled labels (PD-1/PD-L1, IO+combo) to schema treatments; each
    must fall in a named class, not 'other' (which reads as non-checkpoint)."""
    from analysis.meta import TREATMENT_CLASSES, treatment_class
    from data import schema

    assert set(schema.TREATMENTS) - {"other"} == set(TREATMENT_CLASSES)
    assert treatment_class(["anti-PD-(L)1"]) == "PD-1/PD-L1"
    assert treatment_class(["anti-PD-1", "anti-PD-(L)1"]) == "PD-1/PD-L1"
    assert treatment_class(["anti-PD-1", "anti-CTLA-4"]) == "mixed"
