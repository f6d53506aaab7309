"""Survival statistics against hand computation, statsmodels PHReg and lifelines."""

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


def test_kaplan_meier_and_logrank_match_lifelines_three_groups():
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    frame = _survival_frame(n=150, seed=11)
    frame["os_months"] = frame["os_months"].round(0)  # ties
    frame["g"] = pd.qcut(frame["value"], 3, labels=["low", "mid", "high"]).astype(str)
    out = kaplan_meier(
        frame, time="os_months", event="os_event", group="g",
        order=["low", "mid", "high"], endpoint="OS",
    )  # fmt: skip
    for curve in out.curves:
        part = frame[frame["g"] == curve.group]
        ref = KaplanMeierFitter().fit(part["os_months"], part["os_event"])
        sf = ref.survival_function_.iloc[:, 0]
        assert list(curve.times) == pytest.approx(list(sf.index))
        assert list(curve.survival) == pytest.approx(list(sf.to_numpy()), abs=1e-12)
        assert curve.median == ref.median_survival_time_
        censored = part.loc[part["os_event"] == 0, "os_months"]
        assert list(curve.censor_survival) == pytest.approx(
            list(ref.survival_function_at_times(censored).to_numpy()), abs=1e-12
        )
    ref = multivariate_logrank_test(frame["os_months"], frame["g"], frame["os_event"])
    assert out.logrank_statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert out.logrank_p == pytest.approx(ref.p_value, rel=1e-9)
    assert out.logrank_df == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("strata", [None, "tumor_type"])
def test_cox_matches_lifelines_with_heavy_ties(seed, strata):
    """Times rounded to whole months: many tied events, where Efron matters."""
    from lifelines import CoxPHFitter

    frame = _survival_frame(n=200, seed=seed)
    frame["os_months"] = frame["os_months"].round(0).clip(lower=1)
    z = (frame["value"] - frame["value"].mean()) / frame["value"].std(ddof=1)
    data = pd.DataFrame(
        {"z": z, "t": frame["os_months"], "e": frame["os_event"]}
        | ({strata: frame[strata]} if strata else {})
    )
    ref = CoxPHFitter().fit(
        data, duration_col="t", event_col="e", strata=[strata] if strata else None
    )
    out = cox_per_sd(
        frame, time="os_months", event="os_event", endpoint="OS", strata=strata
    )
    assert math.log(out.hr) == pytest.approx(ref.params_["z"], rel=1e-6)
    se = (math.log(out.ci_high) - math.log(out.ci_low)) / (2 * 1.959963984540054)
    assert se == pytest.approx(ref.standard_errors_["z"], rel=1e-6)
    assert out.p == pytest.approx(ref.summary.loc["z", "p"], rel=1e-5)


def test_cox_two_tied_events_by_hand():
    """Efron for 4 subjects, x = (0, 1, 0, 1), times (1, 1, 2, 3), all events.

    At t=1 both events tie; risk set all four: S0 = 2 + 2e^b, tied weight
    D0 = 1 + e^b. Efron: log L = b - log(S0) - log(S0 - D0/2) + [t=2: 0 - log(1 + e^b)]
    + [t=3: b - log(e^b)] = b - log(2+2e^b) - log(1.5+1.5e^b) - log(1+e^b).
    dlogL/db = 1 - 3 e^b/(1+e^b) = 0  ->  e^b = 1/2.
    """
    from analysis.survival import cox_efron_1d

    beta, se = cox_efron_1d(
        np.array([1.0, 1.0, 2.0, 3.0]),
        np.array([1.0, 1.0, 1.0, 1.0]),
        np.array([0.0, 1.0, 0.0, 1.0]),
    )
    assert beta == pytest.approx(math.log(0.5), abs=1e-9)
    # information = 3 p (1 - p) with p = e^b / (1 + e^b) = 1/3
    assert se == pytest.approx(1 / math.sqrt(3 * (1 / 3) * (2 / 3)), rel=1e-9)


def test_cox_separation_gives_message():
    """Every event in the high-metric patients, in time order: no finite HR."""
    frame = pd.DataFrame(
        {
            "value": np.arange(20, dtype=float),
            "os_months": np.r_[np.arange(1, 11), np.full(10, 50.0)][::-1],
            "os_event": np.r_[np.zeros(10), np.ones(10)],
        }
    )
    out = cox_per_sd(frame, time="os_months", event="os_event", endpoint="OS")
    assert math.isnan(out.hr) and out.message


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
