"""Page `/compare`: two cell sets compared with pseudobulk DE (patients as replicates),
and the CD8 state composition by response.

The sets are text definitions (``gate``, ``not:gate``, ``state:<name>``,
``response:R+state:<name>``, a saved set's name...; see ``analysis.cellsets``) kept in
the URL. "Run" starts a background job (Celery with REDIS_URL, diskcache otherwise)
with progress and a cancel button; the finished comparison is cached by its
definition (``figures.de.cached_comparison``) and only its cache key travels to the
browser. A click on a gene (volcano point or table row) offers the CD8 page coloured
by that gene.
"""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analysis import cellsets, pseudobulk
from components import ids
from components.common import figure_card
from config import get_settings
from data import cellsets_store
from data.errors import DataError
from data.view import cohort_view
from figures import de

dash.register_page(__name__, path="/compare", name="Compare sets", order=3)

PAGE_ID = de.PAGE_ID
PREFIX = "compare"
STATE = ids.page_state(PAGE_ID)
URL_SYNC = f"{PREFIX}-url-sync"
SET_A = f"{PREFIX}-set-a"
SET_B = f"{PREFIX}-set-b"
SUGGESTIONS = f"{PREFIX}-suggestions"
COVARIATES = f"{PREFIX}-covariates"
MIN_CELLS = f"{PREFIX}-min-cells"
RUN = f"{PREFIX}-run"
CANCEL = f"{PREFIX}-cancel"
PROGRESS = f"{PREFIX}-progress"
STATUS = f"{PREFIX}-status"
RESULT = f"{PREFIX}-result"
SUMMARY = f"{PREFIX}-summary"
VOLCANO = f"{PREFIX}-volcano"
VOLCANO_CAPTION = f"{PREFIX}-volcano-caption"
TABLE = f"{PREFIX}-table"
CSV = f"{PREFIX}-csv"
CSV_DOWNLOAD = f"{PREFIX}-csv-download"
HEATMAP = f"{PREFIX}-heatmap"
GENE_LINK = f"{PREFIX}-gene-link"
COMPOSITION = f"{PREFIX}-composition"
COMPOSITION_CAPTION = f"{PREFIX}-composition-caption"
SAVE_NAME = f"{PREFIX}-save-name"
SAVE_WHICH = f"{PREFIX}-save-which"
SAVE = f"{PREFIX}-save"
SAVED = f"{PREFIX}-saved"


def _fmt(spec: str) -> str:
    return f"params.value == null ? 'n/a' : d3.format('{spec}')(params.value)"


COLUMNS = [
    ("gene", "Gene", None),
    ("log2FC", "log2FC (A/B)", _fmt(".3f")),
    ("lfcSE", "SE", _fmt(".3f")),
    ("padj", "padj (BH)", _fmt(".3g")),
    ("pvalue", "p", _fmt(".3g")),
    ("baseMean", "baseMean", _fmt(".1f")),
    ("pct_A", "% expressing A", _fmt(".1f")),
    ("pct_B", "% expressing B", _fmt(".1f")),
    ("mean_A", "mean A (log-norm)", _fmt(".3f")),
    ("mean_B", "mean B (log-norm)", _fmt(".3f")),
]


def _view(filter_data):
    settings = get_settings()
    return cohort_view(
        filter_data,
        data_dir=settings.data_dir,
        default_dataset=settings.default_dataset,
    )


def _saved(view) -> dict[str, str]:
    try:
        return cellsets_store.load_saved_sets(view.bundle.path)
    except cellsets_store.SavedSetError:
        return {}


def _suggestions(view) -> list[str]:
    """Ready-made set texts: gate, states, response groups, saved sets."""
    out = ["gate", "not:gate", "response:R", "response:NR"]
    try:
        ctx, _ = de.cell_context(view, "objective")
    except DataError:
        ctx = None
    if ctx is not None:
        out += [f"state:{name}" for name in ctx.state_names]
        out += [f"response:R+state:{name}" for name in ctx.state_names[:3]]
    return out + sorted(_saved(view))


