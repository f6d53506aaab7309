"""Export menus: one per figure card, and the sidebar's export-all and data downloads.

Figures are rebuilt on the server from the same inputs the page used (global filter
Store + the page's state Store) through ``figures.reports.build_panels``, then
rendered by ``figures.export``. Nothing large travels through the browser except the
file itself. ``figure_card(..., export=(page, panel))`` adds the per-figure menu.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dash
import dash_bootstrap_components as dbc
from dash import ALL, MATCH, Input, Output, State, callback, ctx, dcc, html

from components import ids
from config import get_settings
from data.errors import DataError
from data.view import cohort_view
from figures import export
from figures.reports import PAGE_BUILDERS, build_panels

log = logging.getLogger("icb.export")

FORMAT_OPTIONS = [
    {"label": "PNG", "value": "png"},
    {"label": "SVG", "value": "svg"},
    {"label": "PDF", "value": "pdf"},
]
PRESET_OPTIONS = [{"label": p.label, "value": p.key} for p in export.PRESETS.values()]
POINT_OPTIONS = [
    {"label": "all points, as an image layer in vector axes", "value": "raster"},
    {"label": "seeded stratified sample, as vector points", "value": "sample"},
]

# sidebar (static ids)
ALL_SCOPE = "export-all-scope"
ALL_FORMAT = "export-all-format"
ALL_PRESET = "export-all-preset"
ALL_CAPTION = "export-all-caption"
ALL_POINTS = "export-all-points"
ALL_GO = "export-all-go"
ALL_PROGRESS = "export-all-progress"
ALL_STEP = "export-all-step"
ALL_STATUS = "export-all-status"
ALL_DOWNLOAD = "export-all-download"
DATA_COHORT = "export-data-cohort"
DATA_PATIENTS = "export-data-patients"
DATA_STATUS = "export-data-status"
DATA_DOWNLOAD = "export-data-download"


def menu_id(part: str, page: str, panel: str) -> dict[str, str]:
    """Pattern-matching id of one part of a figure's export menu."""
    return {"type": f"export-{part}", "page": page, "panel": panel}


def _settings_controls(make_id, *, custom: bool = True) -> list:
    """Format, size preset, optional custom size, caption tick, many-points mode."""
    controls = [
        dbc.Label("Format", className="small fw-semibold mb-0"),
        dbc.RadioItems(
            id=make_id("format"),
            options=FORMAT_OPTIONS,
            value="png",
            inline=True,
            className="mb-2",
        ),
        dbc.Label("Size", className="small fw-semibold mb-0"),
        dbc.Select(
            id=make_id("preset"),
            options=PRESET_OPTIONS
            if custom
            else [o for o in PRESET_OPTIONS if o["value"] != "custom"],
            value="slide",
            size="sm",
            className="mb-2",
        ),
    ]
    if custom:
        controls.append(
            html.Div(
                [
                    dbc.Input(
                        id=make_id("width"),
                        disabled=True,
                        type="number",
                        min=100,
                        max=4000,
                        value=900,
                        size="sm",
                        placeholder="width",
                    ),
                    html.Span("×", className="px-1"),
                    dbc.Input(
                        id=make_id("height"),
                        disabled=True,
                        type="number",
                        min=100,
                        max=4000,
                        value=600,
                        size="sm",
                        placeholder="height",
                    ),
                    html.Span("px ×", className="px-1 text-nowrap"),
                    dbc.Input(
                        id=make_id("scale"),
                        disabled=True,
                        type="number",
                        min=0.5,
                        max=10,
                        step=0.5,
                        value=2,
                        size="sm",
                        placeholder="scale",
                    ),
                ],
                className="d-flex align-items-center mb-1 export-custom",
                title="Used with 'Custom size'",
            )
        )
        controls.append(
            html.Div(
                "Custom: width × height in pixels, × scale for PNG.",
                className="form-text mt-0 mb-2",
            )
        )
    controls += [
        dbc.Checklist(
            id=make_id("caption"),
            options=[{"label": "Caption footnote (provenance)", "value": "on"}],
            value=[],
            switch=True,
            className="mb-2 small",
        ),
        dbc.Label("Many cells (SVG/PDF)", className="small fw-semibold mb-0"),
        dbc.RadioItems(
            id=make_id("points"),
            options=point_options(disabled=True),
            value="raster",
            className="mb-1 small",
        ),
        html.Div(
            [
                dbc.Input(
                    id=make_id("max-points"),
                    type="number",
                    min=100,
                    max=500_000,
                    step=100,
                    value=export.ExportSettings().max_vector_points,
                    size="sm",
                    disabled=True,
                    placeholder="points",
                    style={"minWidth": "5.5rem"},
                ),
                html.Span("points, seed", className="px-1 text-nowrap small"),
                dbc.Input(
                    id=make_id("seed"),
                    type="number",
                    min=0,
                    step=1,
                    value=export.ExportSettings().seed,
                    size="sm",
                    disabled=True,
                    placeholder="seed",
                    style={"maxWidth": "4.5rem"},
                ),
            ],
            className="d-flex align-items-center mb-2 export-sample",
            title="Used with SVG or PDF and 'seeded stratified sample': points "
            "drawn, and the seed (same seed, same points)",
        ),
    ]
    return controls


