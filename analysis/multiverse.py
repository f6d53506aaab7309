"""The multiverse of analytic choices: one pooled NK vs response effect per choice.

A specification is (NK estimator, denominator, response definition, timepoint).

* Estimators: the bundle's NK cell fraction (``frac_nk``), and every ``score_*``
  column naming NK cells (CIBERSORT resting/activated, EPIC, quanTIseq, xCell,
  MCP-counter, signature scores...; NKT columns excluded).
* Denominators: ``raw``; ``lymphocytes`` (NK among NK + CD8 + CD4 + B; the bundle's
  fractions only); ``nk_cd8`` (NK / (NK + CD8)); ``log2_nk_cd8`` (log2 NK:CD8). For a
  score the CD8 partner is the CD8 column of the same method (same last name part,
  e.g. ``score_NK_cells_MCPcounter`` with ``score_CD8_T_cells_MCPcounter``), and the
  ratios are formed only when both are non-negative (never from z-scores).
* Response definitions: objective, clinical benefit, study-reported.
* Timepoints: pre-, on- and post-treatment samples.

Each specification's per-cohort effects are the rank-biserial r and DeLong SE of the
``/nk-response`` page (:func:`rank_biserial_delong`, the same numbers as
:func:`analysis.stats.stratum_effect`, computed faster), pooled on Fisher z by REML
with Hartung-Knapp (:func:`analysis.meta.pool_reml_hk`). Results are
cached per view (datasets with file stamps, filters) in each process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import meta
from analysis.evidence_view import _key, load_sources, stamps
from analysis.nk_metrics import metric_values, patient_metric
from analysis.stats import MIN_GROUP
from data import schema

DENOMINATORS = {
    "raw": "raw",
    "lymphocytes": "among lymphocytes",
    "nk_cd8": "NK / (NK + CD8)",
    "log2_nk_cd8": "log2 NK:CD8",
}
DEFINITION_LABELS = {
    "objective": "objective response",
    "benefit": "clinical benefit",
    "reported": "study-reported",
}
#: frac_nk x denominator -> the /nk-response metric key
FRACTION_METRICS = {
    "raw": "frac_nk",
    "lymphocytes": "nk_lymphocytes",
    "nk_cd8": "nk_over_nk_cd8",
    "log2_nk_cd8": "log2_nk_cd8",
}
_NK = re.compile(r"(^|_)NK(?!T)", re.IGNORECASE)
_CD8 = re.compile(r"CD8", re.IGNORECASE)


def estimator_label(column: str) -> str:
    """'NK cell fraction (bundle)' or the score's name without its prefix."""
    if column == "frac_nk":
        return "NK cell fraction"
    return column.removeprefix(schema.SCORE_PREFIX).replace("_", " ")


def nk_estimators(columns: Sequence[str]) -> list[str]:
    """``frac_nk`` and the ``score_*`` columns that estimate NK cells."""
    out = ["frac_nk"] if "frac_nk" in columns else []
    out += sorted(
        c
        for c in columns
        if c.startswith(schema.SCORE_PREFIX)
        and _NK.search(c.removeprefix(schema.SCORE_PREFIX))
        and not _CD8.search(c)
    )
    return out


def cd8_partner(column: str, columns: Sequence[str]) -> str | None:
    """The CD8 estimator of the same method as the NK score ``column``."""
    if column == "frac_nk":
        return "frac_cd8" if "frac_cd8" in columns else None
    method = column.rsplit("_", 1)[-1].casefold()
    for c in sorted(columns):
        if (
            c.startswith(schema.SCORE_PREFIX)
            and _CD8.search(c)
            and c.rsplit("_", 1)[-1].casefold() == method
        ):
            return c
    return None


def spec_values(table: pd.DataFrame, estimator: str, denominator: str) -> pd.Series:
    """The metric of one specification per patient (NaN where undefined).

    ``table`` holds one row per patient with the averaged fractions and scores
    (:func:`analysis.nk_metrics.patient_metric`).
    """
    if estimator == "frac_nk":
        return metric_values(table, FRACTION_METRICS[denominator])
    nk = table[estimator].astype(float)
    if denominator == "raw":
        return nk
    cd8 = table[cd8_partner(estimator, list(table.columns))].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = nk / (nk + cd8) if denominator == "nk_cd8" else np.log2(nk / cd8)
    return values.replace([np.inf, -np.inf], np.nan)


def denominators_for(estimator: str, table: pd.DataFrame) -> list[str]:
    """The denominators that make sense for an estimator in this table."""
    if estimator == "frac_nk":
        return list(DENOMINATORS)
    partner = cd8_partner(estimator, list(table.columns))
    if partner is None:
        return ["raw"]
    both = table[[estimator, partner]].astype(float)
    if both.notna().any().all() and (both.min() >= 0).all():
        return ["raw", "nk_cd8", "log2_nk_cd8"]
    return ["raw"]


