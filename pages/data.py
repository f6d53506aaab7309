"""Page `/data`: the datasets of this installation, and upload of a clinical table.

The table lists every bundle in DATA_DIR with its provenance, counts and validation
status; "Open" sets the global dataset (it goes to the URL). An uploaded table is
staged on the server (the browser keeps only a token), previewed, mapped to the bundle
columns, checked, and saved atomically, never over an existing dataset unless the
user ticks "replace".
"""

from __future__ import annotations

from pathlib import Path

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, dcc, html, no_update

from config import get_settings
from data import schema
from data.errors import DataError
from data.importers import clinical as clinical_import
from data.importers import recode, store, upload
from data.registry import DatasetEntry, check_dataset_name, get_bundle, list_datasets

dash.register_page(__name__, path="/data", name="Data", order=3)

PREFIX = "data"
DATASETS = f"{PREFIX}-datasets"
UPLOAD = f"{PREFIX}-upload"
UPLOAD_STORE = f"{PREFIX}-upload-store"
UPLOAD_STATUS = f"{PREFIX}-upload-status"
PREVIEW = f"{PREFIX}-preview"
MAPPING_CARD = f"{PREFIX}-mapping-card"
NAME = f"{PREFIX}-name"
TITLE = f"{PREFIX}-title"
LICENSE = f"{PREFIX}-license"
SET_TUMOR = f"{PREFIX}-set-tumor_type"
SET_TREATMENT = f"{PREFIX}-set-treatment"
REPLACE = f"{PREFIX}-replace"
CHECK = f"{PREFIX}-check"
SAVE = f"{PREFIX}-save"
REPORT = f"{PREFIX}-report"
SAVED = f"{PREFIX}-saved"
MAP_TYPE = f"{PREFIX}-map"
VALUES = f"{PREFIX}-values"

#: Bundle columns offered in the mapping form, with what they mean.
MAP_TARGETS = (
    ("sample_id", "Sample id (unique per row)"),
    ("patient_id", "Patient id"),
    ("cohort", "Cohort / study"),
    ("tumor_type", "Tumor type"),
    ("treatment", "Treatment (drug or target)"),
    ("timepoint", "Biopsy timepoint (pre/on/post)"),
    ("recist", "RECIST (CR/PR/SD/PD/NE)"),
    ("response", "Responder status (R/NR)"),
    ("os_months", "Overall survival time"),
    ("os_event", "Death (1/0)"),
    ("pfs_months", "Progression-free survival time"),
    ("pfs_event", "Progression (1/0)"),
    ("frac_nk", "NK cells, fraction or % of CD45+"),
    ("frac_cd8", "CD8 T cells, fraction or % of CD45+"),
    ("frac_cd4", "CD4 T cells, fraction or % of CD45+"),
    ("frac_b", "B cells, fraction or % of CD45+"),
)
PREVIEW_ROWS = 8


def _data_dir() -> Path:
    return get_settings().data_dir


def _staging_dir() -> Path:
    return get_settings().cache_dir / "uploads"


def _max_bytes() -> int:
    return get_settings().max_upload_bytes


# ------------------------------------------------------------------ dataset list


def _open_href(name: str) -> str:
    return dash.get_relative_path("/") + f"?dataset={name}"


