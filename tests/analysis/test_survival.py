"""Survival statistics against hand computation and statsmodels PHReg."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.survival import cox_per_sd, kaplan_meier, number_at_risk


def test_kaplan_meier_five_patients_by_hand():
    frame = pd.DataFrame(
        {
            "t": [1.0, 2.0, 3.0, 4.0, 5.0, 2.0, 4.0, 6.0, 7.0, 8.0],
            "e": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0],
            "g": ["low"] * 5 + ["high"] * 5,
        }
    )
    out = kaplan_meier(
        frame, time="t", event="e", group="g", order=["low", "high"], endpoint="OS"
    )
    low = out.curves[0]
    surv = dict(zip(low.times, low.survival, strict=True))
    # by hand: S(1) = 4/5; censored at 2; S(3) = 0.8 * 2/3; S(4) = S(3) * 1/2
    assert surv[0.0] == 1.0
    assert surv[1.0] == pytest.approx(0.8)
    assert surv[3.0] == pytest.approx(0.8 * 2 / 3)
    assert surv[4.0] == pytest.approx(0.8 * 2 / 3 * 0.5)
    assert low.median == 4.0  # first time S drops to <= 0.5
    assert low.censor_times == (2.0, 5.0)
    assert low.censor_survival == pytest.approx((0.8, 0.8 * 2 / 3 * 0.5))
    assert out.risk_times[0] == 0.0
    assert out.at_risk[0] == number_at_risk([1, 2, 3, 4, 5], out.risk_times)


def test_number_at_risk_by_hand():
    assert number_at_risk([1, 2, 2, 5, 9], [0, 2, 3, 10]) == (5, 4, 2, 0)


def _logrank_by_hand(t, e, g):
    """Two-group log-rank chi-square from observed minus expected at event times."""
    t, e, g = map(np.asarray, (t, e, g))
    o_minus_e = var = 0.0
    for time in np.unique(t[e == 1]):
        at_risk = t >= time
        n, n1 = at_risk.sum(), (at_risk & (g == 0)).sum()
        d = ((t == time) & (e == 1)).sum()
        d1 = ((t == time) & (e == 1) & (g == 0)).sum()
        o_minus_e += d1 - d * n1 / n
        if n > 1:
            var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    chi2 = o_minus_e**2 / var
    return chi2, sps.chi2.sf(chi2, 1)


def _survival_frame(n=120, seed=5):
    rng = np.random.default_rng(seed)
    value = rng.normal(0.05, 0.02, n)
    tumor = rng.choice(["melanoma", "NSCLC", "RCC"], n)
    hazard = 0.05 * np.exp(8 * (value - 0.05)) * np.where(tumor == "RCC", 2.0, 1.0)
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.uniform(5, 60, n)
    return pd.DataFrame(
        {
            "value": value,
            "tumor_type": tumor,
            "os_months": np.round(np.minimum(t_event, t_cens), 1),  # ties on purpose
            "os_event": (t_event <= t_cens).astype(float),
        }
    )


def test_logrank_matches_hand_computation():
    frame = _survival_frame()
    frame["g"] = np.where(frame["value"] <= frame["value"].median(), "low", "high")
    out = kaplan_meier(
        frame, time="os_months", event="os_event", group="g", order=["low", "high"],
        endpoint="OS",
    )  # fmt: skip
    chi2, p = _logrank_by_hand(
        frame["os_months"], frame["os_event"], (frame["g"] == "high").astype(int)
    )
    assert out.logrank_statistic == pytest.approx(chi2, rel=1e-6)
    assert out.logrank_p == pytest.approx(p, rel=1e-6)


def test_cox_hr_per_sd_matches_statsmodels_phreg():
    from statsmodels.duration.hazard_regression import PHReg

    frame = _survival_frame()
    z = (frame["value"] - frame["value"].mean()) / frame["value"].std(ddof=1)
    ref = PHReg(
        frame["os_months"], z.to_frame(), status=frame["os_event"], ties="efron"
    ).fit()
    out = cox_per_sd(frame, time="os_months", event="os_event", endpoint="OS")
    assert math.log(out.hr) == pytest.approx(ref.params[0], rel=1e-4)
    assert out.p == pytest.approx(ref.pvalues[0], rel=1e-3)
    lo, hi = np.exp(ref.conf_int()[0])
    assert out.ci_low == pytest.approx(lo, rel=1e-3)
    assert out.ci_high == pytest.approx(hi, rel=1e-3)
    assert out.hr > 1  # simulated: higher metric, higher hazard

    strat = PHReg(
        frame["os_months"],
        z.to_frame(),
        status=frame["os_event"],
        strata=frame["tumor_type"],
        ties="efron",
    ).fit()
    adjusted = cox_per_sd(
        frame, time="os_months", event="os_event", endpoint="OS", strata="tumor_type"
    )
    assert math.log(adjusted.hr) == pytest.approx(strat.params[0], rel=1e-4)
    assert adjusted.model == "stratified by tumor type"


def test_too_few_events_gives_message_not_numbers():
    frame = _survival_frame(n=30)
    frame["os_event"] = 0.0
    frame.loc[:2, "os_event"] = 1.0
    out = cox_per_sd(frame, time="os_months", event="os_event", endpoint="OS")
    assert math.isnan(out.hr) and "too few events" in out.message
    frame["g"] = np.where(frame.index < 15, "low", "high")
    km = kaplan_meier(
        frame, time="os_months", event="os_event", group="g", order=["low", "high"],
        endpoint="OS",
    )  # fmt: skip
    assert math.isnan(km.logrank_p) and "only 3 events" in km.message
    assert len(km.curves) == 2  # curves still drawn


def test_missing_endpoint_column():
    frame = _survival_frame().drop(columns=["os_event"])
    out = cox_per_sd(frame, time="os_months", event="os_event", endpoint="OS")
    assert "no data" in out.message
