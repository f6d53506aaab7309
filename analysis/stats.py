"""Patient-level statistics for NK metric vs response.

Every function takes one value per patient (never cells) and returns plain
dataclasses that say, in words, why a number is missing (``message``) instead of
returning a meaningless number.

Sign convention (used on every figure and in the CLI JSON)
-----------------------------------------------------------
For two groups, ``U`` is the Mann-Whitney U of the *responders* (first group):
the number of (responder, non-responder) pairs where the responder's value is
larger, ties counting one half. The rank-biserial correlation is

    r = 1 - 2 U / (n1 n2) = P(responder < non-responder) - P(responder > non-responder)

so **r > 0 means lower values in responders** (the Song et al. direction), and the
AUC for "lower metric predicts response" is ``(1 + r) / 2 = 1 - U / (n1 n2)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

#: Fewer patients than this in a group: no p-value, a plain message instead.
MIN_GROUP = 3
#: 95% intervals throughout.
Z95 = NormalDist().inv_cdf(0.975)  # 1.959964; stdlib, so importing is cheap


def _clean(values) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_jsonable(obj):
    """Dataclasses, numpy scalars and NaN turned into JSON-ready Python values."""
    if hasattr(obj, "__dataclass_fields__"):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return _nan_to_none(float(obj))
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA:
        return None
    return obj


# --------------------------------------------------------------- group summaries


@dataclass(frozen=True)
class GroupSummary:
    """n, median and interquartile range of one group's patient values."""

    group: str
    n: int
    median: float
    q1: float
    q3: float


def summarize_groups(
    values: pd.Series, groups: pd.Series, order: Sequence[str]
) -> list[GroupSummary]:
    """Median and IQR (25th-75th percentile, linear interpolation) per group.

    Parameters
    ----------
    values
        One metric value per patient.
    groups
        Group label per patient (same index); ``NA`` rows are ignored.
    order
        Groups to report, in display order (absent groups get ``n = 0``).
    """
    out = []
    for group in order:
        x = _clean(values[groups == group])
        if x.size:
            q1, med, q3 = np.percentile(x, [25, 50, 75])
        else:
            q1 = med = q3 = math.nan
        out.append(GroupSummary(group, int(x.size), float(med), float(q1), float(q3)))
    return out


# ------------------------------------------------------------------ Mann-Whitney


@dataclass(frozen=True)
class TwoGroupTest:
    """Two-sided Mann-Whitney U test of responders vs non-responders.

    ``u`` is the responders' U; ``r`` the rank-biserial correlation (> 0: lower
    values in responders). ``p`` is ``None``-like (NaN) with a ``message`` when a
    group has fewer than :data:`MIN_GROUP` patients.
    """

    n1: int
    n2: int
    u: float = math.nan
    p: float = math.nan
    r: float = math.nan
    test: str = "two-sided Mann-Whitney U"
    message: str = ""


def mann_whitney(responders, non_responders) -> TwoGroupTest:
    """Mann-Whitney U (two-sided, asymptotic with tie correction when needed).

    Parameters
    ----------
    responders, non_responders
        Patient values of the two groups (NaN ignored).

    Returns
    -------
    TwoGroupTest
        ``u`` of the responders, ``p``, and rank-biserial ``r = 1 - 2U/(n1 n2)``.
    """
    from scipy import stats as sps

    a, b = _clean(responders), _clean(non_responders)
    n1, n2 = a.size, b.size
    if min(n1, n2) < MIN_GROUP:
        return TwoGroupTest(
            n1,
            n2,
            message=f"Too few patients for a test (n={n1} vs n={n2}; "
            f"at least {MIN_GROUP} per group needed).",
        )
    result = sps.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    u = float(result.statistic)
    return TwoGroupTest(n1, n2, u=u, p=float(result.pvalue), r=1 - 2 * u / (n1 * n2))


# ----------------------------------------------------------- Kruskal-Wallis + BH


@dataclass(frozen=True)
class PairwiseTest:
    """One pairwise Mann-Whitney comparison with its BH-adjusted p."""

    group1: str
    group2: str
    n1: int
    n2: int
    u: float
    p: float
    p_adjusted: float
    r: float


@dataclass(frozen=True)
class MultiGroupTest:
    """Kruskal-Wallis across groups plus pairwise Mann-Whitney (Benjamini-Hochberg)."""

    groups: tuple[str, ...]
    h: float = math.nan
    p: float = math.nan
    pairwise: tuple[PairwiseTest, ...] = ()
    test: str = (
        "Kruskal-Wallis; pairwise two-sided Mann-Whitney U, Benjamini-Hochberg adjusted"
    )
    message: str = ""