def point_options(*, disabled: bool) -> list[dict]:
    """The many-points choices, greyed out when the format is PNG."""
    return [dict(o, disabled=disabled) for o in POINT_OPTIONS]


def field_states(fmt, preset, points) -> dict[str, bool]:
    """Which menu fields are disabled for a format, size preset and points mode.

    Custom width, height and scale are used only by the custom preset; the
    many-points mode only by SVG and PDF; the sample's size and seed only by SVG
    or PDF with a sample.
    """
    vector = fmt in ("svg", "pdf")
    return {
        "custom": preset != "custom",
        "points": not vector,
        "sample": not (vector and points == "sample"),
    }


def export_menu(page: str, panel: str) -> html.Div:
    """The 'Export' button of a figure card and its popover menu."""

    def make_id(part: str) -> dict[str, str]:
        return menu_id(part, page, panel)

    button = dbc.Button(
        "Export",
        id=make_id("open"),
        size="sm",
        color="secondary",
        outline=True,
        className="export-open",
        title="Download this figure as PNG, SVG or PDF with its provenance",
    )
    body = [
        *_settings_controls(make_id),
        dbc.Button(
            "Download",
            id=make_id("go"),
            size="sm",
            color="primary",
            className="w-100",
        ),
        dcc.Loading(
            html.Div(id=make_id("status"), className="small mt-2"),
            type="dot",
        ),
        dcc.Download(id=make_id("download")),
    ]
    return html.Div(
        [
            button,
            dbc.Popover(
                dbc.PopoverBody(body, className="export-menu"),
                target=make_id("open"),
                trigger="click",
                placement="bottom-end",
                style={"minWidth": "320px"},
            ),
        ],
        className="export-menu-wrap",
    )


def _settings_from(
    fmt, preset, width, height, scale, caption, points, max_points=None, seed=None
):
    state = field_states(fmt, preset, points)
    sample, custom = not state["sample"], not state["custom"]
    return export.ExportSettings.from_mapping(
        {
            "format": fmt,
            "preset": preset,
            "width": width if custom else None,
            "height": height if custom else None,
            "scale": scale if custom else None,
            "caption": bool(caption),
            "points": points,
            # greyed-out fields are not used (their stale values cannot fail)
            "max_vector_points": max_points if sample else None,
            "seed": seed if sample else None,
        }
    )


def _view_state(view, pages: dict[str, dict]) -> dict:
    """What a figure is drawn from, as hashed into file names."""
    return export.document_view(
        {
            "dataset": view.bundle.meta.name,
            "filter": view.filter.to_dict(),
            "pages": pages,
        }
    )


@callback(
    Output(menu_id("width", MATCH, MATCH), "disabled"),
    Output(menu_id("height", MATCH, MATCH), "disabled"),
    Output(menu_id("scale", MATCH, MATCH), "disabled"),
    Output(menu_id("points", MATCH, MATCH), "options"),
    Output(menu_id("max-points", MATCH, MATCH), "disabled"),
    Output(menu_id("seed", MATCH, MATCH), "disabled"),
    Input(menu_id("format", MATCH, MATCH), "value"),
    Input(menu_id("preset", MATCH, MATCH), "value"),
    Input(menu_id("points", MATCH, MATCH), "value"),
    # the layout starts greyed out for its defaults (PNG, slide): no initial call,
    # which would be one request per figure card on every page load
    prevent_initial_call=True,
)
def enable_menu_fields(fmt, preset, points):
    """Grey out the fields the chosen format and size do not use."""
    state = field_states(fmt, preset, points)
    custom = state["custom"]
    return (
        custom,
        custom,
        custom,
        point_options(disabled=state["points"]),
        state["sample"],
        state["sample"],
    )


def _view(filter_data):
    settings = get_settings()
    return cohort_view(
        filter_data,
        data_dir=settings.data_dir,
        default_dataset=settings.default_dataset,
    )


def _page_states(states: list, state_ids: list) -> dict[str, dict]:
    """Page id -> control state, from the page-state Stores on screen."""
    return {
        sid["page"]: dict(state or {})
        for sid, state in zip(state_ids, states or [], strict=False)
        if isinstance(sid, dict)
    }


def _error(err: DataError) -> dbc.Alert:
    message = str(err.problems[0]) if err.problems else str(err)
    return dbc.Alert(message, color="warning", className="p-2 mb-0 small")


