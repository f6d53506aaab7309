"""NK metric vs ICB response: every statistic of the page, computed once.

The page (``figures.nk.nk_panels``) and the CLI (``cli.py stats``) both call
:func:`analyze_nk_response`, so they report the same numbers to the last digit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from analysis import stats
from analysis.nk_metrics import (
    Metric,
    available_metrics,
    patient_metric,
    split_by_metric,
)
from analysis.response import (
    DEFINITIONS,
    RESPONDER,
    ResponseDefinition,
    assign_response,
    available_definitions,
)
from analysis.survival import CoxResult, KMResult, cox_per_sd, kaplan_meier
from data import schema

#: Page state keys (also the URL query keys of the page).
STATE_KEYS = ("metric", "definition", "nk_timepoint", "split")
SPLITS = {"median": "median split", "tertile": "tertiles"}
TIMEPOINT_LABELS = {
    "pre": "pre-treatment",
    "on": "on-treatment",
    "post": "post-treatment",
}
ENDPOINTS = {
    "os": ("os_months", "os_event", "Overall survival"),
    "pfs": ("pfs_months", "pfs_event", "Progression-free survival"),
}


@dataclass(frozen=True)
class NKState:
    """The page's control state, resolved against the dataset."""

    metric: str
    definition: str
    nk_timepoint: str
    split: str

    def to_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in STATE_KEYS}


def default_metric(samples: pd.DataFrame) -> str:
    """``nk_lymphocytes`` when computable (normalized: not confounded by
    infiltration), else the first available metric."""
    keys = [m.key for m in available_metrics(samples)]
    if "nk_lymphocytes" in keys:
        return "nk_lymphocytes"
    return keys[0] if keys else ""


def default_response(samples: pd.DataFrame) -> str:
    """Objective response where RECIST exists, else the reported R/NR."""
    keys = available_definitions(samples)
    return keys[0] if keys else "objective"


def resolve_state(
    samples: pd.DataFrame, state: Mapping[str, object] | None
) -> tuple[NKState, list[str]]:
    """Fill defaults and replace values the dataset cannot use.

    Odd values (from a hand-edited URL) never raise: they fall back to the default
    and a note says so.

    Returns
    -------
    state, notes
    """
    state = dict(state or {})
    notes: list[str] = []

    def pick(key: str, allowed: list[str], default: str) -> str:
        value = state.get(key)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value in (None, ""):
            return default
        if value not in allowed:
            notes.append(f"{key} {value!r} is not available here; showing {default!r}.")
            return default
        return str(value)

    metrics = [m.key for m in available_metrics(samples)]
    definitions = available_definitions(samples) or list(DEFINITIONS)
    return (
        NKState(
            metric=pick("metric", metrics, default_metric(samples)),
            definition=pick("definition", definitions, default_response(samples)),
            nk_timepoint=pick("nk_timepoint", list(schema.TIMEPOINTS), "pre"),
            split=pick("split", list(SPLITS), "median"),
        ),
        notes,
    )


@dataclass(frozen=True)
class PairedResult:
    """Patients with both pre- and on-treatment values, and a test per group."""

    frame: pd.DataFrame  # cohort, patient_id, group, pre, on
    tests: tuple[stats.PairedTest, ...] = ()


