"""Figures of the evidence page: forest, leave-one-out, funnel, specification curve,
infiltration-adjusted model. Pure plotly, no Dash.

Every figure states k (cohorts) and n per cohort, the effect (rank-biserial r, r > 0:
lower NK metric in responders), the pooling method and the direction in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import meta
from analysis.adjusted import AdjustedResult
from analysis.multiverse import (
    DEFINITION_LABELS,
    DENOMINATORS,
    Specification,
    estimator_label,
    summarize,
)
from analysis.stats import direction_sentence, format_p
from figures.panel import Panel
from figures.template import empty_figure, titled, top_margin, top_title

GROUP_LABELS = {"tumor_type": "tumor type", "treatment_class": "treatment class"}
BLUE, GREY, DARK, RED = "#4477aa", "#999999", "#222222", "#cc6677"
SYNTHETIC_NOTE = "SYNTHETIC demo data"


def _fmt(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}"


def _pooled_text(p: meta.Pooled) -> str:
    return (
        f"{_fmt(p.r)} [{_fmt(p.back(p.ci_low))}, {_fmt(p.back(p.ci_high))}]; "
        f"I² = {p.i2:.0%}, τ² = {p.tau2:.3f}, {format_p(p.p)}"
    )


#: a row label longer than this is cut (tumor types of 40+ characters, mixed
#: cohorts listing several): the labels sit left of the plot on one line each
LABEL_CHARS = 42


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _layout(fig: go.Figure, title: str, n_rows: int, *, right: int = 250) -> None:
    fig.update_layout(
        title=top_title(title),
        margin={"t": top_margin(title, 90), "r": right, "l": 10, "b": 60},
        height=max(360, 140 + 26 * n_rows),
    )


def forest_figure(result: meta.EvidenceResult, *, group_by: str = "tumor_type"):
    """Per-cohort r (95% CI) grouped by tumor type or treatment class, then the
    DL and REML-HK pooled diamonds and the 95% prediction interval."""
    if not result.cohorts:
        return empty_figure("No cohort of the selected datasets has this metric.")
    rows: list[dict] = []
    groups: dict[str, list[meta.CohortEffect]] = {}
    for c in result.cohorts:
        groups.setdefault(getattr(c, group_by), []).append(c)
    for name, members in sorted(groups.items()):
        rows.append({"label": f"<b>{_cut(name)}</b>", "kind": "header"})
        for c in members:
            n = f"n={c.n_responders} R / {c.n_non_responders} NR"
            rows.append(
                {
                    "label": f"{_cut(c.label)}, {n}",
                    "kind": "cohort" if c.usable else "unused",
                    "x": c.r,
                    "lo": c.ci_low,
                    "hi": c.ci_high,
                    "text": (
                        f"{_fmt(c.r)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]"
                        if c.usable
                        else f"not pooled: {c.message or 'no estimate'}"
                    ),
                }
            )
    for key, p in result.pooled.items():
        name = "DerSimonian-Laird" if key == "dl" else "REML + Hartung-Knapp"
        rows.append(
            {
                "label": f"<i>Pooled, {name} (k={p.k})</i>",
                "kind": "pooled",
                "x": p.r,
                "lo": p.back(p.ci_low),
                "hi": p.back(p.ci_high),
                "text": _pooled_text(p) if p.ok else p.message,
            }
        )
    hk = result.pooled["reml_hk"]
    if hk.ok and math.isfinite(hk.pi_low):
        rows.append(
            {
                "label": "<i>95% prediction interval (REML-HK)</i>",
                "kind": "pi",
                "x": hk.r,
                "lo": hk.back(hk.pi_low),
                "hi": hk.back(hk.pi_high),
                "text": f"{_fmt(hk.back(hk.pi_low))} to {_fmt(hk.back(hk.pi_high))}",
            }
        )
    for i, row in enumerate(rows):
        row["y"] = f"row{i:02d}"
    fig = go.Figure()
    styles = {
        "cohort": ("square", 9, BLUE),
        "pooled": ("diamond", 14, DARK),
        "pi": ("line-ew", 14, RED),
    }
    for kind, (symbol, size, color) in styles.items():
        part = [
            r for r in rows if r["kind"] == kind and math.isfinite(r.get("x", math.nan))
        ]
        if not part:
            continue
        fig.add_scatter(
            x=[r["x"] for r in part],
            y=[r["y"] for r in part],
            mode="markers",
            marker={"symbol": symbol, "size": size, "color": color,
                    "line": {"color": color, "width": 2}},
            error_x={
                "type": "data", "symmetric": False,
                "array": [r["hi"] - r["x"] for r in part],
                "arrayminus": [r["x"] - r["lo"] for r in part],
                "color": color if kind == "pi" else "#555", "thickness": 1.5,
                "width": 4,
            },
            customdata=[r["text"] for r in part],
            hovertemplate="r = %{customdata}<extra></extra>",
            showlegend=False,
        )  # fmt: skip
    fig.add_vline(x=0, line={"color": "#888", "dash": "dot"})
    for row in rows:
        if row["kind"] != "header":
            fig.add_annotation(
                text=row["text"], x=1.01, y=row["y"], xref="paper", yref="y",
                xanchor="left", showarrow=False, font={"size": 10},
            )  # fmt: skip
    order = [r["y"] for r in rows]
    fig.update_yaxes(
        type="category", range=[-0.6, len(rows) - 0.4], categoryorder="array",
        categoryarray=list(reversed(order)), tickvals=order,
        ticktext=[r["label"] for r in rows], showgrid=False,
    )  # fmt: skip
    fig.update_xaxes(
        range=[-1, 1],
        title=f"Rank-biserial r (95% CI); r > 0: lower {result.metric_label} "
        "in responders",
    )
    title = titled(
        f"NK vs response per cohort, by {GROUP_LABELS[group_by]}"
        + (f" ({SYNTHETIC_NOTE})" if result.synthetic else ""),
        f"{result.metric_label}; {_definition(result.definition)}; "
        f"{result.timepoint}-treatment samples; pooled on Fisher z = atanh(r)",
        result.direction_text(),
        _subgroup_line(result, group_by),
        width=110,
    )
    _layout(fig, title, len(rows), right=330)
    return fig


def _subgroup_line(result: meta.EvidenceResult, by: str) -> str:
    test = result.subgroups.get(by)
    if test is None or test.message:
        return test.message if test else ""
    return (
        f"Subgroup differences by {GROUP_LABELS[by]} (random effects): "
        f"Q = {test.q_between:.1f}, df = {test.df}, {format_p(test.p)}"
    )


def _definition(key: str) -> str:
    return DEFINITION_LABELS.get(key, key)


def leave_one_out_figure(result: meta.EvidenceResult) -> go.Figure:
    """The REML-HK pooled r with each cohort left out in turn."""
    loo = [lo for lo in result.leave_one_out if lo.pooled.ok]
    if len(loo) < 2:
        return empty_figure("Leave-one-out needs at least three pooled cohorts.")
    hk = result.pooled["reml_hk"]
    labels = [f"without {lo.cohort} ({lo.dataset})" for lo in loo]
    x = [lo.pooled.r for lo in loo]
    lo_ci = [lo.pooled.back(lo.pooled.ci_low) for lo in loo]
    hi_ci = [lo.pooled.back(lo.pooled.ci_high) for lo in loo]
    fig = go.Figure(
        go.Scatter(
            x=x, y=labels, mode="markers",
            marker={"symbol": "diamond", "size": 10, "color": DARK},
            error_x={"type": "data", "symmetric": False,
                     "array": np.subtract(hi_ci, x),
                     "arrayminus": np.subtract(x, lo_ci),
                     "color": "#555"},
            customdata=[f"{format_p(lo.pooled.p)}, k={lo.pooled.k}" for lo in loo],
            hovertemplate="r = %{x:.2f}; %{customdata}<extra></extra>",
            showlegend=False,
        )
    )  # fmt: skip
    fig.add_vline(x=0, line={"color": "#888", "dash": "dot"})
    fig.add_vline(x=hk.r, line={"color": BLUE, "dash": "dash"})
    flips = sum((r > 0) != (hk.r > 0) for r in x)
    signif = sum(lo.pooled.p < 0.05 for lo in loo)
    title = titled(
        "Leave-one-cohort-out (REML + Hartung-Knapp)",
        f"dashed line: all {hk.k} cohorts, r = {_fmt(hk.r)}; leaving one out "
        f"flips the direction {flips} time(s); p < 0.05 in {signif} of {len(loo)}",
        width=100,
    )
    fig.update_xaxes(range=[-1, 1], title="Pooled rank-biserial r (95% CI)")
    fig.update_yaxes(autorange="reversed")
    _layout(fig, title, len(loo), right=30)
    return fig


def funnel_figure(result: meta.EvidenceResult) -> go.Figure:
    """Fisher z per cohort against its standard error, with the pseudo 95% limits
    around the REML pooled z, and Egger's test when k >= 10."""
    use = meta.usable(result.cohorts)
    if len(use) < 3:
        return empty_figure("A funnel plot needs at least three pooled cohorts.")
    hk = result.pooled["reml_hk"]
    se = np.array([c.se_z for c in use])
    z = np.array([c.z for c in use])
    top = float(se.max()) * 1.1
    grid = np.linspace(0, top, 30)
    fig = go.Figure()
    for sign in (-1, 1):
        fig.add_scatter(
            x=hk.estimate + sign * 1.96 * grid, y=grid, mode="lines",
            line={"color": GREY, "dash": "dot"}, hoverinfo="skip", showlegend=False,
        )  # fmt: skip
    fig.add_scatter(
        x=z, y=se, mode="markers", marker={"size": 9, "color": BLUE},
        text=[f"{c.label}, n={c.n_responders + c.n_non_responders}" for c in use],
        hovertemplate="%{text}<br>z = %{x:.2f}, SE = %{y:.2f}<extra></extra>",
        showlegend=False,
    )  # fmt: skip
    fig.add_vline(x=hk.estimate, line={"color": DARK, "dash": "dash"})
    egger = result.egger
    egger_line = (
        egger.message
        if egger.message
        else f"Egger's test: intercept {egger.intercept:.2f} (SE {egger.se:.2f}), "
        f"{format_p(egger.p)}"
        + (" - asymmetric funnel" if egger.p < 0.1 else " - no clear asymmetry")
    )
    title = titled(
        f"Funnel plot (k = {len(use)} cohorts)",
        f"Fisher z = atanh(r) per cohort vs its standard error; dashed: REML pooled "
        f"z; dotted: pseudo 95% limits. {egger_line}",
        width=100,
    )
    fig.update_yaxes(autorange="reversed", title="Standard error of z", range=[top, 0])
    fig.update_xaxes(title="Fisher z (> 0: lower NK metric in responders)")
    _layout(fig, title, 10, right=30)
    return fig