def dataset_row(entry: DatasetEntry) -> html.Tr:
    """One dataset: provenance, counts, validation status, warnings, open link."""
    meta = entry.meta
    try:
        bundle = get_bundle(entry.name, entry.path.parent) if meta else None
        error = entry.error
    except DataError as err:
        bundle, error = None, str(err)
    if bundle is not None:
        cohort = bundle.cohort
        patients = len(cohort[list(schema.PATIENT_KEY)].drop_duplicates())
        counts = f"{patients:,} patients · {len(cohort):,} samples"
        counts += f" · {bundle.n_cells:,} cells" if bundle.has_cells else " · no cells"
        warnings = bundle.warnings
        status = dbc.Badge(
            f"valid, {len(warnings)} warning(s)" if warnings else "valid",
            color="warning" if warnings else "success",
            className="text-dark" if warnings else "",
        )
        details = (
            html.Details(
                [
                    html.Summary("warnings", className="small"),
                    html.Ul(
                        [html.Li(str(w)) for w in warnings[:20]], className="small"
                    ),
                ]
            )
            if warnings
            else None
        )
        action = dcc.Link(
            "Open",
            href=_open_href(entry.name),
            id={"type": f"{PREFIX}-open", "name": entry.name},
            className="btn btn-sm btn-outline-primary",
        )
    else:
        counts = "-"
        status = dbc.Badge("cannot be loaded", color="danger")
        details = html.Details(
            [
                html.Summary("errors", className="small"),
                html.Pre(error or "", className="small text-wrap"),
                html.P(
                    f"Check it with `python cli.py validate {entry.name}`.",
                    className="small text-muted",
                ),
            ]
        )
        action = None
    title = meta.title if meta else entry.name
    return html.Tr(
        [
            html.Td(
                [html.Strong(title), html.Div(entry.name, className="small text-muted")]
            ),
            html.Td(meta.source if meta else "-", className="small"),
            html.Td(meta.license if meta else "-", className="small"),
            html.Td(
                dbc.Badge("synthetic", color="secondary")
                if meta and meta.synthetic
                else ("real data" if meta else "-"),
                className="small",
            ),
            html.Td(counts, className="small"),
            html.Td([status, details]),
            html.Td(action),
        ]
    )


def dataset_table(data_dir: Path) -> html.Div:
    """Every dataset in ``data_dir`` as a table (or an empty state)."""
    entries = list_datasets(data_dir)
    if not entries:
        return html.Div(
            [
                html.P("No datasets yet.", className="lead"),
                html.P(
                    "Generate the demo with `python cli.py demo`, import your own "
                    "with `python cli.py import`, or upload a clinical table below.",
                    className="text-muted",
                ),
            ]
        )
    header = html.Thead(
        html.Tr(
            [
                html.Th(h)
                for h in (
                    "Dataset",
                    "Source",
                    "License",
                    "Data",
                    "Counts",
                    "Validation",
                    "",
                )
            ]
        )
    )
    return dbc.Table(
        [header, html.Tbody([dataset_row(e) for e in entries])],
        hover=True,
        responsive=True,
        size="sm",
        className="align-middle",
    )


# ------------------------------------------------------------------------ layout


def _mapping_form() -> html.Div:
    rows = [
        dbc.Row(
            [
                dbc.Col(dbc.Label(label, html_for=f"{MAP_TYPE}-{target}"), md=5),
                dbc.Col(
                    dcc.Dropdown(
                        id={"type": MAP_TYPE, "target": target},
                        options=[],
                        placeholder="(not in my table)",
                        clearable=True,
                    ),
                    md=7,
                ),
            ],
            className="mb-1 align-items-center",
        )
        for target, label in MAP_TARGETS
    ]
    return html.Div(rows)


def _values_grid() -> html.Div:
    """Editable table of the mapped categorical values (recodes, issue 14)."""
    columns = [
        {"field": "column", "headerName": "Column of your table"},
        {"field": "value", "headerName": "Value"},
        {"field": "rows", "headerName": "Rows", "width": 90},
        {"field": "reads_as", "headerName": "Read as"},
        {
            "field": "code",
            "headerName": "Code (edit; empty = missing)",
            "editable": True,
            "cellClass": "fw-bold",
        },
    ]
    return html.Div(
        [
            html.H4("Values of categorical columns", className="h5 mt-3"),
            html.P(
                "Footnote marks (*, †), case and surrounding spaces are handled "
                "automatically. Give a value the vocabulary does not know (“Read "
                "as: unknown”) a code such as PD, NE, anti-PD-1 or pre; an empty "
                "code makes it missing. The CLI takes the same as --recode "
                "'COLUMN:VALUE=CODE'.",
                className="text-muted small",
            ),
            dag.AgGrid(
                id=VALUES,
                columnDefs=columns,
                rowData=[],
                columnSize="responsiveSizeToFit",
                defaultColDef={"resizable": True, "sortable": True},
                dashGridOptions={"domLayout": "autoHeight", "singleClickEdit": True},
                style={"height": None},
            ),
        ]
    )


