"""Figures of the mechanism page (no Dash): the Song et al. chain per patient.

NK metric -> IFN-alpha and IL-2/STAT5 programs in the patient's CD8 cells -> RA
program -> gate fraction -> response. Every number comes from
:func:`figures.mechanism_state.mechanism_result` (also printed by
``cli.py mechanism --json``); every panel's provenance names the gene sets, their
licence (CC BY 4.0 attribution) and the scoring rule.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import programs
from analysis.stats import format_p
from figures.mechanism_state import (
    DEFAULT_PROGRAM,
    KEY_LABELS,
    PAGE_ID,
    STATE_KEYS,
    mechanism_result,
    parse_state,
)
from figures.panel import Panel
from figures.template import (
    RESPONSE_COLORS,
    empty_figure,
    titled,
    top_margin,
    top_title,
)

__all__ = [
    "DEFAULT_PROGRAM",
    "KEY_LABELS",
    "PAGE_ID",
    "STATE_KEYS",
    "mechanism_panels",
    "mechanism_result",
    "parse_state",
]
MISSING_COLOR = "#bdbdbd"
#: short names for small multiples and the matrix
SHORT = {
    "nk": "NK metric",
    "ifna": "IFN-alpha",
    "il2": "IL-2/STAT5",
    "ra": "RA targets (not T-cell)",
    "ifng": "IFN-gamma (contrast)",
    "gate_fraction": "gate fraction",
    "response_binary": "response",
}
PANELS = {
    "mech-nk": "Programs vs NK metric",
    "mech-response": "Programs by response",
    "mech-gate": "Programs by response inside gate+ and gate- cells",
    "mech-matrix": "The chain: correlations and partial correlations",
    "mech-genes": "Which genes carry the association",
}


class _Grid:
    """Subplots as plain dicts, turned into one figure at the end.

    ``make_subplots`` and one ``add_*`` / ``update_*`` call per trace validated the
    figure again on every call (~1 s of a 2 s page at 10k cells under load); one
    ``go.Figure(data, layout)`` validates once.
    """

    def __init__(self, rows, cols, titles, *, hspace=0.05, vspace=0.15):
        self.rows, self.cols = rows, cols
        self.traces: list[dict] = []
        self.layout: dict = {"annotations": []}
        width = (1 - hspace * (cols - 1)) / cols
        height = (1 - vspace * (rows - 1)) / rows
        for r in range(rows):
            for c in range(cols):
                i = r * cols + c + 1
                suffix = "" if i == 1 else str(i)
                x0 = c * (width + hspace)
                y1 = 1 - r * (height + vspace)
                self.layout[f"xaxis{suffix}"] = {
                    "domain": [max(0.0, x0), min(1.0, x0 + width)],
                    "anchor": f"y{suffix}",
                }
                self.layout[f"yaxis{suffix}"] = {
                    "domain": [max(0.0, y1 - height), min(1.0, y1)],
                    "anchor": f"x{suffix}",
                }
                if i <= len(titles):
                    self.layout["annotations"].append(
                        {"text": titles[i - 1], "x": x0 + width / 2, "y": y1,
                         "xref": "paper", "yref": "paper", "xanchor": "center",
                         "yanchor": "bottom", "showarrow": False,
                         "font": {"size": 14}}
                    )  # fmt: skip

    def _suffix(self, row: int, col: int) -> str:
        i = (row - 1) * self.cols + col
        return "" if i == 1 else str(i)

    def add(self, kind: str, row: int, col: int, **trace) -> None:
        suffix = self._suffix(row, col)
        self.traces.append(
            dict(trace, type=kind, xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        )

    def axis(self, which: str, row: int, col: int, **props) -> None:
        self.layout[f"{which}axis{self._suffix(row, col)}"].update(props)

    def figure(self, **layout) -> go.Figure:
        return go.Figure(data=self.traces, layout=dict(self.layout, **layout))


def _label(result: dict, key: str) -> str:
    return result["programs_info"][key]["label"]


def _caveat_line(result: dict, keys) -> str:
    notes = [
        f"{_label(result, k)}: {result['programs_info'][k]['caveat']}"
        for k in keys
        if result["programs_info"][k]["caveat"]
    ]
    return "; ".join(notes)


def coverage_lines(result: dict) -> list[str]:
    """One line per program: coverage, gate markers removed, not-scored notes."""
    lines = []
    for program in programs.PROGRAMS:
        cov = result.get("coverage", {}).get(program.key)
        if not cov:
            continue
        removed = ", ".join(cov["removed"]) or "none"
        line = (
            f"{program.label}: {cov['found']} / {cov['total']} genes found; gate "
            f"markers removed: {removed}; missing from the data: "
            f"{len(cov['missing'])}"
        )
        if not cov["scored"]:
            line += f" - NOT scored (fewer than {programs.MIN_GENES} genes present)"
        if program.caveat:
            line += f" ({program.caveat})"
        lines.append(line)
    return lines


def provenance(view, result: dict) -> dict:
    """Dataset, filter, state, gene sets with sources and licence, scoring rule."""
    out = dict(view.provenance)
    out.update(
        {
            "page": PAGE_ID,
            "state": result["state"],
            "nk_metric": (result.get("metric") or {}).get("label", ""),
            "response_definition": (result.get("definition") or {}).get("label", ""),
            "gate_phenotype": (result.get("gate") or {}).get("phenotype", ""),
            "gate_missing_markers": (result.get("gate") or {}).get("missing", []),
            "scoring_rule": result["rule"],
            "gene_sets": {
                p.key: {
                    "name": p.label,
                    "source": p.source,
                    "file": f"data/genesets/{p.file}",
                    "t_cell_derived": p.t_cell_derived,
                    "caveat": p.caveat,
                    "coverage": result.get("coverage", {}).get(p.key),
                }
                for p in programs.PROGRAMS
            },
            "gene_set_licence": programs.MSIGDB_ATTRIBUTION,
            "partial_correlation_covariate": result.get("covariate") or "none",
            "stats": result,
        }
    )
    return out


def _group_of(row_group, pos, neg) -> str:
    if row_group in (pos, neg):
        return row_group
    return "not evaluable"


def nk_scatter(result: dict) -> tuple[go.Figure, str]:
    """(a) Each program's patient mean vs the NK metric, coloured by response."""
    table = pd.DataFrame(result["table"])
    keys = list(result["programs"])
    metric = result["metric"]["label"]
    if not metric or not result.get("nk_values"):
        message = (
            "No NK metric values for these patients (the dataset has no NK "
            "fractions or scores): this panel needs them"
        )
        return empty_figure(message), message
    grid = _Grid(1, len(keys), [_subtitle(result, k) for k in keys], hspace=0.06)
    pos, neg = result["groups"]["responders"], result["groups"]["non_responders"]
    table["shown_group"] = [_group_of(g, pos, neg) for g in table["group"]]
    for col, key in enumerate(keys, start=1):
        for group in (pos, neg, "not evaluable"):
            part = table[(table["shown_group"] == group) & table[key].notna()]
            part = part[part["nk"].notna()]
            if part.empty:
                continue
            grid.add(
                "scatter",
                1,
                col,
                x=part["nk"],
                y=part[key],
                mode="markers",
                name=f"{group} (n={len(part)})",
                legendgroup=group,
                showlegend=col == 1,
                marker={
                    "color": RESPONSE_COLORS.get(group, MISSING_COLOR),
                    "size": 8,
                    "line": {"width": 1, "color": "white"},
                },
                customdata=np.column_stack(
                    [part["key"], part.get("n_cells", pd.Series(0, part.index))]
                ),
                hovertemplate="%{customdata[0]}<br>NK: %{x:.3g}<br>score: %{y:.3f}"
                + (
                    " (mean of %{customdata[1]} cells)"
                    if "n_cells" in part
                    else " (bulk, pre-treatment)"
                )
                + "<extra></extra>",
            )
        grid.axis("x", 1, col, title={"text": "NK metric"})
    grid.axis("y", 1, 1, title={"text": "program score (patient mean)"})
    n = max((result["programs"][k]["vs_nk"]["n"] for k in keys), default=0)
    title = titled(
        f"Program score vs NK ({metric}, pre-treatment), Spearman, n={n} patients",
        _caveat_line(result, keys),
    )
    fig = grid.figure(
        title=top_title(title),
        margin={"t": top_margin(title, 110)},
        legend={"orientation": "h", "y": -0.25},
    )
    caption = " ".join(
        f"{_label(result, k)}: {_corr_text(result['programs'][k]['vs_nk'])}; "
        f"{result['programs'][k]['vs_nk'].get('direction', '')}."
        for k in keys
    ) + (
        " 95% CI: Fisher z with the Bonett-Wright standard error; p: t approximation "
        "(scipy); with few patients the two can disagree near p = 0.05."
    )
    return fig, caption