@callback(
    Output(menu_id("download", MATCH, MATCH), "data"),
    Output(menu_id("status", MATCH, MATCH), "children"),
    Input(menu_id("go", MATCH, MATCH), "n_clicks"),
    State(menu_id("format", MATCH, MATCH), "value"),
    State(menu_id("preset", MATCH, MATCH), "value"),
    State(menu_id("width", MATCH, MATCH), "value"),
    State(menu_id("height", MATCH, MATCH), "value"),
    State(menu_id("scale", MATCH, MATCH), "value"),
    State(menu_id("caption", MATCH, MATCH), "value"),
    State(menu_id("points", MATCH, MATCH), "value"),
    State(menu_id("max-points", MATCH, MATCH), "value"),
    State(menu_id("seed", MATCH, MATCH), "value"),
    State(ids.FILTER_STORE, "data"),
    State(ids.page_state(ALL), "data"),
    State(ids.page_state(ALL), "id"),
    prevent_initial_call=True,
)
def download_figure(
    _clicks,
    fmt,
    preset,
    width,
    height,
    scale,
    caption,
    points,
    max_points,
    seed,
    flt,
    states,
    sids,
):
    """Rebuild this card's panel on the server and send it in the chosen format."""
    page, key = ctx.triggered_id["page"], ctx.triggered_id["panel"]
    try:
        settings = _settings_from(
            fmt, preset, width, height, scale, caption, points, max_points, seed
        )
        state = _page_states(states, sids).get(page, {})
        view = _view(flt)
        panels = build_panels(page, view, state)
        panel = next((p for p in panels if p.key == key), None)
        if panel is None:
            return dash.no_update, dbc.Alert(
                "This figure is not available for the current selection.",
                color="warning",
                className="p-2 mb-0 small",
            )
        out = export.export_figure(
            panel,
            settings,
            page=page,
            view_state=_view_state(view, {page: state}),
        )
    except DataError as err:
        return dash.no_update, _error(err)
    size = settings.size()
    note = f"Saved {out.filename}"
    if fmt == "png":
        note += f" ({size.pixel_width} × {size.pixel_height} px)"
    return dcc.send_bytes(out.content, out.filename), html.Span(
        note, className="text-success"
    )


# ------------------------------------------------------------------- sidebar


def export_all_panel() -> html.Div:
    """Sidebar block: export every figure (zip) and download the data as CSV."""

    def make_id(part: str) -> str:
        return f"export-all-{part}"

    return html.Details(
        [
            html.Summary("Export figures and data", className="h6 mb-2"),
            dbc.RadioItems(
                id=ALL_SCOPE,
                options=[
                    {"label": "this page", "value": "page"},
                    {"label": "all pages", "value": "all"},
                ],
                value="page",
                inline=True,
                className="small mb-2",
            ),
            *_settings_controls(make_id, custom=False),
            dbc.Button(
                "Export all figures (zip)",
                id=ALL_GO,
                size="sm",
                color="primary",
                className="w-100",
                title="Every figure in the chosen format and size, the CSV behind "
                "each, and settings.json to redraw them with `cli.py export`",
            ),
            dbc.Progress(
                id=ALL_PROGRESS, value=0, className="mt-2", style={"height": "14px"}
            ),
            html.Div(id=ALL_STEP, className="small text-muted mt-1"),
            html.Div(id=ALL_STATUS, className="small mt-1"),
            dcc.Download(id=ALL_DOWNLOAD),
            html.Div(
                [
                    html.Div("Data (CSV)", className="small fw-semibold mt-3"),
                    dbc.Button(
                        "Filtered cohort table",
                        id=DATA_COHORT,
                        size="sm",
                        color="secondary",
                        outline=True,
                        className="w-100 mt-1",
                    ),
                    dbc.Button(
                        "Per-patient metrics",
                        id=DATA_PATIENTS,
                        size="sm",
                        color="secondary",
                        outline=True,
                        className="w-100 mt-1",
                        title="NK metric, response and CD8 gate fraction per patient "
                        "(NK and CD8 page settings)",
                    ),
                    dcc.Loading(
                        html.Div(id=DATA_STATUS, className="small mt-1"), type="dot"
                    ),
                    dcc.Download(id=DATA_DOWNLOAD),
                ]
            ),
        ],
        className="export-all-panel border-top pt-3 mt-2 mb-3",
    )


def pages_on_screen(menu_ids: list, state_ids: list) -> list[str]:
    """Page ids whose export menus or state Stores are on screen, in builder order."""
    present = {i["page"] for i in [*(menu_ids or []), *(state_ids or [])]}
    return [page for page in PAGE_BUILDERS if page in present]


