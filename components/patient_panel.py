"""The patient panel of the overview: one patient's clinical values, NK metrics per
timepoint, CD8 state mix and a link to the patient's cells on the UMAP."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import dcc, html

from analysis.cohort import PatientSummary
from analysis.nk_metrics import Metric
from data.filters import CohortFilter

#: Unit of each metric kind, shown next to the metric label.
KIND_UNITS = {
    "fraction": "fraction, 0-1",
    "ratio": "ratio, 0-1",
    "log-ratio": "log2 ratio",
    "score": "score, no unit",
}
TIMEPOINT_NAMES = {
    "pre": "pre-treatment",
    "on": "on-treatment",
    "post": "post-treatment",
}


def metric_header(metric: Metric) -> str:
    """``NK / (NK + CD8) (ratio, 0-1)``: the label with its unit."""
    unit = KIND_UNITS.get(metric.kind)
    return f"{metric.label} ({unit})" if unit else metric.label


def _number(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}g}"


def cd8_highlight_href(
    key: str, filter_data: Mapping[str, object] | None, state: Mapping[str, str]
) -> str:
    """Link to the CD8 page highlighting the patient ``key`` (``cohort|patient``).

    Keeps the global filter (so the page shows the same samples) and the NK metric
    and response definition, which mean the same there.
    """
    pairs: list[tuple[str, str]] = [("highlight", key)]
    pairs += parse_qsl(CohortFilter.from_mapping(filter_data).to_query())
    pairs += [(k, state[k]) for k in ("metric", "definition") if state.get(k)]
    return dash.get_relative_path("/cd8-states") + "?" + urlencode(pairs)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], **kwargs):
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows]),
        ],
        size="sm",
        bordered=False,
        striped=True,
        className="small mb-2",
        **kwargs,
    )


def patient_panel(
    summary: PatientSummary,
    *,
    metrics: Sequence[Metric],
    response_group: str,
    definition_label: str,
    gate: Mapping[str, object] | None,
    gate_label: str,
    cd8_href: str | None,
    id_prefix: str,
) -> list:
    """Children of the patient panel.

    Parameters
    ----------
    summary
        :func:`analysis.cohort.patient_summary` of the patient.
    metrics
        The NK metrics of the dataset (one column each).
    response_group, definition_label
        The patient's group under the response definition in use, and its label.
    gate
        ``n_cells``, ``n_in_gate``, ``gate_pct`` of the patient, or ``None``.
    gate_label
        Name of the gate (``Song et al.``) and its phenotype.
    cd8_href
        Link highlighting the patient on the CD8 page (``None``: no CD8 cells).
    id_prefix
        Prefix of the ids of the panel's parts (tests and the browser find them).
    """
    clinical = [
        *summary.clinical,
        (f"Response group, {definition_label}", response_group),
    ]
    parts: list = [
        html.P(
            f"From the patient's {summary.n_samples} sample"
            f"{'s' if summary.n_samples != 1 else ''} in the current sidebar filter"
            + (
                f" (timepoints: {', '.join(summary.nk['timepoint'])})"
                if len(summary.nk)
                else ""
            )
            + ".",
            className="small text-muted",
        ),
        html.H3("Clinical", className="h6 mt-2"),
        html.Dl(
            [
                item
                for label, value in clinical
                for item in (
                    html.Dt(label, className="col-6 fw-normal text-muted"),
                    html.Dd(value, className="col-6 mb-1"),
                )
            ],
            className="row small mb-2",
            id=f"{id_prefix}-clinical",
        ),
        html.H3("NK metrics per timepoint", className="h6 mt-3"),
    ]
    if summary.nk.empty or not metrics:
        parts.append(html.P("No NK values for this patient.", className="small"))
    else:
        header = ["Timepoint", "Samples (n)", *[metric_header(m) for m in metrics]]
        rows = [
            [
                TIMEPOINT_NAMES.get(row["timepoint"], row["timepoint"]),
                str(int(row["n_samples"])),
                *[_number(row[m.key]) for m in metrics],
            ]
            for _, row in summary.nk.iterrows()
        ]
        parts += [
            html.Div(
                _table(header, rows), className="table-responsive", id=f"{id_prefix}-nk"
            ),
            html.P(
                "Several samples at one timepoint are averaged before the ratio "
                "(as on the NK page).",
                className="small text-muted",
            ),
        ]
    parts.append(html.H3("CD8 T-cell states", className="h6 mt-3"))
    if summary.n_cells == 0:
        parts.append(
            html.P(
                "No single-cell CD8 data for this patient's samples.",
                className="small",
                id=f"{id_prefix}-states",
            )
        )
    else:
        if gate is not None and not pd.isna(gate.get("gate_pct")):
            parts.append(
                html.P(
                    [
                        html.Strong(f"{float(gate['gate_pct']):.1f}% "),
                        f"of the patient's CD8 cells in the {gate_label}: "
                        f"{int(gate['n_in_gate'])} of {int(gate['n_cells'])} cells.",
                    ],
                    className="small mb-1",
                    id=f"{id_prefix}-gate",
                )
            )
        rows = [
            [row["cd8_state"], str(int(row["n_cells"])), f"{row['pct']:.1f}"]
            for _, row in summary.states.iterrows()
        ]
        parts += [
            html.Div(
                _table(["State", "Cells (n)", "% of the patient's CD8 cells"], rows),
                id=f"{id_prefix}-states",
            ),
            html.P(
                f"n = {summary.n_cells} CD8 cells of this patient.",
                className="small text-muted",
            ),
        ]
    if cd8_href:
        parts.append(
            dcc.Link(
                "Highlight this patient's cells on the UMAP (CD8 states page)",
                href=cd8_href,
                className="btn btn-outline-primary btn-sm",
                id=f"{id_prefix}-cd8-link",
            )
        )
    return parts