def _corr_text(c: dict) -> str:
    if c.get("message"):
        return c["message"]
    return (
        f"rho = {c['rho']:.2f} (95% CI {c['ci_low']:.2f} to {c['ci_high']:.2f}), "
        f"{format_p(c['p'])}, n = {c['n']}"
    )


def _subtitle(result: dict, key: str) -> str:
    c = result["programs"][key]["vs_nk"]
    label = _label(result, key)
    if c.get("message"):
        return label
    return f"{label}<br><sup>rho = {c['rho']:.2f} [{c['ci_low']:.2f}, " \
        f"{c['ci_high']:.2f}], {format_p(c['p'])}</sup>"  # fmt: skip


def _mw_text(t: dict) -> str:
    if t.get("message"):
        return t["message"]
    return f"Mann-Whitney U = {t['u']:g}, {format_p(t['p'])}, r = {t['r']:.2f}"


def _mw_short(t: dict) -> str:
    """The test in a subplot title: the figure title names Mann-Whitney, the
    caption carries U."""
    if t.get("message"):
        return t["message"]
    return f"{format_p(t['p'])}, r = {t['r']:.2f}"


def _initials(group: str) -> str:
    """``Non-responder`` -> ``NR``: a tick label that fits a narrow subplot."""
    return "".join(w[0].upper() for w in re.split(r"[\s-]+", group) if w)