def _first(value) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def layout(**query) -> html.Div:
    """Controls from the URL (``a``, ``b``, ``covariates``, ``definition``,
    ``min_cells``); nothing runs until "Run" is pressed."""
    request = de.Comparison.from_mapping({k: _first(v) for k, v in query.items()})
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    dbc.Label("Set A", html_for=SET_A, className="small mb-0"),
                    dbc.Input(
                        id=SET_A, value=request.a, list=SUGGESTIONS, debounce=True
                    ),
                ],
                md=4,
            ),
            dbc.Col(
                [
                    dbc.Label("Set B", html_for=SET_B, className="small mb-0"),
                    dbc.Input(
                        id=SET_B, value=request.b, list=SUGGESTIONS, debounce=True
                    ),
                ],
                md=4,
            ),
            dbc.Col(
                [
                    dbc.Label("Adjust for (unpaired designs)", className="small mb-0"),
                    dbc.Checklist(
                        id=COVARIATES,
                        options=[
                            {"label": c.replace("_", " "), "value": c}
                            for c in de.COVARIATE_CHOICES
                        ],
                        value=list(request.covariates),
                        inline=True,
                    ),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    dbc.Label(
                        "Min cells / patient",
                        html_for=MIN_CELLS,
                        className="small mb-0",
                    ),
                    dbc.Input(
                        id=MIN_CELLS,
                        type="number",
                        min=1,
                        step=1,
                        value=request.min_cells,
                    ),
                ],
                md=2,
            ),
        ],
        className="g-2 mb-2",
    )
    buttons = html.Div(
        [
            dbc.Button("Run comparison", id=RUN, color="primary", className="me-2"),
            dbc.Button(
                "Cancel",
                id=CANCEL,
                color="secondary",
                outline=True,
                disabled=True,
                className="me-3",
            ),
            dbc.Progress(
                id=PROGRESS,
                value=0,
                label="",
                style={"height": "22px", "width": "320px"},
                className="d-inline-flex align-middle",
            ),
        ],
        className="d-flex align-items-center mb-2",
    )
    save = html.Div(
        [
            dbc.InputGroup(
                [
                    dbc.Input(
                        id=SAVE_NAME, placeholder="name, e.g. my gate+", maxLength=60
                    ),
                    dbc.Select(
                        id=SAVE_WHICH,
                        value="a",
                        options=[
                            {"label": "save set A", "value": "a"},
                            {"label": "save set B", "value": "b"},
                        ],
                    ),
                    dbc.Button("Save", id=SAVE, color="secondary", outline=True),
                ],
                size="sm",
                style={"maxWidth": "520px"},
            ),
            html.Div(id=SAVED, className="small text-muted mt-1"),
        ],
        className="mb-3",
    )
    grid = dag.AgGrid(
        id=TABLE,
        columnDefs=[
            {"field": f, "headerName": h}
            | ({"valueFormatter": {"function": fmt}} if fmt else {})
            | ({"pinned": "left"} if f == "gene" else {})
            for f, h, fmt in COLUMNS
        ],
        rowData=[],
        defaultColDef={
            "sortable": True,
            "filter": True,
            "resizable": True,
            "minWidth": 95,
            "wrapHeaderText": True,
            "autoHeaderHeight": True,
        },
        dashGridOptions={
            "pagination": True,
            "paginationPageSize": 20,
        },
        style={"height": "520px"},
        className="ag-theme-alpine",
    )
    return html.Div(
        [
            dcc.Store(id=STATE, data=request.to_dict()),
            dcc.Store(id=URL_SYNC),
            dcc.Store(id=RESULT),
            dcc.Download(id=CSV_DOWNLOAD),
            html.Datalist(id=SUGGESTIONS),
            html.H2("Compare cell sets", className="h4"),
            html.P(
                [
                    "Pseudobulk differential expression with patients as replicates: "
                    "the raw counts of each patient's cells in a set are summed and "
                    "PyDESeq2 tests set A against set B (paired ",
                    html.Code("~ patient + group"),
                    " when both sets come from the same patients, ",
                    html.Code("~ group"),
                    " otherwise). Cells are never the unit of the test. Sets: ",
                    html.Code("gate"),
                    ", ",
                    html.Code("not:gate"),
                    ", ",
                    html.Code("state:<name>"),
                    ", ",
                    html.Code("response:R"),
                    " / ",
                    html.Code("response:NR"),
                    " (join with ",
                    html.Code("+"),
                    "), ",
                    html.Code("patients:<cohort|id>,..."),
                    ", ",
                    html.Code("lasso:x,y;..."),
                    " or a saved set's name.",
                ],
                className="text-muted small",
            ),
            controls,
            buttons,
            html.Div(id=STATUS, className="mb-2"),
            save,
            html.Div(id=SUMMARY, className="small mb-2"),
            html.Div(id=GENE_LINK, className="mb-2"),
            dbc.Row(
                [
                    dbc.Col(
                        figure_card(
                            VOLCANO,
                            "Volcano",
                            caption_id=VOLCANO_CAPTION,
                            height=540,
                            export=(PAGE_ID, "volcano"),
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader(
                                    [
                                        html.Span(
                                            "All tested genes", className="fw-semibold"
                                        ),
                                        dbc.Button(
                                            "CSV (full table)",
                                            id=CSV,
                                            size="sm",
                                            outline=True,
                                            color="secondary",
                                            className="ms-auto",
                                        ),
                                    ],
                                    className="d-flex align-items-center",
                                ),
                                dbc.CardBody(grid),
                            ],
                            className="mb-3",
                        ),
                        lg=6,
                    ),
                ]
            ),
            figure_card(
                HEATMAP,
                "Top genes per patient",
                height=560,
                export=(PAGE_ID, "heatmap"),
            ),
            figure_card(
                COMPOSITION,
                "CD8 state composition by response",
                caption_id=COMPOSITION_CAPTION,
                height=540,
                export=(PAGE_ID, "composition"),
            ),
        ]
    )


