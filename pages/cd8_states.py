"""Page `/cd8-states`: CD8 differentiation states, a phenotype gate, and its link to
NK and response.

Callbacks are thin: they parse the controls into the page state, ask
``figures.cd8`` (which uses ``data.cells`` and ``analysis.gating``) and return. The UMAP
is drawn once per filter; recolouring sends a ``Patch`` with one ``uint8`` typed array
and never the coordinates again. Component ids, the controls and the figure cards are
built in ``components.cd8_ui``. Every page key lives in the URL; what a link asks for
is applied once the data are known, and a notice names what could not be honoured.
"""

from __future__ import annotations

import json

import dash
import dash_bootstrap_components as dbc
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    Patch,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)
from dash.exceptions import PreventUpdate

from analysis import gating
from analysis.nk_metrics import available_metrics
from analysis.response import DEFINITIONS, available_definitions
from components import ids
from components.cd8_ui import (
    ACCEPT,
    ADD,
    ADD_GENE,
    BOX,
    BOX_CAPTION,
    CLEAR_HIGHLIGHT,
    COLOR,
    COMPOSITION,
    COMPOSITION_CAPTION,
    CONTENT,
    DEFINITION,
    DOTPLOT,
    DRAWN,
    EMPTY,
    ERROR,
    GATE,
    GATE_COUNT,
    GATE_NAME,
    GATE_ROWS,
    GATE_SPEC,
    GENE,
    HIGHLIGHT,
    HIST,
    HOVER,
    LINK,
    LINK_NOTICE,
    METRIC,
    MISSING,
    NK,
    NK_CAPTION,
    NOTE,
    PREFIX,
    REMOVE,
    RESET,
    SELECTION,
    SENSITIVITY,
    SENSITIVITY_CAPTION,
    SIGN,
    STATE,
    THRESHOLD,
    UMAP,
    UMAP_CAPTION,
    URL_SYNC,
    first_value,
    gate_from_controls,
    gate_rows,
    gene_options_for,
    page_content,
    state_dict,
)
from components.common import (
    LinkFallback,
    data_error_alert,
    empty_state,
    link_notice,
)
from config import get_settings
from data.cells import cell_store
from data.errors import DataError
from data.view import cohort_view
from figures import cd8
from figures import de as cd8_de
from figures.template import empty_figure

dash.register_page(__name__, path="/cd8-states", name="CD8 states", order=2)


def _view(filter_data):
    settings = get_settings()
    return cohort_view(
        filter_data,
        data_dir=settings.data_dir,
        default_dataset=settings.default_dataset,
    )


def _genes_of(filter_data) -> list[str]:
    try:
        store = cell_store(_view(filter_data).bundle)
    except DataError:
        return []
    return list(store.var_names) if store is not None else []


def layout(**query) -> html.Div:
    """Page layout; controls start from the URL query. What the link asked for is
    kept in a Store until the data are known: the controls callback then sets each
    control, and names every value it could not honour in a notice."""
    raw = {key: first_value(query.get(key)) for key in cd8.PageState().to_dict()}
    link = {key: raw[key] for key in raw if key in query}
    color = cd8.match_choice(raw["color"], cd8.COLOR_CHOICES)
    color = color if color in cd8.COLOR_CHOICES else cd8.DEFAULT_COLOR
    try:
        gate = gating.parse_gate(raw["gate"], name=raw["gate_name"])
    except gating.GateError:
        gate = gating.default_gate()  # the controls callback says so
    accept = raw["accept_missing"].lower() in {"1", "true", "yes", "on"}
    definition = raw["definition"] if raw["definition"] in DEFINITIONS else None
    content = page_content(
        color=color,
        gene=raw["gene"],
        metric=raw["metric"],
        definition=definition,
        gate_name=gate.name,
        accept=accept,
    )
    initial_state = state_dict(
        color,
        raw["gene"],
        gating.gate_to_string(gate),
        gate.name,
        accept,
        raw["metric"],
        definition,
        raw["highlight"],
    )
    return html.Div(
        [
            dcc.Store(id=STATE, data=initial_state),
            dcc.Store(id=LINK, data=link),
            dcc.Store(id=URL_SYNC),
            dcc.Store(id=GATE_SPEC, data=gating.gate_to_string(gate)),
            dcc.Store(id=GATE, data=gating.gate_to_string(gate)),
            dcc.Store(id=HIGHLIGHT, data=raw["highlight"] or None),
            dcc.Store(id=DRAWN),
            html.H2("CD8 differentiation states", className="h4"),
            html.Div(id=NOTE, className="text-muted small mb-3"),
            html.Div(id=LINK_NOTICE),
            html.Div(id=ERROR),
            html.Div(id=EMPTY, hidden=True),
            content,
        ]
    )


