"""NK metric vs ICB response: every statistic of the page, computed once.

The page (``figures.nk.nk_panels``) and the CLI (``cli.py stats``) both call
:func:`analyze_nk_response`, so they report the same numbers to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from analysis import stats
from analysis.nk_metrics import (
    Metric,
    available_metrics,
    patient_metric,
    split_by_metric,
    split_cutoffs,
)
from analysis.response import (
    DEFINITIONS,
    RESPONDER,
    ResponseDefinition,
    assign_response,
    available_definitions,
)
from analysis.survival import (
    CoxResult,
    KMResult,
    cox_per_sd,
    kaplan_meier,
    landmark_population,
)
from data import schema

#: Page state keys (also the URL query keys of the page).
STATE_KEYS = (
    "metric",
    "definition",
    "nk_timepoint",
    "split",
    "landmark",
    "deconvolution",
)
#: Samples used by deconvolution quality (CIBERSORT p-value; issue 14).
DECONVOLUTION = {"all": "all samples", "p05": "deconvolution p < 0.05"}
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
#: Reader's names of the page controls (notices name the control to change).
CONTROL_LABELS = {
    "metric": "NK metric",
    "definition": "Response definition",
    "nk_timepoint": "NK timepoint",
    "split": "NK groups (survival)",
    "landmark": "Landmark (months)",
    "deconvolution": "Deconvolution",
}
#: Longest landmark accepted (months): beyond 10 years no cohort has follow-up.
MAX_LANDMARK = 120.0
NO_LANDMARK = "no landmark (survival from treatment start)"


@dataclass(frozen=True)
class NKState:
    """The page's control state, resolved against the dataset.

    ``landmark`` is months after treatment start, or ``None`` (survival counted
    from treatment start).
    """

    metric: str
    definition: str
    nk_timepoint: str
    split: str
    landmark: float | None = None
    deconvolution: str = "all"

    def to_dict(self) -> dict[str, object]:
        # the default sample set stays out of URLs and provenance written before it
        return {
            k: getattr(self, k)
            for k in STATE_KEYS
            if k != "deconvolution" or self.deconvolution != "all"
        }


@dataclass(frozen=True)
class StateFallback:
    """A requested state value that could not be used, in the reader's words.

    ``label`` names the control, ``value`` the request (its option label when the
    key is known), ``shown`` what is used instead, ``reason`` why.
    """

    key: str
    label: str
    requested: str
    value: str
    shown: str
    reason: str = "is not available here"

    @property
    def note(self) -> str:
        return (
            f"{self.label} “{self.value}” {self.reason}; showing {self.shown} instead."
        )


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


def landmark_label(landmark: float | None) -> str:
    """'landmark 3 months after treatment start' or the no-landmark wording."""
    if landmark is None:
        return NO_LANDMARK
    return f"landmark {landmark:g} months after treatment start"


def parse_landmark(value: object) -> float | None:
    """Months from a URL/CLI value; ``None`` for blank; ``ValueError`` when not a
    number in (0, MAX_LANDMARK]."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        months = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("is not a number of months after treatment start") from None
    if not math.isfinite(months) or months <= 0 or months > MAX_LANDMARK:
        raise ValueError(
            f"must be more than 0 and at most {MAX_LANDMARK:g} months after "
            "treatment start"
        )
    return months


def _definition_reason(key: str) -> str:
    if key == "reported":
        return (
            "is not available for the filtered patients (no study-reported "
            "responder / non-responder values)"
        )
    return "is not available for the filtered patients (none has a RECIST value)"


def _reason(value, known: bool, reason_for) -> str:
    if not known:
        return "is not a known choice"
    if reason_for is not None:
        return reason_for(value)
    return "is not available for this dataset"