def layout(**_query) -> html.Div:
    """Dataset list and the upload form."""
    limit_mb = _max_bytes() / 2**20
    return html.Div(
        [
            html.H2("Data"),
            html.P(
                "Every dataset of this installation. Open one to explore it on every "
                "page (the choice is kept in the address bar).",
                className="text-muted",
            ),
            dcc.Loading(html.Div(dataset_table(_data_dir()), id=DATASETS)),
            html.H3("Upload a clinical table", className="mt-4 h4"),
            html.P(
                [
                    "CSV, TSV or Excel (.xlsx), one row per sample, up to "
                    f"{limit_mb:.0f} MB. CIBERSORT output, expression matrices and "
                    ".h5ad files are imported with ",
                    html.Code("python cli.py import"),
                    " (see README, 'Use your own data').",
                ],
                className="text-muted",
            ),
            dcc.Store(id=UPLOAD_STORE),
            dcc.Upload(
                id=UPLOAD,
                children=html.Div(
                    ["Drag and drop a table here, or ", html.A("choose a file")]
                ),
                max_size=_max_bytes(),
                multiple=False,
                className="upload-box border border-2 rounded p-4 text-center",
                style={"borderStyle": "dashed"},
            ),
            dcc.Loading(html.Div(id=UPLOAD_STATUS, className="mt-2")),
            html.Div(
                [
                    html.H4("Preview", className="h5 mt-3"),
                    html.Div(id=PREVIEW, className="small"),
                    html.H4("Which column is which?", className="h5 mt-3"),
                    html.P(
                        "Usual names are recognised; correct anything that is wrong. "
                        "Drug names (pembrolizumab, ...), Responder/Non-responder, "
                        "percentages and survival in days are converted, and the "
                        "report says so.",
                        className="text-muted small",
                    ),
                    dbc.Row(
                        [
                            dbc.Col(_mapping_form(), lg=7),
                            dbc.Col(
                                [
                                    dbc.Label(
                                        "Tumor type for every row", html_for=SET_TUMOR
                                    ),
                                    dbc.Input(
                                        id=SET_TUMOR,
                                        placeholder="e.g. melanoma",
                                    ),
                                    dbc.Label(
                                        "Treatment for every row",
                                        html_for=SET_TREATMENT,
                                        className="mt-2",
                                    ),
                                    dbc.Input(
                                        id=SET_TREATMENT,
                                        placeholder="e.g. nivolumab or anti-PD-1",
                                    ),
                                    dbc.Label(
                                        "Dataset name", html_for=NAME, className="mt-2"
                                    ),
                                    dbc.Input(
                                        id=NAME, placeholder="letters, digits, _ - ."
                                    ),
                                    dbc.Label(
                                        "Title", html_for=TITLE, className="mt-2"
                                    ),
                                    dbc.Input(
                                        id=TITLE,
                                        placeholder="shown in the dataset list",
                                    ),
                                    dbc.Label(
                                        "License of the data",
                                        html_for=LICENSE,
                                        className="mt-2",
                                    ),
                                    dbc.Input(
                                        id=LICENSE,
                                        placeholder="e.g. CC-BY-4.0, internal",
                                    ),
                                    dbc.Checkbox(
                                        id=REPLACE,
                                        label="Replace a dataset of the same name",
                                        value=False,
                                        className="mt-2",
                                    ),
                                    html.Div(
                                        [
                                            dbc.Button(
                                                "Check",
                                                id=CHECK,
                                                color="secondary",
                                                className="me-2",
                                            ),
                                            dbc.Button(
                                                "Save dataset", id=SAVE, color="primary"
                                            ),
                                        ],
                                        className="mt-3",
                                    ),
                                ],
                                lg=5,
                            ),
                        ]
                    ),
                    _values_grid(),
                    dcc.Loading(html.Div(id=REPORT, className="mt-3")),
                ],
                id=MAPPING_CARD,
                hidden=True,
            ),
            html.Div(id=SAVED, className="mt-2"),
        ]
    )