@callback(
    Output(ALL_DOWNLOAD, "data"),
    Output(ALL_STATUS, "children"),
    Input(ALL_GO, "n_clicks"),
    State(ALL_SCOPE, "value"),
    State("export-all-format", "value"),
    State("export-all-preset", "value"),
    State("export-all-caption", "value"),
    State("export-all-points", "value"),
    State("export-all-max-points", "value"),
    State("export-all-seed", "value"),
    State(ids.FILTER_STORE, "data"),
    State(ids.page_state(ALL), "data"),
    State(ids.page_state(ALL), "id"),
    State(menu_id("go", ALL, ALL), "id"),
    background=True,
    progress=[
        Output(ALL_PROGRESS, "value"),
        Output(ALL_PROGRESS, "label"),
        Output(ALL_STEP, "children"),
    ],
    progress_default=[0, "", ""],
    # the bar is polled twice a second (Dash's default: once); each figure moves it
    interval=500,
    running=[
        (Output(ALL_GO, "disabled"), True, False),
        (Output(ALL_PROGRESS, "striped"), True, False),
        (Output(ALL_PROGRESS, "animated"), True, False),
    ],
    prevent_initial_call=True,
)
def export_all(
    set_progress,
    _clicks,
    scope,
    fmt,
    preset,
    caption,
    points,
    max_points,
    seed,
    flt,
    states,
    sids,
    menus,
):
    """Zip every figure of this page (or all pages), their CSVs and settings.json."""
    try:
        settings = _settings_from(
            fmt, preset, None, None, None, caption, points, max_points, seed
        )
        view = _view(flt)
        known = _page_states(states, sids)
        pages = list(PAGE_BUILDERS) if scope == "all" else pages_on_screen(menus, sids)
        if not pages:
            return dash.no_update, dbc.Alert(
                "This page has no figures to export; choose 'all pages'.",
                color="info",
                className="p-2 mb-0 small",
            )
        document = export.settings_document(
            filter_state=view.filter.to_dict(),
            # pages not on screen are drawn with their defaults ({}), recorded so
            pages={page: known.get(page, {}) for page in pages},
            export=settings,
            dataset=view.bundle.meta.name,
        )

        data = export.export_zip(
            view, document, progress=lambda *step: set_progress(progress_values(*step))
        )
    except DataError as err:
        return dash.no_update, _error(err)
    name = export.zip_name(document, "all-pages" if scope == "all" else pages[0])
    return dcc.send_bytes(data, name), html.Span(
        f"Saved {name}", className="text-success"
    )


def progress_values(done: int, total: int, what: str) -> tuple[int, str, str]:
    """Bar value (%), bar label and step text for one progress report of an export.

    While the figures are being built (``total`` 0) the bar shows a sliver so the
    job is seen to have started.
    """
    if total <= 0:
        return 3, "", f"Building figures: {what.removeprefix('building ')} ..."
    step = "Done." if what == "done" else f"Exporting {what} ..."
    return max(3, round(100 * done / total)), f"{done}/{total}", step


@callback(
    Output("export-all-points", "options"),
    Output("export-all-max-points", "disabled"),
    Output("export-all-seed", "disabled"),
    Input("export-all-format", "value"),
    Input("export-all-points", "value"),
    prevent_initial_call=True,
)
def enable_export_all_fields(fmt, points):
    """Grey out the sidebar's many-points fields the chosen format does not use."""
    state = field_states(fmt, None, points)
    return (
        point_options(disabled=state["points"]),
        state["sample"],
        state["sample"],
    )


def _csv_name(dataset: str, what: str) -> str:
    day = datetime.now(UTC).strftime("%Y%m%d")
    return export.safe_name(f"icb-{dataset}-{what}-{day}") + ".csv"


@callback(
    Output(DATA_DOWNLOAD, "data"),
    Output(DATA_STATUS, "children"),
    Input(DATA_COHORT, "n_clicks"),
    Input(DATA_PATIENTS, "n_clicks"),
    State(ids.FILTER_STORE, "data"),
    State(ids.page_state(ALL), "data"),
    State(ids.page_state(ALL), "id"),
    prevent_initial_call=True,
)
def download_data(_cohort, _patients, flt, states, sids):
    """The filtered cohort table, or per-patient NK metric / response / gate, as CSV."""
    try:
        view = _view(flt)
        dataset = view.bundle.meta.name
        if ctx.triggered_id == DATA_COHORT:
            table, name = view.samples, _csv_name(dataset, "cohort-filtered")
        else:
            table = export.patient_metrics_table(view, _page_states(states, sids))
            name = _csv_name(dataset, "patient-metrics")
    except DataError as err:
        return dash.no_update, _error(err)
    return dcc.send_string(table.to_csv(index=False), name), html.Span(
        f"Saved {name} ({len(table):,} rows)", className="text-success"
    )
