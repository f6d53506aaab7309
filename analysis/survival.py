"""Survival by NK group: Kaplan-Meier, log-rank, Cox hazard ratio per SD (lifelines).

One row per patient. Fits that cannot give a trustworthy number (too few patients or
events, no convergence, separation) return a ``message`` and NaN, never a number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.stats import MIN_GROUP, Z95

#: Fewer events than this: no log-rank p and no Cox model.
MIN_EVENTS = 5


@dataclass(frozen=True)
class KMCurve:
    """Kaplan-Meier estimate of one group (step function starting at (0, 1))."""

    group: str
    n: int
    events: int
    times: tuple[float, ...]
    survival: tuple[float, ...]
    censor_times: tuple[float, ...]
    censor_survival: tuple[float, ...]
    median: float  # NaN when the curve never reaches 0.5


@dataclass(frozen=True)
class KMResult:
    """Curves per group, log-rank test and the number at risk at ``risk_times``."""

    endpoint: str
    curves: tuple[KMCurve, ...] = ()
    risk_times: tuple[float, ...] = ()
    at_risk: tuple[tuple[int, ...], ...] = ()
    logrank_statistic: float = math.nan
    logrank_df: int = 0
    logrank_p: float = math.nan
    test: str = "log-rank"
    message: str = ""


def number_at_risk(durations, times: Sequence[float]) -> tuple[int, ...]:
    """Patients still under observation (duration >= t) at each time ``t``."""
    durations = np.asarray(durations, dtype=float)
    return tuple(int((durations >= t).sum()) for t in times)


def _risk_times(max_time: float, n_ticks: int = 6) -> tuple[float, ...]:
    """Round tick times (months) from 0 covering the follow-up."""
    if not math.isfinite(max_time) or max_time <= 0:
        return (0.0,)
    raw = max_time / (n_ticks - 1)
    step = next(s for s in (1, 2, 3, 6, 12, 24, 36, 60, 120, 1e9) if s >= raw)
    return tuple(float(t) for t in np.arange(0, max_time + 1e-9, step))


def kaplan_meier(
    frame: pd.DataFrame,
    *,
    time: str,
    event: str,
    group: str,
    order: Sequence[str],
    endpoint: str,
) -> KMResult:
    """Kaplan-Meier per group and a log-rank test across groups.

    Parameters
    ----------
    frame
        One row per patient with the time, event (1 = event, 0 = censored) and group
        columns; rows with a missing value are dropped.
    time, event, group
        Column names.
    order
        Groups in display order.
    endpoint
        Name of the endpoint for messages (``"Overall survival"``).
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    if time not in frame.columns or event not in frame.columns:
        return KMResult(endpoint, message=f"{endpoint}: no data in this dataset.")
    data = frame[[time, event, group]].dropna()
    data = data[data[group].isin(order)]
    if data.empty:
        return KMResult(endpoint, message=f"{endpoint}: no patient has follow-up data.")
    curves = []
    for name in order:
        part = data[data[group] == name]
        if part.empty:
            continue
        km = KaplanMeierFitter().fit(part[time], part[event], label=name)
        sf = km.survival_function_.iloc[:, 0]
        censored = part.loc[part[event] == 0, time].to_numpy(dtype=float)
        curves.append(
            KMCurve(
                group=name,
                n=len(part),
                events=int(part[event].sum()),
                times=tuple(float(t) for t in sf.index),
                survival=tuple(float(s) for s in sf.to_numpy()),
                censor_times=tuple(float(t) for t in censored),
                censor_survival=tuple(
                    float(s) for s in km.survival_function_at_times(censored)
                ),
                median=float(km.median_survival_time_),
            )
        )
    risk_times = _risk_times(float(data[time].max()))
    at_risk = tuple(
        number_at_risk(data.loc[data[group] == c.group, time], risk_times)
        for c in curves
    )
    events = int(data[event].sum())
    small = [c for c in curves if c.n < MIN_GROUP]
    base = KMResult(endpoint, tuple(curves), risk_times, at_risk)
    if len(curves) < 2 or small:
        return _replace(
            base,
            message=f"{endpoint}: log-rank test needs two groups of at least "
            f"{MIN_GROUP} patients.",
        )
    if events < MIN_EVENTS:
        return _replace(
            base,
            message=f"{endpoint}: only {events} events; at least {MIN_EVENTS} needed "
            "for a log-rank test.",
        )
    res = multivariate_logrank_test(data[time], data[group], data[event])
    return _replace(
        base,
        logrank_statistic=float(res.test_statistic),
        logrank_df=len(curves) - 1,
        logrank_p=float(res.p_value),
    )


def _replace(result, **changes):
    from dataclasses import replace

    return replace(result, **changes)


@dataclass(frozen=True)
class CoxResult:
    """Cox proportional-hazards HR per 1 SD of the metric (Efron ties)."""

    endpoint: str
    model: str
    n: int
    events: int
    hr: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    metric_sd: float = math.nan
    message: str = ""


def cox_per_sd(
    frame: pd.DataFrame,
    *,
    time: str,
    event: str,
    endpoint: str,
    strata: str | None = None,
) -> CoxResult:
    """Cox HR per SD of ``value``, optionally stratified (e.g. by tumor type).

    Stratifying gives each tumor type its own baseline hazard, which adjusts for
    tumor type without estimating a coefficient per type (a type with no events
    would otherwise make the fit diverge).

    Parameters
    ----------
    frame
        One row per patient with ``value``, the time and event columns (and
        ``strata``).
    time, event
        Column names (event 1 = death/progression, 0 = censored).
    endpoint
        Endpoint name for messages.
    strata
        Column to stratify by, or ``None`` for the unadjusted model.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    model = (
        "unadjusted" if strata is None else f"stratified by {strata.replace('_', ' ')}"
    )
    if time not in frame.columns or event not in frame.columns:
        return CoxResult(endpoint, model, 0, 0, message=f"{endpoint}: no data.")
    cols = ["value", time, event] + ([strata] if strata else [])
    data = frame[cols].dropna().copy()
    n, events = len(data), int(data[event].sum()) if len(data) else 0
    if events < MIN_EVENTS or n < 2 * MIN_GROUP:
        return CoxResult(
            endpoint,
            model,
            n,
            events,
            message=f"{endpoint}: too few events for a Cox model ({events} events in "
            f"{n} patients; at least {MIN_EVENTS} needed).",
        )
    sd = float(data["value"].std(ddof=1))
    if not sd > 0:
        return CoxResult(
            endpoint, model, n, events, message="The metric does not vary."
        )
    data["z"] = (data["value"] - data["value"].mean()) / sd
    data = data.drop(columns="value")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            fit = CoxPHFitter().fit(
                data,
                duration_col=time,
                event_col=event,
                strata=[strata] if strata else None,
            )
    except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError):
        return CoxResult(
            endpoint,
            model,
            n,
            events,
            message=f"{endpoint}: the Cox model did not converge; no hazard ratio.",
        )
    beta = float(fit.params_["z"])
    se = float(fit.standard_errors_["z"])
    if not (math.isfinite(beta) and math.isfinite(se)) or se > 10:
        return CoxResult(
            endpoint,
            model,
            n,
            events,
            message=f"{endpoint}: the Cox fit is unstable; no hazard ratio.",
        )
    return CoxResult(
        endpoint,
        model,
        n,
        events,
        hr=math.exp(beta),
        ci_low=math.exp(beta - Z95 * se),
        ci_high=math.exp(beta + Z95 * se),
        p=float(fit.summary.loc["z", "p"]),
        metric_sd=sd,
    )