def spec_curve_figure(specs: Sequence[Specification]) -> go.Figure:
    """Specification curve: pooled r per specification, sorted, with CI bars, and a
    dot matrix below naming each specification's choices."""
    est = [s for s in specs if s.estimated]
    if not est:
        return empty_figure("No specification has at least two cohorts to pool.")
    est = sorted(est, key=lambda s: s.r)
    x = np.arange(len(est))
    choice_rows: list[tuple[str, str, str]] = []  # (dimension, value, label)
    for dim, labeler in (
        ("metric", estimator_label),
        ("denominator", lambda v: DENOMINATORS.get(v, v)),
        ("definition", lambda v: DEFINITION_LABELS.get(v, v)),
        ("timepoint", lambda v: f"{v}-treatment"),
    ):
        for value in sorted({getattr(s, dim) for s in est}):
            choice_rows.append((dim, value, labeler(value)))
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.45, 0.55],
        vertical_spacing=0.03,
    )  # fmt: skip
    colors = [
        BLUE if s.significant and s.r > 0 else RED if s.significant else GREY
        for s in est
    ]
    fig.add_scatter(
        x=x, y=[s.r for s in est], mode="markers",
        marker={"size": 6, "color": colors},
        error_y={"type": "data", "symmetric": False,
                 "array": [s.ci_high - s.r for s in est],
                 "arrayminus": [s.r - s.ci_low for s in est],
                 "color": "#bbb", "thickness": 1, "width": 0},
        customdata=[
            [estimator_label(s.metric), DENOMINATORS[s.denominator],
             DEFINITION_LABELS.get(s.definition, s.definition), s.timepoint, s.k,
             format_p(s.p)]
            for s in est
        ],
        hovertemplate="r = %{y:.2f}<br>%{customdata[0]}, %{customdata[1]}<br>"
        "%{customdata[2]}, %{customdata[3]}<br>k = %{customdata[4]}, "
        "%{customdata[5]}<extra></extra>",
        showlegend=False, row=1, col=1,
    )  # fmt: skip
    fig.add_hline(y=0, line={"color": "#888", "dash": "dot"}, row=1, col=1)
    ys, xs = [], []
    for i, s in enumerate(est):
        for j, (dim, value, _) in enumerate(choice_rows):
            if getattr(s, dim) == value:
                xs.append(i)
                ys.append(j)
    fig.add_scatter(
        x=xs, y=ys, mode="markers", marker={"symbol": "square", "size": 5,
                                             "color": DARK},
        hoverinfo="skip", showlegend=False, row=2, col=1,
    )  # fmt: skip
    fig.update_yaxes(
        row=2, col=1, tickvals=list(range(len(choice_rows))),
        ticktext=[f"{label}" for _, _, label in choice_rows], autorange="reversed",
        tickfont={"size": 9}, showgrid=True,
    )  # fmt: skip
    fig.update_yaxes(
        row=1, col=1, range=[-1, 1],
        title="Pooled r (95% CI)",
    )  # fmt: skip
    fig.update_xaxes(row=2, col=1, title="Specifications, sorted by pooled r",
                     showticklabels=False)  # fmt: skip
    summary = summarize(est)
    title = titled(
        f"Specification curve: {summary.n} ways to ask the question",
        "Each point: one choice of NK estimator x denominator x response definition "
        "x timepoint, pooled over its cohorts (REML + Hartung-Knapp); blue: lower "
        "in responders, p < 0.05; red: higher, p < 0.05; grey: p >= 0.05.",
        summary.sentence(),
        width=100,
    )
    fig.update_layout(
        title=top_title(title),
        margin={"t": top_margin(title, 90), "r": 20, "l": 10, "b": 50},
        height=380 + 13 * len(choice_rows),
    )
    return fig