def resolve_state_fallbacks(
    samples: pd.DataFrame, state: Mapping[str, object] | None
) -> tuple[NKState, list[StateFallback]]:
    """Fill defaults and replace values the filtered samples cannot use.

    Odd values (from a hand-edited URL) never raise: they fall back to the default
    and a :class:`StateFallback` names the control, the value asked for, what is
    shown instead and why (pages show them as a notice, the CLI as an error).
    The response definitions offered are those of ``samples`` (the filtered
    view): a definition the filtered patients cannot be called by is replaced,
    never quietly analysed under another name.
    """
    state = dict(state or {})
    fallbacks: list[StateFallback] = []

    def raw(key: str):
        value = state.get(key)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        return None if value in (None, "") else value

    def pick(key, allowed, default, labels, reason_for=None):
        value = raw(key)
        if value is None:
            return default
        if value not in allowed:
            known = value in labels
            fallbacks.append(
                StateFallback(
                    key=key,
                    label=CONTROL_LABELS[key],
                    requested=str(value),
                    value=labels[value] if known else str(value),
                    shown=labels.get(default, str(default)),
                    reason=_reason(value, known, reason_for),
                )
            )
            return default
        return str(value)

    metrics = available_metrics(samples)
    metric_labels = {m.key: m.label for m in metrics}
    # known keys the dataset cannot compute still get a readable label
    metric_labels = {
        "frac_nk": "NK cells, fraction of CD45+ cells",
        "nk_lymphocytes": "NK among lymphocytes",
        "nk_over_nk_cd8": "NK / (NK + CD8)",
        "log2_nk_cd8": "log2(NK / CD8)",
        **metric_labels,
    }
    definitions = available_definitions(samples) or list(DEFINITIONS)
    definition_labels = {k: d.label for k, d in DEFINITIONS.items()}
    landmark_raw = raw("landmark")
    try:
        landmark = parse_landmark(landmark_raw)
    except ValueError as err:
        landmark = None
        fallbacks.append(
            StateFallback(
                key="landmark",
                label=CONTROL_LABELS["landmark"],
                requested=str(landmark_raw),
                value=str(landmark_raw),
                shown=NO_LANDMARK,
                reason=str(err),
            )
        )
    resolved = NKState(
        metric=pick(
            "metric", [m.key for m in metrics], default_metric(samples), metric_labels
        ),
        definition=pick(
            "definition",
            definitions,
            default_response(samples),
            definition_labels,
            _definition_reason,
        ),
        nk_timepoint=pick(
            "nk_timepoint", list(schema.TIMEPOINTS), "pre", TIMEPOINT_LABELS
        ),
        split=pick("split", list(SPLITS), "median", SPLITS),
        landmark=landmark,
        deconvolution=pick(
            "deconvolution",
            ["all", "p05"] if has_cibersort_p(samples) else ["all"],
            "all",
            DECONVOLUTION,
            lambda _: "needs CIBERSORT p-values, which this dataset does not have",
        ),
    )
    order = {k: i for i, k in enumerate(STATE_KEYS)}
    return resolved, sorted(fallbacks, key=lambda f: order[f.key])


