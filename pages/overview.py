"""Page `/`: cohort overview - counts, composition, response, and the patient table."""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analysis.cohort import (
    NOT_EVALUABLE,
    OVERVIEW_KEYS,
    cohort_counts,
    patient_keys,
    patient_summary,
    resolve_overview_state,
)
from analysis.gating import default_gate
from analysis.nk_metrics import available_metrics
from analysis.response import DEFINITIONS, available_definitions
from components import ids
from components.cache import cached_panels
from components.common import (
    LinkFallback,
    data_error_alert,
    empty_state,
    figure_card,
    link_notice,
    stat_tile,
)
from components.patient_panel import cd8_highlight_href, patient_panel
from config import get_settings
from data.cells import cell_store
from data.errors import DataError
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
METRIC = f"{PREFIX}-metric"
DEFINITION = f"{PREFIX}-definition"
NOTICE = f"{PREFIX}-link-notice"
TABLE_NOTE = f"{PREFIX}-table-note"
LINK = f"{PREFIX}-link-state"
URL_DUMMY = f"{PREFIX}-url-dummy"
PANEL = f"{PREFIX}-patient-panel"
PANEL_BODY = f"{PREFIX}-patient-body"
STATE_STORE = ids.page_state(PREFIX)
#: Gate of the table's CD8 column: the published one, never edited here.
GATE_HEADER = "% of CD8 cells in the Song et al. gate"

#: field -> (header, tooltip); the NK, response and gate headers are filled per view.
TABLE_COLUMNS = {
    "cohort": ("Cohort", ""),
    "patient_id": ("Patient", ""),
    "tumor_type": ("Tumor type", ""),
    "treatment": ("Treatment", ""),
    "response_group": ("Response", ""),
    "nk_value": ("NK", ""),
    "nk_n_samples": (
        "Pre-treatment samples (n)",
        "Pre-treatment samples averaged for the NK value",
    ),
    "gate_pct": (GATE_HEADER, ""),
    "n_in_gate": ("CD8 cells in the gate (n)", ""),
    "n_cells": ("CD8 cells (n)", "CD8 T cells of the patient's samples"),
    "recist": ("RECIST", "Best overall response (RECIST)"),
    "response": ("Reported response", "Response as reported by the study (R/NR)"),
    "timepoints": ("Timepoints", ""),
    "n_samples": ("Samples (n)", ""),
    "os_months": ("OS (months)", "Overall survival"),
    "os_event": ("Death", "1 = died, 0 = censored"),
    "pfs_months": ("PFS (months)", "Progression-free survival"),
    "pfs_event": ("Progression", "1 = progressed, 0 = censored"),
    "frac_nk_pre": (
        "NK, fraction of CD45+ (pre)",
        "Mean over pre-treatment samples",
    ),
    "frac_cd8_pre": (
        "CD8, fraction of CD45+ (pre)",
        "Mean over pre-treatment samples",
    ),
}
PINNED = ("cohort", "patient_id")
COLUMN_WIDTHS = {
    "cohort": 110,
    "patient_id": 110,
    "tumor_type": 130,
    "treatment": 200,
    "response_group": 180,
    "nk_value": 200,
    "nk_n_samples": 140,
    "gate_pct": 170,
    "n_in_gate": 130,
    "n_cells": 120,
    "recist": 100,
    "response": 130,
    "timepoints": 130,
    "frac_nk_pre": 150,
    "frac_cd8_pre": 150,
}


