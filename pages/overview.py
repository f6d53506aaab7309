"""Page `/`: cohort overview - counts, composition, response, and the patient table."""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, html

from analysis.cohort import cohort_counts, patient_table
from components import ids
from components.cache import cached_panels
from components.common import empty_state, figure_card, stat_tile
from config import get_settings
from data.cells import cells_per_sample
from data.view import cohort_view

dash.register_page(__name__, path="/", name="Cohort overview", order=0)

PREFIX = "overview"
KPI_PATIENTS = f"{PREFIX}-patients"
KPI_SAMPLES = f"{PREFIX}-samples"
KPI_CELLS = f"{PREFIX}-cells"
KPI_COHORTS = f"{PREFIX}-cohorts"
COMPOSITION = f"{PREFIX}-composition"
RESPONSE = f"{PREFIX}-response"
TABLE = f"{PREFIX}-table"
SEARCH = f"{PREFIX}-search"
CONTENT = f"{PREFIX}-content"
EMPTY = f"{PREFIX}-empty"
DATASET_NOTE = f"{PREFIX}-dataset-note"

TABLE_COLUMNS = [
    ("cohort", "Cohort"),
    ("patient_id", "Patient"),
    ("tumor_type", "Tumor type"),
    ("treatment", "Treatment"),
    ("recist", "RECIST"),
    ("response", "Reported response"),
    ("timepoints", "Timepoints"),
    ("n_samples", "Samples"),
    ("n_cells", "CD8 cells"),
    ("os_months", "OS (months)"),
    ("os_event", "Death"),
    ("pfs_months", "PFS (months)"),
    ("pfs_event", "Progression"),
    ("frac_nk_pre", "NK, fraction of CD45+ (pre)"),
    ("frac_cd8_pre", "CD8, fraction of CD45+ (pre)"),
]


def layout(**_query) -> html.Div:
    """Overview layout; the global filter comes from the shell Store."""
    grid = dag.AgGrid(
        id=TABLE,
        columnDefs=[],
        rowData=[],
        defaultColDef={
            "sortable": True,
            "filter": True,
            "resizable": True,
            "minWidth": 90,
        },
        dashGridOptions={"pagination": True, "paginationPageSize": 20},
        columnSize="autoSize",
        style={"height": "560px"},
        className="ag-theme-alpine",
    )
    return html.Div(
        [
            html.H2("Cohort overview", className="h4"),
            html.Div(id=DATASET_NOTE, className="text-muted small mb-3"),
            html.Div(
                empty_state(
                    "No samples match the current filters.",
                    "Remove a filter in the sidebar to see patients again.",
                ),
                id=EMPTY,
                hidden=True,
            ),
            html.Div(
                [
                    dbc.Row(
                        [
                            dbc.Col(stat_tile(KPI_PATIENTS, "patients"), xs=6, md=3),
                            dbc.Col(stat_tile(KPI_SAMPLES, "samples"), xs=6, md=3),
                            dbc.Col(stat_tile(KPI_CELLS, "CD8 T cells"), xs=6, md=3),
                            dbc.Col(stat_tile(KPI_COHORTS, "cohorts"), xs=6, md=3),
                        ],
                        className="g-3 mb-3",
                    ),
                    dbc.Row(
                        [
                            dbc.Col(
                                figure_card(
                                    COMPOSITION,
                                    "Composition",
                                    export=(PREFIX, "composition"),
                                ),
                                lg=6,
                            ),
                            dbc.Col(
                                figure_card(
                                    RESPONSE,
                                    "Clinical response",
                                    export=(PREFIX, "response"),
                                ),
                                lg=6,
                            ),
                        ]
                    ),
                    dbc.Card(
                        [
                            dbc.CardHeader(
                                [
                                    html.Span("Patients", className="fw-semibold"),
                                    dbc.Input(
                                        id=SEARCH,
                                        type="search",
                                        placeholder="Search patients…",
                                        debounce=False,
                                        size="sm",
                                        className="ms-auto w-auto",
                                    ),
                                ],
                                className="d-flex align-items-center",
                            ),
                            dbc.CardBody(grid),
                        ],
                        className="mb-3",
                    ),
                ],
                id=CONTENT,
            ),
        ]
    )


@callback(
    Output(KPI_PATIENTS, "children"),
    Output(KPI_SAMPLES, "children"),
    Output(KPI_CELLS, "children"),
    Output(KPI_COHORTS, "children"),
    Output(COMPOSITION, "figure"),
    Output(RESPONSE, "figure"),
    Output(TABLE, "columnDefs"),
    Output(TABLE, "rowData"),
    Output(CONTENT, "hidden"),
    Output(EMPTY, "hidden"),
    Output(DATASET_NOTE, "children"),
    Input(ids.FILTER_STORE, "data"),
)
def update_overview(filter_data):
    """Recompute counts, figures and the patient table for the global filter."""
    if filter_data is None:
        raise dash.exceptions.PreventUpdate
    settings = get_settings()
    view = cohort_view(
        filter_data,
        data_dir=settings.data_dir,
        default_dataset=settings.default_dataset,
    )
    samples = view.samples
    meta = view.bundle.meta
    note = f"{meta.label} · {view.filter.describe()}"
    counts = cohort_counts(samples)
    if counts.samples == 0:
        no = dash.no_update
        return ("0", "0", "0", "0", no, no, no, [], True, False, note)
    patients = patient_table(samples)
    cells = cells_per_sample(view.bundle)
    samples_cells = samples.assign(n_cells=samples["sample_id"].map(cells).fillna(0))
    per_patient_cells = samples_cells.groupby(["cohort", "patient_id"])["n_cells"].sum()
    patients = patients.join(per_patient_cells, on=["cohort", "patient_id"])
    # shared across workers and users: the same view is built once
    panels = {panel.key: panel for panel in cached_panels(PREFIX, view)}
    columns = [c for c in TABLE_COLUMNS if c[0] in patients.columns]
    column_defs = [{"field": field, "headerName": name} for field, name in columns]
    for definition in column_defs:
        if definition["field"].startswith("frac_"):
            definition["valueFormatter"] = {
                "function": "d3.format('.3f')(params.value)"
            }
    rows = patients[[c[0] for c in columns]].astype(object)
    rows = rows.where(rows.notna(), None).to_dict("records")
    return (
        f"{counts.patients:,}",
        f"{counts.samples:,}",
        f"{int(samples_cells['n_cells'].sum()):,}",
        f"{counts.cohorts:,}",
        panels["composition"].figure,
        panels["response"].figure,
        column_defs,
        rows,
        False,
        True,
        note,
    )


clientside_callback(
    "function (text, options) {"
    " return Object.assign({}, options, {quickFilterText: text || ''}); }",
    Output(TABLE, "dashGridOptions"),
    Input(SEARCH, "value"),
    State(TABLE, "dashGridOptions"),
    prevent_initial_call=True,
)
