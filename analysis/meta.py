"""NK metric vs response across cohorts: per-cohort effects and random-effects pooling.

Per cohort (a ``cohort`` value within one dataset) the effect is the one the
``/nk-response`` page shows per stratum: the rank-biserial r of the NK metric between
responders and non-responders (``r > 0``: lower metric in responders, the Song et
al. direction) with its DeLong-based standard error, from
:func:`analysis.stats.stratum_effect`, and the Mann-Whitney p from
:func:`analysis.stats.mann_whitney`.

Pooling scale
-------------
r is bounded in [-1, 1] and its sampling distribution is skewed near the bounds, so
effects are pooled on Fisher's z scale, ``z = atanh(r)``, and the pooled z and its
interval are transformed back with ``tanh``. For the rank-biserial r this is the
same as pooling the AUC on the logit scale: ``atanh(2 AUC - 1) = logit(AUC) / 2``.
The standard error of z is the delta-method ``SE(z) = SE(r) / (1 - r^2)`` with
``SE(r) = 2 SE_DeLong(AUC)``. A cohort whose groups are perfectly separated has no
variance estimate and is not pooled (it is listed, with that reason).

Estimators
----------
* ``dl``: DerSimonian-Laird tau^2 (truncated at 0), normal-theory CI and p
  (:func:`analysis.stats.pool_dersimonian_laird`).
* ``reml_hk``: restricted maximum likelihood tau^2 (Fisher scoring, as metafor's
  default) with the Hartung-Knapp(-Sidik-Jonkman) variance and a t(k-1) interval.
  statsmodels' ``combine_effects`` offers DL and Paule-Mandel ("iterated") but no
  REML, so REML is written out here and checked in the tests against a direct
  maximisation of the restricted likelihood and against metafor's published
  BCG-vaccine example.

The 95% prediction interval is ``mu +/- t(k-2) sqrt(tau^2 + SE(mu)^2)`` (Higgins,
Thompson & Spiegelhalter 2009), given for k >= 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import stats
from analysis.nk_metrics import patient_metric
from analysis.response import DEFINITIONS, RESPONDER, assign_response

#: Egger's regression test is drawn only from this many cohorts on.
EGGER_MIN_K = 10

#: Treatment -> class for the subgroup test and the forest grouping.
#: Every checkpoint class of ``data.schema.TREATMENTS`` has one (a test checks).
TREATMENT_CLASSES = {
    "anti-PD-1": "PD-1/PD-L1",
    "anti-PD-L1": "PD-1/PD-L1",
    "anti-PD-(L)1": "PD-1/PD-L1",  # pooled PD-1/PD-L1 arms of published tables
    "anti-CTLA-4": "CTLA-4",
    "anti-PD-1 + anti-CTLA-4": "combination",
    "anti-PD-L1 + anti-CTLA-4": "combination",
    "anti-PD-(L)1 + anti-CTLA-4": "combination",
    "ICB, unspecified": "ICB, unspecified",
    "ICB + other agent": "ICB + other agent",
}
#: Response definitions with two groups (a per-cohort r needs two).
BINARY_DEFINITIONS = tuple(k for k, d in DEFINITIONS.items() if d.binary)


def treatment_class(treatments: Sequence[str]) -> str:
    """The class of a cohort's treatments; ``mixed`` when it holds several."""
    classes = {TREATMENT_CLASSES.get(str(t), "other") for t in treatments}
    return classes.pop() if len(classes) == 1 else "mixed"


def tumor_label(tumor_types: Sequence[str]) -> str:
    """One tumor type, or ``mixed (A, B)`` for a cohort of several."""
    kinds = sorted({str(t) for t in tumor_types})
    return kinds[0] if len(kinds) == 1 else f"mixed ({', '.join(kinds)})"


# ---------------------------------------------------------------- per cohort