def resolve_state(
    samples: pd.DataFrame, state: Mapping[str, object] | None
) -> tuple[NKState, list[str]]:
    """:func:`resolve_state_fallbacks` with the fallbacks as sentences.

    Returns
    -------
    state, notes
    """
    resolved, fallbacks = resolve_state_fallbacks(samples, state)
    return resolved, [f.note for f in fallbacks]


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
    #: patients left out of log2(NK / CD8) because NK or CD8 is 0
    n_zero_ratio: int = 0
    #: analysed patients whose timepoint was not reported (assumed pre-treatment)
    n_assumed_timepoint: int = 0
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
    fallbacks: tuple[StateFallback, ...] = ()
    empty_message: str = ""
    #: why the survival panels are empty (NK measured after treatment start)
    survival_message: str = ""
    #: cut-off value(s) of the NK split (see ``analysis.nk_metrics.split_cutoffs``)
    cutoffs: tuple[float, ...] = ()
    #: patients with a value whose follow-up ended at or before the landmark
    n_before_landmark: dict[str, int] = field(default_factory=dict)

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
        zeros = self.n_zero_ratio
        if zeros:
            parts.append(
                f"{zeros} patient{'s' if zeros != 1 else ''} with NK or CD8 = 0 "
                "excluded (log of 0; the pseudocount variant keeps them)"
            )
        if self.n_no_metric - zeros:
            n = self.n_no_metric - zeros
            parts.append(
                f"{n} patient{'s' if n != 1 else ''}"
                " without a value of the metric excluded"
            )
        if self.n_averaged:
            parts.append(
                f"{self.n_averaged} patient{'s' if self.n_averaged != 1 else ''} with "
                "several samples at this timepoint (values averaged)"
            )
        return "; ".join(parts)

    @property
    def timepoint_label(self) -> str:
        """'pre-treatment', or 'assumed pre-treatment' when the source did not
        report the timepoint (see ``data.schema.TIMEPOINT_ASSUMED``)."""
        label = TIMEPOINT_LABELS[self.state.nk_timepoint]
        assumed = self.n_assumed_timepoint
        if not assumed:
            return label
        if assumed >= len(self.patients):
            return f"assumed {label} (timepoint not reported)"
        return f"{label} ({assumed} patients assumed: timepoint not reported)"

    @property
    def split_groups(self) -> tuple[str, ...]:
        if self.state.split == "median":
            return ("NK-low", "NK-high")
        return ("NK-low", "NK-mid", "NK-high")

    def split_definitions(self, quantity: str) -> dict[str, str]:
        """'NK-low': 'NK among lymphocytes <= 0.123' and so on, per NK group."""
        return split_definitions(self.cutoffs, self.state.split, quantity)

    @property
    def quantity(self) -> str:
        """The metric as a sentence names it."""
        return self.metric.short if self.metric else "the NK metric"

    @property
    def direction_text(self) -> str:
        """The effect direction in words with its rank-biserial r.

        From the Mann-Whitney test of a binary definition; for RECIST's four
        groups from the objective-response ROC (r = 2 AUC - 1), and says so.
        """
        two = self.two_group
        if two is not None:
            return stats.direction_sentence(two.r, quantity=self.quantity)
        roc = self.roc
        if roc is None:
            return ""
        r = 2 * roc.auc - 1 if math.isfinite(roc.auc) else math.nan
        sentence = stats.direction_sentence(r, quantity=self.quantity)
        return f"{self.binary_label}: {sentence}"

    @property
    def auc_text(self) -> str:
        """What the AUC means, in words."""
        if self.roc is None:
            return ""
        return stats.auc_sentence(
            self.roc.auc, quantity=self.quantity, lower_predicts=True
        )

    @property
    def survival_origin(self) -> str:
        """Where survival time is counted from, in words."""
        if self.state.landmark is None:
            return "treatment start"
        return f"the landmark ({self.state.landmark:g} months after treatment start)"

    def to_dict(self) -> dict:
        """JSON-ready summary (documented in README, 'Statistics from the CLI')."""
        two = self.two_group
        surv = {}
        for key, km in self.km.items():
            surv[key] = {
                "endpoint": km.endpoint,
                "time_origin": self.survival_origin,
                "n_excluded_before_landmark": self.n_before_landmark.get(key, 0),
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
                "timepoint_label": self.timepoint_label,
                "deconvolution": DECONVOLUTION[self.state.deconvolution],
                "split": self.state.split,
                "landmark_months": self.state.landmark,
                "nk_groups": {
                    "method": SPLITS[self.state.split],
                    "cutoffs": list(self.cutoffs),
                    "definitions": self.split_definitions(
                        self.metric.short if self.metric else "NK metric"
                    ),
                },
                "n_patients": self.n_analysed,
                "n_excluded_no_response": self.n_no_response,
                "n_excluded_no_metric": self.n_no_metric,
                "n_excluded_nk_or_cd8_zero": self.n_zero_ratio,
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
                    "direction": self.direction_text,
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
                    "sentence": self.auc_text,
                    "effect_direction": self.direction_text,
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
                "survival_message": self.survival_message,
                "logistic": self.logistic,
                "paired": list(self.paired.tests) if self.paired else [],
                "notes": list(self.notes),
                "fallbacks": [
                    {
                        "key": f.key,
                        "requested": f.requested,
                        "label": f.label,
                        "value": f.value,
                        "shown": f.shown,
                        "reason": f.reason,
                        "note": f.note,
                    }
                    for f in self.fallbacks
                ],
                "empty_message": self.empty_message,
            }
        )