def kruskal_pairwise(
    values: pd.Series, groups: pd.Series, order: Sequence[str]
) -> MultiGroupTest:
    """Kruskal-Wallis over the groups with >= :data:`MIN_GROUP` patients, then
    pairwise Mann-Whitney U between them with Benjamini-Hochberg adjustment.

    Groups with fewer patients are left out and named in ``message``.
    """
    from scipy import stats as sps
    from statsmodels.stats.multitest import multipletests

    samples = {g: _clean(values[groups == g]) for g in order}
    kept = [g for g in order if samples[g].size >= MIN_GROUP]
    small = [f"{g} (n={samples[g].size})" for g in order if g not in kept]
    note = (
        f"Left out for having fewer than {MIN_GROUP} patients: {', '.join(small)}."
        if small
        else ""
    )
    if len(kept) < 2:
        return MultiGroupTest(
            tuple(kept),
            message=(note + " " if note else "")
            + "Fewer than two groups with enough patients: no test.",
        )
    kw = sps.kruskal(*(samples[g] for g in kept))
    pairs = [(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :]]
    raw = [
        sps.mannwhitneyu(samples[a], samples[b], alternative="two-sided")
        for a, b in pairs
    ]
    adjusted = multipletests([t.pvalue for t in raw], method="fdr_bh")[1]
    pairwise = tuple(
        PairwiseTest(
            a,
            b,
            int(samples[a].size),
            int(samples[b].size),
            float(t.statistic),
            float(t.pvalue),
            float(q),
            1 - 2 * float(t.statistic) / (samples[a].size * samples[b].size),
        )
        for (a, b), t, q in zip(pairs, raw, adjusted, strict=True)
    )
    return MultiGroupTest(
        tuple(kept), float(kw.statistic), float(kw.pvalue), pairwise, message=note
    )


# ---------------------------------------------------------------------- ROC / AUC


