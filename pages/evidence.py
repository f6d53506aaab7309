"""Page `/evidence`: NK vs response pooled across cohorts of many datasets, the
multiverse of analytic choices, and the published findings beside them."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, dcc, html

from analysis.evidence_view import answering_datasets
from analysis.meta import BINARY_DEFINITIONS
from analysis.multiverse import DEFINITION_LABELS
from analysis.nk_metrics import available_metrics
from components import ids
from components.cache import cached_panels
from components.common import data_error_alert, empty_state, figure_card
from config import get_settings
from data.errors import DataError
from data.registry import get_bundle
from data.view import cohort_view
from figures.template import empty_figure

dash.register_page(__name__, path="/evidence", name="Evidence", order=4)

PAGE_ID = "evidence"
PREFIX = "evidence"
DATASETS = f"{PREFIX}-datasets"
METRIC = f"{PREFIX}-metric"
DEFINITION = f"{PREFIX}-definition"
TIMEPOINT = f"{PREFIX}-timepoint"
GROUP_BY = f"{PREFIX}-group-by"
SUMMARY = f"{PREFIX}-summary"
NOTES = f"{PREFIX}-notes"
URL_DUMMY = f"{PREFIX}-url-dummy"
STATE_STORE = ids.page_state(PAGE_ID)
STATE_KEYS = ("datasets", "metric", "definition", "timepoint", "group_by")

#: panel key -> (graph id, card title, height)
CARDS = {
    "evidence-forest": (f"{PREFIX}-forest", "Per cohort and pooled", 640),
    "evidence-loo": (f"{PREFIX}-loo", "Leave one cohort out", 480),
    "evidence-funnel": (f"{PREFIX}-funnel", "Funnel plot and Egger's test", 480),
    "evidence-adjusted": (
        f"{PREFIX}-adjusted",
        "NK separated from infiltration (adjusted for CD8)",
        560,
    ),
    "evidence-multiverse": (
        f"{PREFIX}-multiverse",
        "The multiverse of analytic choices",
        680,
    ),
}
CHECK = "recalled, not re-read: check before citing"

#: Published findings in both directions (data, not opinion). DOIs only where read.
LITERATURE = (
    {
        "study": "Song et al. 2025, Cancer Discovery",
        "doi": "",
        "cohort": "ICB-treated patients; tumor NK and CD8 T cells",
        "method": "single-cell and functional studies",
        "direction": "fewer tumor NK cells, better response to PD-1/PD-L1 blockade "
        "(NK cells compete with CD8 T cells for IFN-alpha and IL-2)",
        "sign": "lower NK in responders",
        "check": "cohort and method " + CHECK + "; DOI not given here",
    },
    {
        "study": "Pozniak et al. 2025, Cancer Discovery",
        "doi": "",
        "cohort": "melanoma, anti-PD-1 (on-treatment biopsies)",
        "method": "single-cell RNA-seq",
        "direction": "cytotoxic NK cells rise early on treatment in non-responders",
        "sign": "higher NK in non-responders (on treatment)",
        "check": "all details " + CHECK + "; DOI not given here",
    },
    {
        "study": "Barry et al. 2018, Nature Medicine",
        "doi": "10.1038/s41591-018-0085-8",
        "cohort": "human melanoma; anti-PD-1-treated patients",
        "method": "NK and stimulatory dendritic-cell (FLT3LG) gene signatures, "
        "mouse models",
        "direction": "NK cell frequency correlates with responsiveness to anti-PD-1 "
        "and with longer overall survival",
        "sign": "higher NK in responders",
        "check": "title and DOI read from the publisher's page; cohort size " + CHECK,
    },
    {
        "study": "Lee et al. 2019, OncoImmunology",
        "doi": "",
        "cohort": "metastatic melanoma, anti-PD-1",
        "method": "NK cell gene expression and immunophenotyping",
        "direction": "NK cell presence goes with better anti-PD-1 response",
        "sign": "higher NK in responders",
        "check": "all details " + CHECK + "; DOI not given here",
    },
    {
        "study": "Cursons et al. 2019, Cancer Immunology Research",
        "doi": "10.1158/2326-6066.CIR-18-0500",
        "cohort": "TCGA metastatic cutaneous melanoma",
        "method": "curated NK gene signature scored with singscore on bulk RNA-seq",
        "direction": "NK infiltration goes with better survival (not an ICB "
        "response endpoint)",
        "sign": "higher NK, longer survival",
        "check": "title, DOI and abstract read from the publisher's page",
    },
)


def literature_cards() -> html.Div:
    """Short cards: study, DOI, cohort, method, direction (data, not opinion)."""
    cards = []
    for item in LITERATURE:
        doi = (
            html.A(
                f"doi:{item['doi']}",
                href=f"https://doi.org/{item['doi']}",
                target="_blank",
                rel="noopener",
            )
            if item["doi"]
            else html.Span("DOI: check before citing", className="text-muted")
        )
        cards.append(
            dbc.Card(
                dbc.CardBody(
                    [
                        html.H6(item["study"], className="mb-1"),
                        html.Div(doi, className="small mb-1"),
                        html.Div(
                            [html.Strong("Direction: "), item["sign"]],
                            className="small",
                        ),
                        html.Div(item["direction"], className="small"),
                        html.Div(
                            [html.Strong("Cohort: "), item["cohort"]],
                            className="small",
                        ),
                        html.Div(
                            [html.Strong("Method: "), item["method"]],
                            className="small",
                        ),
                        html.Div(item["check"], className="small text-muted mt-1"),
                    ]
                ),
                className="mb-2 evidence-literature-card",
            )
        )
    return html.Div(
        [html.H3("Published findings", className="h6"), *cards],
        id=f"{PREFIX}-literature",
    )


def _card(key: str):
    graph_id, title, height = CARDS[key]
    return figure_card(
        graph_id, title, caption_id=f"{graph_id}-caption", height=height,
        export=(PAGE_ID, key),
    )  # fmt: skip


def _one(value) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def dataset_options() -> list[dict]:
    """Datasets with an NK estimate and a response, for the picker."""
    return [
        {"label": name, "value": name}
        for name in answering_datasets(get_settings().data_dir)
    ]


def layout(**query) -> html.Div:
    """Controls (from the URL), the pooled answer, the figures, the literature."""
    state = {k: _one(query.get(k)) for k in STATE_KEYS}
    options = dataset_options()
    known = [o["value"] for o in options]
    asked = [d for d in (state["datasets"] or "").split(",") if d]
    chosen = [d for d in asked if d in known] or known
    dropped = [d for d in asked if d not in known]
    notice = (
        dbc.Alert(
            f"The link asked for dataset(s) {', '.join(dropped)}, which have no NK "
            "estimate and response here (or do not exist); showing "
            f"{', '.join(chosen) or 'none'} instead.",
            color="warning",
            className="small",
        )
        if dropped
        else None
    )
    definition = state["definition"] if state["definition"] in BINARY_DEFINITIONS else (
        "objective"
    )  # fmt: skip
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    html.Label("Datasets", htmlFor=DATASETS, className="form-label"),
                    dcc.Dropdown(
                        id=DATASETS, options=options, value=chosen, multi=True
                    ),
                ],
                md=4,
            ),
            dbc.Col(
                [
                    html.Label("NK metric", htmlFor=METRIC, className="form-label"),
                    dcc.Dropdown(
                        id=METRIC,
                        # options from the start: a value outside them is dropped
                        options=_safe_metric_options(chosen),
                        value=state["metric"] or "nk_lymphocytes",
                        clearable=False,
                    ),
                ],
                md=3,
            ),
            dbc.Col(
                [
                    html.Label(
                        "Response definition",
                        htmlFor=DEFINITION,
                        className="form-label",
                    ),
                    dcc.Dropdown(
                        id=DEFINITION,
                        options=[
                            {"label": DEFINITION_LABELS[k], "value": k}
                            for k in BINARY_DEFINITIONS
                        ],
                        value=definition,
                        clearable=False,
                    ),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    html.Label("NK timepoint", className="form-label d-block"),
                    dbc.RadioItems(
                        id=TIMEPOINT,
                        options=[
                            {"label": t, "value": t} for t in ("pre", "on", "post")
                        ],
                        value=state["timepoint"]
                        if state["timepoint"] in ("pre", "on", "post")
                        else "pre",
                        inline=True,
                    ),
                ],
                md=1,
            ),
            dbc.Col(
                [
                    html.Label("Forest grouped by", className="form-label d-block"),
                    dbc.RadioItems(
                        id=GROUP_BY,
                        options=[
                            {"label": "tumor type", "value": "tumor_type"},
                            {"label": "treatment", "value": "treatment_class"},
                        ],
                        value=state["group_by"]
                        if state["group_by"] in ("tumor_type", "treatment_class")
                        else "tumor_type",
                        inline=True,
                    ),
                ],
                md=2,
            ),
        ],
        className="g-3 mb-3",
    )
    return html.Div(
        [
            html.H2("Evidence across cohorts", className="h4"),
            html.P(
                "Does 'fewer NK cells, better response' hold across cohorts? Each "
                "cohort's effect is the rank-biserial r of the NK metric between "
                "responders and non-responders (as on NK vs response; r > 0: lower in "
                "responders), pooled by random effects (DerSimonian-Laird; REML with "
                "Hartung-Knapp). The specification curve repeats the pooling for "
                "every NK estimator, denominator, response definition and timepoint. "
                "The global filter's tumor type, treatment and timepoint apply to "
                "every dataset; cohort names do not.",
                className="small text-muted mb-2",
            ),
            notice,
            controls,
            dbc.Alert(id=SUMMARY, color="light", className="small py-2"),
            html.Div(id=NOTES, className="small text-muted mb-2"),
            dbc.Row(
                [
                    dbc.Col(_card("evidence-forest"), lg=8),
                    dbc.Col(literature_cards(), lg=4),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(_card("evidence-loo"), lg=6),
                    dbc.Col(_card("evidence-funnel"), lg=6),
                ]
            ),
            _card("evidence-adjusted"),
            _card("evidence-multiverse"),
            dcc.Store(id=STATE_STORE, data={k: v for k, v in state.items() if v}),
            dcc.Store(id=URL_DUMMY),
        ]
    )


def metric_options(datasets: list[str]) -> list[dict]:
    """Metrics of any selected dataset (a cohort without it says so)."""
    data_dir = get_settings().data_dir
    seen: dict[str, str] = {}
    for name in datasets:
        for m in available_metrics(get_bundle(name, data_dir).cohort):
            seen.setdefault(m.key, m.label)
    return [{"label": label, "value": key} for key, label in seen.items()]


def _safe_metric_options(datasets: list[str]) -> list[dict]:
    try:
        return metric_options(datasets)
    except DataError:  # the callback shows the problem
        return []


#: outputs of :func:`compute_page`, in order
OUTPUT_NAMES = (
    *(f"figure:{k}" for k in CARDS),
    *(f"caption:{k}" for k in CARDS),
    "metric_options",
    "metric",
    "state",
    "summary",
    "notes",
)


def compute_page(
    filter_data, datasets, metric, definition, timepoint, group_by
) -> dict[str, object]:
    """Everything the callback returns, by name (tested without a browser)."""
    datasets = [d for d in (datasets or []) if d]
    out: dict[str, object] = {}
    blank = empty_figure("Choose at least one dataset.")
    if not datasets:
        for key in CARDS:
            out[f"figure:{key}"] = blank
            out[f"caption:{key}"] = ""
        out.update(
            metric_options=[], metric=metric, state={}, notes="",
            summary=empty_state("No dataset chosen.",
                                "Pick datasets with an NK estimate and a response."),
        )  # fmt: skip
        return out
    options = metric_options(datasets)
    keys = [o["value"] for o in options]
    if metric not in keys:
        metric = "nk_lymphocytes" if "nk_lymphocytes" in keys else keys[0]
    state = {
        "datasets": ",".join(datasets),
        "metric": metric,
        "definition": definition or "objective",
        "timepoint": timepoint or "pre",
        "group_by": group_by or "tumor_type",
    }
    # the view only carries the data directory and the filter: the sidebar's
    # dataset may not be among the chosen ones (or may not exist in DATA_DIR)
    choices = dict(filter_data or {}, dataset=datasets[0])
    view = cohort_view(
        choices, data_dir=get_settings().data_dir, default_dataset=datasets[0]
    )
    panels = {p.key: p for p in cached_panels(PAGE_ID, view, state)}
    for key in CARDS:
        panel = panels.get(key)
        out[f"figure:{key}"] = panel.figure if panel else blank
        out[f"caption:{key}"] = panel.caption if panel else ""
    forest = panels["evidence-forest"]
    notes = forest.table["message"].fillna("") if not forest.table.empty else []
    skipped = [
        f"{row['cohort']} ({row['dataset']}): {row['message']}"
        for _, row in forest.table.iterrows()
        if not row["pooled"]
    ] if len(notes) else []  # fmt: skip
    out.update(
        metric_options=options,
        metric=metric,
        state=state,
        summary=forest.caption,
        notes=("Not pooled: " + "; ".join(skipped)) if skipped else "",
    )
    return out


@callback(
    *(Output(CARDS[k][0], "figure") for k in CARDS),
    *(Output(f"{CARDS[k][0]}-caption", "children") for k in CARDS),
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(STATE_STORE, "data"),
    Output(SUMMARY, "children"),
    Output(NOTES, "children"),
    Input(ids.FILTER_STORE, "data"),
    Input(DATASETS, "value"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(TIMEPOINT, "value"),
    Input(GROUP_BY, "value"),
    State(STATE_STORE, "data"),
)
def update_evidence(filter_data, datasets, metric, definition, timepoint, group_by, _):
    """Recompute the pooled answer for the chosen datasets and controls."""
    try:
        out = compute_page(
            filter_data, datasets, metric, definition, timepoint, group_by
        )
    except DataError as err:
        blank = empty_figure("The data cannot be used as they are.")
        out = {f"figure:{k}": blank for k in CARDS}
        out.update({f"caption:{k}": "" for k in CARDS})
        out.update(
            metric_options=[], metric=metric, state={},
            summary=data_error_alert(err), notes="",
        )  # fmt: skip
    return tuple(out[name] for name in OUTPUT_NAMES)


clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_DUMMY, "data"),
    Input(STATE_STORE, "data"),
)
