"""Figures of the NK vs response page (pure builders) and its panel builder.

Every figure names the metric and the response definition, shows n per group and
says which test gave its p-value. Statistics come from ``analysis/``; nothing here
computes a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import stats
from analysis.nk_response import (
    TIMEPOINT_LABELS,
    NKResponseAnalysis,
    PairedResult,
    analyze_nk_response,
)
from analysis.stats import format_p
from figures.nk_format import (
    axis_label,
    ci_text,
    group_color,
    number,
)
from figures.nk_survival import survival_panels
from figures.panel import Panel
from figures.template import (
    RESPONSE_COLORS,
    empty_figure,
    titled,
    top_margin,
    top_title,
)

# ------------------------------------------------------------------------ box


def describe_test(result: NKResponseAnalysis, sep: str = "; ") -> str:
    """The test and its result (or why there is none); ``sep`` joins the parts."""
    if result.two_group is not None:
        t = result.two_group
        if t.message:
            return t.message
        # "(r = 0.37)" -> "(rank-biserial r = 0.37; r > 0: lower in responders)"
        direction = result.direction_text.replace("(r = ", "(rank-biserial r = ")
        if sep == "; ":
            direction = direction.removesuffix(")") + "; r > 0: lower in responders)"
        return f"Two-sided Mann-Whitney U = {t.u:g}, {format_p(t.p)}{sep}{direction}"
    if result.multi_group is not None:
        m = result.multi_group
        if not math.isfinite(m.p):
            return m.message
        return f"Kruskal-Wallis H = {m.h:.2f}, {format_p(m.p)}" + (
            f" ({m.message})" if m.message else ""
        )
    return ""


def nk_response_box(
    patients: pd.DataFrame,
    *,
    metric_label: str,
    definition_label: str,
    groups: Sequence[str],
    annotation: str,
    subtitle: str = "",
) -> go.Figure:
    """Box (median, IQR, whiskers to 1.5 IQR) and every patient as a point.

    Parameters
    ----------
    patients
        One row per evaluable patient: ``group``, ``value``, ``cohort``,
        ``patient_id``, ``tumor_type``, ``n_samples``.
    metric_label, definition_label
        Names for the y axis and the title.
    groups
        Groups in display order; tick labels carry n per group.
    annotation
        The test and its result, printed above the plot.
    """
    if patients.empty:
        return empty_figure("No patient with a value and an evaluable response")
    fig = go.Figure()
    for i, group in enumerate(groups):
        part = patients[patients["group"] == group]
        label = f"{group}<br>(n={len(part)})"
        fig.add_box(
            x=[label] * len(part),
            y=part["value"],
            name=label,
            boxpoints="all",
            jitter=0.45,
            pointpos=0,
            quartilemethod="linear",
            marker={"color": group_color(group, i), "size": 5, "opacity": 0.65},
            line={"color": group_color(group, i)},
            fillcolor="rgba(0,0,0,0)",
            customdata=part[["cohort", "patient_id", "tumor_type", "n_samples"]],
            hovertemplate="%{customdata[0]} %{customdata[1]} (%{customdata[2]})<br>"
            + "value %{y:.4g}; samples averaged: %{customdata[3]}<extra></extra>",
            showlegend=False,
        )
    title = titled(
        f"{metric_label}<br>by {definition_label}", *annotation.split("<br>"),
        subtitle,
    )  # fmt: skip
    fig.update_layout(
        title=top_title(title),
        yaxis_title=axis_label(metric_label),
        xaxis_title=definition_label,
        margin={"t": top_margin(title, 150), "l": 80},
    )
    return fig


# ------------------------------------------------------------------------ ROC


def roc_figure(
    roc: stats.RocResult, *, metric_label: str, binary_label: str, subtitle: str = ""
) -> go.Figure:
    """ROC curve for 'lower metric predicts response', AUC with its 95% CI."""
    if roc.message and not math.isfinite(roc.auc):
        return empty_figure(roc.message)
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
        name="chance (AUC 0.5)", hoverinfo="skip",
    )  # fmt: skip
    name = f"AUC {roc.auc:.2f} ({ci_text(roc.ci_low, roc.ci_high)}, DeLong)"
    fig.add_scatter(
        x=list(roc.fpr), y=list(roc.tpr), mode="lines", name=name,
        line={"color": RESPONSE_COLORS["Responder"], "width": 2.5},
        hovertemplate="false-positive rate %{x:.2f}<br>sensitivity %{y:.2f}"
        "<extra></extra>",
    )  # fmt: skip
    title = titled(
        f"ROC: lower {metric_label}<br>predicts response",
        f"{binary_label}; n={roc.n_pos} responders, {roc.n_neg} non-responders",
        subtitle,
    )
    fig.update_layout(
        title=top_title(title),
        xaxis={"title": "1 - specificity (false-positive rate)", "range": [0, 1]},
        yaxis={"title": "Sensitivity (true-positive rate)", "range": [0, 1.02]},
        legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom"},
        margin={"t": top_margin(title, 110)},
    )
    if roc.message:
        fig.add_annotation(
            text=roc.message, x=0.5, y=0.5, xref="paper", yref="paper",
            showarrow=False,
        )  # fmt: skip
    return fig


# --------------------------------------------------------------------- forest

BY_LABELS = {"tumor_type": "tumor type", "cohort": "cohort"}


def forest_figure(
    strata: Mapping[str, Sequence[stats.StratumEffect]],
    pooled: Mapping[str, stats.PooledEffect],
    *,
    metric_label: str,
    binary_label: str,
    quantity: str = "",
) -> go.Figure:
    """Rank-biserial r with 95% CI per stratum, and the DerSimonian-Laird pool.

    ``quantity`` names the metric in the sentence stating the pooled direction
    (the tumor-type pool; the metric label when blank).

    Rows read top-down: strata by tumor type, their pool, strata by cohort, their
    pool. Rows without an estimate say why.
    """
    rows: list[dict] = []
    for by, effects in strata.items():
        if not effects:
            continue
        rows.append({"label": f"<b>By {BY_LABELS.get(by, by)}</b>", "kind": "header"})
        for e in effects:
            rows.append(
                {
                    "label": f"{e.stratum} (n={e.n_pos} R / {e.n_neg} NR)",
                    "kind": "stratum",
                    "x": e.r,
                    "lo": e.ci_low,
                    "hi": e.ci_high,
                    "text": e.message or f"{e.r:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]",
                }
            )
        p = pooled.get(by)
        if p is not None:
            label = f"Pooled, random effects (k={p.k})"
            if math.isfinite(p.estimate):
                rows.append(
                    {
                        "label": f"<i>{label}</i>",
                        "kind": "pooled",
                        "x": p.estimate,
                        "lo": p.ci_low,
                        "hi": p.ci_high,
                        "text": f"{p.estimate:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}]"
                        f"; I² = {100 * p.i2:.0f}%, {format_p(p.p)}",
                    }
                )
            else:
                rows.append(
                    {
                        "label": f"<i>{label}</i>",
                        "kind": "pooled",
                        # two lines: one ran past the right margin
                        "text": "not pooled: needs 2 strata<br>with an estimate",
                    }
                )
    if not rows:
        return empty_figure("No strata to show")
    # unique y keys (a tumor type and a cohort may share a name)
    for i, row in enumerate(rows):
        row["y"] = f"row{i:02d}"  # not numeric: plotly would read "00" as 0
    fig = go.Figure()
    for kind, symbol, size in (("stratum", "square", 9), ("pooled", "diamond", 14)):
        part = [
            r for r in rows if r["kind"] == kind and math.isfinite(r.get("x", math.nan))
        ]
        if not part:
            continue
        fig.add_scatter(
            x=[r["x"] for r in part],
            y=[r["y"] for r in part],
            mode="markers",
            marker={
                "symbol": symbol,
                "size": size,
                "color": "#222" if kind == "pooled" else "#4477aa",
            },
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r["hi"] - r["x"] for r in part],
                "arrayminus": [r["x"] - r["lo"] for r in part],
                "color": "#555",
                "thickness": 1.5,
                "width": 4,
            },
            customdata=[r["text"] for r in part],
            hovertemplate="r = %{customdata}<extra></extra>",
            showlegend=False,
        )
    fig.add_vline(x=0, line={"color": "#888", "dash": "dot"})
    for row in rows:
        if row["kind"] != "header":
            fig.add_annotation(
                text=row["text"], x=1.01, y=row["y"], xref="paper", yref="y",
                xanchor="left", showarrow=False, font={"size": 11},
            )  # fmt: skip
    order = [r["y"] for r in rows]
    fig.update_yaxes(
        type="category",
        # header rows carry no point: fix the range so they are not cut off
        range=[-0.6, len(rows) - 0.4],
        categoryorder="array",
        categoryarray=list(reversed(order)),
        tickvals=order,
        ticktext=[r["label"] for r in rows],
        showgrid=False,
    )
    fig.update_xaxes(
        range=[-1, 1],
        title=f"Rank-biserial r (95% CI); r > 0: lower {metric_label} in responders",
    )
    first_pool = next(
        (
            (by, p)
            for by, p in pooled.items()
            if p is not None and math.isfinite(p.estimate)
        ),
        None,
    )
    pooled_line = (
        f"Pooled across {BY_LABELS.get(first_pool[0], first_pool[0])}s: "
        + stats.direction_sentence(
            first_pool[1].estimate, quantity=quantity or metric_label
        )
        if first_pool is not None
        else ""
    )
    title = titled(
        "Effect per tumor type and per cohort",
        f"{binary_label}; rank-biserial r with DeLong-based 95% CI; pooled by "
        "DerSimonian-Laird random effects",
        pooled_line,
    )
    # the title hangs from the top with room for every line: a wrapped pooled
    # sentence must not run into the first stratum label
    top = top_margin(title, 90)
    fig.update_layout(
        title=top_title(title),
        margin={"r": 230, "l": 250, "t": top},
        height=max(360, 60 + 30 * len(rows) + top),
    )
    return fig


# ------------------------------------------------------------------ logistic


def logistic_table(
    result: stats.LogisticResult | None, *, metric_label: str, binary_label: str
) -> go.Figure:
    """Odds ratios with 95% CI and p as a table figure."""
    if result is None:
        return empty_figure("No logistic model")
    if result.message:
        text = result.message
        if result.dropped:
            text += "<br>Left out: " + "; ".join(result.dropped)
        return empty_figure(text)
    terms = [t for t in result.terms if t.term != "Intercept"]
    fig = go.Figure(
        go.Table(
            columnwidth=[3, 1, 2, 1],
            header={
                "values": ["<b>Term</b>", "<b>Odds ratio</b>", "<b>95% CI</b>",
                           "<b>p (Wald)</b>"],
                "fill_color": "#f2f2f2", "align": "left",
            },
            cells={
                "values": [
                    [t.term.replace("z(metric)", f"z({metric_label})") for t in terms],
                    [f"{t.odds_ratio:.2f}" for t in terms],
                    [f"{t.ci_low:.2f} to {t.ci_high:.2f}" for t in terms],
                    [format_p(t.p).removeprefix("p = ") for t in terms],
                ],
                "align": "left", "height": 24,
                "fill_color": [["#e8f0fa"] + ["white"] * (len(terms) - 1)],
            },
        )
    )  # fmt: skip
    note = f"n={result.n} patients, {result.n_events} responders"
    if result.dropped:
        note += "; left out: " + "; ".join(result.dropped)
    fig.update_layout(
        title=titled(
            # the model on its own lines: one line is wider than a half-width card
            "Logistic regression<br>"
            + _formula(result.formula, binary_label).replace(" ~ ", "<br>~ ", 1),
            note,
            f"OR per 1 SD of the metric (SD = {result.metric_sd:.3g}); "
            "OR < 1: higher metric, lower odds of response",
        ),
        margin={"t": 150, "l": 20, "r": 20, "b": 20},
    )
    return fig


def _formula(formula: str, binary_label: str) -> str:
    # "response ~ z(metric) + C(tumor_type)" -> readable words
    text = formula.replace("response", binary_label, 1)
    return text.replace("C(tumor_type)", "tumor type").replace(
        "C(treatment)", "treatment"
    )


# -------------------------------------------------------------------- paired


def paired_figure(
    paired: PairedResult | None,
    *,
    metric_label: str,
    groups: Sequence[str],
    definition_label: str,
) -> go.Figure:
    """One line per patient from pre- to on-treatment, a panel per response group,
    with the Wilcoxon signed-rank p of each group in its title."""
    if paired is None or paired.frame.empty:
        return empty_figure("No patient has both pre- and on-treatment samples")
    tests = {t.group: t for t in paired.tests}
    shown = [g for g in groups if (paired.frame["group"] == g).any()]
    titles = []
    for g in shown:
        t = tests[g]
        result = format_p(t.p) if math.isfinite(t.p) else "no test (n < 3)"
        titles.append(f"{g} (n={t.n})<br>{result}")
    fig = make_subplots(
        rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=titles,
        horizontal_spacing=0.05,
    )  # fmt: skip
    for i, group in enumerate(shown, start=1):
        part = paired.frame[paired.frame["group"] == group]
        xs, ys, ids = [], [], []
        for row in part.itertuples():
            xs += ["pre", "on", None]
            ys += [row.pre, row.on, None]
            ids += [f"{row.cohort} {row.patient_id}"] * 2 + [None]
        color = group_color(group, i - 1)
        fig.add_scatter(
            x=xs, y=ys, mode="lines+markers", line={"color": color, "width": 1},
            marker={"size": 4, "color": color}, opacity=0.55, text=ids,
            hovertemplate="%{text}: %{y:.4g}<extra></extra>", showlegend=False,
            connectgaps=False, row=1, col=i,
        )  # fmt: skip
        medians = part[["pre", "on"]].median()
        fig.add_scatter(
            x=["pre", "on"], y=list(medians), mode="lines+markers",
            line={"color": "#111", "width": 3}, marker={"size": 9, "color": "#111"},
            name="median", showlegend=i == 1, row=1, col=i,
        )  # fmt: skip
    fig.update_yaxes(title=axis_label(metric_label), row=1, col=1)
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=["pre", "on"]
    )
    fig.update_layout(
        title=titled(
            f"{metric_label}<br>pre- vs on-treatment, per patient",
            f"{definition_label}; two-sided Wilcoxon signed-rank test per group",
        ),
        legend={"orientation": "h", "y": -0.12, "x": 0, "yanchor": "top"},
        margin={"t": 160, "l": 95},
    )
    return fig


# ------------------------------------------------------------------ panels


def nk_panels(view, state: Mapping[str, object] | None = None) -> list[Panel]:
    """The NK vs response page's panels for a :class:`data.view.CohortView`.

    Statistics are computed once (:func:`analysis.nk_response.analyze_nk_response`)
    and shared by all panels; every panel's provenance carries them under
    ``"stats"`` (the same dict ``cli.py stats --json`` prints).
    """
    result = analyze_nk_response(view.samples, state)
    return panels_from_analysis(view, result)


def panels_from_analysis(view, result: NKResponseAnalysis) -> list[Panel]:
    """Build the panels from an already computed analysis."""
    summary = result.to_dict()
    provenance = dict(
        view.provenance,
        page="nk-response",
        state=result.state.to_dict(),
        landmark_months=result.state.landmark,
        exclusions=result.exclusion_text,
        stats=summary,
    )
    if result.empty:
        return [
            Panel(
                key="nk-empty",
                title="NK vs response",
                figure=empty_figure(result.empty_message),
                caption=result.empty_message,
                provenance=provenance,
            )
        ]
    metric = result.metric.label
    definition = result.definition.label
    # "assumed pre-treatment" when the source did not report the timepoint
    tp = result.timepoint_label or TIMEPOINT_LABELS[result.state.nk_timepoint]
    evaluable = result.patients[result.patients["group"].notna()]
    n_text = ", ".join(f"{s.group} n={s.n}" for s in result.summaries)
    # messages may end in a full stop of their own: never print "needed).."
    excluded = f" {result.exclusion_text.rstrip('.')}." if result.exclusion_text else ""
    box_table = evaluable[
        ["cohort", "patient_id", "tumor_type", "treatment", "group", "value",
         "n_samples"]
    ].rename(columns={"group": "response_group"})  # fmt: skip
    annotation = describe_test(result)
    group_rows = pd.DataFrame([vars(s) for s in result.summaries])
    box_caption = (
        f"One {tp} value per patient ({n_text}); box = median and IQR. "
        f"{annotation.rstrip('.')}.{excluded}"
    )
    if result.multi_group is not None and result.direction_text:
        box_caption += f" {result.direction_text}."
    if result.multi_group is not None and result.multi_group.pairwise:
        pairs = "; ".join(
            f"{p.group1} vs {p.group2} q = {p.p_adjusted:.3g}"
            for p in result.multi_group.pairwise
        )
        box_caption += f" Pairwise Mann-Whitney, Benjamini-Hochberg: {pairs}."
        group_rows = pd.concat(
            [group_rows, pd.DataFrame([vars(p) for p in result.multi_group.pairwise])]
        )
    panels = [
        Panel(
            key="nk-box",
            title="NK metric by response",
            figure=nk_response_box(
                evaluable,
                metric_label=metric,
                definition_label=definition,
                groups=result.groups,
                annotation=describe_test(result, sep="<br>"),
                subtitle=f"{tp}, one value per patient; {view.bundle.meta.label}",
            ),
            table=box_table,
            caption=box_caption,
            provenance=dict(provenance, test=annotation),
        )
    ]
    roc = result.roc
    roc_caption = (
        f"Direction stated: lower {metric} predicts response ({result.binary_label}); "
        f"AUC {number(roc.auc)} ({ci_text(roc.ci_low, roc.ci_high)}, DeLong), "
        f"n={roc.n_pos} responders / {roc.n_neg} non-responders. "
        f"{result.auc_text}; AUC < 0.5 means higher values in responders. "
        f"{result.direction_text}."
        + (
            ""
            if result.definition.binary
            else " RECIST groups are collapsed to objective response for the ROC."
        )
    )
    panels.append(
        Panel(
            key="nk-roc",
            title="ROC",
            figure=roc_figure(
                roc,
                metric_label=metric,
                binary_label=result.binary_label,
                subtitle=result.auc_text,
            ),
            table=pd.DataFrame(
                {"false_positive_rate": roc.fpr, "sensitivity": roc.tpr}
            ),
            caption=roc_caption,
            provenance=dict(provenance, test="ROC, DeLong 95% CI"),
        )
    )
    forest_rows = pd.DataFrame(
        [vars(e) for effects in result.strata.values() for e in effects]
    )
    pooled = result.pooled.get("tumor_type")
    pooled_text = (
        f"pooled r {pooled.estimate:.2f} ({ci_text(pooled.ci_low, pooled.ci_high)}), "
        f"I² = {100 * pooled.i2:.0f}%; "
        + stats.direction_sentence(pooled.estimate, quantity=result.quantity)
        if pooled is not None and math.isfinite(pooled.estimate)
        else "no pooled estimate (fewer than two tumor types with an estimate)"
    )
    panels.append(
        Panel(
            key="nk-forest",
            title="Per tumor type and cohort",
            figure=forest_figure(
                result.strata,
                result.pooled,
                metric_label=metric,
                binary_label=result.binary_label,
                quantity=result.quantity,
            ),
            table=forest_rows,
            caption=f"Rank-biserial r of {metric} per stratum ({result.binary_label}); "
            f"across tumor types: {pooled_text} (DerSimonian-Laird). Strata with fewer "
            f"than {stats.MIN_GROUP} patients per group are shown without an estimate.",
            provenance=dict(provenance, test="rank-biserial r; DerSimonian-Laird"),
        )
    )
    panels += survival_panels(result, provenance, timepoint_label=tp)
    logistic = result.logistic
    panels.append(
        Panel(
            key="nk-logistic",
            title="Logistic regression",
            figure=logistic_table(
                logistic, metric_label=metric, binary_label=result.binary_label
            ),
            table=pd.DataFrame([vars(t) for t in logistic.terms]),
            caption=(
                logistic.message
                or f"{_formula(logistic.formula, result.binary_label)} (statsmodels "
                "Logit, Wald 95% CI), "
                f"n={logistic.n}, {logistic.n_events} responders. z(metric) is "
                f"{metric} standardized (per 1 SD)."
            ),
            provenance=dict(provenance, test="logistic regression"),
        )
    )
    paired = result.paired
    panels.append(
        Panel(
            key="nk-paired",
            title="Pre vs on treatment",
            figure=paired_figure(
                paired,
                metric_label=metric,
                groups=result.groups,
                definition_label=definition,
            ),
            table=paired.frame if paired is not None else pd.DataFrame(),
            caption="Patients with both pre- and on-treatment samples ("
            + ", ".join(f"{t.group} n={t.n}" for t in paired.tests)
            + "); two-sided Wilcoxon signed-rank test of on minus pre per group, no "
            f"test below {stats.MIN_GROUP} patients.",
            provenance=dict(provenance, test="Wilcoxon signed-rank"),
        )
    )
    return panels