@dataclass(frozen=True)
class CohortEffect:
    """The NK metric vs response effect in one cohort of one dataset.

    ``r``, ``ci_low``, ``ci_high``, ``auc`` are those of
    :func:`analysis.stats.stratum_effect` (as on ``/nk-response``); ``z`` and
    ``se_z`` are the Fisher-z effect and its standard error used for pooling.
    """

    dataset: str
    cohort: str
    tumor_type: str
    treatment_class: str
    n_responders: int
    n_non_responders: int
    r: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    auc: float = math.nan
    p: float = math.nan
    synthetic: bool = False
    message: str = ""

    @property
    def label(self) -> str:
        return f"{self.cohort} ({self.dataset})"

    @property
    def usable(self) -> bool:
        return (
            math.isfinite(self.r)
            and math.isfinite(self.se)
            and self.se > 0
            and abs(self.r) < 1
        )

    @property
    def z(self) -> float:
        return math.atanh(self.r) if self.usable else math.nan

    @property
    def se_z(self) -> float:
        return self.se / (1 - self.r**2) if self.usable else math.nan


def binary_responder(patients: pd.DataFrame, definition: str) -> pd.Series:
    """True/False/NA per patient under a binary response definition."""
    groups = assign_response(patients, definition)
    out = (groups == RESPONDER).astype("boolean")
    out[groups.isna()] = pd.NA
    return out


def cohort_effects_from_patients(
    patients: pd.DataFrame,
    *,
    dataset: str,
    definition: str,
    synthetic: bool = False,
    with_p: bool = True,
) -> list[CohortEffect]:
    """Per-cohort effects from one row per patient with ``value`` (the metric).

    Parameters
    ----------
    patients
        As :func:`analysis.nk_metrics.patient_metric` returns, with ``value``.
    dataset
        Dataset name carried into the results.
    definition
        A binary response definition key (``objective``, ``benefit``,
        ``reported``).
    synthetic
        Whether the dataset is synthetic (said on every figure).
    with_p
        Also run the Mann-Whitney test per cohort (the multiverse does not need
        it, and it is the slowest step there).
    """
    if definition not in BINARY_DEFINITIONS:
        raise ValueError(
            f"response definition {definition!r} has more than two groups; use one "
            f"of {', '.join(BINARY_DEFINITIONS)}"
        )
    out: list[CohortEffect] = []
    if patients.empty:
        return out
    responder = binary_responder(patients, definition)
    return effects_from_arrays(
        patients["value"].to_numpy(dtype=float),
        known=responder.notna().to_numpy(),
        is_responder=responder.fillna(False).to_numpy(dtype=bool),
        cohorts=patients["cohort"].astype(str).to_numpy(),
        tumors=patients["tumor_type"].astype(str).to_numpy(),
        treatments=patients["treatment"].astype(str).to_numpy(),
        dataset=dataset,
        definition=definition,
        synthetic=synthetic,
        with_p=with_p,
    )


def effects_from_arrays(
    values: np.ndarray,
    *,
    known: np.ndarray,
    is_responder: np.ndarray,
    cohorts: np.ndarray,
    tumors: np.ndarray,
    treatments: np.ndarray,
    dataset: str,
    definition: str,
    synthetic: bool = False,
    with_p: bool = True,
) -> list[CohortEffect]:
    """:func:`cohort_effects_from_patients` on arrays (one entry per patient), so
    the multiverse assigns response once per dataset and definition."""
    out: list[CohortEffect] = []
    has_value = np.isfinite(values)
    for cohort in sorted(set(cohorts)):
        here = cohorts == cohort
        ok = here & known & has_value
        pos = values[ok & is_responder]
        neg = values[ok & ~is_responder]
        effect = stats.stratum_effect("cohort", cohort, pos, neg)
        p = stats.mann_whitney(pos, neg).p if with_p else math.nan
        message = effect.message
        if not ok.any():
            message = _why_not_evaluable(definition, values[here])
        out.append(
            CohortEffect(
                dataset=dataset,
                cohort=cohort,
                tumor_type=tumor_label(np.unique(tumors[here])),
                treatment_class=treatment_class(np.unique(treatments[here])),
                n_responders=effect.n_pos,
                n_non_responders=effect.n_neg,
                r=effect.r,
                se=effect.se,
                ci_low=effect.ci_low,
                ci_high=effect.ci_high,
                auc=effect.auc,
                p=p,
                synthetic=synthetic,
                message=message,
            )
        )
    return out


