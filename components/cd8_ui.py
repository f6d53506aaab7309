"""Building blocks of the CD8-states page (`pages/cd8_states.py`): component ids,
the controls, the gate panel, the figure cards, and the pure helpers its callbacks
share. Kept out of ``pages/`` because Dash imports every module there as a page.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
import numpy as np
from dash import dcc, html

from analysis import gating
from components import ids
from components.common import figure_card
from data.schema import PROTEIN_NAMES
from figures import cd8

PAGE_ID = cd8.PAGE_ID
PREFIX = "cd8-states"
STATE = ids.page_state(PAGE_ID)
URL_SYNC = f"{PREFIX}-url-sync"
LINK = f"{PREFIX}-link"
LINK_NOTICE = f"{PREFIX}-link-notice"
GATE_SPEC = f"{PREFIX}-gate-spec"
GATE = f"{PREFIX}-gate"
HIGHLIGHT = f"{PREFIX}-highlight"
DRAWN = f"{PREFIX}-drawn"
NOTE = f"{PREFIX}-note"
ERROR = f"{PREFIX}-error"
EMPTY = f"{PREFIX}-empty"
CONTENT = f"{PREFIX}-content"
COLOR = f"{PREFIX}-color"
GENE = f"{PREFIX}-gene"
METRIC = f"{PREFIX}-metric"
DEFINITION = f"{PREFIX}-definition"
UMAP = f"{PREFIX}-umap"
UMAP_CAPTION = f"{PREFIX}-umap-caption"
HOVER = f"{PREFIX}-hover"
SELECTION = f"{PREFIX}-selection"
CLEAR_HIGHLIGHT = f"{PREFIX}-clear-highlight"
GATE_NAME = f"{PREFIX}-gate-name"
GATE_ROWS = f"{PREFIX}-gate-rows"
ADD_GENE = f"{PREFIX}-add-gene"
ADD = f"{PREFIX}-add"
RESET = f"{PREFIX}-reset"
ACCEPT = f"{PREFIX}-accept-missing"
MISSING = f"{PREFIX}-missing"
GATE_COUNT = f"{PREFIX}-gate-count"
HIST = f"{PREFIX}-histograms"
BOX = f"{PREFIX}-box"
BOX_CAPTION = f"{PREFIX}-box-caption"
NK = f"{PREFIX}-nk"
NK_CAPTION = f"{PREFIX}-nk-caption"
COMPOSITION = f"{PREFIX}-composition"
COMPOSITION_CAPTION = f"{PREFIX}-composition-caption"
DOTPLOT = f"{PREFIX}-dotplot"
SENSITIVITY = f"{PREFIX}-sensitivity"
SENSITIVITY_CAPTION = f"{PREFIX}-sensitivity-caption"
THRESHOLD = f"{PREFIX}-threshold"
SIGN = f"{PREFIX}-sign"
REMOVE = f"{PREFIX}-remove"
MAX_GENE_OPTIONS = 60


def first_value(value) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def state_dict(
    color, gene, gate_text, gate_name, accept, metric, definition, highlight=None
) -> dict:
    """The page state as URL keys (see ``figures.cd8.PageState.to_dict``)."""
    return {
        "color": color or cd8.DEFAULT_COLOR,
        "gene": gene or "",
        "gate": gate_text or "",
        "gate_name": gate_name or "",
        "accept_missing": "1" if accept else "",
        "metric": metric or cd8.DEFAULT_METRIC,
        "definition": definition or "",
        "highlight": highlight or "",
    }


def gene_options_for(genes, search: str = "", keep=()) -> list[dict]:
    """At most MAX_GENE_OPTIONS genes: those kept, then matches (prefix first)."""
    search = (search or "").strip().upper()
    chosen = [g for g in keep if g and g in genes]
    if search:
        prefix = [g for g in genes if g.upper().startswith(search)]
        inner = [g for g in genes if search in g.upper() and g not in prefix]
        matches = prefix + inner
    else:
        matches = [g for g in cd8.STATE_MARKERS if g in genes] + list(genes)
    for gene in matches:
        if len(chosen) >= MAX_GENE_OPTIONS:
            break
        if gene not in chosen:
            chosen.append(gene)
    return [
        {"label": f"{g} ({PROTEIN_NAMES[g]})" if g in PROTEIN_NAMES else g, "value": g}
        for g in chosen
    ]


def _control(label: str, component, width: int) -> dbc.Col:
    return dbc.Col(
        [dbc.Label(label, className="small text-muted mb-0"), component], md=width
    )


def gate_from_controls(thresholds, signs, row_ids, name) -> gating.Gate:
    markers = []
    for value, sign, row in zip(thresholds, signs, row_ids, strict=True):
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            threshold = gating.DEFAULT_THRESHOLD
        if not np.isfinite(threshold):
            threshold = gating.DEFAULT_THRESHOLD
        markers.append(
            gating.Marker(row["gene"], sign if sign in "+-" else "+", threshold)
        )
    return gating.Gate(tuple(markers), name=name or "")


def gate_rows(gate: gating.Gate, genes: set[str]) -> list:
    """One row per marker: name, +/- toggle, threshold, remove."""
    rows = []
    for marker in gate.markers:
        missing = marker.gene not in genes
        protein = PROTEIN_NAMES.get(marker.gene)
        name = [html.Span(marker.gene, className="fw-semibold")]
        if protein and protein != marker.gene:
            name.append(html.Span(f" {protein}", className="text-muted"))
        if missing:
            name.append(dbc.Badge("not in data", color="danger", className="ms-1"))
        rows.append(
            html.Div(
                [
                    html.Div(
                        name,
                        className="gate-marker-name small",
                        style={"flex": "1", "minWidth": "110px"},
                    ),
                    dbc.RadioItems(
                        id={"type": SIGN, "gene": marker.gene},
                        options=[
                            {"label": "+", "value": "+"},
                            {"label": "−", "value": "-"},
                        ],
                        value=marker.sign,
                        inline=True,
                        className="small",
                        inputClassName="me-1",
                    ),
                    dcc.Input(
                        id={"type": THRESHOLD, "gene": marker.gene},
                        type="number",
                        value=marker.threshold,
                        step=0.1,
                        debounce=True,
                        style={"width": "70px"},
                        className="form-control form-control-sm",
                    ),
                    dbc.Button(
                        "×",
                        id={"type": REMOVE, "gene": marker.gene},
                        size="sm",
                        color="link",
                        className="text-danger px-1",
                        title=f"remove {marker.gene}",
                    ),
                ],
                className="d-flex align-items-center gap-2 mb-1 gate-marker-row",
            )
        )
    return rows


def page_content(*, color, gene, metric, definition, gate_name, accept) -> html.Div:
    """Controls, gate panel and figure cards (values as the layout starts them)."""
    controls = dbc.Row(
        [
            _control(
                "Colour cells by",
                dcc.Dropdown(
                    id=COLOR,
                    options=[
                        {"label": v, "value": k} for k, v in cd8.COLOR_CHOICES.items()
                    ],
                    value=color,
                    clearable=False,
                ),
                3,
            ),
            _control(
                "Gene (for colour by gene; type to search)",
                dcc.Dropdown(
                    id=GENE,
                    options=[{"label": gene, "value": gene}] if gene else [],
                    value=gene or None,
                    searchable=True,
                    clearable=False,
                    placeholder="type a gene symbol",
                ),
                3,
            ),
            _control(
                "NK metric (per patient, pre-treatment)",
                dcc.Dropdown(
                    id=METRIC,
                    value=metric or cd8.DEFAULT_METRIC,
                    clearable=False,
                ),
                3,
            ),
            _control(
                "Response definition",
                dcc.Dropdown(id=DEFINITION, value=definition, clearable=False),
                3,
            ),
        ],
        className="g-2 mb-3",
    )
    gate_panel = dbc.Card(
        [
            dbc.CardHeader(html.Span("Phenotype gate", className="fw-semibold")),
            dbc.CardBody(
                [
                    dbc.Label(
                        "Gate name (empty: named for you)",
                        className="small text-muted mb-0",
                    ),
                    dbc.Input(
                        id=GATE_NAME,
                        value=gate_name,
                        placeholder=gating.DEFAULT_GATE_NAME,
                        debounce=True,
                        size="sm",
                        maxLength=80,
                        className="mb-2",
                    ),
                    html.Div(
                        "A cell is in the gate when it passes every marker: '+' = "
                        "expression > threshold, '−' = expression ≤ threshold "
                        "(log-normalized; default 0 = detected / not detected).",
                        className="small text-muted mb-2",
                    ),
                    html.Div(id=GATE_ROWS),
                    dbc.InputGroup(
                        [
                            dcc.Dropdown(
                                id=ADD_GENE,
                                placeholder="add a marker…",
                                searchable=True,
                                style={"minWidth": "160px", "flex": "1"},
                            ),
                            dbc.Button("Add", id=ADD, size="sm", color="secondary"),
                        ],
                        size="sm",
                        className="mt-2 mb-2 flex-nowrap",
                    ),
                    dbc.Button(
                        "Reset to Song et al. gate",
                        id=RESET,
                        size="sm",
                        color="link",
                        className="p-0 mb-2",
                    ),
                    html.Div(id=MISSING),
                    dbc.Checkbox(
                        id=ACCEPT,
                        value=accept,
                        label="Evaluate the gate without missing markers",
                        className="small mb-2",
                    ),
                    html.Div(id=GATE_COUNT, className="gate-count fw-semibold"),
                ]
            ),
        ],
        className="mb-3",
    )
    umap_tools = [
        dbc.Button(
            "Clear highlight",
            id=CLEAR_HIGHLIGHT,
            size="sm",
            color="warning",
            outline=True,
            style={"display": "none"},
        )
    ]
    content = html.Div(
        [
            controls,
            dbc.Row(
                [
                    dbc.Col(
                        [
                            figure_card(
                                UMAP,
                                "UMAP",
                                caption_id=UMAP_CAPTION,
                                height=620,
                                tools=umap_tools,
                                export=(PAGE_ID, "umap"),
                            ),
                        ],
                        lg=8,
                    ),
                    dbc.Col(
                        [
                            gate_panel,
                            dbc.Card(
                                dbc.CardBody(
                                    [
                                        html.Div(
                                            "Hover a cell for its details; select "
                                            "cells with the lasso or box for their "
                                            "composition.",
                                            className="small text-muted",
                                        ),
                                        html.Div(id=HOVER, className="small mt-2"),
                                        html.Div(id=SELECTION, className="small mt-2"),
                                    ]
                                ),
                                className="mb-3",
                            ),
                        ],
                        lg=4,
                    ),
                ]
            ),
            figure_card(HIST, "Gate markers", height=440, export=(PAGE_ID, "markers")),
            dbc.Row(
                [
                    dbc.Col(
                        figure_card(
                            BOX,
                            "Gate fraction by response",
                            caption_id=BOX_CAPTION,
                            export=(PAGE_ID, "gate-box"),
                            height=460,
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        figure_card(
                            NK,
                            "Gate fraction vs NK",
                            caption_id=NK_CAPTION,
                            export=(PAGE_ID, "gate-nk"),
                            height=460,
                        ),
                        lg=6,
                    ),
                ]
            ),
            figure_card(
                SENSITIVITY,
                "Gate sensitivity",
                caption_id=SENSITIVITY_CAPTION,
                export=(PAGE_ID, "sensitivity"),
                height=440,
            ),
            figure_card(
                COMPOSITION,
                "State composition by patient",
                caption_id=COMPOSITION_CAPTION,
                export=(PAGE_ID, "composition"),
                height=520,
            ),
            figure_card(
                DOTPLOT,
                "Marker genes by state",
                export=(PAGE_ID, "dotplot"),
                height=480,
            ),
        ],
        id=CONTENT,
    )
    return content