# --------------------------------------------------------------------- callbacks


def _error(err: DataError, headline: str) -> dbc.Alert:
    return dbc.Alert(
        [
            html.Strong(headline),
            html.Ul(
                [html.Li(str(p)) for p in err.problems[:20]], className="mb-0 mt-2"
            ),
        ],
        color="danger",
    )


def _preview_table(frame) -> dbc.Table:
    head = frame.head(PREVIEW_ROWS)
    return dbc.Table.from_dataframe(head, size="sm", striped=True, responsive=True)


N_TARGETS = len(MAP_TARGETS)


@callback(
    Output(UPLOAD_STORE, "data"),
    Output(UPLOAD_STATUS, "children"),
    Output(PREVIEW, "children"),
    Output(MAPPING_CARD, "hidden"),
    Output({"type": MAP_TYPE, "target": ALL}, "options"),
    Output({"type": MAP_TYPE, "target": ALL}, "value"),
    Output(NAME, "value"),
    Input(UPLOAD, "contents"),
    State(UPLOAD, "filename"),
    prevent_initial_call=True,
)
def receive_upload(contents, filename):
    """Check size and format, stage the file, show a preview and guessed mapping."""
    blank = [no_update] * N_TARGETS
    file = upload.display_name(filename)
    try:
        raw = upload.decode_upload(contents, filename, max_bytes=_max_bytes())
        token = upload.stage_upload(raw, _staging_dir())
        frame = upload.read_staged(token, file, _staging_dir())
    except DataError as err:
        alert = _error(err, f"{file} cannot be read.")
        return None, alert, None, True, blank, blank, no_update
    guessed = clinical_import.guess_mapping(frame.columns)
    options = [{"label": c, "value": c} for c in frame.columns]
    values = [guessed.get(t, "").split("|")[0] or None for t, _ in MAP_TARGETS]
    status = dbc.Alert(
        f"{file}: {len(frame):,} rows, {frame.shape[1]} columns. Check the mapping, "
        "then press Check.",
        color="info",
    )
    return (
        {"token": token, "filename": file},
        status,
        _preview_table(frame),
        False,
        [options] * N_TARGETS,
        values,
        upload.suggest_dataset_name(file),
    )


def _mapping(mapping_values) -> dict[str, str]:
    return {
        target: value
        for (target, _), value in zip(MAP_TARGETS, mapping_values or [], strict=False)
        if value
    }


@callback(
    Output(VALUES, "rowData"),
    Input({"type": MAP_TYPE, "target": ALL}, "value"),
    State(UPLOAD_STORE, "data"),
    prevent_initial_call=True,
)
def fill_values(mapping_values, store_data):
    """List the distinct values of the mapped categorical columns to recode."""
    if not store_data:
        return []
    try:
        frame = upload.read_staged(
            store_data.get("token"),
            store_data.get("filename", "upload"),
            _staging_dir(),
        )
    except DataError:
        return []
    return upload.value_table(frame, _mapping(mapping_values))


def _mapped(store_data, mapping_values, tumor, treatment, name, value_rows=None):
    """Cohort table and report from the staged upload and the form."""
    if not store_data:
        raise DataError("Upload a table first.", file="upload")
    frame = upload.read_staged(
        store_data.get("token"), store_data.get("filename", "upload"), _staging_dir()
    )
    mapping = _mapping(mapping_values)
    constants = {}
    if tumor and "tumor_type" not in mapping:
        constants["tumor_type"] = tumor.strip()
    if treatment and "treatment" not in mapping:
        constants["treatment"] = treatment.strip()
    return clinical_import.build_cohort(
        frame,
        file=store_data.get("filename", "upload"),
        mapping=mapping,
        constants=constants,
        cohort_name=(name or "uploaded").strip() or "uploaded",
        guess=False,
        recodes=recode.recodes_from_rows(value_rows or []),
    )