# ------------------------------------------------------------------ control options
@callback(
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(DEFINITION, "options"),
    Output(DEFINITION, "value"),
    Output(NOTE, "children"),
    Output(ERROR, "children"),
    Output(EMPTY, "children"),
    Output(EMPTY, "hidden"),
    Output(CONTENT, "style"),
    Output(LINK_NOTICE, "children"),
    Output(LINK, "data"),
    Output(HIGHLIGHT, "data"),
    Input(ids.FILTER_STORE, "data"),
    State(LINK, "data"),
    State(METRIC, "value"),
    State(DEFINITION, "value"),
    State(HIGHLIGHT, "data"),
)
def update_controls(filter_data, link, metric, definition, highlight):
    """Metric and response choices of the dataset, set to what the link asked for
    on first load (a notice names each value not honoured); empty and error states.

    The link's values come from the ``LINK`` Store, not from the dropdowns: Dash 4's
    ``dcc.Dropdown`` drops a ``value`` absent from its ``options`` when it mounts, and
    the options are only known here, so the dropdowns hand back ``None``.
    """
    if filter_data is None:
        raise PreventUpdate
    no = dash.no_update
    try:
        view = _view(filter_data)
    except DataError as err:
        hidden = {"display": "none"}
        return [], no, [], no, "", data_error_alert(err), no, True, hidden, None, no, no
    samples = view.samples
    store = cell_store(view.bundle)
    note = f"{view.bundle.meta.label} · {view.filter.describe()}"
    if store is not None:
        note += f" · {store.n_cells:,} CD8 cells in the dataset"
    from_link = link is not None
    asked = (
        dict(link)
        if from_link
        else {"metric": metric, "definition": definition, "highlight": highlight}
    )
    page = cd8.parse_state(
        asked, samples=samples, genes=store.var_names if store is not None else None
    )
    metrics = [{"label": m.label, "value": m.key} for m in available_metrics(samples)]
    defs = available_definitions(samples) if not samples.empty else []
    def_options = [{"label": DEFINITIONS[k].label, "value": k} for k in defs]
    fallbacks = list(page.fallbacks)
    message = ""
    data = None
    if store is None or store.umap is None:
        message = empty_state(
            "This dataset has no CD8 single-cell data with a UMAP.",
            "Choose a dataset with cd8_cells.h5ad, or run `python cli.py prepare` on "
            "your h5ad to compute one.",
        )
    else:
        data = cd8.cached_cell_data(view, page)
        if data is None:
            message = empty_state(
                "No CD8 cells in the filtered samples.",
                "Single-cell data exist for some samples only (pre-treatment in the "
                "demo); remove a filter in the sidebar.",
            )
    shown_highlight = ""
    if data is not None:
        shown_highlight, missing = cd8.check_highlight(page, data.patients)
        fallbacks += [missing] if missing else []
    elif page.highlight:
        fallbacks.append(
            cd8.Fallback(
                "highlight",
                cd8.KEY_LABELS["highlight"],
                page.highlight,
                "no highlighted patient",
                "has no CD8 cells in this view",
            )
        )
    notice = (
        link_notice([LinkFallback(*f) for f in fallbacks], id=f"{PREFIX}-link-alert")
        if from_link
        else no
    )
    highlight_out = shown_highlight or None
    if highlight_out == highlight:
        highlight_out = no  # unchanged: do not redraw the UMAP for nothing
    return (
        metrics,
        page.metric or None,
        def_options,
        page.definition if defs else None,
        note,
        None,
        message or None,
        not message,
        {"display": "none"} if message else {},
        notice,
        None,
        highlight_out,
    )