# ------------------------------------------------------------------ state and URL
@callback(
    Output(STATE, "data"),
    Input(SET_A, "value"),
    Input(SET_B, "value"),
    Input(COVARIATES, "value"),
    Input(MIN_CELLS, "value"),
    State(STATE, "data"),
)
def collect_state(a, b, covariates, min_cells, state):
    """The controls as URL keys (the response definition is kept as linked)."""
    return de.Comparison.from_mapping(
        {
            "a": a,
            "b": b,
            "covariates": ",".join(covariates or []),
            "definition": (state or {}).get("definition", ""),
            "min_cells": str(min_cells or ""),
        }
    ).to_dict()


clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_SYNC, "data"),
    Input(STATE, "data"),
)


@callback(
    Output(SUGGESTIONS, "children"),
    Output(SAVED, "children"),
    Input(ids.FILTER_STORE, "data"),
)
def suggestions(filter_data):
    """Set texts offered while typing, and the dataset's saved sets."""
    try:
        view = _view(filter_data)
    except DataError:
        return [], ""
    options = [html.Option(value=text) for text in _suggestions(view)]
    return options, _saved_line(_saved(view))


def _saved_line(saved: dict[str, str]) -> str:
    if not saved:
        return "No saved sets for this dataset yet."
    return "Saved sets: " + "; ".join(f"{k} = {v}" for k, v in sorted(saved.items()))


@callback(
    Output(SAVED, "children", allow_duplicate=True),
    Input(SAVE, "n_clicks"),
    State(SAVE_NAME, "value"),
    State(SAVE_WHICH, "value"),
    State(SET_A, "value"),
    State(SET_B, "value"),
    State(ids.FILTER_STORE, "data"),
    prevent_initial_call=True,
)
def save_set(_clicks, name, which, a, b, filter_data):
    """Save set A or B under a name (its definition, for this dataset)."""
    text = a if which == "a" else b
    try:
        view = _view(filter_data)
        saved = _saved(view)
        definition = cellsets.set_to_string(cellsets.parse_set(text or "", saved=saved))
        saved = cellsets_store.save_set(view.bundle.path, name or "", definition)
    except (cellsets.CellSetError, cellsets_store.SavedSetError, DataError) as err:
        return dbc.Alert(str(err), color="warning", className="p-2 mb-0 small")
    return _saved_line(saved)


# ------------------------------------------------------------------ the job
@callback(
    Output(RESULT, "data"),
    Output(STATUS, "children"),
    Input(RUN, "n_clicks"),
    State(ids.FILTER_STORE, "data"),
    State(STATE, "data"),
    background=True,
    progress=[Output(PROGRESS, "value"), Output(PROGRESS, "label")],
    running=[
        (Output(RUN, "disabled"), True, False),
        (Output(CANCEL, "disabled"), False, True),
    ],
    cancel=[Input(CANCEL, "n_clicks")],
    prevent_initial_call=True,
)
def run(set_progress, _clicks, filter_data, state):
    """Run (or fetch from the cache) the comparison; only its key is returned."""
    request = de.Comparison.from_mapping(state)

    def progress(fraction: float, message: str) -> None:
        set_progress((int(100 * fraction), message))

    try:
        view = _view(filter_data)
        result, key = de.cached_comparison(
            view, request, saved=_saved(view), progress=progress
        )
    except (cellsets.CellSetError, pseudobulk.DEError, DataError) as err:
        message = str(err.problems[0]) if isinstance(err, DataError) else str(err)
        return None, dbc.Alert(message, color="warning", className="p-2 mb-0")
    set_progress((100, "done"))
    return {"key": key}, html.Span(
        f"Done: {result.de.method}.", className="text-success small"
    )