def _report_view(report, cohort) -> html.Div:
    notes = html.Ul([html.Li(n) for n in report.notes], className="small")
    warnings = (
        dbc.Alert(
            [
                html.Strong("Warnings"),
                html.Ul([html.Li(str(w)) for w in report.warnings[:20]]),
            ],
            color="warning",
            className="small",
        )
        if report.warnings
        else None
    )
    return html.Div(
        [
            dbc.Alert(
                f"Valid: {len(cohort):,} samples of "
                f"{len(cohort[list(schema.PATIENT_KEY)].drop_duplicates()):,} "
                "patients. What was mapped:",
                color="success",
                className="mb-1",
            ),
            notes,
            warnings,
        ]
    )


@callback(
    Output(REPORT, "children"),
    Input(CHECK, "n_clicks"),
    State(UPLOAD_STORE, "data"),
    State({"type": MAP_TYPE, "target": ALL}, "value"),
    State(SET_TUMOR, "value"),
    State(SET_TREATMENT, "value"),
    State(NAME, "value"),
    State(VALUES, "virtualRowData"),
    prevent_initial_call=True,
)
def check_upload(_n, store_data, mapping_values, tumor, treatment, name, rows=None):
    """Validation report of the mapped table (nothing is written)."""
    try:
        cohort, report = _mapped(
            store_data, mapping_values, tumor, treatment, name, rows
        )
    except DataError as err:
        return _error(err, "Not valid yet: fix these and press Check again.")
    return _report_view(report, cohort)


@callback(
    Output(SAVED, "children"),
    Output(DATASETS, "children"),
    Input(SAVE, "n_clicks"),
    State(UPLOAD_STORE, "data"),
    State({"type": MAP_TYPE, "target": ALL}, "value"),
    State(SET_TUMOR, "value"),
    State(SET_TREATMENT, "value"),
    State(NAME, "value"),
    State(TITLE, "value"),
    State(LICENSE, "value"),
    State(REPLACE, "value"),
    State(VALUES, "virtualRowData"),
    prevent_initial_call=True,
)
def save_upload(
    _n,
    store_data,
    mapping_values,
    tumor,
    treatment,
    name,
    title,
    license,
    replace,
    rows=None,
):
    """Validate and write the dataset atomically; refuse to overwrite unless ticked."""
    data_dir = _data_dir()
    try:
        name = check_dataset_name((name or "").strip())
        if store.dataset_exists(data_dir, name) and not replace:
            return (
                dbc.Alert(
                    f"A dataset named `{name}` already exists. Choose another name, "
                    "or tick 'Replace a dataset of the same name' to overwrite it.",
                    color="warning",
                ),
                no_update,
            )
        cohort, report = _mapped(
            store_data, mapping_values, tumor, treatment, name, rows
        )
        meta = store.make_meta(
            name,
            title=(title or "").strip() or None,
            license=(license or "").strip() or None,
            source=f"uploaded table {store_data.get('filename')}",
            files=[store_data.get("filename", "upload")],
            report=report,
        )
        store.write_dataset(data_dir, name, cohort, meta, force=bool(replace))
    except DataError as err:
        return _error(err, "Not saved."), no_update
    upload.discard_staged(store_data.get("token"), _staging_dir())
    saved = dbc.Alert(
        [
            f"Saved as `{name}` ({len(cohort):,} samples). ",
            dcc.Link("Open it", href=_open_href(name), className="alert-link"),
            ".",
        ],
        color="success",
    )
    return saved, dataset_table(data_dir)