@dataclass(frozen=True)
class RocResult:
    """ROC of the metric for predicting response, in the stated direction.

    ``direction`` is ``"lower"``: a patient is called a responder when the metric is
    *below* a threshold, so AUC > 0.5 means lower values in responders. The CI is
    DeLong's (normal approximation, clipped to [0, 1]).
    """

    n_pos: int
    n_neg: int
    auc: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    fpr: tuple[float, ...] = ()
    tpr: tuple[float, ...] = ()
    direction: str = "lower"
    method: str = "DeLong 95% CI"
    message: str = ""


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components V10 (per positive) and V01 (per negative).

    Uses midranks: V10_i = (rank of pos_i among all - rank among positives) / n_neg.
    """
    from scipy import stats as sps

    m, n = pos.size, neg.size
    all_ranks = sps.rankdata(np.concatenate([pos, neg]))
    v10 = (all_ranks[:m] - sps.rankdata(pos)) / n
    v01 = 1 - (all_ranks[m:] - sps.rankdata(neg)) / m
    return v10, v01


def delong_auc(pos, neg) -> tuple[float, float]:
    """AUC = P(pos > neg) + 0.5 P(tie) and its DeLong standard error."""
    pos, neg = _clean(pos), _clean(neg)
    v10, v01 = _placements(pos, neg)
    auc = float(v10.mean())
    var = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    return auc, float(math.sqrt(max(var, 0.0)))


def roc_lower_predicts_response(responders, non_responders) -> RocResult:
    """ROC and AUC where *lower* metric values predict response.

    Parameters
    ----------
    responders, non_responders
        Patient values of each class (NaN ignored).
    """
    a, b = _clean(responders), _clean(non_responders)
    if min(a.size, b.size) < MIN_GROUP:
        return RocResult(
            a.size,
            b.size,
            message=f"Too few patients for a ROC curve (n={a.size} responders, "
            f"n={b.size} non-responders; at least {MIN_GROUP} each needed).",
        )
    # score = -value: higher score = lower metric = predicted responder
    auc, se = delong_auc(-a, -b)
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(a.size), np.zeros(b.size)]
    fpr, tpr, _ = roc_curve(y, -np.r_[a, b], drop_intermediate=False)
    message = ""
    if se == 0:
        message = "The groups are perfectly separated: the CI cannot be estimated."
    return RocResult(
        a.size,
        b.size,
        auc=auc,
        se=se,
        ci_low=max(0.0, auc - Z95 * se) if se > 0 else math.nan,
        ci_high=min(1.0, auc + Z95 * se) if se > 0 else math.nan,
        fpr=tuple(float(x) for x in fpr),
        tpr=tuple(float(x) for x in tpr),
        message=message,
    )


# ------------------------------------------------- per-stratum effects and pooling


@dataclass(frozen=True)
class StratumEffect:
    """Rank-biserial r (> 0: lower in responders) with a 95% CI in one stratum.

    ``se`` is ``2 * SE_DeLong(AUC)`` since ``r = 2 AUC - 1``. ``message`` says why a
    stratum has no estimate (too few patients, perfect separation).
    """

    by: str
    stratum: str
    n_pos: int
    n_neg: int
    r: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    auc: float = math.nan
    message: str = ""

    @property
    def usable(self) -> bool:
        return math.isfinite(self.r) and math.isfinite(self.se) and self.se > 0


def stratum_effect(by: str, stratum: str, responders, non_responders) -> StratumEffect:
    """Rank-biserial r and its DeLong-based CI for one stratum."""
    a, b = _clean(responders), _clean(non_responders)
    if min(a.size, b.size) < MIN_GROUP:
        return StratumEffect(
            by,
            stratum,
            a.size,
            b.size,
            message=f"too few patients (need {MIN_GROUP} per group)",
        )
    auc, se_auc = delong_auc(-a, -b)
    r, se = 2 * auc - 1, 2 * se_auc
    if se == 0:
        return StratumEffect(
            by,
            stratum,
            a.size,
            b.size,
            r=r,
            auc=auc,
            message="perfect separation: no variance estimate, not pooled",
        )
    return StratumEffect(
        by,
        stratum,
        a.size,
        b.size,
        r=r,
        se=se,
        ci_low=max(-1.0, r - Z95 * se),
        ci_high=min(1.0, r + Z95 * se),
        auc=auc,
    )


def stratum_effects(
    values: pd.Series, responder: pd.Series, strata: pd.Series, *, by: str
) -> list[StratumEffect]:
    """:func:`stratum_effect` for each stratum value (sorted).

    Parameters
    ----------
    values
        Metric per patient.
    responder
        Boolean per patient (``NA`` rows are ignored).
    strata
        Stratum label per patient (e.g. tumor type).
    by
        Name of the stratifying field, carried into the results.
    """
    out = []
    for stratum in sorted(strata.dropna().unique()):
        here = (strata == stratum) & responder.notna()
        pos = values[here & (responder == True)]  # noqa: E712 - nullable boolean
        neg = values[here & (responder == False)]  # noqa: E712
        out.append(stratum_effect(by, str(stratum), pos, neg))
    return out


@dataclass(frozen=True)
class PooledEffect:
    """DerSimonian-Laird random-effects pooled estimate with heterogeneity."""

    k: int
    estimate: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    tau2: float = math.nan
    i2: float = math.nan
    q: float = math.nan
    method: str = "DerSimonian-Laird random effects"
    message: str = ""


def pool_dersimonian_laird(effects, variances) -> PooledEffect:
    """DerSimonian-Laird random-effects pooling with Cochran's Q and I^2.

    Written out rather than taken from statsmodels: ``combine_effects(...,
    method_re="dl")`` in statsmodels 0.15 does not truncate the between-study
    variance at zero, so homogeneous strata (Q < k - 1) get a negative tau^2 and a
    meaningless pooled estimate with a NaN standard error.

    Parameters
    ----------
    effects, variances
        Per-study estimates and their sampling variances (> 0).

    Returns
    -------
    PooledEffect
        Pooled estimate, normal-theory 95% CI and p, tau^2 = max(0, (Q - (k-1)) / c),
        I^2 = max(0, (Q - (k-1)) / Q) as a fraction, and Q. Fewer than two studies:
        a message, no pooling.
    """
    from scipy import stats as sps

    effects = np.asarray(effects, dtype=float)
    variances = np.asarray(variances, dtype=float)
    k = effects.size
    if k < 2:
        return PooledEffect(
            k, message="Fewer than two strata with an estimate: nothing to pool."
        )
    w = 1 / variances
    fixed = float((w * effects).sum() / w.sum())
    q = float((w * (effects - fixed) ** 2).sum())
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (k - 1)) / c)
    w_re = 1 / (variances + tau2)
    estimate = float((w_re * effects).sum() / w_re.sum())
    se = float(math.sqrt(1 / w_re.sum()))
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    return PooledEffect(
        k,
        estimate=estimate,
        se=se,
        ci_low=estimate - Z95 * se,
        ci_high=estimate + Z95 * se,
        p=float(2 * sps.norm.sf(abs(estimate / se))),
        tau2=tau2,
        i2=i2,
        q=q,
    )


def pool_strata(effects: Sequence[StratumEffect]) -> PooledEffect:
    """Pool the usable strata's rank-biserial r by DerSimonian-Laird."""
    usable = [e for e in effects if e.usable]
    return pool_dersimonian_laird([e.r for e in usable], [e.se**2 for e in usable])