@dataclass(frozen=True)
class NKResponseAnalysis:
    """Everything the NK vs response page shows, for one dataset view and state."""

    state: NKState
    metric: Metric | None
    definition: ResponseDefinition
    binary_label: str
    patients: pd.DataFrame  # one row per patient with a value at the timepoint
    n_analysed: int = 0
    n_no_response: int = 0
    n_no_metric: int = 0
    n_averaged: int = 0
    summaries: tuple[stats.GroupSummary, ...] = ()
    two_group: stats.TwoGroupTest | None = None
    multi_group: stats.MultiGroupTest | None = None
    roc: stats.RocResult | None = None
    strata: dict[str, list[stats.StratumEffect]] = field(default_factory=dict)
    pooled: dict[str, stats.PooledEffect] = field(default_factory=dict)
    logistic: stats.LogisticResult | None = None
    km: dict[str, KMResult] = field(default_factory=dict)
    cox: dict[str, dict[str, CoxResult]] = field(default_factory=dict)
    paired: PairedResult | None = None
    notes: tuple[str, ...] = ()
    empty_message: str = ""

    @property
    def empty(self) -> bool:
        return bool(self.empty_message)

    @property
    def groups(self) -> tuple[str, ...]:
        return self.definition.groups

    @property
    def exclusion_text(self) -> str:
        """'12 patients without evaluable response excluded' and the like."""
        parts = []
        if self.n_no_response:
            parts.append(
                f"{self.n_no_response} patient{'s' if self.n_no_response != 1 else ''}"
                " without evaluable response excluded"
            )
        if self.n_no_metric:
            parts.append(
                f"{self.n_no_metric} patient{'s' if self.n_no_metric != 1 else ''}"
                " without a value of the metric excluded"
            )
        if self.n_averaged:
            parts.append(
                f"{self.n_averaged} patient{'s' if self.n_averaged != 1 else ''} with "
                "several samples at this timepoint (values averaged)"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """JSON-ready summary (documented in README, 'Statistics from the CLI')."""
        two = self.two_group
        surv = {}
        for key, km in self.km.items():
            surv[key] = {
                "endpoint": km.endpoint,
                "groups": [
                    {"group": c.group, "n": c.n, "events": c.events, "median": c.median}
                    for c in km.curves
                ],
                "logrank_p": km.logrank_p,
                "logrank_statistic": km.logrank_statistic,
                "message": km.message,
                "cox_unadjusted": self.cox.get(key, {}).get("unadjusted"),
                "cox_adjusted": self.cox.get(key, {}).get("adjusted"),
            }
        roc = self.roc
        return stats.to_jsonable(
            {
                "metric": {
                    "key": self.state.metric,
                    "label": self.metric.label if self.metric else "",
                },
                "response_definition": {
                    "key": self.definition.key,
                    "label": self.definition.label,
                    "binary_analyses": self.binary_label,
                },
                "timepoint": self.state.nk_timepoint,
                "split": self.state.split,
                "n_patients": self.n_analysed,
                "n_excluded_no_response": self.n_no_response,
                "n_excluded_no_metric": self.n_no_metric,
                "n_patients_samples_averaged": self.n_averaged,
                "groups": list(self.summaries),
                "mann_whitney": None
                if two is None
                else {
                    "n1": two.n1,
                    "n2": two.n2,
                    "u": two.u,
                    "p": two.p,
                    "rank_biserial_r": two.r,
                    "sign": "r > 0: lower metric in responders",
                    "message": two.message,
                },
                "kruskal_wallis": self.multi_group,
                "auc": None
                if roc is None
                else {
                    "auc": roc.auc,
                    "ci_low": roc.ci_low,
                    "ci_high": roc.ci_high,
                    "direction": "lower metric predicts response",
                    "method": roc.method,
                    "n_responders": roc.n_pos,
                    "n_non_responders": roc.n_neg,
                    "message": roc.message,
                },
                "strata": {
                    by: [
                        {
                            "stratum": e.stratum,
                            "n_responders": e.n_pos,
                            "n_non_responders": e.n_neg,
                            "rank_biserial_r": e.r,
                            "ci_low": e.ci_low,
                            "ci_high": e.ci_high,
                            "auc": e.auc,
                            "message": e.message,
                        }
                        for e in effects
                    ]
                    for by, effects in self.strata.items()
                },
                "pooled": {
                    by: {
                        "k": p.k,
                        "rank_biserial_r": p.estimate,
                        "ci_low": p.ci_low,
                        "ci_high": p.ci_high,
                        "p": p.p,
                        "tau2": p.tau2,
                        "i2": p.i2,
                        "method": p.method,
                        "message": p.message,
                    }
                    for by, p in self.pooled.items()
                },
                "survival": surv,
                "logistic": self.logistic,
                "paired": list(self.paired.tests) if self.paired else [],
                "notes": list(self.notes),
                "empty_message": self.empty_message,
            }
        )


def _binary(definition: ResponseDefinition) -> tuple[str, str]:
    """Definition used for ROC, forest and logistic regression, and its label."""
    if definition.binary:
        return definition.key, definition.label
    return "objective", DEFINITIONS["objective"].label


def analyze_nk_response(
    samples: pd.DataFrame, state: Mapping[str, object] | None = None
) -> NKResponseAnalysis:
    """All statistics of the NK vs response page for a filtered sample table.

    Parameters
    ----------
    samples
        Filtered cohort rows (one per sample), as ``CohortView.samples``.
    state
        Page state: ``metric``, ``definition``, ``nk_timepoint``, ``split``; missing
        or unusable values take their defaults (see :func:`resolve_state`).

    Returns
    -------
    NKResponseAnalysis
        With ``empty_message`` set when there is nothing to analyse.
    """
    resolved, notes = resolve_state(samples, state)
    definition = DEFINITIONS[resolved.definition]
    binary_key, binary_label = _binary(definition)
    metrics = {m.key: m for m in available_metrics(samples)}
    metric = metrics.get(resolved.metric)
    base = dict(
        state=resolved,
        metric=metric,
        definition=definition,
        binary_label=binary_label,
        notes=tuple(notes),
    )
    if samples.empty:
        return NKResponseAnalysis(
            patients=pd.DataFrame(),
            empty_message="No samples match the filters.",
            **base,
        )
    if metric is None:
        return NKResponseAnalysis(
            patients=pd.DataFrame(),
            empty_message="This dataset has no NK metric (needs frac_nk).",
            **base,
        )
    tp = resolved.nk_timepoint
    at_tp = patient_metric(samples, metric.key, timepoint=tp)
    if at_tp.empty:
        return NKResponseAnalysis(
            patients=pd.DataFrame(),
            empty_message=f"No {TIMEPOINT_LABELS[tp]} samples in the filtered cohort; "
            "choose another timepoint or widen the filters.",
            **base,
        )
    at_tp = at_tp.assign(group=assign_response(at_tp, definition.key))
    binary_groups = assign_response(at_tp, binary_key)
    at_tp["responder"] = (binary_groups == RESPONDER).astype("boolean")
    at_tp.loc[binary_groups.isna(), "responder"] = pd.NA
    has_value = at_tp["value"].notna()
    n_no_metric = int((~has_value).sum())
    with_value = at_tp[has_value].copy()
    evaluable = with_value[with_value["group"].notna()].copy()
    n_no_response = int(with_value["group"].isna().sum())
    n_averaged = int((evaluable["n_samples"] > 1).sum())
    base.update(
        n_no_response=n_no_response,
        n_no_metric=n_no_metric,
        n_averaged=n_averaged,
    )
    # survival uses every patient with a value (response not needed)
    with_value["nk_group"] = split_by_metric(with_value["value"], method=resolved.split)
    notes += _split_notes(with_value, resolved.split)
    base["notes"] = tuple(notes)
    if evaluable.empty:
        return NKResponseAnalysis(
            patients=with_value,
            empty_message="No patient in the filtered cohort has both a value of "
            f"{metric.label} and an evaluable response ({definition.label}).",
            **base,
        )

    values, groups = evaluable["value"], evaluable["group"]
    summaries = tuple(stats.summarize_groups(values, groups, definition.groups))
    two_group = multi_group = None
    if definition.binary:
        two_group = stats.mann_whitney(
            values[groups == definition.groups[0]],
            values[groups == definition.groups[1]],
        )
    else:
        multi_group = stats.kruskal_pairwise(values, groups, definition.groups)

    binary = evaluable[evaluable["responder"].notna()]
    pos = binary.loc[binary["responder"] == True, "value"]  # noqa: E712
    neg = binary.loc[binary["responder"] == False, "value"]  # noqa: E712
    roc = stats.roc_lower_predicts_response(pos, neg)
    strata = {
        by: stats.stratum_effects(
            binary["value"], binary["responder"], binary[by], by=by
        )
        for by in ("tumor_type", "cohort")
    }
    pooled = {by: stats.pool_strata(effects) for by, effects in strata.items()}
    logistic = stats.logistic_response(
        binary.assign(responder=binary["responder"].astype(bool))
    )

    km: dict[str, KMResult] = {}
    cox: dict[str, dict[str, CoxResult]] = {}
    split_order = (
        ("NK-low", "NK-high")
        if resolved.split == "median"
        else ("NK-low", "NK-mid", "NK-high")
    )
    for key, (time, event, name) in ENDPOINTS.items():
        if time not in with_value.columns or with_value[time].notna().sum() == 0:
            continue
        km[key] = kaplan_meier(
            with_value, time=time, event=event, group="nk_group", order=split_order,
            endpoint=name,
        )  # fmt: skip
        cox[key] = {
            "unadjusted": cox_per_sd(with_value, time=time, event=event, endpoint=name),
            "adjusted": cox_per_sd(
                with_value, time=time, event=event, endpoint=name, strata="tumor_type"
            ),
        }

    return NKResponseAnalysis(
        patients=with_value,
        n_analysed=len(evaluable),
        summaries=summaries,
        two_group=two_group,
        multi_group=multi_group,
        roc=roc,
        strata=strata,
        pooled=pooled,
        logistic=logistic,
        km=km,
        cox=cox,
        paired=paired_pre_on(samples, metric.key, definition),
        **base,
    )


def _split_notes(patients: pd.DataFrame, split: str) -> list[str]:
    """Say so when ties at the cut-point leave an NK group (nearly) empty."""
    counts = patients["nk_group"].value_counts()
    order = (
        ("NK-low", "NK-high") if split == "median" else ("NK-low", "NK-mid", "NK-high")
    )
    sizes = {g: int(counts.get(g, 0)) for g in order}
    if not patients["value"].notna().any() or min(sizes.values()) >= stats.MIN_GROUP:
        return []
    mode = patients["value"].mode().iloc[0]
    n_tied = int((patients["value"] == mode).sum())
    shown = ", ".join(f"{g} n={n}" for g, n in sizes.items())
    return [
        f"The {SPLITS[split]} is unbalanced ({shown}): {n_tied} patients share the "
        f"value {mode:.3g}, so the survival comparison by NK group is limited."
    ]


def paired_pre_on(
    samples: pd.DataFrame, metric: str, definition: ResponseDefinition
) -> PairedResult:
    """Patients with pre- and on-treatment values; Wilcoxon signed-rank per group.

    Parameters
    ----------
    samples
        Filtered sample rows.
    metric
        Metric key.
    definition
        Response definition grouping the patients.
    """
    key = list(schema.PATIENT_KEY)
    pre = patient_metric(samples, metric, timepoint="pre")
    on = patient_metric(samples, metric, timepoint="on")
    if pre.empty or on.empty:
        return PairedResult(
            pd.DataFrame(columns=[*key, "group", "pre", "on"]),
            tuple(
                stats.PairedTest(g, 0, message="No patient has both pre- and "
                                 "on-treatment samples.")
                for g in definition.groups
            ),
        )  # fmt: skip
    pre = pre.assign(group=assign_response(pre, definition.key))
    both = pre[[*key, "group", "value"]].merge(
        on[[*key, "value"]], on=key, suffixes=("_pre", "_on")
    )
    both = both.rename(columns={"value_pre": "pre", "value_on": "on"})
    both = both.dropna(subset=["pre", "on", "group"])
    both = both.sort_values(key).reset_index(drop=True)
    tests = tuple(
        stats.paired_wilcoxon(
            g, both.loc[both["group"] == g, "pre"], both.loc[both["group"] == g, "on"]
        )
        for g in definition.groups
    )
    return PairedResult(both, tests)
