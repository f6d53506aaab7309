"""Infiltration-adjusted NK effect: response ~ NK metric + CD8, per cohort and pooled.

Raw NK estimates from bulk tissue rise with overall immune infiltration, which itself
goes with response. Adding the CD8 abundance to a logistic model separates NK from
infiltration. Per cohort two models are fitted by maximum likelihood (statsmodels
``Logit``): ``response ~ z(NK)`` (unadjusted) and ``response ~ z(NK) + z(CD8)``
(adjusted), z = standardized within the cohort, so the NK coefficient is a log odds
ratio per SD of the NK metric. Both are pooled by REML with Hartung-Knapp
(:func:`analysis.meta.pool_reml_hk`) on the log-odds-ratio scale.

An odds ratio below 1 means patients with more NK respond less often - the Song et
al. direction (as r > 0 is on the other panels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import meta
from analysis.evidence_view import load_sources
from analysis.multiverse import cd8_partner
from analysis.nk_metrics import available_metrics, patient_metric
from analysis.stats import MIN_GROUP


@dataclass(frozen=True)
class CohortModel:
    """NK log odds ratio per SD in one cohort, without and with CD8."""

    dataset: str
    cohort: str
    n: int
    n_responders: int
    covariate: str
    log_or: float = math.nan
    se: float = math.nan
    log_or_adjusted: float = math.nan
    se_adjusted: float = math.nan
    message: str = ""


def covariate_for(metric: str, columns: Sequence[str]) -> str | None:
    """The CD8 abundance to adjust for: the same method's CD8 estimator."""
    if metric.startswith("score_"):
        partner = cd8_partner(metric, list(columns))
        if partner:
            return partner
    return "frac_cd8" if "frac_cd8" in columns else None


def _fit(y: np.ndarray, x: np.ndarray) -> tuple[float, float, str]:
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = sm.Logit(y, sm.add_constant(x)).fit(disp=False, maxiter=100)
    except (PerfectSeparationError, PerfectSeparationWarning):
        return math.nan, math.nan, "perfect separation"
    except (ConvergenceWarning, np.linalg.LinAlgError):
        return math.nan, math.nan, "model did not converge"
    beta, se = float(fit.params[1]), float(fit.bse[1])
    if not math.isfinite(se) or se > 50:
        return math.nan, math.nan, "quasi-separation"
    return beta, se, ""


def cohort_model(
    patients: pd.DataFrame, *, dataset: str, cohort: str, covariate: str,
    definition: str,
) -> CohortModel:  # fmt: skip
    """Both models in one cohort's patients (``value`` = NK metric)."""
    responder = meta.binary_responder(patients, definition)
    frame = pd.DataFrame(
        {
            "y": responder,
            "nk": patients["value"].astype(float),
            "cd8": patients[covariate].astype(float),
        }
    ).dropna()
    n, events = len(frame), int(frame["y"].astype(bool).sum())
    base = dict(dataset=dataset, cohort=cohort, n=n, n_responders=events,
                covariate=covariate)  # fmt: skip
    if min(events, n - events) < MIN_GROUP or n < 10:
        return CohortModel(
            **base, message=f"too few patients (n={n}, {events} responders)"
        )
    sd_nk, sd_cd8 = frame["nk"].std(ddof=1), frame["cd8"].std(ddof=1)
    if not (sd_nk > 0 and sd_cd8 > 0):
        return CohortModel(**base, message="the NK metric or CD8 does not vary")
    y = frame["y"].astype(int).to_numpy()
    z_nk = ((frame["nk"] - frame["nk"].mean()) / sd_nk).to_numpy()
    z_cd8 = ((frame["cd8"] - frame["cd8"].mean()) / sd_cd8).to_numpy()
    b, se, why = _fit(y, z_nk)
    b_adj, se_adj, why_adj = _fit(y, np.column_stack([z_nk, z_cd8]))
    return CohortModel(
        **base, log_or=b, se=se, log_or_adjusted=b_adj, se_adjusted=se_adj,
        message=why or why_adj,
    )  # fmt: skip


@dataclass(frozen=True)
class AdjustedResult:
    """Per-cohort models and the two pooled NK log odds ratios."""

    metric: str
    cohorts: tuple[CohortModel, ...]
    unadjusted: meta.Pooled
    adjusted: meta.Pooled


def adjusted_models(
    datasets: Sequence[str], data_dir: Path, *, metric: str, definition: str,
    timepoint: str = "pre", filters: dict | None = None,
) -> AdjustedResult:  # fmt: skip
    """Fit both models per cohort of every dataset and pool them (REML-HK)."""
    out: list[CohortModel] = []
    for source in load_sources(datasets, data_dir, filters or {}):
        keys = {m.key for m in available_metrics(source.samples)}
        if source.samples.empty or metric not in keys:
            continue
        patients = patient_metric(source.samples, metric, timepoint=timepoint)
        covariate = covariate_for(metric, list(patients.columns))
        if covariate is None:
            continue
        for cohort, rows in patients.groupby("cohort", sort=True):
            out.append(
                cohort_model(
                    rows,
                    dataset=source.name,
                    cohort=str(cohort),
                    covariate=covariate,
                    definition=definition,
                )
            )
    use = [m for m in out if not m.message and math.isfinite(m.se_adjusted)]
    return AdjustedResult(
        metric,
        tuple(out),
        meta.pool_reml_hk([m.log_or for m in use], [m.se**2 for m in use]),
        meta.pool_reml_hk(
            [m.log_or_adjusted for m in use], [m.se_adjusted**2 for m in use]
        ),
    )
