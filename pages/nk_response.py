"""Page `/nk-response`: NK metric vs ICB response per patient, with defensible tests."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analysis.nk_metrics import available_metrics
from analysis.nk_response import SPLITS, STATE_KEYS, TIMEPOINT_LABELS
from analysis.response import DEFINITIONS, available_definitions
from components import ids
from components.cache import cached_panels
from components.common import data_error_alert, empty_state, figure_card
from config import get_settings
from data import schema
from data.errors import DataError
from data.view import cohort_view
from figures.template import empty_figure

dash.register_page(__name__, path="/nk-response", name="NK vs response", order=1)

PAGE_ID = "nk-response"
PREFIX = "nk-response"
METRIC = f"{PREFIX}-metric"
DEFINITION = f"{PREFIX}-definition"
TIMEPOINT = f"{PREFIX}-timepoint"
SPLIT = f"{PREFIX}-split"
SUMMARY = f"{PREFIX}-summary"
NOTE = f"{PREFIX}-dataset-note"
CONTENT = f"{PREFIX}-content"
EMPTY = f"{PREFIX}-empty"
URL_DUMMY = f"{PREFIX}-url-dummy"
STATE_STORE = ids.page_state(PAGE_ID)

#: panel key -> (graph id, card title, card height)
CARDS = {
    "nk-box": (f"{PREFIX}-box", "NK metric by response", 500),
    "nk-roc": (f"{PREFIX}-roc", "ROC: does a low NK metric predict response?", 500),
    "nk-forest": (f"{PREFIX}-forest", "Effect per tumor type and cohort", 520),
    "nk-km-os": (f"{PREFIX}-km-os", "Overall survival by NK group", 580),
    "nk-km-pfs": (f"{PREFIX}-km-pfs", "Progression-free survival by NK group", 580),
    "nk-logistic": (f"{PREFIX}-logistic", "Logistic regression", 520),
    "nk-paired": (f"{PREFIX}-paired", "Pre- vs on-treatment, per patient", 520),
}


def _caption_id(key: str) -> str:
    return f"{CARDS[key][0]}-caption"


def _card(key: str):
    graph_id, title, height = CARDS[key]
    return figure_card(
        graph_id,
        title,
        caption_id=_caption_id(key),
        height=height,
        export=(PAGE_ID, key),
    )


def _query_value(value) -> str | None:
    """A single string from a query value (lists and odd types tolerated)."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def layout(**query) -> html.Div:
    """Controls (read back from the URL), summary, and the six views."""
    state = {k: _query_value(query.get(k)) for k in STATE_KEYS}
    timepoint = (
        state["nk_timepoint"] if state["nk_timepoint"] in schema.TIMEPOINTS else "pre"
    )
    split = state["split"] if state["split"] in SPLITS else "median"
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
                md=4,
            ),
            dbc.Col(
                [
                    html.Label("NK timepoint", className="form-label d-block"),
                    dbc.RadioItems(
                        id=TIMEPOINT,
                        options=[{"label": t, "value": t} for t in schema.TIMEPOINTS],
                        value=timepoint,
                        inline=True,
                    ),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    html.Label("NK groups (survival)", className="form-label d-block"),
                    dbc.RadioItems(
                        id=SPLIT,
                        options=[{"label": v, "value": k} for k, v in SPLITS.items()],
                        value=split,
                        inline=True,
                    ),
                ],
                md=2,
            ),
        ],
        className="g-3 mb-3 nk-controls",
    )
    content = html.Div(
        [
            dbc.Row([dbc.Col(_card("nk-box"), lg=6), dbc.Col(_card("nk-roc"), lg=6)]),
            _card("nk-forest"),
            dbc.Row(
                [dbc.Col(_card("nk-km-os"), lg=6), dbc.Col(_card("nk-km-pfs"), lg=6)]
            ),
            dbc.Row(
                [
                    dbc.Col(_card("nk-logistic"), lg=6),
                    dbc.Col(_card("nk-paired"), lg=6),
                ]
            ),
        ],
        id=CONTENT,
    )
    return html.Div(
        [
            html.H2("NK cells vs response to checkpoint blockade", className="h4"),
            html.P(
                "Song et al. (Cancer Discovery 2025) report better responses to "
                "PD-1/PD-L1 blockade in patients with fewer tumor NK cells. Raw NK "
                "frequency of CD45+ cells tracks overall immune infiltration (often "
                "higher in responders), so choose the metric deliberately: normalized "
                "metrics compare NK with other lymphocytes. One value per patient.",
                className="small text-muted mb-2",
            ),
            html.Div(id=NOTE, className="text-muted small mb-2"),
            controls,
            dbc.Alert(id=SUMMARY, color="light", className="nk-summary small py-2"),
            html.Div(id=EMPTY, hidden=True),
            content,
            dcc.Store(id=STATE_STORE, data={k: v for k, v in state.items() if v}),
            dcc.Store(id=URL_DUMMY),
        ]
    )


