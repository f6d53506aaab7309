"""Figures of the cohort overview page."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis import gating
from analysis.cohort import (
    RESPONSE_ORDER,
    cell_patient_codes,
    cells_by_patient,
    overview_table,
    patient_table,
    resolve_overview_state,
    response_category,
)
from analysis.nk_metrics import get_metric
from analysis.response import DEFINITIONS
from data import schema
from data.cells import cell_store
from figures.panel import Panel
from figures.template import RESPONSE_COLORS, TREATMENT_COLORS, empty_figure


def composition_bar(patients: pd.DataFrame, *, subtitle: str = "") -> go.Figure:
    """Patients by tumor type (bars) and treatment (stacked colours).

    Parameters
    ----------
    patients
        One row per patient with ``tumor_type`` and ``treatment``.
    subtitle
        Appended to the title (e.g. the dataset and filter).
    """
    if patients.empty:
        return empty_figure("No patients match the filters")
    counts = (
        patients.groupby(["tumor_type", "treatment"]).size().rename("n").reset_index()
    )
    totals = counts.groupby("tumor_type")["n"].sum().sort_values(ascending=False)
    fig = go.Figure()
    treatments = [t for t in schema.TREATMENTS if t in set(counts["treatment"])]
    for treatment in treatments:
        part = counts[counts["treatment"] == treatment].set_index("tumor_type")
        part = part.reindex(totals.index).fillna(0)
        fig.add_bar(
            name=treatment,
            x=[f"{t} (n={totals[t]})" for t in totals.index],
            y=part["n"].astype(int),
            marker_color=TREATMENT_COLORS.get(treatment),
            hovertemplate="%{x}<br>" + treatment + ": %{y} patients<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        title=f"Patients by tumor type and treatment (n={len(patients)} patients)"
        + (f"<br><sup>{subtitle}</sup>" if subtitle else ""),
        yaxis_title="Patients",
        legend_title_text="Treatment",
    )
    return fig


def response_bar(patients: pd.DataFrame, *, subtitle: str = "") -> go.Figure:
    """RECIST best overall response per tumor type, as % of patients, n in labels."""
    if patients.empty:
        return empty_figure("No patients match the filters")
    frame = patients.assign(category=response_category(patients))
    counts = frame.groupby(["tumor_type", "category"]).size().rename("n").reset_index()
    totals = counts.groupby("tumor_type")["n"].sum().sort_values(ascending=False)
    fig = go.Figure()
    for category in RESPONSE_ORDER:
        part = counts[counts["category"] == category].set_index("tumor_type")
        if part.empty:
            continue
        part = part.reindex(totals.index).fillna(0)
        share = 100 * part["n"] / totals
        fig.add_bar(
            name=category,
            x=[f"{t} (n={totals[t]})" for t in totals.index],
            y=share.round(1),
            customdata=part["n"].astype(int),
            marker_color=RESPONSE_COLORS[category],
            hovertemplate="%{x}<br>"
            + category
            + ": %{customdata} patients (%{y:.1f}%)<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        title="Best overall response (RECIST) by tumor type "
        f"(n={len(patients)} patients)"
        + (f"<br><sup>{subtitle}</sup>" if subtitle else ""),
        yaxis_title="% of patients",
        yaxis_range=[0, 100],
        legend_title_text="RECIST",
    )
    return fig


#: Columns of the exported patient table, in order (those present are written).
PATIENT_COLUMNS = (
    "cohort",
    "patient_id",
    "tumor_type",
    "treatment",
    "recist",
    "response",
    "response_group",
    "nk_value",
    "nk_n_samples",
    "n_cells",
    "n_in_gate",
    "gate_pct",
    "timepoints",
    "n_samples",
    "os_months",
    "os_event",
    "pfs_months",
    "pfs_event",
)


def overview_patients(view, state: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per patient with the NK metric, response group and CD8 gate fraction.

    Parameters
    ----------
    view
        A :class:`data.view.CohortView`.
    state
        ``{"metric", "definition"}`` as in the URL (defaults: the NK page's).

    Returns
    -------
    table, info
        :func:`analysis.cohort.overview_table` for the view (with ``n_cells`` and,
        when the Song et al. gate can be evaluated, ``n_in_gate`` and
        ``gate_pct``), and what the columns mean: ``state`` (resolved),
        ``replaced`` (link values not used: ``(key, asked, shown)``),
        ``metric_label``, ``definition_label``, ``gate_name``, ``gate_phenotype``,
        ``gate_note`` (why there is no gate column), ``has_cells``.
    """
    samples = view.samples
    resolved, replaced = resolve_overview_state(samples, state)
    store = cell_store(view.bundle)
    gate = gating.default_gate()
    info = {
        "state": resolved,
        "replaced": replaced,
        "metric_label": get_metric(samples, resolved["metric"]).label
        if resolved["metric"]
        else "",
        "definition_label": DEFINITIONS[resolved["definition"]].label,
        "gate_name": gating.gate_display_name(gate),
        "gate_phenotype": gate.phenotype,
        "gate_note": "",
        "has_cells": store is not None,
    }
    cells = None
    if store is not None:
        codes, keys = cell_patient_codes(store.obs["sample_id"], samples)
        missing = gating.missing_markers(gate, store.var_names)
        in_gate = None
        if missing:
            # evaluated without a marker it would not be the published gate
            info["gate_note"] = (
                f"No gate column: the dataset lacks {', '.join(missing)} of the "
                f"{gating.gate_display_name(gate)} ({gate.phenotype})."
            )
        else:
            # all cells, not only the filtered ones: indexing six genes by the
            # selection cost 4x the gate itself at 10^6 cells, and cells outside
            # the filter have no patient code so they are not counted anyway
            in_gate = gating.evaluate_gate(
                gate,
                store.gene,
                available=store.var_names,
                n_cells=store.n_cells,
            ).in_gate
        cells = cells_by_patient(codes, keys, in_gate)
    table = overview_table(
        samples,
        metric=resolved["metric"] or None,
        definition=resolved["definition"],
        cells=cells,
    )
    return table, info


