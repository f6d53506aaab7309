"""Page `/mechanism`: the Song et al. chain per patient.

NK metric -> IFN-alpha and IL-2/STAT5 programs in the patient's CD8 cells -> RA
program -> gate fraction -> response. Program scores are computed once per cell
when a bundle is prepared or imported; this page only rolls them up per patient.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analysis import programs
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
)
from config import get_settings
from data.errors import DataError
from data.view import cohort_view
from figures.mechanism import PANELS, coverage_lines
from figures.mechanism_state import PAGE_ID, STATE_KEYS
from figures.template import empty_figure

dash.register_page(__name__, path="/mechanism", name="Mechanism", order=2.5)

PREFIX = "mechanism"
METRIC = f"{PREFIX}-metric"
DEFINITION = f"{PREFIX}-definition"
PROGRAM = f"{PREFIX}-program"
SUMMARY = f"{PREFIX}-summary"
COVERAGE = f"{PREFIX}-coverage"
NOTICE = f"{PREFIX}-link-notice"
NOTE = f"{PREFIX}-dataset-note"
CONTENT = f"{PREFIX}-content"
EMPTY = f"{PREFIX}-empty"
LINK_STORE = f"{PREFIX}-link"
URL_DUMMY = f"{PREFIX}-url-dummy"
STATE_STORE = ids.page_state(PAGE_ID)
HEIGHTS = {
    "mech-nk": 520,
    "mech-response": 500,
    "mech-gate": 640,
    "mech-matrix": 600,
    "mech-genes": 620,
}


def _graph(key: str) -> str:
    return f"{PREFIX}-{key}"


def _caption(key: str) -> str:
    return f"{PREFIX}-{key}-caption"


def _card(key: str):
    return figure_card(
        _graph(key),
        PANELS[key],
        caption_id=_caption(key),
        height=HEIGHTS[key],
        export=(PAGE_ID, key),
    )


def _query_value(value) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def layout(**query) -> html.Div:
    """Controls read back from the URL, the coverage of each program, five panels."""
    state = {k: _query_value(query.get(k)) for k in STATE_KEYS}
    asked = {k: v for k, v in state.items() if v}
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    html.Label("NK metric", htmlFor=METRIC, className="form-label"),
                    dcc.Dropdown(id=METRIC, value=state["metric"], clearable=False),
                ],
                md=4,
            ),
            dbc.Col(
                [
                    html.Label(
                        "Response definition",
                        htmlFor=DEFINITION,
                        className="form-label",
                    ),
                    dcc.Dropdown(
                        id=DEFINITION, value=state["definition"], clearable=False
                    ),
                ],
                md=3,
            ),
            dbc.Col(
                [
                    html.Label(
                        "Program for the gene view", htmlFor=PROGRAM,
                        className="form-label",
                    ),
                    dcc.Dropdown(
                        id=PROGRAM,
                        options=[
                            {"label": p.label, "value": p.key}
                            for p in programs.PROGRAMS
                        ],
                        value=state["program"],
                        clearable=False,
                    ),
                ],
                md=3,
            ),
        ],
        className="g-3 mb-3",
    )  # fmt: skip
    content = html.Div(
        [
            _card("mech-nk"),
            _card("mech-response"),
            _card("mech-gate"),
            _card("mech-matrix"),
            _card("mech-genes"),
        ],
        id=CONTENT,
    )
    return html.Div(
        [
            html.H2(
                "The mechanism: cytokine programs between NK and CD8", className="h4"
            ),
            html.P(
                "Song et al. (Cancer Discovery 2025): tumor NK cells compete with CD8 "
                "T cells for IFN-alpha and IL-2 and hold back a RARA-dependent program "
                "that drives CD8 T cells toward the CD69+ BCL2+ EOMES+ GZMB+ TIM-3- "
                "GITR- state. Each program is scored per cell (gate markers removed), "
                "averaged over each patient's CD8 cells and set against the NK metric, "
                "the gate fraction and response. One value per patient. The "
                "retinoic-acid set is not derived from T cells.",
                className="small text-muted mb-2",
            ),
            html.Div(id=NOTE, className="text-muted small mb-2"),
            html.Div(id=NOTICE),
            controls,
            dbc.Alert(id=SUMMARY, color="light", className="small py-2"),
            html.Details(
                [
                    html.Summary("Gene coverage and scoring rule", className="small"),
                    html.Div(id=COVERAGE, className="small text-muted"),
                ],
                open=True,
                className="mb-3",
            ),
            html.Div(id=EMPTY, hidden=True),
            content,
            dcc.Store(id=STATE_STORE, data=asked),
            dcc.Store(id=LINK_STORE, data=asked),
            dcc.Store(id=URL_DUMMY),
        ]
    )


OUTPUT_NAMES = (
    *(f"figure:{k}" for k in PANELS),
    *(f"caption:{k}" for k in PANELS),
    "metric_options",
    "metric",
    "definition_options",
    "definition",
    "program",
    "state",
    "link",
    "summary",
    "coverage",
    "note",
    "notice",
    "content_hidden",
    "empty_hidden",
    "empty",
)


@callback(
    *(Output(_graph(k), "figure") for k in PANELS),
    *(Output(_caption(k), "children") for k in PANELS),
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(DEFINITION, "options"),
    Output(DEFINITION, "value"),
    Output(PROGRAM, "value"),
    Output(STATE_STORE, "data"),
    Output(LINK_STORE, "data"),
    Output(SUMMARY, "children"),
    Output(COVERAGE, "children"),
    Output(NOTE, "children"),
    Output(NOTICE, "children"),
    Output(CONTENT, "hidden"),
    Output(EMPTY, "hidden"),
    Output(EMPTY, "children"),
    Input(ids.FILTER_STORE, "data"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(PROGRAM, "value"),
    State(STATE_STORE, "data"),
    State(LINK_STORE, "data"),
)
def update_mechanism(filter_data, metric, definition, program, stored, link):
    """Recompute the chain for the global filter and the page controls."""
    if filter_data is None:
        raise dash.exceptions.PreventUpdate
    out = compute_page(
        filter_data,
        {"metric": metric, "definition": definition, "program": program},
        stored=stored,
        link=link,
    )
    return tuple(out[name] for name in OUTPUT_NAMES)


def requested_state(controls: dict, *, stored: dict | None, link: dict | None) -> dict:
    """The link's values on first load, then the controls, then the stored state."""
    stored, link = dict(stored or {}), dict(link or {})
    state = {k: stored.get(k) for k in STATE_KEYS if stored.get(k)}
    for key in ("metric", "definition", "program"):
        value = link.get(key) or controls.get(key) or stored.get(key)
        if value:
            state[key] = value
    for key in ("gate", "gate_name", "accept_missing"):
        if key in link:
            state[key] = link[key]
    return state


