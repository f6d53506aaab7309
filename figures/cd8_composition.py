"""CD8 state composition per patient and the marker dot plot (no Dash)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from data.schema import PROTEIN_NAMES
from figures.cd8_state import (
    MISSING_COLOR,
    NOT_EVALUABLE,
    STATE_MARKERS,
    CellData,
    PageState,
    category_palette,
)
from figures.template import (
    RESPONSE_COLORS,
    empty_figure,
)


def state_composition(data: CellData) -> tuple[go.Figure, str, pd.DataFrame]:
    """Stacked bars: each patient's CD8 state composition, patients ordered by NK."""
    patients = data.patients
    counts = np.zeros((len(patients), len(data.state_names)), dtype=np.int64)
    valid = data.state_codes >= 0
    np.add.at(counts, (data.patient_codes[valid], data.state_codes[valid]), 1)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, np.maximum(totals, 1))
    order = np.lexsort((patients["label"].to_numpy(), patients["nk"].to_numpy()))
    labels = patients["label"].to_numpy()[order]
    palette = category_palette(len(data.state_names))
    fig = go.Figure()
    for k, state in enumerate(data.state_names):
        fig.add_bar(
            x=labels,
            y=100 * share[order, k],
            name=state,
            marker_color=palette[k],
            customdata=np.column_stack([counts[order, k], totals[order, 0]]),
            hovertemplate="%{x}<br>" + state + ": %{y:.1f}% "
            "(%{customdata[0]} of %{customdata[1]} cells)<extra></extra>",
        )
    # response of each patient as a strip of squares above the bars
    groups = patients["group"].to_numpy(dtype=object)[order]
    for group in [*data.definition.groups, None]:
        mask = np.array(
            [g == group if group else not isinstance(g, str) for g in groups]
        )
        if not mask.any():
            continue
        name = group or NOT_EVALUABLE
        fig.add_scatter(
            x=labels[mask],
            y=np.full(mask.sum(), 104.0),
            mode="markers",
            marker={
                "symbol": "square",
                "size": 9,
                "color": RESPONSE_COLORS.get(name, MISSING_COLOR),
            },
            name=f"{name} (response)",
            legendgroup="response",
            hovertemplate="%{x}: " + name + "<extra></extra>",
        )
    metric_label = data.metric.label if data.metric else "NK metric"
    no_nk = int(patients["nk"].isna().sum())
    fig.update_layout(
        barmode="stack",
        title=f"CD8 state composition per patient (n={len(patients)}), ordered by "
        f"{metric_label}, low to high",
        yaxis={
            "title": "% of patient's CD8 cells",
            "range": [0, 108],
            "tickvals": [0, 20, 40, 60, 80, 100],
        },
        xaxis={"tickangle": -60, "tickfont": {"size": 9}},
        legend={"orientation": "h", "y": -0.45, "font": {"size": 10}},
        margin={"b": 170},
    )
    caption = (
        f"Patients (n={len(patients)}) ordered by {metric_label} (pre-treatment), "
        f"lowest NK on the left; squares above the bars: {data.definition.label}"
        + (f"; {no_nk} patient(s) without an NK value on the right." if no_nk else ".")
    )
    table = pd.DataFrame(counts[order], columns=data.state_names)
    table.insert(0, "patient", labels)
    table.insert(1, "nk", patients["nk"].to_numpy()[order])
    return fig, caption, table


def dot_plot(data: CellData, page: PageState) -> tuple[go.Figure, pd.DataFrame]:
    """Genes x states: dot size = % of cells expressing (> 0), colour = mean
    log-normalized expression."""
    present = set(data.store.var_names)
    genes = [g for g in page.gate.genes if g in present]
    genes += [g for g in STATE_MARKERS if g in present and g not in genes]
    rows = []
    codes = data.state_codes
    n_states = len(data.state_names)
    size = np.bincount(codes[codes >= 0], minlength=n_states)
    for gene in genes:
        values = data.expression(gene)
        ok = codes >= 0
        mean = np.bincount(codes[ok], weights=values[ok], minlength=n_states)
        expressing = np.bincount(codes[ok], weights=values[ok] > 0, minlength=n_states)
        for k, state in enumerate(data.state_names):
            if size[k] == 0:
                continue
            rows.append(
                {
                    "gene": gene,
                    "state": state,
                    "mean": mean[k] / size[k],
                    "pct_expressing": 100 * expressing[k] / size[k],
                    "n_cells": int(size[k]),
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return empty_figure("No marker genes in the data"), table
    gene_label = {
        g: f"{g} ({PROTEIN_NAMES[g]})" if PROTEIN_NAMES.get(g, g) != g else g
        for g in genes
    }
    fig = go.Figure(
        go.Scatter(
            x=table["gene"].map(gene_label),
            y=table["state"] + " (n=" + table["n_cells"].map("{:,}".format) + ")",
            mode="markers",
            marker={
                "size": 4 + table["pct_expressing"] * 0.22,
                "color": table["mean"],
                "colorscale": "Viridis",
                "reversescale": False,
                "colorbar": {
                    "title": {"text": "mean<br>log-norm.", "side": "right"},
                    "thickness": 12,
                },
                "line": {"width": 0.5, "color": "#555"},
            },
            customdata=np.column_stack([table["pct_expressing"], table["mean"]]),
            hovertemplate="%{x} in %{y}<br>%{customdata[0]:.0f}% expressing, mean "
            "%{customdata[1]:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Marker genes by CD8 state (dot size = % of cells with expression > 0;"
        " colour = mean log-normalized expression)",
        xaxis={"tickangle": -45, "type": "category"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        margin={"l": 10, "b": 110},
    )
    return fig, table