def overview_panels(view, state: dict | None = None) -> list[Panel]:
    """The overview page's panels for a :class:`data.view.CohortView`.

    ``state`` holds the page's ``metric`` and ``definition`` (URL keys, as on the
    NK page): the NK metric and response group of the patient table.
    """
    patients = patient_table(view.samples)
    table, info = overview_patients(view, state)
    meta = view.bundle.meta
    subtitle = f"{meta.label}; {view.filter.describe()}"
    provenance = dict(view.provenance, n_patients=len(patients))
    by_type = (
        patients.groupby(["tumor_type", "treatment"]).size().rename("patients")
        if not patients.empty
        else pd.Series(dtype=int, name="patients")
    )
    responses = (
        patients.assign(recist=response_category(patients))
        .groupby(["tumor_type", "recist"])
        .size()
        .rename("patients")
        if not patients.empty
        else pd.Series(dtype=int, name="patients")
    )
    return [
        Panel(
            key="composition",
            title="Composition",
            figure=composition_bar(patients, subtitle=subtitle),
            table=by_type.reset_index(),
            caption=f"Patients counted once each (n={len(patients)}); "
            "bars stacked by treatment.",
            provenance=provenance,
        ),
        Panel(
            key="response",
            title="Clinical response",
            figure=response_bar(patients, subtitle=subtitle),
            table=responses.reset_index(),
            caption=f"RECIST best overall response as % of patients per tumor type "
            f"(n={len(patients)}); 'not reported' = no RECIST value.",
            provenance=provenance,
        ),
        Panel(
            key="patients",
            title="Patients",
            figure=empty_figure("Table only"),
            table=table[
                [c for c in PATIENT_COLUMNS if c in table.columns]
                + [c for c in table.columns if c.endswith("_pre")]
            ],
            caption=patients_caption(info),
            provenance=dict(
                provenance,
                metric=info["metric_label"],
                nk_timepoint="pre-treatment",
                response_definition=info["definition_label"],
                gate=f"{info['gate_name']} ({info['gate_phenotype']})"
                if "gate_pct" in table.columns
                else "",
                gate_note=info["gate_note"],
                state=info["state"],
            ),
        ),
    ]


def patients_caption(info: dict) -> str:
    """What the patient table's NK, response and gate columns mean."""
    parts = ["One row per patient (cohort and patient id)."]
    if info["metric_label"]:
        parts.append(
            f"NK: {info['metric_label']}, pre-treatment, ratio of the means of the "
            "patient's pre-treatment samples (n samples in its own column)."
        )
    parts.append(f"Response group: {info['definition_label']}.")
    if info["has_cells"] and not info["gate_note"]:
        parts.append(
            f"Gate: % of the patient's CD8 cells in the {info['gate_name']} gate "
            f"({info['gate_phenotype']}); n cells in the gate and in total shown."
        )
    elif info["gate_note"]:
        parts.append(info["gate_note"])
    return " ".join(parts)