_GRAPHS = [Output(CARDS[k][0], "figure") for k in CARDS]
_CAPTIONS = [Output(_caption_id(k), "children") for k in CARDS]


@callback(
    *_GRAPHS,
    *_CAPTIONS,
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(DEFINITION, "options"),
    Output(DEFINITION, "value"),
    Output(TIMEPOINT, "value"),
    Output(SPLIT, "value"),
    Output(STATE_STORE, "data"),
    Output(SUMMARY, "children"),
    Output(NOTE, "children"),
    Output(CONTENT, "hidden"),
    Output(EMPTY, "hidden"),
    Output(EMPTY, "children"),
    Input(ids.FILTER_STORE, "data"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(TIMEPOINT, "value"),
    Input(SPLIT, "value"),
    State(STATE_STORE, "data"),
)
def update_nk_response(filter_data, metric, definition, timepoint, split, stored):
    """Recompute every view for the global filter and the page controls."""
    if filter_data is None:
        raise dash.exceptions.PreventUpdate
    settings = get_settings()
    controls = {
        "metric": metric,
        "definition": definition,
        "nk_timepoint": timepoint,
        "split": split,
    }
    # a dropdown drops a URL value before its options arrive: fall back to the
    # state the page was opened with (or last showed)
    state = {k: v or (stored or {}).get(k) for k, v in controls.items()}
    blank = [empty_figure("")] * len(CARDS)
    captions = [""] * len(CARDS)
    try:
        view = cohort_view(
            filter_data,
            data_dir=settings.data_dir,
            default_dataset=settings.default_dataset,
        )
        # shared by all workers and users: a view is computed once
        panels = cached_panels(PAGE_ID, view, state)
    except DataError as err:
        no = dash.no_update
        return (
            *blank, *captions, [], no, [], no, no, no, no, "", "", True, False,
            data_error_alert(err),
        )  # fmt: skip
    cohort = view.bundle.cohort
    metric_options = [
        {"label": m.label, "value": m.key} for m in available_metrics(cohort)
    ]
    definition_options = [
        {"label": DEFINITIONS[k].label, "value": k}
        for k in available_definitions(cohort)
    ]
    provenance = panels[0].provenance
    resolved = provenance["state"]
    summary = provenance["stats"]
    note = f"{view.bundle.meta.label} · {view.filter.describe()}"
    outputs = (
        metric_options,
        resolved["metric"],
        definition_options,
        resolved["definition"],
        resolved["nk_timepoint"],
        resolved["split"],
        resolved,
    )
    if summary["empty_message"]:
        empty = empty_state(
            summary["empty_message"],
            "Remove a filter in the sidebar or change the timepoint.",
        )
        return (*blank, *captions, *outputs, _summary(summary, provenance), note,
                True, False, empty)  # fmt: skip
    by_key = {p.key: p for p in panels}
    figures = [
        by_key[k].figure if k in by_key else empty_figure(_missing(k)) for k in CARDS
    ]
    captions = [by_key[k].caption if k in by_key else "" for k in CARDS]
    return (
        *figures, *captions, *outputs, _summary(summary, provenance), note, False,
        True, None,
    )  # fmt: skip


def _missing(key: str) -> str:
    if key.startswith("nk-km-"):
        return "This dataset has no survival data for this endpoint"
    return "Not available for this dataset"


def _summary(summary: dict, provenance: dict) -> list:
    """Headline: what was analysed, who was excluded, and any notes."""
    timepoint = TIMEPOINT_LABELS.get(summary["timepoint"], summary["timepoint"])
    n = summary["n_patients"]
    if summary["empty_message"]:
        parts = [html.Strong(summary["empty_message"])]
        if provenance.get("exclusions"):
            parts.append(" " + provenance["exclusions"] + ".")
        return parts
    parts = [
        html.Strong(f"{n} patient{'s' if n != 1 else ''} analysed"),
        f" ({timepoint}, one value per patient; "
        + ", ".join(f"{g['group']} n={g['n']}" for g in summary["groups"])
        + "). ",
    ]
    if provenance.get("exclusions"):
        parts.append(provenance["exclusions"] + ". ")
    parts.append(
        f"Metric: {summary['metric']['label']}. "
        f"Response: {summary['response_definition']['label']}."
    )
    for note in summary["notes"]:
        parts += [html.Br(), html.Span(note, className="text-warning-emphasis")]
    return parts


# Page state -> address bar, so a copied link reproduces the view.
clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_DUMMY, "data"),
    Input(STATE_STORE, "data"),
)