def _query_value(value) -> str | None:
    """A single string from a query value (lists and odd types tolerated)."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def layout(**query) -> html.Div:
    """Overview layout; the global filter comes from the shell Store, the NK metric
    and response definition from the URL (``metric``, ``definition``)."""
    link = {k: _query_value(query.get(k)) for k in OVERVIEW_KEYS}
    grid = dag.AgGrid(
        id=TABLE,
        columnDefs=[],
        rowData=[],
        defaultColDef={
            "sortable": True,
            "filter": True,
            "resizable": True,
            "minWidth": 90,
            "wrapHeaderText": True,
            "autoHeaderHeight": True,
        },
        dashGridOptions={
            "pagination": True,
            "paginationPageSize": 20,
            # rows that fade out while the search filters cannot be clicked
            "animateRows": False,
            "rowSelection": {
                "mode": "singleRow",
                "checkboxes": False,
                "enableClickSelection": True,
            },
        },
        getRowId="params.data.key",
        style={"height": "560px"},
        className="ag-theme-alpine",
    )
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    html.Label(
                        "NK metric (table, pre-treatment)",
                        htmlFor=METRIC,
                        className="form-label small mb-0",
                    ),
                    dcc.Dropdown(id=METRIC, value=link["metric"], clearable=False),
                ],
                md=6,
            ),
            dbc.Col(
                [
                    html.Label(
                        "Response definition (table)",
                        htmlFor=DEFINITION,
                        className="form-label small mb-0",
                    ),
                    dcc.Dropdown(
                        id=DEFINITION, value=link["definition"], clearable=False
                    ),
                ],
                md=6,
            ),
        ],
        className="g-2 mb-2 overview-controls",
    )
    return html.Div(
        [
            html.H2("Cohort overview", className="h4"),
            html.Div(id=DATASET_NOTE, className="text-muted small mb-3"),
            html.Div(id=NOTICE),
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
                                    html.Span(
                                        "click a patient to open its panel",
                                        className="small text-muted ms-2",
                                    ),
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
                            dbc.CardBody(
                                [
                                    controls,
                                    html.Div(
                                        id=TABLE_NOTE,
                                        className="small text-muted mb-2",
                                    ),
                                    grid,
                                ]
                            ),
                        ],
                        className="mb-3",
                    ),
                ],
                id=CONTENT,
            ),
            dbc.Offcanvas(
                html.Div(id=PANEL_BODY),
                id=PANEL,
                title="Patient",
                placement="end",
                is_open=False,
                scrollable=True,
                style={"width": "min(560px, 100vw)"},
            ),
            dcc.Store(id=LINK, data={k: v for k, v in link.items() if v}),
            dcc.Store(id=STATE_STORE),
            dcc.Store(id=URL_DUMMY),
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
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(DEFINITION, "options"),
    Output(DEFINITION, "value"),
    Output(STATE_STORE, "data"),
    Output(NOTICE, "children"),
    Output(TABLE_NOTE, "children"),
    Input(ids.FILTER_STORE, "data"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    State(LINK, "data"),
)
def update_overview(filter_data, metric=None, definition=None, link=None):
    """Recompute counts, figures and the patient table for the filter and controls."""
    if filter_data is None:
        raise dash.exceptions.PreventUpdate
    link = link or {}
    # a dropdown drops a URL value before its options arrive: use the link's
    asked = {
        "metric": metric or link.get("metric"),
        "definition": definition or link.get("definition"),
    }
    settings = get_settings()
    no = dash.no_update
    try:
        view = cohort_view(
            filter_data,
            data_dir=settings.data_dir,
            default_dataset=settings.default_dataset,
        )
        # shared across workers and users: the same view is built once
        panels = {p.key: p for p in cached_panels(PREFIX, view, asked)}
    except DataError as err:
        return (
            "–", "–", "–", "–", no, no, [], [], True, False, "", [], no, [], no, no,
            data_error_alert(err), "",
        )  # fmt: skip
    samples = view.samples
    meta = view.bundle.meta
    note = f"{meta.label} · {view.filter.describe()}"
    patients = panels["patients"]
    info = patients.provenance
    state = info["state"]
    metric_options = [
        {"label": m.label, "value": m.key} for m in available_metrics(samples)
    ]
    definition_options = [
        {"label": DEFINITIONS[k].label, "value": k}
        for k in available_definitions(samples)
    ] or [
        {"label": DEFINITIONS[state["definition"]].label, "value": state["definition"]}
    ]
    labels = {
        "metric": ("NK metric", {o["value"]: o["label"] for o in metric_options}),
        "definition": (
            "response definition",
            {k: d.label for k, d in DEFINITIONS.items()},
        ),
    }
    fallbacks = [
        LinkFallback(key, labels[key][0], value, labels[key][1].get(shown, shown))
        for key, value, shown in resolve_overview_state(samples, asked)[1]
        # only values the link brought; the dropdowns offer valid ones only
        if link.get(key) == value
    ]
    controls = (
        metric_options,
        state["metric"],
        definition_options,
        state["definition"],
        state,
        link_notice(fallbacks, id=f"{PREFIX}-link-alert"),
    )
    counts = cohort_counts(samples)
    if counts.samples == 0:
        return ("0", "0", "0", "0", no, no, no, [], True, False, note, *controls, "")
    table = patients.table
    column_defs = _column_defs(table, info)
    rows = table.assign(key=patient_keys(table))
    rows = rows[["key", *[c["field"] for c in column_defs]]].astype(object)
    rows = rows.where(rows.notna(), None).to_dict("records")
    n_cells = int(table["n_cells"].sum()) if "n_cells" in table.columns else 0
    return (
        f"{counts.patients:,}",
        f"{counts.samples:,}",
        f"{n_cells:,}",
        f"{counts.cohorts:,}",
        panels["composition"].figure,
        panels["response"].figure,
        column_defs,
        rows,
        False,
        True,
        note,
        *controls,
        _table_note(table, info),
    )


def _format(spec: str, suffix: str = "") -> dict:
    """An ag-grid value formatter that leaves missing values blank (not 0)."""
    return {
        "function": f"params.value == null ? '' : d3.format('{spec}')(params.value)"
        + (f" + '{suffix}'" if suffix else "")
    }


def _column_defs(table, info: dict) -> list[dict]:
    """Grid columns present in ``table``: readable headers, units, n, pinned keys."""
    headers = dict(TABLE_COLUMNS)
    headers["nk_value"] = (
        f"{info['metric']}, pre-treatment",
        "Ratio of the means of the patient's pre-treatment samples (as on the NK "
        "page); blank = no pre-treatment sample in the filter",
    )
    headers["response_group"] = (
        f"Response: {info['response_definition']}",
        f"'{NOT_EVALUABLE}' = the definition cannot place the patient (NE or "
        "missing); left out of statistics",
    )
    headers["gate_pct"] = (
        GATE_HEADER,
        f"Song et al. (Cancer Discovery 2025) gate {default_gate().phenotype}; "
        "blank = no CD8 cells",
    )
    present = [c for c in TABLE_COLUMNS if c in table.columns]
    if not info.get("metric"):
        present = [c for c in present if c not in ("nk_value", "nk_n_samples")]
    defs = []
    for field in present:
        header, tooltip = headers[field]
        column = {"field": field, "headerName": header}
        if tooltip:
            column["headerTooltip"] = tooltip
        # fixed widths: long headers wrap over a few lines instead of one word
        # per line (autosizing to the values made the key columns too narrow)
        column["width"] = COLUMN_WIDTHS.get(field, 120)
        if field in PINNED:
            column["pinned"] = "left"
            column["lockPinned"] = True
        if field.startswith("frac_") or field == "nk_value":
            # 3 significant digits kept as digits: "0.0300" beside "0.0693", never a
            # bare "0.03" that reads as less precise
            column["valueFormatter"] = _format(".3g" if field == "nk_value" else ".3f")
            column["filter"] = "agNumberColumnFilter"
        elif field == "gate_pct":
            column["valueFormatter"] = _format(".1f", " %")
            column["filter"] = "agNumberColumnFilter"
        defs.append(column)
    return defs


def _table_note(table, info: dict) -> str:
    """What the NK, response and gate columns show, with n."""
    n = len(table)
    parts = []
    if info.get("metric"):
        with_nk = int(table["nk_value"].notna().sum())
        parts.append(
            f"NK column: {info['metric']}, pre-treatment, known for {with_nk} of {n} "
            "patients"
            + ("" if with_nk else " (no pre-treatment sample in the sidebar filter)")
            + "."
        )
    groups = table["response_group"].value_counts()
    parts.append(
        f"Response groups, {info['response_definition']}: "
        + ", ".join(f"{g} n={k}" for g, k in groups.items())
        + "."
    )
    if "gate_pct" in table.columns:
        with_cells = int((table["n_cells"] > 0).sum())
        parts.append(
            f"CD8 gate: {with_cells} of {n} patients have CD8 cells "
            f"({int(table['n_cells'].sum()):,} cells)."
        )
    elif info.get("gate_note"):
        parts.append(info["gate_note"])
    return " ".join(parts)


@callback(
    Output(PANEL_BODY, "children"),
    Output(PANEL, "title"),
    Output(PANEL, "is_open"),
    # a click, not the selection: clicking the same patient again reopens it
    Input(TABLE, "cellClicked"),
    State(ids.FILTER_STORE, "data"),
    State(STATE_STORE, "data"),
    prevent_initial_call=True,
)
def open_patient(clicked, filter_data, state):
    """Open the patient panel for the clicked row (row id = patient key)."""
    if not clicked or not clicked.get("rowId") or filter_data is None:
        raise dash.exceptions.PreventUpdate
    key = str(clicked["rowId"])
    settings = get_settings()
    try:
        view = cohort_view(
            filter_data,
            data_dir=settings.data_dir,
            default_dataset=settings.default_dataset,
        )
        panels = {p.key: p for p in cached_panels(PREFIX, view, state or {})}
    except DataError as err:
        return data_error_alert(err), "Patient", True
    info = panels["patients"].provenance
    table = panels["patients"].table
    row = table[patient_keys(table).to_numpy() == key]
    samples = view.samples
    if row.empty:
        return (
            html.P(f"Patient {key} is not in the current filter.", className="small"),
            "Patient",
            True,
        )
    row = row.iloc[0]
    store = cell_store(view.bundle)
    cell_states = None
    if store is not None:
        own = samples.loc[patient_keys(samples).to_numpy() == key, "sample_id"]
        # isin on the categorical compares categories, not a million strings
        mask = store.obs["sample_id"].isin(own.astype(str).tolist()).to_numpy()
        cell_states = store.obs["cd8_state"][mask]
    summary = patient_summary(samples, key, cell_states=cell_states)
    gate = row[["n_cells", "n_in_gate", "gate_pct"]] if "gate_pct" in row else None
    body = patient_panel(
        summary,
        metrics=available_metrics(samples),
        response_group=str(row["response_group"]),
        definition_label=info["response_definition"],
        gate=None if gate is None else gate.to_dict(),
        gate_label=f"Song et al. gate ({default_gate().phenotype})",
        cd8_href=cd8_highlight_href(key, filter_data, info["state"])
        if summary.n_cells
        else None,
        id_prefix=PREFIX,
    )
    return body, f"Patient {summary.patient_id} ({summary.cohort})", True


clientside_callback(
    "function (text, options) {"
    " return Object.assign({}, options, {quickFilterText: text || ''}); }",
    Output(TABLE, "dashGridOptions"),
    Input(SEARCH, "value"),
    State(TABLE, "dashGridOptions"),
    prevent_initial_call=True,
)


# Page state -> address bar, so a copied link reproduces the table.
clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_DUMMY, "data"),
    Input(STATE_STORE, "data"),
)