# ---------------------------------------------------------- logistic regression


@dataclass(frozen=True)
class LogisticTerm:
    """Odds ratio of one model term with a Wald 95% CI and p."""

    term: str
    odds_ratio: float
    ci_low: float
    ci_high: float
    p: float


@dataclass(frozen=True)
class LogisticResult:
    """response ~ z(metric) + tumor type (+ treatment): odds ratios.

    The metric term is per 1 SD of the metric (in the patients modelled), so an OR
    below 1 means a higher metric goes with lower odds of response.
    """

    n: int
    n_events: int
    formula: str = ""
    terms: tuple[LogisticTerm, ...] = ()
    metric_sd: float = math.nan
    dropped: tuple[str, ...] = ()
    message: str = ""

    @property
    def metric_term(self) -> LogisticTerm | None:
        """The odds ratio per SD of the metric (``None`` when not fitted)."""
        return self.terms[1] if len(self.terms) > 1 else None


def _zscore(x: pd.Series) -> tuple[pd.Series, float]:
    sd = float(x.std(ddof=1))
    return (x - x.mean()) / sd, sd


def logistic_response(
    frame: pd.DataFrame, *, covariates: Sequence[str] = ("tumor_type", "treatment")
) -> LogisticResult:
    """Logistic regression of response on the standardized metric and covariates.

    Parameters
    ----------
    frame
        One row per patient with ``value`` (metric), ``responder`` (bool) and the
        covariate columns.
    covariates
        Categorical adjusters; one is used only when it has two or more levels.
        Levels in which every patient has the same response make the model
        separate; they are dropped and named in ``dropped``.

    Returns
    -------
    LogisticResult
        Odds ratios (intercept first, then ``z(metric)`` per SD, then covariate
        levels vs the first level) or a message when the fit fails.
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    data = frame[["value", "responder", *covariates]].dropna().copy()
    data["y"] = data["responder"].astype(int)
    dropped: list[str] = []
    used: list[str] = []
    for cov in covariates:
        # a level with only responders (or only non-responders) separates the model
        rates = data.groupby(cov)["y"].agg(["mean", "size"])
        pure = rates[(rates["mean"] == 0) | (rates["mean"] == 1)].index
        if data[cov].nunique() > 1 and len(pure):
            dropped += [
                f"{cov.replace('_', ' ')} {level} (n={rates.loc[level, 'size']}, "
                "all with the same response)"
                for level in pure
            ]
            data = data[~data[cov].isin(pure)]
    for cov in covariates:
        if data[cov].nunique() > 1:
            used.append(cov)
    n, events = len(data), int(data["y"].sum())
    n_params = 2 + sum(data[c].nunique() - 1 for c in used)
    if min(events, n - events) < MIN_GROUP or n < n_params + 5:
        return LogisticResult(
            n,
            events,
            dropped=tuple(dropped),
            message=f"Too few patients to fit the model (n={n}, {events} responders, "
            f"{n - events} non-responders, {n_params} parameters).",
        )
    data["z"], sd = _zscore(data["value"])
    if not sd > 0:
        return LogisticResult(n, events, message="The metric does not vary.")
    formula = "y ~ z" + "".join(f" + C({c})" for c in used)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            fit = smf.logit(formula, data=data).fit(disp=False, maxiter=200)
    except (PerfectSeparationError, PerfectSeparationWarning):
        return LogisticResult(
            n,
            events,
            formula=formula,
            dropped=tuple(dropped),
            message="The model separates the groups perfectly: odds ratios are not "
            "estimable.",
        )
    except (ConvergenceWarning, np.linalg.LinAlgError):
        return LogisticResult(
            n,
            events,
            formula=formula,
            dropped=tuple(dropped),
            message="The model did not converge: odds ratios are not reported.",
        )
    ci = fit.conf_int()
    if not np.all(np.isfinite(fit.bse)) or (fit.bse > 50).any():
        return LogisticResult(
            n,
            events,
            formula=formula,
            dropped=tuple(dropped),
            message="The model is (quasi-)separated: odds ratios are not estimable.",
        )
    terms = []
    references = {c: sorted(data[c].unique())[0] for c in used}
    # intercept, the metric, then covariate levels
    names = sorted(fit.params.index, key=lambda t: {"Intercept": 0, "z": 1}.get(t, 2))
    for name in names:
        label = "z(metric), per SD" if name == "z" else _term_label(name, references)
        terms.append(
            LogisticTerm(
                label,
                float(np.exp(fit.params[name])),
                float(np.exp(ci.loc[name, 0])),
                float(np.exp(ci.loc[name, 1])),
                float(fit.pvalues[name]),
            )
        )
    return LogisticResult(
        n,
        events,
        formula=formula.replace("y ~ z", "response ~ z(metric)"),
        terms=tuple(terms),
        metric_sd=sd,
        dropped=tuple(dropped),
    )


def _term_label(name: str, references: Mapping[str, str]) -> str:
    # "C(tumor_type)[T.melanoma]" -> "tumor type: melanoma vs HNSCC"
    if name.startswith("C(") and ")[T." in name:
        cov, level = name[2:].split(")[T.", 1)
        return f"{cov.replace('_', ' ')}: {level[:-1]} vs {references[cov]}"
    return name


# ------------------------------------------------------------ paired pre vs on


@dataclass(frozen=True)
class PairedTest:
    """Wilcoxon signed-rank test of on- minus pre-treatment values in one group."""

    group: str
    n: int
    median_change: float = math.nan
    statistic: float = math.nan
    p: float = math.nan
    test: str = "two-sided Wilcoxon signed-rank"
    message: str = ""


def paired_wilcoxon(group: str, pre, on) -> PairedTest:
    """Wilcoxon signed-rank of ``on - pre`` for the patients of one group.

    Parameters
    ----------
    group
        Group label, carried into the result.
    pre, on
        Paired values (same order, one pair per patient); pairs with a NaN are
        dropped.
    """
    from scipy import stats as sps

    pre = np.asarray(pre, dtype=float)
    on = np.asarray(on, dtype=float)
    ok = np.isfinite(pre) & np.isfinite(on)
    diff = on[ok] - pre[ok]
    n = int(diff.size)
    if n < MIN_GROUP:
        return PairedTest(
            group,
            n,
            median_change=float(np.median(diff)) if n else math.nan,
            message=f"Too few paired patients for a test (n={n}; at least "
            f"{MIN_GROUP} needed).",
        )
    if np.all(diff == 0):
        return PairedTest(
            group, n, 0.0, message="No patient changed: no test is possible."
        )
    res = sps.wilcoxon(diff, alternative="two-sided")
    return PairedTest(
        group, n, float(np.median(diff)), float(res.statistic), float(res.pvalue)
    )


def format_p(p: float | None) -> str:
    """p-value as a biologist writes it: 3 significant digits, '< 0.0001' below."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 1e-4:
        return "p < 0.0001"
    return f"p = {p:.2g}" if p < 0.001 else f"p = {p:.3f}"