@callback(
    Output(GENE, "options"),
    Output(GENE, "value"),
    Input(GENE, "search_value"),
    Input(ids.FILTER_STORE, "data"),
    Input(GENE, "value"),
)
def gene_options(search, filter_data, value):
    """Genes matching the typed text (the list of all genes never goes to the page);
    a gene the dataset lacks is replaced by a default (GZMB, CD69 or the first)."""
    if filter_data is None:
        raise PreventUpdate
    genes = _genes_of(filter_data)
    chosen = value
    if genes and value:
        value = cd8.match_choice(value, genes)  # a link may say gzmb for GZMB
    if genes and value not in genes:
        value = next((g for g in ("GZMB", "CD69") if g in genes), genes[0])
    # writing back an unchanged value would fire the UMAP recolour again (a full
    # redraw at 10^6 cells) on every key typed in the search box
    unchanged = value == chosen
    options = gene_options_for(genes, search, keep=[value])
    return options, dash.no_update if unchanged else value


@callback(
    Output(ADD_GENE, "options"),
    Input(ADD_GENE, "search_value"),
    Input(ids.FILTER_STORE, "data"),
    Input(ADD_GENE, "value"),
)
def add_gene_options(search, filter_data, value):
    """Genes that can be added to the gate."""
    if filter_data is None:
        raise PreventUpdate
    return gene_options_for(_genes_of(filter_data), search, keep=[value])


@callback(
    Output(GATE_ROWS, "children"),
    Input(GATE_SPEC, "data"),
    Input(ids.FILTER_STORE, "data"),
)
def render_gate_rows(spec, filter_data):
    """One row per marker: name, +/- toggle, threshold, remove."""
    if filter_data is None:
        raise PreventUpdate
    try:
        gate = gating.parse_gate(spec)
    except gating.GateError:
        gate = gating.default_gate()
    return gate_rows(gate, set(_genes_of(filter_data)))


@callback(
    Output(GATE_SPEC, "data"),
    Input(ADD, "n_clicks"),
    Input({"type": REMOVE, "gene": ALL}, "n_clicks"),
    Input(RESET, "n_clicks"),
    State(ADD_GENE, "value"),
    State({"type": THRESHOLD, "gene": ALL}, "value"),
    State({"type": SIGN, "gene": ALL}, "value"),
    State({"type": THRESHOLD, "gene": ALL}, "id"),
    State(GATE_NAME, "value"),
    prevent_initial_call=True,
)
def edit_gate(_add, removes, _reset, add_gene, thresholds, signs, row_ids, name):
    """Add, remove or reset markers (thresholds of the others are kept)."""
    trigger = ctx.triggered_id
    gate = gate_from_controls(thresholds, signs, row_ids, name)
    if trigger == RESET:
        return gating.gate_to_string(gating.default_gate())
    if trigger == ADD:
        # '~' separates markers in the URL form: such a gene cannot be encoded
        if not add_gene or add_gene in gate.genes or "~" in add_gene:
            raise PreventUpdate
        if len(gate.markers) >= gating.MAX_MARKERS:
            raise PreventUpdate
        return gating.gate_to_string(gate.with_marker(gating.Marker(add_gene)))
    if isinstance(trigger, dict) and trigger.get("type") == REMOVE:
        # rows re-rendered after an edit fire with n_clicks None: not a click
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        remaining = gate.without(trigger["gene"])
        if not remaining.markers:
            raise PreventUpdate  # a gate needs at least one marker
        return gating.gate_to_string(remaining)
    raise PreventUpdate


@callback(
    Output(GATE, "data"),
    Input({"type": THRESHOLD, "gene": ALL}, "value"),
    Input({"type": SIGN, "gene": ALL}, "value"),
    State({"type": THRESHOLD, "gene": ALL}, "id"),
)
def gate_from_rows(thresholds, signs, row_ids):
    """The gate as a URL-safe string, from the marker rows."""
    if not row_ids:
        raise PreventUpdate
    return gating.gate_to_string(gate_from_controls(thresholds, signs, row_ids, ""))