def _why_not_evaluable(definition: str, values: np.ndarray) -> str:
    if not np.isfinite(values).any():
        return "no value of the metric"
    if definition == "reported":
        return "no study-reported response (R/NR)"
    return "no RECIST response (try the study-reported response)"


def cohort_effects(
    samples: pd.DataFrame,
    *,
    dataset: str,
    metric: str,
    definition: str,
    timepoint: str = "pre",
    synthetic: bool = False,
) -> list[CohortEffect]:
    """Per-cohort effects of ``metric`` at ``timepoint`` in a dataset's samples.

    Patients are built exactly as on ``/nk-response``
    (:func:`analysis.nk_metrics.patient_metric`: several samples of a patient at
    the timepoint averaged, then the metric computed).
    """
    patients = patient_metric(samples, metric, timepoint=timepoint)
    return cohort_effects_from_patients(
        patients, dataset=dataset, definition=definition, synthetic=synthetic
    )


# ------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class Pooled:
    """A random-effects pooled effect on the Fisher-z scale and back on r.

    ``estimate``/``se``/``ci_*``/``pi_*`` are on the pooling (z) scale; ``r``,
    ``r_ci_*`` and ``r_pi_*`` are their ``tanh``. ``i2`` is a fraction (0-1).
    """

    method: str
    k: int
    estimate: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    tau2: float = math.nan
    i2: float = math.nan
    q: float = math.nan
    pi_low: float = math.nan
    pi_high: float = math.nan
    message: str = ""

    @property
    def ok(self) -> bool:
        return math.isfinite(self.estimate)

    def back(self, value: float) -> float:
        return math.tanh(value) if math.isfinite(value) else math.nan

    @property
    def r(self) -> float:
        return self.back(self.estimate)

    def to_json(self) -> dict[str, object]:
        """The keys of the CLI's ``pooled`` entries (on the r scale)."""
        return stats.to_jsonable(
            {
                "method": self.method,
                "k": self.k,
                "r": self.r,
                "ci_low": self.back(self.ci_low),
                "ci_high": self.back(self.ci_high),
                "p": self.p,
                "tau2": self.tau2,
                "i2": self.i2,
                "pi_low": self.back(self.pi_low),
                "pi_high": self.back(self.pi_high),
                "message": self.message,
            }
        )


