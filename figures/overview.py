"""Figures of the cohort overview page."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.cohort import RESPONSE_ORDER, patient_table, response_category
from data import schema
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


def overview_panels(view, state: dict | None = None) -> list[Panel]:
    """The overview page's panels for a :class:`data.view.CohortView`.

    ``state`` is unused (the overview has no page controls); it is accepted so every
    page builder has the same signature for exports and the CLI.
    """
    patients = patient_table(view.samples)
    meta = view.bundle.meta
    subtitle = f"{meta.label}; {view.filter.describe()}"
    provenance = dict(view.provenance, n_patients=len(patients))
    table_columns = [
        c
        for c in (
            "cohort",
            "patient_id",
            "tumor_type",
            "treatment",
            "recist",
            "response",
        )
        if c in patients.columns
    ]
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
            table=patients[table_columns],
            caption="One row per patient.",
            provenance=provenance,
        ),
    ]