def rank_biserial_delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Rank-biserial r (> 0: lower in ``pos``) and its DeLong-based SE.

    The same numbers as :func:`analysis.stats.stratum_effect` (tested to 1e-12),
    computed with sorted-array counts instead of three rank transforms: the
    multiverse calls it some thousand times per view. NaN when a group has fewer
    than :data:`analysis.stats.MIN_GROUP` patients.
    """
    m, n = pos.size, neg.size
    if min(m, n) < MIN_GROUP:
        return math.nan, math.nan
    a, b = np.sort(pos), np.sort(neg)
    # V10_i: share of negatives above pos_i (ties count half); V01_j likewise
    left, right = np.searchsorted(b, pos, "left"), np.searchsorted(b, pos, "right")
    v10 = (n - right + 0.5 * (right - left)) / n
    left, right = np.searchsorted(a, neg, "left"), np.searchsorted(a, neg, "right")
    v01 = (left + 0.5 * (right - left)) / m
    auc = float(v10.mean())
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    return 2 * auc - 1, 2 * math.sqrt(max(float(var), 0.0))


def _pool_spec(effects: list[tuple[float, float, int]]) -> meta.Pooled | None:
    """REML-HK over (r, se, n) of the usable cohorts; None below two."""
    use = [(r, se, n) for r, se, n in effects if se > 0 and abs(r) < 1]
    if len(use) < 2:
        return None
    z = [math.atanh(r) for r, _, _ in use]
    v = [(se / (1 - r**2)) ** 2 for r, se, _ in use]
    return meta.pool_reml_hk(z, v)


@dataclass(frozen=True)
class Specification:
    """One combination of choices and its pooled (REML-HK) effect."""

    metric: str
    denominator: str
    definition: str
    timepoint: str
    k: int
    r: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    n_patients: int = 0

    @property
    def estimated(self) -> bool:
        return math.isfinite(self.r)

    @property
    def significant(self) -> bool:
        return self.estimated and math.isfinite(self.p) and self.p < 0.05

    def to_json(self) -> dict[str, object]:
        return meta.stats.to_jsonable(
            {
                "metric": self.metric,
                "denominator": self.denominator,
                "definition": self.definition,
                "timepoint": self.timepoint,
                "k": self.k,
                "r": self.r,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p": self.p,
                "n_patients": self.n_patients,
            }
        )


def _patient_tables(samples: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per timepoint present: one row per patient with averaged fractions/scores."""
    out = {}
    for timepoint in schema.TIMEPOINTS:
        if (samples["timepoint"] == timepoint).any():
            out[timepoint] = patient_metric(samples, "frac_nk", timepoint=timepoint)
    return out


def multiverse(
    datasets: Sequence[str],
    data_dir: Path,
    *,
    filters: Mapping[str, object] | None = None,
) -> tuple[Specification, ...]:
    """Every specification the datasets allow, with its pooled effect.

    Only specifications with at least two pooled cohorts are returned (one cohort
    is not a pooled answer). Cached per view.
    """
    return _multiverse_cached(
        stamps(datasets, data_dir), str(data_dir), _key(dict(filters or {}))
    )


@lru_cache(maxsize=16)
def _multiverse_cached(
    stamped: tuple, data_dir: str, filter_key: tuple
) -> tuple[Specification, ...]:
    sources = load_sources([n for n, _ in stamped], Path(data_dir), dict(filter_key))
    # (estimator, denominator, definition, timepoint) -> per-cohort effects
    effects: dict[tuple[str, str, str, str], list[tuple[float, float, int]]] = {}
    for source in sources:
        if source.samples.empty:
            continue
        for timepoint, table in _patient_tables(source.samples).items():
            cohorts = table["cohort"].astype(str).to_numpy()
            cohort_masks = [cohorts == c for c in sorted(set(cohorts))]
            responders = {}
            for definition in DEFINITION_LABELS:
                responder = meta.binary_responder(table, definition)
                responders[definition] = (
                    responder.notna().to_numpy(),
                    responder.fillna(False).to_numpy(dtype=bool),
                )
            for estimator in nk_estimators(list(table.columns)):
                for denominator in denominators_for(estimator, table):
                    values = spec_values(table, estimator, denominator).to_numpy(
                        dtype=float
                    )
                    if not np.isfinite(values).any():
                        continue
                    ok = np.isfinite(values)
                    for definition, (known, is_resp) in responders.items():
                        if not known.any():
                            continue
                        key = (estimator, denominator, definition, timepoint)
                        found = effects.setdefault(key, [])
                        for here in cohort_masks:
                            use = here & known & ok
                            pos, neg = values[use & is_resp], values[use & ~is_resp]
                            r, se = rank_biserial_delong(pos, neg)
                            if math.isfinite(se):
                                found.append((r, se, pos.size + neg.size))
    specs = []
    for (estimator, denominator, definition, timepoint), found in effects.items():
        pooled = _pool_spec(found)
        if pooled is None:
            continue
        specs.append(
            Specification(
                estimator, denominator, definition, timepoint, pooled.k,
                pooled.r, pooled.back(pooled.ci_low), pooled.back(pooled.ci_high),
                pooled.p, sum(n for r, se, n in found if se > 0 and abs(r) < 1),
            )
        )  # fmt: skip
    return tuple(sorted(specs, key=lambda s: (s.r, s.metric, s.denominator)))


@dataclass(frozen=True)
class Summary:
    """How the specifications split by direction and significance."""

    n: int
    lower: int  # r > 0: lower NK in responders (Song et al. direction)
    higher: int
    lower_significant: int
    higher_significant: int

    def sentence(self) -> str:
        if not self.n:
            return "No specification has at least two cohorts to pool."

        def share(x: int) -> str:
            return f"{x} ({x / self.n:.0%})"

        return (
            f"Of {self.n} specifications, {share(self.lower)} find the NK measure "
            f"lower in responders ({share(self.lower_significant)} with p < 0.05) "
            f"and {share(self.higher)} higher ({share(self.higher_significant)} "
            "with p < 0.05)."
        )


def summarize(specs: Sequence[Specification]) -> Summary:
    """Counts of specifications in each direction, and significant (HK p < 0.05)."""
    est = [s for s in specs if s.estimated]
    return Summary(
        len(est),
        sum(s.r > 0 for s in est),
        sum(s.r < 0 for s in est),
        sum(s.r > 0 and s.significant for s in est),
        sum(s.r < 0 and s.significant for s in est),
    )