# ------------------------------------------------------------------ views
@callback(
    Output(VOLCANO, "figure"),
    Output(VOLCANO_CAPTION, "children"),
    Output(TABLE, "rowData"),
    Output(HEATMAP, "figure"),
    Output(SUMMARY, "children"),
    Input(RESULT, "data"),
)
def show_result(token):
    """Volcano, table, heatmap and the summary of a finished comparison."""
    from figures.template import empty_figure

    result = de.load_cached((token or {}).get("key", ""))
    if result is None:
        empty = empty_figure("Press “Run comparison”")
        return empty, "", [], empty, ""
    table = result.de.table.round(6)
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    return (
        de.volcano(result),
        de.design_line(result) + ". " + _direction(result),
        rows,
        de.patient_heatmap(result),
        _summary(result),
    )


def _direction(result) -> str:
    table = result.de.table
    sig = table[table["padj"] < de.PADJ_CUTOFF]
    up, down = int((sig["log2FC"] > 0).sum()), int((sig["log2FC"] < 0).sum())
    return (
        f"{up} genes higher in A ({result.set_a.label}) and {down} higher in B "
        f"({result.set_b.label}) at padj < {de.PADJ_CUTOFF}"
    )


def _summary(result) -> html.Div:
    d = result.de
    items = [
        html.Li(
            f"Set A: {result.set_a.label} - {d.n_patients['A']} patients, "
            f"{d.n_cells['A']:,} cells"
        ),
        html.Li(
            f"Set B: {result.set_b.label} - {d.n_patients['B']} patients, "
            f"{d.n_cells['B']:,} cells"
        ),
        html.Li(f"Method: {d.method}; design {d.design}"),
        html.Li(
            f"Gene filter: {d.gene_filter} ({len(d.table):,} of "
            f"{d.n_genes_in_data:,} genes tested)"
        ),
        html.Li(
            f"Dropped pseudobulk samples: {len(d.dropped)}"
            + (
                " ("
                + "; ".join(
                    f"{x['patient']} {x['set']}: {x['reason']}" for x in d.dropped[:6]
                )
                + ("…" if len(d.dropped) > 6 else "")
                + ")"
                if d.dropped
                else ""
            )
        ),
    ]
    items += [html.Li(note) for note in d.notes]
    color = "warning" if d.fallback else "light"
    return dbc.Alert(
        html.Ul(items, className="mb-0 ps-3"), color=color, className="p-2"
    )


@callback(
    Output(GENE_LINK, "children"),
    Input(VOLCANO, "clickData"),
    Input(TABLE, "cellClicked"),
    State(ids.FILTER_STORE, "data"),
    prevent_initial_call=True,
)
def gene_link(click, cell, filter_data):
    """A link to the CD8 page coloured by the clicked gene (same filter)."""
    gene = ""
    if dash.ctx.triggered_id == VOLCANO and click:
        gene = str(click["points"][0].get("customdata") or "")
    elif cell and cell.get("colId") == "gene":
        gene = str(cell.get("value") or "")
    if not gene:
        return dash.no_update
    return html.A(
        f"Colour the CD8 UMAP by {gene} →",
        href=cd8_gene_href(gene, filter_data),
        className="btn btn-sm btn-outline-primary",
    )


def cd8_gene_href(gene: str, filter_data) -> str:
    """``/cd8-states?...&color=gene&gene=GENE`` keeping the global filter."""
    params = [*de.filter_params(filter_data), ("color", "gene"), ("gene", gene)]
    return "/cd8-states?" + urlencode(params)


@callback(
    Output(CSV_DOWNLOAD, "data"),
    Input(CSV, "n_clicks"),
    State(RESULT, "data"),
    prevent_initial_call=True,
)
def download_csv(_clicks, token):
    """The full gene table, with the design and n per group as header comments."""
    result = de.load_cached((token or {}).get("key", ""))
    if result is None:
        return dash.no_update
    header = "".join(
        f"# {k}: {v}\n"
        for k, v in result.provenance.items()
        if k
        in (
            "dataset",
            "filters",
            "set_a",
            "set_b",
            "design",
            "test",
            "n_patients_A",
            "n_patients_B",
            "gene_filter",
        )
    )
    body = de.table_for_export(result).to_csv(index=False)
    name = f"de_{result.provenance.get('dataset', 'data')}.csv"
    return {"content": header + body, "filename": name}


@callback(
    Output(COMPOSITION, "figure"),
    Output(COMPOSITION_CAPTION, "children"),
    Input(ids.FILTER_STORE, "data"),
    State(STATE, "data"),
)
def composition(filter_data, state):
    """State composition by response, each patient once (CLR + Mann-Whitney)."""
    from figures.template import empty_figure

    try:
        view = _view(filter_data)
    except DataError as err:
        return empty_figure(str(err)), ""
    definition = (state or {}).get("definition", "")
    counts, table = de.composition_result(view, definition)
    return de.composition_figure(counts, table), de.composition_caption(table)