def split_definitions(
    cutoffs: tuple[float, ...], split: str, quantity: str
) -> dict[str, str]:
    """Each NK group's range in words ("NK among lymphocytes <= 0.123")."""
    if split == "median" and len(cutoffs) == 1:
        (cut,) = cutoffs
        return {
            "NK-low": f"{quantity} ≤ {cut:.3g}",
            "NK-high": f"{quantity} > {cut:.3g}",
        }
    if split == "tertile" and len(cutoffs) == 2:
        low, high = cutoffs
        return {
            "NK-low": f"{quantity} ≤ {low:.3g}",
            "NK-mid": f"{low:.3g} < {quantity} ≤ {high:.3g}",
            "NK-high": f"{quantity} > {high:.3g}",
        }
    return {}


def article(noun: str) -> str:
    """ "a pre-treatment", "an on-treatment"."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def survival_block_message(timepoint: str) -> str:
    """Why survival by an NK value measured after treatment start is not drawn."""
    return (
        "Survival by NK uses pre-treatment values only. "
        f"{article(TIMEPOINT_LABELS[timepoint]).capitalize()} sample is taken after "
        "treatment start, so only patients who lived long "
        "enough to be biopsied have one; comparing survival from treatment start "
        "would credit them that time (immortal-time bias). Choose NK timepoint "
        "“pre”, or set a landmark (months after treatment start, later than the "
        f"{TIMEPOINT_LABELS[timepoint]} biopsies) to compare survival from then on."
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
    resolved, fallbacks = resolve_state_fallbacks(samples, state)
    notes = [f.note for f in fallbacks]
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
        fallbacks=tuple(fallbacks),
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
    if resolved.deconvolution == "p05":
        samples, note = deconvolution_samples(samples, resolved.deconvolution)
        notes.append(note)
        base["notes"] = tuple(notes)
    tp = resolved.nk_timepoint
    at_tp = patient_metric(samples, metric.key, timepoint=tp)
    if at_tp.empty:
        return NKResponseAnalysis(
            patients=pd.DataFrame(),
            empty_message=_no_timepoint_message(samples, tp),
            **base,
        )
    at_tp = at_tp.assign(group=assign_response(at_tp, definition.key))
    binary_groups = assign_response(at_tp, binary_key)
    at_tp["responder"] = (binary_groups == RESPONDER).astype("boolean")
    at_tp.loc[binary_groups.isna(), "responder"] = pd.NA
    has_value = at_tp["value"].notna()
    n_no_metric = int((~has_value).sum())
    n_zero = 0
    if metric.key == "log2_nk_cd8":
        zero = (at_tp["frac_nk"] == 0) | (at_tp["frac_cd8"] == 0)
        n_zero = int((zero & ~has_value).sum())
    base["n_zero_ratio"] = n_zero
    base["n_assumed_timepoint"] = assumed_timepoint_patients(
        samples, at_tp[has_value], tp
    )
    with_value = at_tp[has_value].copy()
    evaluable = with_value[with_value["group"].notna()].copy()
    n_no_response = int(with_value["group"].isna().sum())
    n_averaged = int((evaluable["n_samples"] > 1).sum())
    base.update(
        n_no_response=n_no_response,
        n_no_metric=n_no_metric,
        n_averaged=n_averaged,
    )
    # survival uses every patient with a value (response not needed); the cut-off
    # is taken on all of them so both endpoints share one stated cut-off
    cutoffs = split_cutoffs(with_value["value"], method=resolved.split)
    with_value["nk_group"] = split_by_metric(with_value["value"], method=resolved.split)
    notes += _split_notes(with_value, resolved.split)
    base["notes"] = tuple(notes)
    base["cutoffs"] = cutoffs
    if tp != "pre" and resolved.landmark is None:
        base["survival_message"] = survival_block_message(tp)
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

    km, cox, before = _survival(
        with_value, resolved, survival=not base.get("survival_message")
    )
    base["n_before_landmark"] = before

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


def deconvolution_samples(
    samples: pd.DataFrame, choice: str
) -> tuple[pd.DataFrame, str]:
    """The samples a deconvolution choice keeps, and a note saying how many.

    ``choice`` is a key of :data:`DECONVOLUTION`: ``all`` keeps every sample (note
    ``""``), ``p05`` those with CIBERSORT p < 0.05. The NK page and the exported
    patient table use this one function, so they keep the same samples.
    """
    if choice != "p05":
        return samples, ""
    reliable = samples[schema.CIBERSORT_P].astype(float) < 0.05
    note = (
        f"Deconvolution p < 0.05: {int(reliable.sum())} of {len(samples)} "
        "samples kept (CIBERSORT p-value)."
    )
    return samples[reliable], note


def has_cibersort_p(samples: pd.DataFrame) -> bool:
    """True when the samples carry CIBERSORT p-values."""
    return (
        schema.CIBERSORT_P in samples.columns
        and samples[schema.CIBERSORT_P].notna().any()
    )


def assumed_timepoint_patients(
    samples: pd.DataFrame, patients: pd.DataFrame, timepoint: str
) -> int:
    """How many of ``patients`` have a sample at ``timepoint`` whose timepoint was
    not reported by the source (recorded as assumed pre-treatment)."""
    if schema.TIMEPOINT_NOTE not in samples.columns or patients.empty:
        return 0
    rows = samples[
        (samples["timepoint"] == timepoint)
        & (samples[schema.TIMEPOINT_NOTE] == schema.TIMEPOINT_ASSUMED)
    ]
    keys = set(zip(rows["cohort"], rows["patient_id"], strict=True))
    return sum(
        (c, p) in keys
        for c, p in zip(patients["cohort"], patients["patient_id"], strict=True)
    )


def unreliable_deconvolution(samples: pd.DataFrame) -> list[tuple[str, int, int]]:
    """Cohorts where most samples have CIBERSORT p >= 0.05: (cohort, n with
    p >= 0.05, n with a p-value), in cohort order."""
    if not has_cibersort_p(samples):
        return []
    p = samples[schema.CIBERSORT_P].astype(float)
    out = []
    for cohort, values in p.groupby(samples["cohort"], sort=True):
        values = values.dropna()
        bad = int((values >= 0.05).sum())
        if len(values) and bad > len(values) / 2:
            out.append((str(cohort), bad, len(values)))
    return out


def _no_timepoint_message(samples: pd.DataFrame, timepoint: str) -> str:
    present = [t for t in schema.TIMEPOINTS if (samples["timepoint"] == t).any()]
    there = " and ".join(TIMEPOINT_LABELS[t] for t in present)
    return (
        f"No {TIMEPOINT_LABELS[timepoint]} samples in the filtered cohort "
        f"(its samples are {there} only)."
    )


def _survival(
    patients: pd.DataFrame, state: NKState, *, survival: bool
) -> tuple[dict[str, KMResult], dict[str, dict[str, CoxResult]], dict[str, int]]:
    """Kaplan-Meier and Cox per endpoint, from treatment start or the landmark."""
    km: dict[str, KMResult] = {}
    cox: dict[str, dict[str, CoxResult]] = {}
    before: dict[str, int] = {}
    if not survival:
        return km, cox, before
    order = ("NK-low", "NK-high") if state.split == "median" else (
        "NK-low", "NK-mid", "NK-high"
    )  # fmt: skip
    for key, (time, event, name) in ENDPOINTS.items():
        if time not in patients.columns or patients[time].notna().sum() == 0:
            continue
        frame = patients
        if state.landmark is not None:
            frame, before[key] = landmark_population(
                patients, time=time, event=event, landmark=state.landmark
            )
        km[key] = kaplan_meier(
            frame, time=time, event=event, group="nk_group", order=order,
            endpoint=name,
        )  # fmt: skip
        cox[key] = {
            "unadjusted": cox_per_sd(frame, time=time, event=event, endpoint=name),
            "adjusted": cox_per_sd(
                frame, time=time, event=event, endpoint=name, strata="tumor_type"
            ),
        }
    return km, cox, before


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