def _n_in(table: pd.DataFrame, group: str, column: str) -> int:
    return int(table.loc[table["group"] == group, column].notna().sum())


def _boxes(
    result: dict,
    columns: list[tuple[str, str, dict]],
    title: str,
    *,
    rows: int = 1,
    row_titles: tuple[str, ...] = (),
):
    """Box + points per response group, one subplot per (column, subtitle, test).

    Ticks carry the group's initials (short, so they stay upright in a
    column-sized export), the subplot title n per group; the legend spells the
    groups out.
    """
    table = pd.DataFrame(result["table"])
    pos, neg = result["groups"]["responders"], result["groups"]["non_responders"]
    n_cols = -(-len(columns) // rows)
    grid = _Grid(
        rows,
        n_cols,
        [
            f"{sub}<br><sup>{_mw_short(t)}</sup><br><sup>n = "
            + " / ".join(
                f"{_n_in(table, group, column)} {_initials(group)}"
                for group in (pos, neg)
            )
            + "</sup>"
            for column, sub, t in columns
        ],
        hspace=0.06,
        # the lower row's titles sit under the upper row's two-line tick labels
        vspace=0.38 if rows > 1 else 0.15,
    )
    for i, (column, _, _test) in enumerate(columns):
        row, col = divmod(i, n_cols)
        row, col = row + 1, col + 1
        for group in (pos, neg):
            values = table.loc[table["group"] == group, column].dropna()
            grid.add(
                "box",
                row,
                col,
                y=values,
                x=[_initials(group)] * len(values),
                name=f"{group} ({_initials(group)})",
                legendgroup=group,
                showlegend=i == 0,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": RESPONSE_COLORS.get(group, MISSING_COLOR), "size": 6},
                line={"color": RESPONSE_COLORS.get(group, MISSING_COLOR)},
            )
    for row in range(1, rows + 1):
        label = "score (patient mean)"
        if len(row_titles) >= row:
            label = f"{row_titles[row - 1]}: {label}"
        grid.axis("y", row, 1, title={"text": label})
    return grid.figure(
        title=top_title(title),
        margin={"t": top_margin(title, 110)},
        legend={"orientation": "h", "y": -0.2},
        # one box per category (each group has its own tick): no side-by-side offset
        boxmode="overlay",
    )


def response_boxes(result: dict) -> tuple[go.Figure, str]:
    """(b) Program patient means by response: Mann-Whitney, r, direction."""
    keys = list(result["programs"])
    columns = [
        (k, _label(result, k), result["programs"][k]["by_response"]) for k in keys
    ]
    n = result["n_per_group"]
    title = titled(
        "Program score by response (two-sided Mann-Whitney U, rank-biserial r; "
        "r > 0: lower in responders)",
        ", ".join(f"{g} n={v}" for g, v in n.items())
        + f"; response: {result['definition']['label']}"
        + (f" ({result['groups']['note']})" if result["groups"]["note"] else ""),
        _caveat_line(result, keys),
    )
    caption = " ".join(
        f"{_label(result, k)}: {_mw_text(t)}; {t['direction'] or ''}."
        for k, _, t in columns
    )
    return _boxes(result, columns, title), caption


def gate_boxes(result: dict) -> tuple[go.Figure, str]:
    """(c) The same inside gate+ and inside gate- cells."""
    gate = result["gate"]
    if gate["error"]:
        return empty_figure(gate["error"]), gate["error"]
    keys = list(result["programs"])
    columns = []
    for side in ("gate_pos", "gate_neg"):
        for k in keys:
            # the row says gate+ or gate-; a long name breaks before its bracket
            name = SHORT.get(k, k).replace(" (", "<br>(")
            columns.append((f"{k}_{side}", name, result["programs"][k][side]))
    title = titled(
        "Program score by response within gate+ and within gate- CD8 cells "
        "(per patient mean; Mann-Whitney)",
        f"gate: {gate['phenotype']}" + (f" - {gate['note']}" if gate["note"] else ""),
        "gate markers are not part of any program score, so this split is not circular",
    )
    fig = _boxes(
        result, columns, title, rows=2, row_titles=("gate+ cells", "gate- cells")
    )
    caption = " ".join(
        f"{sub.replace('<br>', ' ')}, {'gate+' if col.endswith('pos') else 'gate-'} "
        f"cells: {_mw_text(t)}; {t['direction'] or ''}."
        for col, sub, t in columns
    )
    return fig, caption


def chain_heatmap(result: dict) -> tuple[go.Figure, str]:
    """(d) Spearman rho and partial rho (CD8 infiltration held fixed)."""
    matrix = pd.DataFrame(result["matrix"])
    labels = list(dict.fromkeys(matrix["x_label"]))
    n = len(labels)
    rho = matrix["rho"].astype(float).to_numpy().reshape(n, n)
    partial = matrix["partial_rho"].astype(float).to_numpy().reshape(n, n)
    p_plain = matrix["p"].astype(float).to_numpy().reshape(n, n)
    p_part = matrix["partial_p"].astype(float).to_numpy().reshape(n, n)
    covariate = result.get("covariate") or ""
    grid = _Grid(
        1,
        2,
        [
            "Spearman rho",
            f"partial rho, {covariate} held fixed"
            if covariate
            else "partial rho: no CD8 infiltration value (not computed)",
        ],
        hspace=0.04,
    )
    keys = list(dict.fromkeys(matrix["x"]))
    short = [SHORT.get(k, label) for k, label in zip(keys, labels, strict=True)]
    for col, (values, pvals) in enumerate(((rho, p_plain), (partial, p_part)), 1):
        text = [
            [
                ""
                if not np.isfinite(values[i, j])
                else f"{values[i, j]:.2f}" + ("*" if pvals[i, j] < 0.05 else "")
                for j in range(n)
            ]
            for i in range(n)
        ]
        grid.add(
            "heatmap",
            1,
            col,
            z=values,
            x=short,
            y=short,
            text=text,
            texttemplate="%{text}",
            zmin=-1,
            zmax=1,
            colorscale="RdBu_r",
            showscale=col == 2,
            colorbar={"title": {"text": "rho", "side": "right"}},
            hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>",
        )
        grid.axis("y", 1, col, autorange="reversed", showticklabels=col == 1)
        grid.axis("x", 1, col, tickangle=40)
    title = titled(
        "NK -> programs -> gate fraction -> response, per patient "
        f"(n={result['n_patients']})",
        "* p < 0.05 (unadjusted). Response coded 1 = "
        f"{result['groups']['responders']}, 0 = {result['groups']['non_responders']}",
        "partial: Spearman of rank residuals after the patient's CD8 infiltration "
        "(NK and CD8 abundance move together)",
    )
    fig = grid.figure(title=top_title(title), margin={"t": top_margin(title, 110)})
    nk_rows = matrix[(matrix["x"] == "nk") & (matrix["y"] != "nk")]
    caption = (
        "; ".join(
            f"NK vs {r.y_label}: "
            + (
                f"rho = {r.rho:.2f}"
                if pd.notna(r.rho)
                else f"not estimable ({r.n} patients, or a value is constant)"
            )
            + (
                f", partial rho = {r.partial_rho:.2f}"
                if pd.notna(r.partial_rho)
                else ""
            )
            for r in nk_rows.itertuples()
        )
        + f". Partial correlations control for {covariate or 'nothing (no value)'}."
    )
    return fig, caption


def gene_bars(result: dict) -> tuple[go.Figure, str]:
    """(e) Per-gene patient-level Spearman rho with the NK metric, top 20."""
    genes = result["genes"]
    if genes["message"]:
        return empty_figure(genes["message"]), genes["message"]
    rows = pd.DataFrame(genes["rows"])
    if rows.empty:
        message = "No gene of the program varies between patients"
        return empty_figure(message), message
    label = _label(result, genes["program"])
    rows = rows.iloc[::-1]
    fig = go.Figure(
        go.Bar(
            x=rows["rho"],
            y=rows["gene"],
            orientation="h",
            marker={"color": np.where(rows["rho"] < 0, "#2166ac", "#b2182b")},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": rows["high"] - rows["rho"],
                "arrayminus": rows["rho"] - rows["low"],
                "color": "#555",
            },
            customdata=np.column_stack([rows["p"], rows["n"]]),
            hovertemplate="%{y}: rho = %{x:.2f}, p = %{customdata[0]:.2g}, "
            "n = %{customdata[1]}<extra></extra>",
        )
    )
    n_neg = int((pd.DataFrame(genes["rows"])["rho"] < 0).sum())
    title = titled(
        f"{label}: per-gene Spearman rho with {genes['target']}, top "
        f"{len(rows)} of {genes['n_genes_tested']} genes by |rho|",
        f"{n_neg} of {len(rows)} shown genes are lower in patients with more NK; "
        "bars: 95% CI; one value per patient (mean over the patient's CD8 cells)",
        result["programs_info"][genes["program"]]["caveat"],
    )
    fig.update_layout(
        title=top_title(title),
        margin={"t": top_margin(title, 100)},
        xaxis={"title": "Spearman rho with the NK metric", "range": [-1, 1]},
        height=None,
    )
    caption = f"{n_neg} of the top {len(rows)} genes fall with NK: " + (
        "the whole program moves, not one gene."
        if n_neg >= 0.75 * len(rows) or n_neg <= 0.25 * len(rows)
        else "genes disagree in direction."
    )
    return fig, caption


def mechanism_panels(view, state: dict) -> list[Panel]:
    """Every panel of the mechanism page for ``view`` and the page ``state``."""
    result = mechanism_result(view, state)
    prov = provenance(view, result)
    if result["message"]:
        figure = empty_figure(result["message"])
        return [
            Panel(key, title, figure, caption=result["message"], provenance=prov)
            for key, title in PANELS.items()
        ]
    table = pd.DataFrame(result["table"])
    builders = {
        "mech-nk": nk_scatter,
        "mech-response": response_boxes,
        "mech-gate": gate_boxes,
        "mech-matrix": chain_heatmap,
        "mech-genes": gene_bars,
    }
    panels = []
    for key, build in builders.items():
        figure, caption = build(result)
        data = table
        if key == "mech-matrix":
            data = pd.DataFrame(result["matrix"])
        elif key == "mech-genes":
            data = pd.DataFrame(result["genes"]["rows"])
        panels.append(Panel(key, PANELS[key], figure, data, caption, prov))
    return panels
