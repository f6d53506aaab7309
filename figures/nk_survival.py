"""Kaplan-Meier and Cox figures of the NK page, and its survival panels.

Survival by an NK value measured after treatment start is drawn only from a landmark
(immortal-time bias otherwise); every figure states the NK cut-off of each group, the
origin of time, n and events per group, and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.nk_response import ENDPOINTS, SPLITS, NKResponseAnalysis, article
from analysis.stats import format_p
from analysis.survival import CoxResult, KMResult
from figures.nk_format import (
    NK_GROUP_COLORS,
    SPLIT_LABELS,
    ci_text,
    html_wrap,
)
from figures.nk_tables import km_table
from figures.panel import Panel
from figures.template import empty_figure, titled, top_margin, top_title

# ------------------------------------------------------------------ survival


def _cox_text(cox: CoxResult | None) -> str:
    if cox is None:
        return ""
    if cox.message:
        return f"Cox ({cox.model}): {cox.message.split(': ', 1)[-1]}"
    return (
        f"Cox HR per SD {cox.hr:.2f} ({ci_text(cox.ci_low, cox.ci_high)}), "
        f"{format_p(cox.p)} [{cox.model}]"
    )


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def km_figure(
    km: KMResult,
    cox: Mapping[str, CoxResult],
    *,
    metric_label: str,
    split: str,
    group_labels: Mapping[str, str] | None = None,
    origin: str = "treatment start",
    landmark_note: str = "",
) -> go.Figure:
    """Kaplan-Meier curves by NK group with 95% bands, censor ticks and a
    number-at-risk table.

    Parameters
    ----------
    km
        Curves, log-rank test and numbers at risk (``analysis.survival``).
    cox
        ``{"unadjusted": CoxResult, "adjusted": CoxResult}``.
    metric_label
        The metric the groups were split on.
    split
        ``median`` or ``tertile``.
    group_labels
        The range of each NK group ("NK among lymphocytes ≤ 0.0508"), from the
        split's cut-offs; without it the groups are named by the split only.
    origin
        What time 0 is, short for the axis ("treatment start", "landmark (3 mo)").
    landmark_note
        A subtitle line on the landmark (who was excluded); blank without one.
    """
    if not km.curves:
        return empty_figure(km.message or f"{km.endpoint}: no data")
    labels = dict(SPLIT_LABELS.get(split, {}))
    for group, text in (group_labels or {}).items():
        labels[group] = f"{group}: {text}"
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28],
        vertical_spacing=0.26,
    )  # fmt: skip
    for curve in km.curves:
        color = NK_GROUP_COLORS.get(curve.group, "#444444")
        median = (
            f"median {curve.median:.1f} mo"
            if math.isfinite(curve.median)
            else "median not reached"
        )
        if curve.ci_low:
            # the band first, so the curve is drawn over it
            fig.add_scatter(
                x=list(curve.times), y=list(curve.ci_high), mode="lines",
                line={"shape": "hv", "width": 0, "color": color},
                legendgroup=curve.group, showlegend=False, hoverinfo="skip",
                name=f"{curve.group} 95% CI upper", row=1, col=1,
            )  # fmt: skip
            fig.add_scatter(
                x=list(curve.times), y=list(curve.ci_low), mode="lines",
                line={"shape": "hv", "width": 0, "color": color},
                fill="tonexty", fillcolor=_rgba(color, 0.15),
                legendgroup=curve.group, showlegend=False, hoverinfo="skip",
                name=f"{curve.group} 95% CI lower", row=1, col=1,
            )  # fmt: skip
        fig.add_scatter(
            x=list(curve.times), y=list(curve.survival), mode="lines",
            line={"shape": "hv", "color": color, "width": 2.2},
            name=f"{labels.get(curve.group, curve.group)}: n={curve.n}, "
            f"{curve.events} events, {median}",
            legendgroup=curve.group,
            customdata=list(zip(curve.ci_low, curve.ci_high, strict=True))
            if curve.ci_low else None,
            hovertemplate="%{x:.1f} months: %{y:.2f}"
            + (" (95% CI %{customdata[0]:.2f}-%{customdata[1]:.2f})"
               if curve.ci_low else "")
            + "<extra>" + curve.group + "</extra>",
            row=1, col=1,
        )  # fmt: skip
        if curve.censor_times:
            fig.add_scatter(
                x=list(curve.censor_times), y=list(curve.censor_survival),
                mode="markers", marker={"symbol": "line-ns-open", "size": 8,
                                        "color": color},
                legendgroup=curve.group, showlegend=False, hoverinfo="skip",
                row=1, col=1,
            )  # fmt: skip
    names = [c.group for c in km.curves]
    for curve, counts in zip(km.curves, km.at_risk, strict=True):
        fig.add_scatter(
            x=list(km.risk_times), y=[curve.group] * len(counts),
            text=[str(n) for n in counts], mode="text",
            textfont={"color": NK_GROUP_COLORS.get(curve.group, "#444"), "size": 12},
            showlegend=False, hoverinfo="skip", row=2, col=1,
        )  # fmt: skip
    test = (
        f"log-rank {format_p(km.logrank_p)}"
        if math.isfinite(km.logrank_p)
        else km.message
    )
    sub = "<br>".join(t for t in (_cox_text(cox.get("unadjusted")),
                                  _cox_text(cox.get("adjusted"))) if t)  # fmt: skip
    title = titled(
        f"{km.endpoint}<br>by {metric_label}",
        landmark_note,
        f"NK groups: {SPLITS.get(split, split)}; {test}",
        *sub.split("<br>"),
    )
    top = top_margin(title, 175)
    fig.update_layout(
        title=top_title(title),
        legend={"orientation": "h", "y": -0.22, "x": 0, "yanchor": "top"},
        margin={"t": top, "b": 40},
        height=560 + top - 175,
    )
    fig.update_yaxes(title="Survival probability", range=[0, 1.03], row=1, col=1)
    fig.update_yaxes(
        type="category", categoryorder="array",
        categoryarray=list(reversed(names)), range=[-0.6, len(names) - 0.4],
        showline=False, ticks="", row=2, col=1,
    )  # fmt: skip
    fig.update_xaxes(
        title=f"Months since {origin}",
        tickvals=list(km.risk_times),
        showticklabels=True,
        row=1,
        col=1,
    )
    fig.update_xaxes(visible=False, row=2, col=1)
    fig.add_annotation(
        text="Number at risk", x=0, y=1.0, xref="paper", yref="y2 domain",
        xanchor="left", yanchor="bottom", showarrow=False, font={"size": 12},
    )  # fmt: skip
    return fig


def survival_panels(
    result: NKResponseAnalysis,
    provenance: Mapping[str, object],
    *,
    timepoint_label: str,
) -> list[Panel]:
    """The Kaplan-Meier / Cox panels: drawn, or empty saying why.

    Survival by an NK value measured after treatment start is drawn only from a
    landmark (``result.survival_message`` says so otherwise).
    """
    metric = result.metric.label
    landmark = result.state.landmark
    split = result.state.split
    groups = result.split_definitions(result.metric.short)
    cut_text = "; ".join(f"{g}: {t}" for g, t in groups.items())
    present = [
        key
        for key, (time, _event, _name) in ENDPOINTS.items()
        if time in result.patients.columns and result.patients[time].notna().any()
    ]
    if result.survival_message:
        return [
            Panel(
                key=f"nk-km-{key}",
                title=ENDPOINTS[key][2],
                figure=empty_figure(html_wrap(result.survival_message)),
                caption=result.survival_message,
                provenance=dict(provenance, test="none (see caption)"),
            )
            for key in present
        ]
    panels = []
    for key, km in result.km.items():
        cox = result.cox.get(key, {})
        excluded = result.n_before_landmark.get(key, 0)
        landmark_note = (
            ""
            if landmark is None
            else f"Landmark {landmark:g} months: time from the landmark; {excluded} "
            f"patient{'s' if excluded != 1 else ''} with follow-up ending by then "
            "excluded"
        )
        n_split = int(result.patients["nk_group"].notna().sum())
        landmark_text = (
            " Survival from treatment start."
            if landmark is None
            else f" Landmark {landmark:g} months after treatment start: {excluded} "
            f"patient{'s' if excluded != 1 else ''} whose event or censoring came at "
            "or before it excluded; time counted from the landmark."
        )
        caption = (
            f"{km.endpoint} by NK group: {cut_text} ({SPLITS[split]} of the "
            f"{n_split} patients with {article(timepoint_label)} value of {metric} "
            "in the filtered cohort); "
            + "; ".join(f"{c.group} n={c.n}, {c.events} events" for c in km.curves)
            + "."
            + landmark_text
            + " Shaded: pointwise 95% confidence bands (log-log Greenwood). "
            "Log-rank test; Cox proportional hazards per SD of the metric (Efron "
            "ties), unadjusted and stratified by tumor type."
            + (f" {km.message}" if km.message else "")
        )
        panels.append(
            Panel(
                key=f"nk-km-{key}",
                title=km.endpoint,
                figure=km_figure(
                    km,
                    cox,
                    metric_label=metric,
                    split=split,
                    group_labels=groups,
                    origin="treatment start"
                    if landmark is None
                    else f"landmark ({landmark:g} mo)",
                    landmark_note=landmark_note,
                ),
                table=km_table(km),
                caption=caption,
                provenance=dict(
                    provenance,
                    test="log-rank; Cox PH",
                    nk_groups=cut_text,
                    survival_time_from=result.survival_origin,
                ),
            )
        )
    return panels