def _q_and_i2(y: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    w = 1 / v
    fixed = (w * y).sum() / w.sum()
    q = float((w * (y - fixed) ** 2).sum())
    k = y.size
    return q, (max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0)


def _prediction(mu: float, se: float, tau2: float, k: int) -> tuple[float, float]:
    from scipy import stats as sps

    if k < 3:
        return math.nan, math.nan
    half = float(sps.t.ppf(0.975, k - 2)) * math.sqrt(tau2 + se**2)
    return mu - half, mu + half


def pool_dl(effects, variances) -> Pooled:
    """DerSimonian-Laird pooling with a prediction interval.

    Parameters
    ----------
    effects, variances
        Per-cohort effects (Fisher z) and their sampling variances.
    """
    y = np.asarray(effects, dtype=float)
    v = np.asarray(variances, dtype=float)
    dl = stats.pool_dersimonian_laird(y, v)
    name = "DerSimonian-Laird, normal CI"
    if not math.isfinite(dl.estimate):
        return Pooled(
            name,
            dl.k,
            message="Fewer than two cohorts with an estimate: nothing to pool.",
        )
    pi = _prediction(dl.estimate, dl.se, dl.tau2, dl.k)
    return Pooled(
        name, dl.k, dl.estimate, dl.se, dl.ci_low, dl.ci_high, dl.p, dl.tau2,
        dl.i2, dl.q, *pi,
    )  # fmt: skip


def reml_tau2(effects, variances, *, tol: float = 1e-10, max_iter: int = 500) -> float:
    """REML estimate of tau^2 by Fisher scoring (truncated at 0).

    Parameters
    ----------
    effects, variances
        Per-study effects and sampling variances.

    Returns
    -------
    float
        tau^2; DL's value starts the iteration.
    """
    y = np.asarray(effects, dtype=float)
    v = np.asarray(variances, dtype=float)
    tau2 = stats.pool_dersimonian_laird(y, v).tau2
    tau2 = 0.0 if not math.isfinite(tau2) else tau2
    for _ in range(max_iter):
        w = 1 / (v + tau2)
        mu = (w * y).sum() / w.sum()
        # REML score and expected information (Viechtbauer 2005, eq. 9-10)
        p_diag = w - w**2 / w.sum()
        resid = y - mu
        score = 0.5 * ((w**2 * resid**2).sum() - p_diag.sum())
        info = 0.5 * (
            (w**2).sum() - 2 * (w**3).sum() / w.sum() + ((w**2).sum() / w.sum()) ** 2
        )
        new = max(0.0, tau2 + score / info)
        if abs(new - tau2) < tol:
            return float(new)
        tau2 = new
    return float(tau2)


def pool_reml_hk(effects, variances) -> Pooled:
    """REML tau^2 with the Hartung-Knapp variance and a t(k-1) interval.

    The HK variance is ``sum w (y - mu)^2 / ((k - 1) sum w)`` with
    ``w = 1 / (v + tau^2)``, not truncated below the model-based variance
    (as metafor's ``test="knha"``).
    """
    from scipy import stats as sps

    y = np.asarray(effects, dtype=float)
    v = np.asarray(variances, dtype=float)
    k = y.size
    name = "REML, Hartung-Knapp t CI"
    if k < 2:
        return Pooled(
            name, k, message="Fewer than two cohorts with an estimate: nothing to pool."
        )
    tau2 = reml_tau2(y, v)
    w = 1 / (v + tau2)
    mu = float((w * y).sum() / w.sum())
    se = math.sqrt(float((w * (y - mu) ** 2).sum()) / ((k - 1) * w.sum()))
    q, i2 = _q_and_i2(y, v)
    if se == 0:
        return Pooled(
            name, k, mu, se, tau2=tau2, i2=i2, q=q,
            message="The cohorts agree exactly: no Hartung-Knapp variance.",
        )  # fmt: skip
    t = float(sps.t.ppf(0.975, k - 1))
    p = float(2 * sps.t.sf(abs(mu / se), k - 1))
    pi = _prediction(mu, se, tau2, k)
    return Pooled(name, k, mu, se, mu - t * se, mu + t * se, p, tau2, i2, q, *pi)


def usable(effects: Sequence[CohortEffect]) -> list[CohortEffect]:
    """The cohorts that enter the pooling."""
    return [e for e in effects if e.usable]


def pool(effects: Sequence[CohortEffect]) -> dict[str, Pooled]:
    """``{"dl": ..., "reml_hk": ...}`` over the usable cohorts."""
    use = usable(effects)
    y = [e.z for e in use]
    v = [e.se_z**2 for e in use]
    return {"dl": pool_dl(y, v), "reml_hk": pool_reml_hk(y, v)}


# ----------------------------------------------------- sensitivity and bias


@dataclass(frozen=True)
class LeaveOneOut:
    """REML-HK pooled effect without one cohort."""

    dataset: str
    cohort: str
    pooled: Pooled


def leave_one_out(effects: Sequence[CohortEffect]) -> list[LeaveOneOut]:
    """Pool (REML-HK) the usable cohorts leaving each one out in turn."""
    use = usable(effects)
    out = []
    for i, left in enumerate(use):
        rest = use[:i] + use[i + 1 :]
        out.append(
            LeaveOneOut(
                left.dataset,
                left.cohort,
                pool_reml_hk([e.z for e in rest], [e.se_z**2 for e in rest]),
            )
        )
    return out


@dataclass(frozen=True)
class EggerTest:
    """Egger's regression: standardized effect on precision; intercept tests
    funnel asymmetry (small-study effects)."""

    k: int
    intercept: float = math.nan
    se: float = math.nan
    p: float = math.nan
    message: str = ""


def egger_test(effects: Sequence[CohortEffect]) -> EggerTest:
    """Egger et al. (1997): OLS of ``z / SE`` on ``1 / SE``; t test of the
    intercept. Only from :data:`EGGER_MIN_K` cohorts on (too little power below)."""
    import statsmodels.api as sm

    use = usable(effects)
    k = len(use)
    if k < EGGER_MIN_K:
        return EggerTest(
            k,
            message=f"Egger's test needs at least {EGGER_MIN_K} cohorts "
            f"(here {k}): not run.",
        )
    se = np.array([e.se_z for e in use])
    y = np.array([e.z for e in use])
    fit = sm.OLS(y / se, sm.add_constant(1 / se)).fit()
    return EggerTest(k, float(fit.params[0]), float(fit.bse[0]), float(fit.pvalues[0]))


@dataclass(frozen=True)
class SubgroupTest:
    """Random-effects subgroup comparison: Cochran's Q between subgroup means."""

    by: str
    groups: dict[str, Pooled] = field(default_factory=dict)
    q_between: float = math.nan
    df: int = 0
    p: float = math.nan
    message: str = ""


def subgroup_test(effects: Sequence[CohortEffect], *, by: str) -> SubgroupTest:
    """Pool each subgroup by DL (its own tau^2) and test their differences.

    ``Q_between = sum W_g (mu_g - mu)^2`` with ``W_g = 1 / SE_g^2`` and ``mu``
    their weighted mean, against chi^2 with G - 1 df (Borenstein et al. 2009,
    ch. 19; RevMan's test for subgroup differences). Subgroups with one cohort
    enter with that cohort's effect and variance.

    Parameters
    ----------
    by
        ``tumor_type`` or ``treatment_class``.
    """
    from scipy import stats as sps

    use = usable(effects)
    groups: dict[str, list[CohortEffect]] = {}
    for e in use:
        groups.setdefault(getattr(e, by), []).append(e)
    pooled: dict[str, Pooled] = {}
    for name, members in sorted(groups.items()):
        if len(members) == 1:
            e = members[0]
            pooled[name] = Pooled("single cohort", 1, e.z, e.se_z)
        else:
            pooled[name] = pool_dl([e.z for e in members], [e.se_z**2 for e in members])
    if len(pooled) < 2:
        return SubgroupTest(
            by, pooled, message="Fewer than two subgroups: no test of differences."
        )
    mu_g = np.array([p.estimate for p in pooled.values()])
    w_g = 1 / np.array([p.se for p in pooled.values()]) ** 2
    mu = (w_g * mu_g).sum() / w_g.sum()
    q = float((w_g * (mu_g - mu) ** 2).sum())
    df = len(pooled) - 1
    return SubgroupTest(by, pooled, q, df, float(sps.chi2.sf(q, df)))


# ------------------------------------------------------------ the whole answer


@dataclass(frozen=True)
class EvidenceResult:
    """Everything the ``/evidence`` page and ``cli.py evidence`` report."""

    metric: str
    metric_label: str
    definition: str
    timepoint: str
    datasets: tuple[str, ...]
    filters: str
    cohorts: tuple[CohortEffect, ...]
    pooled: dict[str, Pooled]
    leave_one_out: tuple[LeaveOneOut, ...]
    egger: EggerTest
    subgroups: dict[str, SubgroupTest]
    notes: tuple[str, ...] = ()

    @property
    def k(self) -> int:
        return len(usable(self.cohorts))

    @property
    def synthetic(self) -> bool:
        return any(c.synthetic for c in self.cohorts)

    def direction_text(self) -> str:
        """The pooled REML-HK direction in words."""
        p = self.pooled["reml_hk"]
        if not p.ok:
            return p.message or "No pooled estimate."
        sentence = stats.direction_sentence(p.r, quantity=self.metric_label)
        return (
            f"Pooled over {p.k} cohorts (REML, Hartung-Knapp): {sentence}; "
            f"95% CI {p.back(p.ci_low):.2f} to {p.back(p.ci_high):.2f}, "
            f"{stats.format_p(p.p)}; I² = {p.i2:.0%}, "
            f"prediction interval {p.back(p.pi_low):.2f} to {p.back(p.pi_high):.2f}"
        )

    def to_dict(self) -> dict[str, object]:
        """The CLI JSON (the keys the issue lists, plus context)."""
        return stats.to_jsonable(
            {
                "metric": self.metric,
                "metric_label": self.metric_label,
                "response_definition": self.definition,
                "timepoint": self.timepoint,
                "datasets": list(self.datasets),
                "filters": self.filters,
                "synthetic": self.synthetic,
                "sign": "r > 0: lower metric in responders",
                "pooling_scale": "Fisher z = atanh(r) (= logit(AUC) / 2), back-"
                "transformed with tanh",
                "cohorts": [_cohort_json(c) for c in self.cohorts],
                "pooled": {k: p.to_json() for k, p in self.pooled.items()},
                "direction": self.direction_text(),
                "leave_one_out": [
                    {"dataset": lo.dataset, "cohort": lo.cohort, **lo.pooled.to_json()}
                    for lo in self.leave_one_out
                ],
                "egger": self.egger,
                "subgroups": {
                    by: {
                        "q_between": s.q_between,
                        "df": s.df,
                        "p": s.p,
                        "message": s.message,
                        "groups": {
                            g: {"k": p.k, **_r_interval(p)} for g, p in s.groups.items()
                        },
                    }
                    for by, s in self.subgroups.items()
                },
                "notes": list(self.notes),
            }
        )


def _r_interval(p: Pooled) -> dict[str, float]:
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    low = p.ci_low if math.isfinite(p.ci_low) else p.estimate - z * p.se
    high = p.ci_high if math.isfinite(p.ci_high) else p.estimate + z * p.se
    return {"r": p.r, "ci_low": p.back(low), "ci_high": p.back(high)}


def _cohort_json(c: CohortEffect) -> dict[str, object]:
    return {
        "dataset": c.dataset,
        "cohort": c.cohort,
        "tumor_type": c.tumor_type,
        "treatment_class": c.treatment_class,
        "n_responders": c.n_responders,
        "n_non_responders": c.n_non_responders,
        "r": c.r,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "auc": c.auc,
        "p": c.p,
        "pooled": c.usable,
        "message": c.message,
    }


def analyze(
    cohorts: Sequence[CohortEffect],
    *,
    metric: str,
    metric_label: str,
    definition: str,
    timepoint: str,
    datasets: Sequence[str],
    filters: str,
    notes: Sequence[str] = (),
) -> EvidenceResult:
    """Pool per-cohort effects and run every sensitivity analysis."""
    return EvidenceResult(
        metric=metric,
        metric_label=metric_label,
        definition=definition,
        timepoint=timepoint,
        datasets=tuple(datasets),
        filters=filters,
        cohorts=tuple(cohorts),
        pooled=pool(cohorts),
        leave_one_out=tuple(leave_one_out(cohorts)),
        egger=egger_test(cohorts),
        subgroups={
            by: subgroup_test(cohorts, by=by)
            for by in ("tumor_type", "treatment_class")
        },
        notes=tuple(notes),
    )


def as_frame(effects: Sequence[CohortEffect]) -> pd.DataFrame:
    """One row per cohort (for figures' data tables and exports)."""
    return pd.DataFrame([_cohort_json(e) for e in effects])