@callback(
    Output(STATE, "data"),
    Input(COLOR, "value"),
    Input(GENE, "value"),
    Input(GATE, "data"),
    Input(GATE_NAME, "value"),
    Input(ACCEPT, "value"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(HIGHLIGHT, "data"),
)
def collect_state(
    color, gene, gate_text, gate_name, accept, metric, definition, highlight
):
    """The page state (URL keys) for the Store, the URL and exports."""
    return state_dict(
        color, gene, gate_text, gate_name, accept, metric, definition, highlight
    )


@callback(
    Output(GATE_NAME, "placeholder"),
    Input(GATE, "data"),
)
def gate_name_placeholder(gate_text):
    """The automatic name: published only while the gate is the published one."""
    try:
        return gating.parse_gate(gate_text).display_name
    except gating.GateError:
        return gating.DEFAULT_GATE_NAME


clientside_callback(
    ClientsideFunction(namespace="icb", function_name="setQuery"),
    Output(URL_SYNC, "data"),
    Input(STATE, "data"),
)


# ---------------------------------------------------------------------------- UMAP
def _signature(filter_data, budget: int) -> str:
    return json.dumps({"filter": filter_data, "budget": budget}, sort_keys=True)


def _data_and_page(filter_data, state: dict):
    view = _view(filter_data)
    store = cell_store(view.bundle)
    page = cd8.parse_state(
        state, samples=view.samples, genes=store.var_names if store else None
    )
    return view, cd8.cached_cell_data(view, page), page


def _gate_or_none(data, page):
    try:
        return cd8.evaluate(data, page), ""
    except gating.GateError as err:
        return None, str(err)


@callback(
    Output(UMAP, "figure"),
    Output(UMAP_CAPTION, "children"),
    Output(DRAWN, "data"),
    Output(CLEAR_HIGHLIGHT, "style"),
    Input(ids.FILTER_STORE, "data"),
    Input(COLOR, "value"),
    Input(GENE, "value"),
    Input(GATE, "data"),
    Input(GATE_NAME, "value"),
    Input(ACCEPT, "value"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(HIGHLIGHT, "data"),
    State(DRAWN, "data"),
)
def update_umap(
    filter_data,
    color,
    gene,
    gate_text,
    gate_name,
    accept,
    metric,
    definition,
    highlight,
    drawn,
):
    """Draw the UMAP for a new filter; otherwise recolour it with a Patch."""
    if filter_data is None:
        raise PreventUpdate
    budget = get_settings().max_points_on_screen
    signature = _signature(filter_data, budget)
    state = state_dict(color, gene, gate_text, gate_name, accept, metric, definition)
    try:
        _, data, page = _data_and_page(filter_data, state)
    except DataError:
        raise PreventUpdate from None  # the controls callback shows the error
    if data is None:
        return empty_figure("No CD8 cells to show"), "", None, {"display": "none"}
    trigger = ctx.triggered_id
    gate_inputs = {GATE, GATE_NAME, ACCEPT}
    if (
        drawn == signature
        and trigger in gate_inputs
        and page.color != "gate"
        and not highlight
    ):
        raise PreventUpdate  # the colours do not depend on the gate
    if drawn == signature and trigger == GENE and page.color != "gene":
        raise PreventUpdate
    # the gate is evaluated only when it colours the cells (15 ms at 10^6 cells)
    result, gate_error = (
        _gate_or_none(data, page) if page.color == "gate" else (None, "")
    )
    shown = cd8.display_sample(data.state_codes, budget)
    if page.color == "gate" and result is None:
        page = cd8.PageState(**{**page.__dict__, "color": cd8.DEFAULT_COLOR})
    colour = cd8.colouring(data, page, shown, gate_result=result, highlight=highlight)
    note = result.note if result is not None and page.color == "gate" else ""
    title = cd8.umap_title(data, colour, len(shown), note)
    caption = cd8.shown_caption(len(shown), data.n_cells)
    if gate_error and state["color"] == "gate":
        caption += f". Gate not shown: {gate_error}."
    clear_style = {} if highlight else {"display": "none"}
    if drawn == signature:
        patch = Patch()
        for key, value in colour.marker().items():
            patch["data"][0]["marker"][key] = value
        patch["layout"]["title"]["text"] = title
        return patch, caption, dash.no_update, clear_style
    figure = cd8.umap_figure(data, shown, colour, title=title)
    return figure, caption, signature, clear_style


@callback(
    Output(HIGHLIGHT, "data", allow_duplicate=True),
    Input(NK, "clickData"),
    Input(CLEAR_HIGHLIGHT, "n_clicks"),
    prevent_initial_call=True,
)
def set_highlight(click, _clear):
    """Clicking a patient in the NK scatter highlights its cells on the UMAP."""
    if ctx.triggered_id == CLEAR_HIGHLIGHT:
        return None
    try:
        return click["points"][0]["customdata"][0]
    except (TypeError, KeyError, IndexError):
        raise PreventUpdate from None


@callback(
    Output(HOVER, "children"),
    Input(UMAP, "hoverData"),
    State(ids.FILTER_STORE, "data"),
    State(STATE, "data"),
    prevent_initial_call=True,
)
def hover_details(hover, filter_data, state):
    """Details of the hovered cell, fetched on demand (no per-cell text is sent)."""
    try:
        index = int(hover["points"][0]["pointIndex"])
    except (TypeError, KeyError, IndexError, ValueError):
        raise PreventUpdate from None
    _, data, page = _data_and_page(filter_data, state or {})
    if data is None:
        raise PreventUpdate
    shown = cd8.display_sample(data.state_codes, get_settings().max_points_on_screen)
    if not 0 <= index < len(shown):
        raise PreventUpdate
    position = shown[index]
    cell = data.cells[position]
    patient = data.patients.iloc[data.patient_codes[position]]
    code = data.state_codes[position]
    state_name = data.state_names[code] if code >= 0 else "no state"
    lines = [
        html.Strong(data.store.cell_name(cell)),
        html.Div(f"State: {state_name}"),
        html.Div(
            f"Patient {patient['label']} · {patient['tumor_type']} · "
            f"{patient['treatment']} · response: "
            f"{patient['group'] if isinstance(patient['group'], str) else 'n/a'}"
        ),
    ]
    genes = list(dict.fromkeys([*page.gate.genes, page.gene]))
    values = [
        f"{g} {data.store.gene(g)[cell]:.2f}"
        for g in genes
        if g and data.store.has_gene(g)
    ]
    if values:
        lines.append(html.Div("log-norm.: " + ", ".join(values)))
    result, _ = _gate_or_none(data, page)
    if result is not None:
        lines.append(
            html.Div(f"In gate: {'yes' if result.in_gate[position] else 'no'}")
        )
    return lines


@callback(
    Output(SELECTION, "children"),
    Input(UMAP, "selectedData"),
    State(ids.FILTER_STORE, "data"),
    State(STATE, "data"),
    prevent_initial_call=True,
)
def selection_details(selection, filter_data, state):
    """State composition and gate fraction of all cells inside the selection."""
    if not selection:
        return None
    _, data, page = _data_and_page(filter_data, state or {})
    if data is None:
        raise PreventUpdate
    positions = cd8.cells_in_selection(data, selection)
    if positions is None:
        return html.Div("Draw a box or lasso on the UMAP to summarise cells.")
    result, gate_error = _gate_or_none(data, page)
    summary = cd8.selection_summary(data, positions, result)
    n = summary["n"]
    if n == 0:
        return html.Div("No cells inside the selection.")
    items = [
        html.Li(f"{state}: {count:,} ({share:.0%})")
        for state, count, share in sorted(summary["states"], key=lambda s: -s[1])
    ]
    gate_line = (
        f"In gate: {summary['in_gate']:,} of {n:,} ({summary['in_gate'] / n:.1%})"
        + (f"; {result.note}" if result.note else "")
        if result is not None
        else f"Gate not evaluated: {gate_error}"
    )
    return [
        html.Strong(
            f"Selection: {n:,} cells from {summary['patients']} patients "
            "(all cells in the shape, drawn or not)"
        ),
        html.Ul(items, className="mb-1 ps-3"),
        html.Div(gate_line, className="fw-semibold"),
        _compare_lasso_link(data.store, selection, filter_data),
    ]


def _compare_lasso_link(store, selection, filter_data):
    """Issue 16: a lasso becomes a cell set (its polygon) on /compare, vs the rest."""
    sets = cd8_de.lasso_sets(store, selection)
    if sets is None:
        return None
    href = cd8_de.compare_href(sets[0], sets[1], filter_data)
    return html.A("Compare inside vs outside (pseudobulk DE) →", href=href)


# ---------------------------------------------------------------- gate statistics
@callback(
    Output(HIST, "figure"),
    Output(GATE_COUNT, "children"),
    Output(MISSING, "children"),
    Output(BOX, "figure"),
    Output(BOX_CAPTION, "children"),
    Output(NK, "figure"),
    Output(NK_CAPTION, "children"),
    Output(SENSITIVITY, "figure"),
    Output(SENSITIVITY_CAPTION, "children"),
    Input(ids.FILTER_STORE, "data"),
    Input(GATE, "data"),
    Input(GATE_NAME, "value"),
    Input(ACCEPT, "value"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
)
def update_gate_views(filter_data, gate_text, gate_name, accept, metric, definition):
    """Histograms, counts and the per-patient gate statistics."""
    if filter_data is None:
        raise PreventUpdate
    state = state_dict(None, None, gate_text, gate_name, accept, metric, definition)
    try:
        _, data, page = _data_and_page(filter_data, state)
    except DataError:
        raise PreventUpdate from None
    if data is None:
        blank = empty_figure("No CD8 cells to show")
        return blank, "", None, blank, "", blank, "", blank, ""
    missing = gating.missing_markers(page.gate, data.store.var_names)
    missing_alert = None
    if missing:
        missing_alert = dbc.Alert(
            [
                html.Strong(f"Missing in this dataset: {', '.join(missing)}. "),
                "The gate is evaluated on the other markers only if you tick the box "
                "below; every figure then says so."
                if not page.accept_missing
                else f"Figures show the {gating.missing_note(missing)}.",
            ],
            color="warning",
            className="small py-2 mb-2 missing-markers",
        )
    result, gate_error = _gate_or_none(data, page)
    hist = cd8.marker_histograms(
        data, page, title_note=result.note if result is not None else ""
    )
    if result is None:
        blocked = empty_figure(gate_error)
        count = html.Span(f"Gate not evaluated: {gate_error}", className="text-danger")
        return hist, count, missing_alert, blocked, "", blocked, "", blocked, ""
    n_in = result.n_in
    table = cd8.patient_gate_table(data, result)
    count = [
        html.Span(f"{n_in:,}", id=f"{PREFIX}-gate-n"),
        f" cells pass the gate ({n_in / data.n_cells:.1%} of {data.n_cells:,} "
        f"filtered CD8 cells; {len(table)} patients)",
    ]
    if result.empty:
        count.append(
            html.Div(
                "No statistics: there is no cell in the gate to compare.",
                className="text-danger small",
            )
        )
    for warning in ([result.note] if result.note else []) + result.warnings:
        count.append(
            html.Div(warning, className="text-warning-emphasis small gate-warning")
        )
    box, box_caption, _ = cd8.gate_fraction_box(table, data, page, result)
    scatter, nk_caption, _ = cd8.gate_vs_nk(table, data, page, result)
    sens_table, sens_note = cd8.sensitivity_table(data, page)
    sens = cd8.sensitivity_figure(sens_table, page, result, sens_note)
    return (
        hist,
        count,
        missing_alert,
        box,
        box_caption,
        scatter,
        nk_caption,
        sens,
        cd8.sensitivity_caption(
            sens_table, sens_note, cd8.gate_title_suffix(page, result)
        ),
    )


@callback(
    Output(COMPOSITION, "figure"),
    Output(COMPOSITION_CAPTION, "children"),
    Output(DOTPLOT, "figure"),
    Input(ids.FILTER_STORE, "data"),
    Input(METRIC, "value"),
    Input(GATE, "data"),
)
def update_composition(filter_data, metric, gate_text):
    """State composition per patient (ordered by NK) and the marker dot plot."""
    if filter_data is None:
        raise PreventUpdate
    state = state_dict(None, None, gate_text, "", True, metric, None)
    try:
        _, data, page = _data_and_page(filter_data, state)
    except DataError:
        raise PreventUpdate from None
    if data is None:
        blank = empty_figure("No CD8 cells to show")
        return blank, "", blank
    composition, caption, _ = cd8.state_composition(data)
    dots, _ = cd8.dot_plot(data, page)
    return composition, caption, dots