def adjusted_figure(result: AdjustedResult, *, metric_label: str) -> go.Figure:
    """NK odds ratio per SD per cohort and pooled, without and with CD8."""
    fitted = [m for m in result.cohorts if not m.message]
    if not fitted:
        return empty_figure("No cohort has enough patients for the logistic models.")
    rows = [(f"{m.cohort} ({m.dataset}), n={m.n}", m) for m in fitted]
    fig = go.Figure()
    for name, attr, se_attr, color, shift in (
        ("unadjusted: response ~ NK", "log_or", "se", GREY, -0.15),
        ("adjusted: response ~ NK + CD8", "log_or_adjusted", "se_adjusted", BLUE,
         0.15),
    ):  # fmt: skip
        b = np.array([getattr(m, attr) for _, m in rows])
        s = np.array([getattr(m, se_attr) for _, m in rows])
        y = np.arange(len(rows)) + shift
        fig.add_scatter(
            x=np.exp(b), y=y, mode="markers", name=name,
            marker={"color": color, "size": 8},
            error_x={"type": "data", "symmetric": False,
                     "array": np.exp(b + 1.96 * s) - np.exp(b),
                     "arrayminus": np.exp(b) - np.exp(b - 1.96 * s), "color": color},
            hovertemplate="OR %{x:.2f}<extra>" + name + "</extra>",
        )  # fmt: skip
    labels = [label for label, _ in rows]
    for name, pooled, color, shift in (
        ("pooled, unadjusted", result.unadjusted, GREY, -0.15),
        ("pooled, adjusted for CD8", result.adjusted, BLUE, 0.15),
    ):
        if not pooled.ok:
            continue
        fig.add_scatter(
            x=[math.exp(pooled.estimate)], y=[len(rows) + shift], mode="markers",
            marker={"symbol": "diamond", "size": 13, "color": color},
            error_x={"type": "data", "symmetric": False,
                     "array": [math.exp(pooled.ci_high) - math.exp(pooled.estimate)],
                     "arrayminus": [math.exp(pooled.estimate)
                                    - math.exp(pooled.ci_low)], "color": color},
            name=name, showlegend=False,
            hovertemplate=f"{name}: OR %{{x:.2f}}, {format_p(pooled.p)}<extra></extra>",
        )  # fmt: skip
    labels.append(f"<i>Pooled (REML + Hartung-Knapp), k={result.adjusted.k}</i>")
    fig.add_vline(x=1, line={"color": "#888", "dash": "dot"})
    fig.update_xaxes(tickvals=[0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20])
    fig.update_xaxes(type="log", title="Odds ratio of response per SD of the NK "
                     "metric (95% CI); < 1: more NK, fewer responses")  # fmt: skip
    fig.update_yaxes(
        tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed",
        showgrid=False,
    )  # fmt: skip

    def words(p: meta.Pooled) -> str:
        if not p.ok:
            return "not pooled"
        odds = math.exp(p.estimate)
        way = "lower" if odds < 1 else "higher"
        return (
            f"OR {odds:.2f} [{math.exp(p.ci_low):.2f}, {math.exp(p.ci_high):.2f}], "
            f"{format_p(p.p)} (more NK, {way} odds of response)"
        )

    covariates = sorted({m.covariate for m in fitted})
    title = titled(
        "NK separated from infiltration: logistic models per cohort",
        f"{metric_label}, adjusted for {', '.join(covariates)} (both standardized "
        "within each cohort)",
        f"Unadjusted: {words(result.unadjusted)}",
        f"Adjusted for CD8: {words(result.adjusted)}",
        width=110,
    )
    _layout(fig, title, len(labels), right=30)
    fig.update_layout(
        legend={"orientation": "h", "y": -0.32, "x": 0},
        margin={"b": 110},
    )
    return fig