def compute_page(
    filter_data: dict,
    controls: dict,
    *,
    stored: dict | None = None,
    link: dict | None = None,
) -> dict:
    """Every output of the page by name (see :data:`OUTPUT_NAMES`), plus ``result``
    (the numbers, as ``cli.py mechanism --json`` prints them)."""
    settings = get_settings()
    state = requested_state(controls, stored=stored, link=link)
    no = dash.no_update
    out: dict = {f"figure:{k}": empty_figure("") for k in PANELS}
    out.update({f"caption:{k}": "" for k in PANELS})
    out.update(
        metric_options=[], metric=no, definition_options=[], definition=no,
        program=no, state=no, link=None, summary="", coverage="", note="",
        notice=None if link else no, content_hidden=True, empty_hidden=False,
        empty=None, result=None,
    )  # fmt: skip
    try:
        view = cohort_view(
            filter_data,
            data_dir=settings.data_dir,
            default_dataset=settings.default_dataset,
        )
        panels = cached_panels(PAGE_ID, view, state)
    except DataError as err:
        out["empty"] = data_error_alert(err)
        return out
    result = panels[0].provenance["stats"]
    out["result"] = result
    samples = view.samples if not view.samples.empty else view.bundle.cohort
    resolved = result["state"]
    out.update(
        metric_options=[
            {"label": m.label, "value": m.key} for m in available_metrics(samples)
        ],
        metric=resolved["metric"] or None,
        definition_options=[
            {"label": DEFINITIONS[k].label, "value": k}
            for k in available_definitions(samples)
        ],
        definition=resolved["definition"],
        program=resolved["program"],
        state=resolved,
        note=f"{view.bundle.meta.label} · {view.filter.describe()}",
        coverage=_coverage(result),
    )
    if link:
        out["notice"] = link_notice(
            [
                LinkFallback(f["key"], f["label"], f["value"], f["shown"], f["reason"])
                for f in result["fallbacks"]
                if f["key"] in link
            ],
            id=f"{PREFIX}-notice-alert",
        )
    if result["message"]:
        out["empty"] = empty_state(
            result["message"], "Choose a dataset with CD8 single-cell data."
        )
        return out
    out["summary"] = _summary(result)
    by_key = {p.key: p for p in panels}
    for key in PANELS:
        out[f"figure:{key}"] = by_key[key].figure
        out[f"caption:{key}"] = by_key[key].caption
    out.update(content_hidden=False, empty_hidden=True, empty=None)
    return out


def _coverage(result: dict) -> list:
    lines = coverage_lines(result)
    items = [html.Li(line) for line in lines]
    return [
        html.Ul(items, className="mb-1", id=f"{PREFIX}-coverage-list"),
        html.Div(f"Score: {result['rule']}."),
        html.Div(f"Gene sets: {result['attribution']}; files in data/genesets."),
    ]


def _summary(result: dict) -> list:
    n_groups = ", ".join(f"{g} n={n}" for g, n in result["n_per_group"].items())
    gate = result["gate"]
    parts = [
        html.Strong(
            f"{result['n_patients']} patients, {result['n_cells']:,} CD8 cells"
            if result.get("data_kind") != "bulk"
            else f"{result['n_patients']} patients (bulk expression: program "
            "scores per pre-treatment sample, mean z-score)",
            id=f"{PREFIX}-n",
        ),
        f" ({n_groups}; one value per patient: the mean over the patient's CD8 "
        f"cells). NK metric: {result['metric']['label'] or 'none'}. Response: "
        f"{result['definition']['label']}. Gate: {gate['phenotype']}"
        + (f" ({gate['note']})" if gate["note"] else "")
        + ".",
    ]
    for key, entry in result["programs"].items():
        vs = entry["vs_nk"]
        text = vs["message"] or vs["direction"]
        parts += [html.Br(), f"{result['programs_info'][key]['label']}: {text}."]
    return parts


clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_DUMMY, "data"),
    Input(STATE_STORE, "data"),
)