def direction_sentence(
    r: float | None,
    *,
    quantity: str,
    responders: str = "responders",
    non_responders: str = "non-responders",
) -> str:
    """The direction of a rank-biserial r in words, with r itself.

    Uses this project's sign convention (``r = 1 - 2U/(n1 n2)`` with U of the
    responders), so ``r > 0`` means lower values in responders.

    Parameters
    ----------
    r
        Rank-biserial correlation; None or NaN gives "direction not estimable".
    quantity
        What was compared, as a reader names it ("NK among lymphocytes").
    responders, non_responders
        Names of the two groups.

    Examples
    --------
    >>> direction_sentence(0.37, quantity="NK among lymphocytes")
    'NK among lymphocytes is lower in responders than in non-responders (r = 0.37)'
    """
    if r is None or not math.isfinite(r):
        return f"direction of {quantity} not estimable"
    if r > 0:
        word = "lower"
    elif r < 0:
        word = "higher"
    else:
        return (
            f"{quantity} does not differ between {responders} and "
            f"{non_responders} (r = 0.00)"
        )
    return (
        f"{quantity} is {word} in {responders} than in {non_responders} (r = {r:.2f})"
    )


def auc_sentence(
    auc: float | None, *, quantity: str, lower_predicts: bool = True
) -> str:
    """What an AUC means here, in words: the share of responder / non-responder pairs
    ordered as the AUC assumes (0.5 = chance).

    Parameters
    ----------
    auc
        Area under the ROC curve; None or NaN gives "AUC not estimable".
    quantity
        What predicts response ("NK among lymphocytes", "gate fraction").
    lower_predicts
        True when the AUC is for "a lower value predicts response".
    """
    if auc is None or not math.isfinite(auc):
        return "AUC not estimable"
    side = "lower" if lower_predicts else "higher"
    return (
        f"AUC = {auc:.2f}: in {auc:.0%} of responder/non-responder pairs the responder "
        f"has the {side} {quantity} (0.50 = chance)"
    )
