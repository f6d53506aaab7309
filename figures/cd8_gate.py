"""Figures of the phenotype gate on the CD8 page (no Dash): marker histograms,
per-patient gate fraction by response and vs NK, and threshold sensitivity.

Statistics are per patient: the fraction of each patient's CD8 cells in the gate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import gating
from figures.cd8_state import (
    MISSING_COLOR,
    NOT_EVALUABLE,
    CellData,
    PageState,
    binary_groups,
    category_palette,
)
from figures.cd8_tables import marker_bins
from figures.template import (
    RESPONSE_COLORS,
    empty_figure,
    titled,
    top_margin,
    top_title,
)


# ------------------------------------------------------------------ gate histograms
def marker_histograms(
    data: CellData, page: PageState, *, title_note: str = ""
) -> go.Figure:
    """Expression histogram of each gate marker in the filtered cells, with its
    threshold (cells are counted server-side in 40 bins; y on a log scale).

    Passing and failing cells are stacked per bin, so the bin holding the threshold
    (e.g. all the zeros at threshold 0) is split exactly. The figure is assembled as
    plain dicts: plotly's subplot helpers cost ~0.3 s for six panels.
    """
    markers = page.gate.markers
    cols = 3 if len(markers) > 4 else max(1, len(markers))
    rows = int(np.ceil(len(markers) / cols))
    present = set(data.store.var_names)
    h_gap, v_gap = 0.07, (min(0.22, 0.5 / rows) if rows > 1 else 0.0)
    width = (1 - h_gap * (cols - 1)) / cols
    height = (1 - v_gap * (rows - 1)) / rows
    traces, shapes, annotations, layout = [], [], [], {}
    for i, marker in enumerate(markers):
        row, col = i // cols, i % cols
        axis = "" if i == 0 else str(i + 1)
        x0 = col * (width + h_gap)
        y1 = 1 - row * (height + v_gap)
        layout[f"xaxis{axis}"] = {
            "domain": [max(0.0, x0), min(1.0, x0 + width)],
            "anchor": f"y{axis}",
            "title": {"text": "log-norm. expression", "font": {"size": 10}},
        }
        layout[f"yaxis{axis}"] = {
            "domain": [max(0.0, y1 - height), min(1.0, y1)],
            "anchor": f"x{axis}",
            "type": "log",
            "dtick": 1,
            "title": {"text": "cells", "font": {"size": 10}},
        }
        if marker.gene not in present:
            title = f"{marker.label}: not in the data"
            annotations.append(
                {
                    "text": "missing from this dataset",
                    "showarrow": False,
                    # paper coordinates: an axis without traces is not drawn
                    "x": x0 + width / 2,
                    "y": y1 - height / 2,
                    "xref": "paper",
                    "yref": "paper",
                    "font": {"color": "#b2182b", "size": 12},
                }
            )
            layout[f"xaxis{axis}"].update(
                showticklabels=False, showline=False, ticks="", title=None
            )
            layout[f"yaxis{axis}"].update(
                showticklabels=False,
                showline=False,
                ticks="",
                title=None,
                showgrid=False,
            )
        else:
            values = data.expression(marker.gene)
            passes = marker.passes(values)
            share = passes.mean() if len(values) else float("nan")
            title = f"{marker.label}: {share:.0%} pass ({marker.rule})"
            # the export table (figures.cd8_tables.marker_table) uses the same bins
            edges, passing, failing = marker_bins(values, marker)
            centers = (edges[:-1] + edges[1:]) / 2
            for counts, colour, name in (
                (passing, "#2166ac", "passes"),
                (failing, "#bdbdbd", "fails"),
            ):
                traces.append(
                    {
                        "type": "bar",
                        "x": centers,
                        "y": counts,
                        "width": np.diff(edges),
                        "marker": {"color": colour, "line": {"width": 0}},
                        "showlegend": False,
                        "xaxis": f"x{axis}",
                        "yaxis": f"y{axis}",
                        "hovertemplate": f"{marker.gene} %{{x:.2f}}: %{{y:,}} cells "
                        f"({name})<extra></extra>",
                    }
                )
            shapes.append(
                {
                    "type": "line",
                    "x0": marker.threshold,
                    "x1": marker.threshold,
                    "xref": f"x{axis}",
                    "y0": 0,
                    "y1": 1,
                    "yref": f"y{axis} domain",
                    "line": {"color": "#b2182b", "width": 2, "dash": "dash"},
                }
            )
        annotations.append(
            {
                "text": title,
                "showarrow": False,
                "x": x0 + width / 2,
                "y": y1,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "font": {"size": 11},
            }
        )
    title = (
        f"Gate markers in {data.n_cells:,} filtered CD8 cells (blue = passes; "
        "dashed = threshold)"
    )
    sub = page.gate.display_name + (f"; {title_note}" if title_note else "")
    title += f"<br><sup>{sub}</sup>"
    layout.update(
        shapes=shapes,
        annotations=annotations,
        title={"text": title},
        bargap=0,
        barmode="stack",
        height=max(260, 190 * rows + 80),
        margin={"l": 50, "r": 10, "t": 90, "b": 40},
    )
    return go.Figure({"data": traces, "layout": layout})


# ----------------------------------------------------------------- per-patient views
#: How the figures name what is compared (direction sentences use it).
FRACTION = "the gate fraction"


def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def gate_title_suffix(page: PageState, result: gating.GateResult) -> str:
    """``Song et al. CD8 state (CD69+ ...); gate evaluated without BCL2``."""
    text = f"{page.gate.display_name} ({', '.join(m.rule for m in result.evaluated)})"
    if result.note:
        text += f"; {result.note}"
    return text


def empty_gate_message(result: gating.GateResult) -> str:
    """Why no statistic is drawn for a gate no cell passes (with range warnings)."""
    text = "0 cells pass the gate: no statistics"
    if result.warnings:
        text += " (" + "; ".join(result.warnings) + ")"
    return text


def _same_value(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    return values.size > 0 and bool(np.all(values == values[0]))


def correlation_sentence(rho: float, *, x: str, y: str) -> str:
    """``patients with more NK have a lower gate fraction (rho = -0.31)``."""
    if not np.isfinite(rho):
        return f"direction of {y} with {x} not estimable"
    if rho == 0:
        return f"{y} does not rise or fall with {x} (rho = 0.00)"
    word = "higher" if rho > 0 else "lower"
    return f"patients with more {x} have a {word} {y} (rho = {rho:.2f})"


def gate_fraction_box(
    table: pd.DataFrame, data: CellData, page: PageState, result: gating.GateResult
) -> tuple[go.Figure, str, dict]:
    """Per-patient gate fraction by response group: box + points, Mann-Whitney U
    (two groups, with the rank-biserial r and its direction in words) or
    Kruskal-Wallis (more), n patients per group.

    No statistic when no cell passes the gate, or when every patient has the same
    gate fraction (there is nothing to rank); the figure says why.
    """
    from scipy import stats

    from analysis.stats import direction_sentence

    if result.empty:
        message = empty_gate_message(result)
        return empty_figure(message), message + ".", {"test": "none", "reason": message}
    definition = data.definition
    ok = table[table["group"].notna() & np.isfinite(table["gate_fraction"])]
    groups = [g for g in definition.groups if (ok["group"] == g).any()]
    if len(groups) == 0:
        return (
            empty_figure("No patient with cells has a response under this definition"),
            "",
            {},
        )
    samples = [ok.loc[ok["group"] == g, "gate_fraction"].to_numpy() for g in groups]
    r, direction = float("nan"), ""
    if len(groups) < 2:
        test, p = "no test (one group)", float("nan")
    elif _same_value(np.concatenate(samples)):
        value = float(samples[0][0])
        test = f"no test: every patient has the same gate fraction ({value:.1%})"
        p = float("nan")
    elif len(groups) == 2:
        test = "two-sided Mann-Whitney U"
        mwu = stats.mannwhitneyu(*samples, alternative="two-sided")
        p = float(mwu.pvalue)
        # r = 1 - 2U/(n1 n2), U of the first group (responders): r > 0 = lower there
        r = 1 - 2 * float(mwu.statistic) / (len(samples[0]) * len(samples[1]))
        direction = direction_sentence(
            r,
            quantity=FRACTION,
            responders=groups[0].lower() + "s",
            non_responders=groups[1].lower() + "s",
        )
        direction = direction[0].upper() + direction[1:]
    else:
        test = "Kruskal-Wallis"
        p = float(stats.kruskal(*samples).pvalue)
    fig = go.Figure()
    for group, values in zip(groups, samples, strict=True):
        part = ok[ok["group"] == group]
        fig.add_box(
            y=100 * values,
            name=f"{group}<br>(n={len(values)})",
            marker_color=RESPONSE_COLORS.get(group, "#666"),
            boxpoints="all",
            jitter=0.4,
            pointpos=0,
            customdata=np.column_stack(
                [part["label"], part["n_in_gate"], part["n_cells"]]
            ),
            hovertemplate="%{customdata[0]}: %{y:.1f}% "
            "(%{customdata[1]} of %{customdata[2]} cells)<extra></extra>",
        )
    excluded = int(table["group"].isna().sum())
    headline = test if test.startswith("no test") else f"{test}, {_p_text(p)}"
    # wrapped subtitle lines, hung from the top: a half-width card cut them off
    title = titled(
        f"Gate fraction by response: {headline}",
        direction,
        gate_title_suffix(page, result),
    )
    fig.update_layout(
        title=top_title(title),
        yaxis_title="% of patient's CD8 cells in gate",
        xaxis_title=definition.label,
        showlegend=False,
        margin={"t": top_margin(title, 110)},
    )
    n_text = ", ".join(f"{g} n={len(v)}" for g, v in zip(groups, samples, strict=True))
    caption = (
        f"One point per patient ({n_text}); "
        + (
            f"{test}."
            if test.startswith("no test")
            else f"{test} on per-patient fractions, {_p_text(p)}."
        )
        + (f" {direction}." if direction else "")
        + (f" {excluded} patient(s) without a response excluded." if excluded else "")
        + f" Gate: {gate_title_suffix(page, result)}."
        + "".join(f" Warning: {w}." for w in result.warnings)
    )
    provenance = {
        "test": test,
        "p_value": p,
        "rank_biserial_r": r,
        "direction": direction,
        "n_per_group": dict(zip(groups, [len(v) for v in samples], strict=True)),
    }
    return fig, caption, provenance


def gate_vs_nk(
    table: pd.DataFrame, data: CellData, page: PageState, result: gating.GateResult
) -> tuple[go.Figure, str, dict]:
    """Per-patient gate fraction vs NK metric, coloured by response, Spearman rho
    with its direction in words.

    No statistic when no cell passes the gate, or when every patient has the same
    gate fraction or NK value (a rank correlation is undefined); the figure says why.
    """
    from scipy import stats

    metric_label = data.metric.label if data.metric else "NK metric"
    if result.empty:
        message = empty_gate_message(result)
        return empty_figure(message), message + ".", {"test": "none", "reason": message}
    ok = table[np.isfinite(table["gate_fraction"]) & table["nk"].notna()]
    if len(ok) < 3:
        return (
            empty_figure(
                "Fewer than 3 patients have both cells and a pre-treatment NK value"
            ),
            "",
            {},
        )
    rho, p, direction = float("nan"), float("nan"), ""
    if _same_value(ok["gate_fraction"]):
        value = float(ok["gate_fraction"].iloc[0])
        headline = f"no test: every patient has the same gate fraction ({value:.1%})"
    elif _same_value(ok["nk"]):
        headline = "no test: every patient has the same NK value"
    else:
        rho, p = (float(v) for v in stats.spearmanr(ok["nk"], ok["gate_fraction"]))
        headline = f"Spearman rho = {rho:.2f}, {_p_text(p)}"
        direction = correlation_sentence(
            rho, x=f"NK ({metric_label})", y="gate fraction"
        )
        direction = direction[0].upper() + direction[1:]
    fig = go.Figure()
    groups = [*data.definition.groups, None]
    for group in groups:
        part = ok[ok["group"] == group] if group else ok[ok["group"].isna()]
        if part.empty:
            continue
        name = group or NOT_EVALUABLE
        fig.add_scatter(
            x=part["nk"],
            y=100 * part["gate_fraction"],
            mode="markers",
            name=f"{name} (n={len(part)})",
            marker={
                "color": RESPONSE_COLORS.get(name, MISSING_COLOR),
                "size": 10,
                "line": {"width": 1, "color": "white"},
            },
            customdata=np.column_stack([part["key"], part["label"], part["n_cells"]]),
            hovertemplate="%{customdata[1]}<br>NK: %{x:.3g}<br>gate: %{y:.1f}% of "
            "%{customdata[2]} cells<br>click to highlight on the UMAP<extra></extra>",
        )
    title = titled(
        f"Gate fraction vs NK: {headline}, n={len(ok)}",
        direction,
        gate_title_suffix(page, result),
    )
    fig.update_layout(
        title=top_title(title),
        xaxis_title=f"{metric_label} (pre-treatment)",
        xaxis_title_font_size=11,
        yaxis_title="% of patient's CD8 cells in gate",
        legend_title_text=data.definition.label,
        # legend below the plot: at the side it left the half-width card's x axis
        # too narrow for the metric's name
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -0.22,
            "x": 0,
            "title": {"side": "top"},
        },
        clickmode="event",
        margin={"t": top_margin(title, 110)},
    )
    statistic = (
        f"{headline}."
        if headline.startswith("no test")
        else f"Spearman rank correlation of the gate fraction with {metric_label} "
        f"(pre-treatment samples): rho = {rho:.2f}, {_p_text(p)}. {direction}."
    )
    caption = (
        f"One point per patient (n={len(ok)}); {statistic} "
        f"Gate: {gate_title_suffix(page, result)}."
        + "".join(f" Warning: {w}." for w in result.warnings)
        + " Click a patient to highlight its cells on the UMAP."
    )
    provenance = {"test": "Spearman", "rho": rho, "p_value": p, "n": len(ok),
                  "direction": direction}  # fmt: skip
    return fig, caption, provenance


def _current_auc(table: pd.DataFrame) -> float:
    current = table.loc[table["current"], "auc"]
    return float(current.iloc[0]) if len(current) else float("nan")


#: What the sensitivity AUC is, in words (``analysis.gating.response_association``).
AUC_MEANING = (
    "AUC = share of responder/non-responder pairs in which the responder has the "
    "higher gate fraction: above 0.5, higher gate fractions go with response; "
    "below 0.5, lower ones"
)


def sensitivity_figure(
    table: pd.DataFrame, page: PageState, result: gating.GateResult, note: str
) -> go.Figure:
    """AUC of the per-patient gate fraction (responders vs non-responders) as each
    marker's threshold is swept, the others fixed.

    The AUC is P(responder's fraction > non-responder's) + half the ties (higher
    predicts response); thresholds where every patient has the same fraction have no
    AUC and no point.
    """
    from analysis.stats import auc_sentence

    if table.empty:
        return empty_figure("No sensitivity to show")
    fig = go.Figure()
    palette = category_palette(len(result.evaluated))
    for colour, marker in zip(palette, result.evaluated, strict=True):
        part = table[table["gene"] == marker.gene]
        fig.add_scatter(
            x=part["threshold"],
            y=part["auc"],
            mode="lines+markers",
            name=marker.label,
            line={"color": colour},
            marker={"size": np.where(part["current"], 13, 5), "color": colour,
                    "symbol": np.where(part["current"], "diamond", "circle")},
            customdata=np.column_stack(
                [part["p"], part["cells_in_gate"], part["n_pos"], part["n_neg"]]
            ),
            hovertemplate=marker.gene + " threshold %{x:.2f}: AUC %{y:.2f} (the "
            "responder's gate fraction is higher in %{y:.0%} of pairs), "
            "MWU p = %{customdata[0]:.3g}<br>%{customdata[1]:,} cells in gate; "
            "%{customdata[2]} vs %{customdata[3]} patients<extra></extra>",
        )  # fmt: skip
    fig.add_hline(y=0.5, line={"color": "#888", "dash": "dot"})
    for y, text in ((0.97, "responders higher ↑"), (0.03, "responders lower ↓")):
        fig.add_annotation(
            text=text, x=0, xref="paper", xanchor="left", y=y, yref="y",
            showarrow=False, font={"size": 10, "color": "#666"},
        )  # fmt: skip
    n_pos = int(table["n_pos"].max()) if len(table) else 0
    n_neg = int(table["n_neg"].max()) if len(table) else 0
    current = auc_sentence(
        _current_auc(table), quantity="gate fraction", lower_predicts=False
    )
    if result.empty:
        current = "0 cells pass, no AUC"
    title = titled(
        "Does the association with response depend on one cut-off? "
        f"(n={n_pos} vs {n_neg} patients)",
        f"Current gate (◆): {current}",
        gate_title_suffix(page, result) + (f"; {note}" if note else ""),
    )
    fig.update_layout(
        title=top_title(title),
        xaxis_title="threshold of the swept marker (log-norm. expression)",
        # two short lines: one long line ran into the subtitle of a short plot
        yaxis_title="AUC: P(responder's<br>gate fraction higher)",
        yaxis_range=[0, 1],
        legend_title_text="swept marker (◆ = current)",
        margin={"t": top_margin(title, 120)},
    )
    return fig


def sensitivity_table(data: CellData, page: PageState) -> tuple[pd.DataFrame, str]:
    """Threshold sweep of every marker (see :func:`analysis.gating.sensitivity`)."""
    groups, positive, negative, note = binary_groups(data)
    table = gating.sensitivity(
        page.gate,
        data.store.gene,
        available=data.store.var_names,
        n_cells=data.store.n_cells,
        patient_codes=data.patient_codes,
        patient_groups=groups.to_numpy(dtype=object),
        positive=positive,
        negative=negative,
        accept_missing=page.accept_missing,
        cells=data.cells,
    )
    return table, note


def sensitivity_caption(table: pd.DataFrame, note: str, gate: str = "") -> str:
    """What the sensitivity curves show, with n, what the AUC means and the gate."""
    from analysis.stats import auc_sentence

    if table.empty:
        return ""
    n_pos, n_neg = int(table["n_pos"].max()), int(table["n_neg"].max())
    untested = int(table["auc"].isna().sum())
    current = auc_sentence(
        _current_auc(table), quantity="gate fraction", lower_predicts=False
    )
    if not table.loc[table["current"], "cells_in_gate"].any():
        current = "0 cells pass, no AUC"
    return (
        "Each curve sweeps one marker's threshold from its minimum to its 99th "
        "percentile with the other markers fixed; y is the AUC of the per-patient gate "
        f"fraction, responders (n={n_pos}) vs non-responders (n={n_neg}). "
        f"{AUC_MEANING} (0.5 = no association; two-sided Mann-Whitney p in the hover)."
        f" Current gate: {current}."
        + (
            f" {untested} threshold(s) without a point: every patient had the same "
            "gate fraction there."
            if untested
            else ""
        )
        + (f" {note}." if note else "")
        + (f" Gate: {gate}." if gate else "")
    )