# ------------------------------------------------------------------- panels


def evidence_panels(view, state: Mapping[str, object]) -> list[Panel]:
    """Panels of ``/evidence`` (for export-all and the CLI export).

    ``view`` is the app's current :class:`data.view.CohortView`; its folder's
    parent is the data directory. ``state`` carries ``datasets`` (comma-separated;
    default every dataset with an NK estimate and a response), ``metric``,
    ``definition``, ``timepoint``, ``group_by`` and ``multiverse`` ("1"), plus the
    global filter's tumor type, treatment and timepoint via ``view.filter``.
    """
    from analysis.adjusted import adjusted_models
    from analysis.evidence_view import answering_datasets, evidence
    from analysis.multiverse import multiverse

    data_dir = Path(view.bundle.path).parent
    raw = str(state.get("datasets") or "")
    datasets = [d for d in raw.split(",") if d] or answering_datasets(data_dir)
    filters = {
        "tumor_type": list(view.filter.tumor_type),
        "treatment": list(view.filter.treatment),
        "timepoint": list(view.filter.timepoint),
    }
    metric = str(state.get("metric") or "nk_lymphocytes")
    definition = str(state.get("definition") or "objective")
    timepoint = str(state.get("timepoint") or "pre")
    group_by = str(state.get("group_by") or "tumor_type")
    result = evidence(
        datasets, data_dir, metric=metric, definition=definition,
        timepoint=timepoint, filters=filters,
    )  # fmt: skip
    provenance = {
        "datasets": list(result.datasets),
        "filters": result.filters,
        "metric": metric,
        "response_definition": definition,
        "timepoint": timepoint,
        "synthetic": result.synthetic,
        "pooled": {k: p.to_json() for k, p in result.pooled.items()},
    }
    table = meta.as_frame(result.cohorts)
    panels = [
        Panel("evidence-forest", "Per cohort and pooled",
              forest_figure(result, group_by=group_by), table,
              result.direction_text(), provenance),
        Panel("evidence-loo", "Leave one cohort out", leave_one_out_figure(result),
              pd.DataFrame([{"dataset": lo.dataset, "left_out": lo.cohort,
                             **lo.pooled.to_json()} for lo in result.leave_one_out]),
              "REML + Hartung-Knapp pooled r without each cohort.", provenance),
        Panel("evidence-funnel", "Funnel plot", funnel_figure(result), table,
              result.egger.message or f"Egger's test {format_p(result.egger.p)}",
              provenance),
    ]  # fmt: skip
    adjusted = adjusted_models(
        datasets, data_dir, metric=metric, definition=definition,
        timepoint=timepoint, filters=filters,
    )  # fmt: skip
    panels.append(
        Panel(
            "evidence-adjusted",
            "Adjusted for CD8 infiltration",
            adjusted_figure(adjusted, metric_label=result.metric_label),
            pd.DataFrame([m.__dict__ for m in adjusted.cohorts]),
            "Logistic regression per cohort, pooled by REML + Hartung-Knapp on the "
            "log odds ratio.",
            provenance,
        )
    )
    if str(state.get("multiverse", "1")) not in ("0", "false", "no"):
        specs = multiverse(datasets, data_dir, filters=filters)
        panels.append(
            Panel(
                "evidence-multiverse",
                "Specification curve",
                spec_curve_figure(specs),
                pd.DataFrame([s.to_json() for s in specs]),
                summarize(specs).sentence(),
                provenance,
            )
        )
    return panels


def direction_words(r: float, quantity: str) -> str:
    """The direction of a pooled r in words (for captions)."""
    return direction_sentence(r, quantity=quantity)
