"""Page `/nk-response`: NK metric vs ICB response per patient, with defensible tests."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import (
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)

from analysis.nk_metrics import available_metrics
from analysis.nk_response import (
    CONTROL_LABELS,
    DECONVOLUTION,
    MAX_LANDMARK,
    SPLITS,
    STATE_KEYS,
    TIMEPOINT_LABELS,
    has_cibersort_p,
    parse_landmark,
    unreliable_deconvolution,
)
from analysis.response import DEFINITIONS, available_definitions
from analysis.stats import format_p
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
LANDMARK = f"{PREFIX}-landmark"
DECONV = f"{PREFIX}-deconvolution"
DECONV_WARNING = f"{PREFIX}-deconvolution-warning"
DECONV_COL = f"{PREFIX}-deconvolution-col"
NOTICE = f"{PREFIX}-link-notice"
BANNER = f"{PREFIX}-definition-banner"
LINK_STORE = f"{PREFIX}-link"
CHOSEN_STORE = f"{PREFIX}-chosen"
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
    "nk-km-os": (f"{PREFIX}-km-os", "Overall survival by NK group", 620),
    "nk-km-pfs": (f"{PREFIX}-km-pfs", "Progression-free survival by NK group", 620),
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
    """Controls (read back from the URL), summary, and the six views.

    The URL's page keys are kept as asked in a store; the first computation
    resolves them, shows a notice for each value it could not use and rewrites
    the URL to the state shown.
    """
    state = {k: _query_value(query.get(k)) for k in STATE_KEYS}
    try:
        landmark = parse_landmark(state["landmark"])
    except ValueError:
        landmark = None  # the callback names the bad value in the notice
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    html.Label("NK metric", htmlFor=METRIC, className="form-label"),
                    dcc.Dropdown(id=METRIC, value=state["metric"], clearable=False),
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
                        id=DEFINITION, value=state["definition"], clearable=False
                    ),
                ],
                md=3,
            ),
            dbc.Col(
                [
                    html.Label("NK timepoint", className="form-label d-block"),
                    dbc.RadioItems(
                        id=TIMEPOINT,
                        options=_timepoint_options(schema.TIMEPOINTS),
                        value=state["nk_timepoint"],
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
                        value=state["split"],
                        inline=True,
                    ),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    html.Label(
                        CONTROL_LABELS["landmark"],
                        htmlFor=LANDMARK,
                        className="form-label",
                    ),
                    dcc.Input(
                        id=LANDMARK,
                        type="number",
                        min=0,
                        max=MAX_LANDMARK,
                        step="any",
                        value=landmark,
                        debounce=True,
                        placeholder="none",
                        className="form-control form-control-sm",
                    ),
                    html.Div(
                        "survival from this many months after treatment start",
                        className="form-text",
                    ),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    html.Label(CONTROL_LABELS["deconvolution"], className="form-label"),
                    dbc.RadioItems(
                        id=DECONV,
                        options=_deconvolution_options(False),
                        value=state["deconvolution"] or "all",
                        inline=True,
                    ),
                ],
                md=3,
                id=DECONV_COL,
                style={"display": "none"},  # shown for datasets with p-values
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
    asked = {k: v for k, v in state.items() if v}
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
            html.Div(id=NOTICE),
            controls,
            html.Div(id=BANNER),
            dbc.Alert(id=SUMMARY, color="light", className="nk-summary small py-2"),
            html.Div(id=EMPTY, hidden=True),
            content,
            dcc.Store(id=STATE_STORE, data=asked),
            dcc.Store(id=LINK_STORE, data=asked),
            dcc.Store(
                id=CHOSEN_STORE,
                data={"definition": state["definition"]}
                if state["definition"] in DEFINITIONS
                else {},
            ),
            dcc.Store(id=URL_DUMMY),
        ]
    )


def _deconvolution_options(available: bool) -> list[dict]:
    """Sample set options; p < 0.05 disabled without CIBERSORT p-values."""
    return [
        {"label": label, "value": key, "disabled": key != "all" and not available}
        for key, label in DECONVOLUTION.items()
    ]


def deconvolution_warning(samples) -> dbc.Alert | None:
    """Per cohort, a warning when most samples have CIBERSORT p >= 0.05."""
    bad = unreliable_deconvolution(samples)
    if not bad:
        return None
    return dbc.Alert(
        [
            html.Strong("Unreliable deconvolution: "),
            "; ".join(
                f"{cohort}: {n_bad} of {n} samples have CIBERSORT p ≥ 0.05"
                for cohort, n_bad, n in bad
            ),
            ". Their NK and CD8 fractions may be noise; choose “deconvolution "
            "p < 0.05” to analyse only reliably deconvolved samples.",
        ],
        id=DECONV_WARNING,
        color="warning",
        className="small py-2",
    )


def _timepoint_options(available) -> list[dict]:
    """NK timepoint radio options; timepoints without filtered samples disabled."""
    return [
        {"label": t, "value": t, "disabled": t not in available}
        for t in schema.TIMEPOINTS
    ]


#: Named outputs of :func:`compute_page`, in the callback's output order.
OUTPUT_NAMES = (
    *(f"figure:{k}" for k in CARDS),
    *(f"caption:{k}" for k in CARDS),
    "metric_options",
    "metric",
    "definition_options",
    "definition",
    "timepoint_options",
    "nk_timepoint",
    "split",
    "landmark",
    "deconvolution_options",
    "deconvolution_style",
    "state",
    "chosen",
    "link",
    "summary",
    "note",
    "notice",
    "banner",
    "content_hidden",
    "empty_hidden",
    "empty",
)
_OUTPUTS = [
    *(Output(CARDS[k][0], "figure") for k in CARDS),
    *(Output(_caption_id(k), "children") for k in CARDS),
    Output(METRIC, "options"),
    Output(METRIC, "value"),
    Output(DEFINITION, "options"),
    Output(DEFINITION, "value"),
    Output(TIMEPOINT, "options"),
    Output(TIMEPOINT, "value"),
    Output(SPLIT, "value"),
    Output(LANDMARK, "value"),
    Output(DECONV, "options"),
    Output(DECONV_COL, "style"),
    Output(STATE_STORE, "data"),
    Output(CHOSEN_STORE, "data"),
    Output(LINK_STORE, "data"),
    Output(SUMMARY, "children"),
    Output(NOTE, "children"),
    Output(NOTICE, "children"),
    Output(BANNER, "children"),
    Output(CONTENT, "hidden"),
    Output(EMPTY, "hidden"),
    Output(EMPTY, "children"),
]


@callback(
    *_OUTPUTS,
    Input(ids.FILTER_STORE, "data"),
    Input(METRIC, "value"),
    Input(DEFINITION, "value"),
    Input(TIMEPOINT, "value"),
    Input(SPLIT, "value"),
    Input(LANDMARK, "value"),
    State(STATE_STORE, "data"),
    State(LINK_STORE, "data"),
    State(CHOSEN_STORE, "data"),
    Input(DECONV, "value"),
)
def update_nk_response(
    filter_data,
    metric,
    definition,
    timepoint,
    split,
    landmark,
    stored,
    link,
    chosen,
    deconvolution=None,
):
    """Recompute every view for the global filter and the page controls."""
    if filter_data is None:
        raise dash.exceptions.PreventUpdate
    out = compute_page(
        filter_data,
        {
            "metric": metric,
            "definition": definition,
            "nk_timepoint": timepoint,
            "split": split,
            "landmark": landmark,
            "deconvolution": deconvolution,
        },
        stored=stored,
        link=link,
        chosen=chosen,
        trigger=ctx.triggered_id,
    )
    return tuple(out[name] for name in OUTPUT_NAMES)


def requested_state(
    controls: dict,
    *,
    stored: dict | None,
    link: dict | None,
    chosen: dict | None,
    trigger: str | None,
) -> dict:
    """The state asked for: the controls, the link on first load, the remembered
    response definition (kept while the filtered view cannot use it)."""
    stored = dict(stored or {})
    link = dict(link or {})
    state = {}
    for key in ("metric", "definition", "nk_timepoint", "split", "deconvolution"):
        # a dropdown drops a URL value before its options arrive
        state[key] = link.get(key) or controls.get(key) or stored.get(key)
    if trigger == LANDMARK:
        state["landmark"] = controls.get("landmark")  # cleared means no landmark
    elif "landmark" in link:
        state["landmark"] = link["landmark"]
    elif controls.get("landmark") is not None:
        state["landmark"] = controls["landmark"]
    else:
        state["landmark"] = stored.get("landmark")
    if trigger != DEFINITION and (chosen or {}).get("definition") in DEFINITIONS:
        state["definition"] = chosen["definition"]
    return state  # fmt: skip


def compute_page(
    filter_data: dict,
    controls: dict,
    *,
    stored: dict | None = None,
    link: dict | None = None,
    chosen: dict | None = None,
    trigger: str | None = None,
) -> dict:
    """Every output of the page, by name (see :data:`OUTPUT_NAMES`)."""
    settings = get_settings()
    state = requested_state(
        controls, stored=stored, link=link, chosen=chosen, trigger=trigger
    )
    out: dict = {f"figure:{k}": empty_figure("") for k in CARDS}
    out.update({f"caption:{k}": "" for k in CARDS})
    no = dash.no_update
    out.update(
        metric_options=[], metric=no, definition_options=[], definition=no,
        timepoint_options=_timepoint_options(schema.TIMEPOINTS), nk_timepoint=no,
        split=no, landmark=no, deconvolution_options=_deconvolution_options(False),
        deconvolution_style=no, state=no, chosen=no, link=None, summary="", note="",
        notice=None if link else no, banner=None, content_hidden=True,
        empty_hidden=False, empty=None,
    )  # fmt: skip
    try:
        view = cohort_view(
            filter_data,
            data_dir=settings.data_dir,
            default_dataset=settings.default_dataset,
        )
        # shared by all workers and users: a view is computed once
        panels = cached_panels(PAGE_ID, view, state)
    except DataError as err:
        out["empty"] = data_error_alert(err)
        return out
    samples = view.samples if not view.samples.empty else view.bundle.cohort
    provenance = panels[0].provenance
    resolved = provenance["state"]
    summary = provenance["stats"]
    fallbacks = summary["fallbacks"]
    out.update(
        metric_options=[
            {"label": m.label, "value": m.key} for m in available_metrics(samples)
        ],
        metric=resolved["metric"],
        definition_options=[
            {"label": DEFINITIONS[k].label, "value": k}
            for k in available_definitions(samples)
        ],
        definition=resolved["definition"],
        timepoint_options=_timepoint_options(set(view.samples["timepoint"])),
        nk_timepoint=resolved["nk_timepoint"],
        split=resolved["split"],
        landmark=resolved["landmark"],
        state=resolved,
        note=f"{view.bundle.meta.label} · {view.filter.describe()}",
        deconvolution_options=_deconvolution_options(has_cibersort_p(samples)),
        deconvolution_style={} if has_cibersort_p(samples) else {"display": "none"},
    )
    warning = deconvolution_warning(samples)
    if warning is not None:
        out["note"] = [out["note"], warning]
    if trigger == DEFINITION and controls.get("definition"):
        out["chosen"] = {"definition": controls["definition"]}
    elif state.get("definition") not in available_definitions(view.bundle.cohort):
        out["chosen"] = {}  # never usable here: stop asking for it
    asked_definition = state.get("definition")
    # offered by the dataset, not by the filtered patients: a banner (a filter
    # change can cause it); a definition the dataset never offers is a link value
    unavailable = asked_definition != resolved[
        "definition"
    ] and asked_definition in available_definitions(view.bundle.cohort)
    if unavailable:
        out["banner"] = _definition_banner(asked_definition, resolved["definition"])
    link_fallbacks = [
        f
        for f in fallbacks
        if link and f["key"] in link and not (f["key"] == "definition" and unavailable)
    ]
    if link:
        out["notice"] = link_notice(
            [_link_fallback(f) for f in link_fallbacks], id=f"{PREFIX}-notice-alert"
        )
    else:
        # a value typed into the landmark box that cannot be used
        typed = [f for f in fallbacks if f["key"] == "landmark"]
        out["notice"] = (
            dbc.Alert(typed[0]["note"], color="warning", className="small py-2")
            if typed
            else None
        )
    told = {f["note"] for f in link_fallbacks} if link else set()
    if not link:
        told |= {f["note"] for f in fallbacks if f["key"] == "landmark"}
    if unavailable:
        told |= {f["note"] for f in fallbacks if f["key"] == "definition"}
    out["summary"] = _summary(summary, provenance, told=told)
    if summary["empty_message"]:
        out["empty"] = empty_state(
            summary["empty_message"], _empty_hint(view, resolved["nk_timepoint"])
        )
        return out
    by_key = {p.key: p for p in panels}
    for k in CARDS:
        out[f"figure:{k}"] = (
            by_key[k].figure if k in by_key else empty_figure(_missing(k))
        )
        out[f"caption:{k}"] = by_key[k].caption if k in by_key else ""
    out.update(content_hidden=False, empty_hidden=True, empty=None)
    return out


def _link_fallback(f: dict) -> LinkFallback:
    """A fallback of the analysis as the shared link notice shows it."""
    reason = f["reason"]
    if f["value"] != f["requested"]:  # a known key: say what it stands for
        reason = f"means “{f['value']}”, which {reason}"
    return LinkFallback(
        key=f["key"],
        label=f["label"],
        value=f["requested"],
        shown=f["shown"],
        reason=reason,
    )


def _definition_banner(asked: str, used: str) -> dbc.Alert:
    """The response definition analysed differs from the one chosen: say so."""
    source = "study-reported R/NR" if asked == "reported" else "RECIST"
    return dbc.Alert(
        [
            html.Strong("Response definition changed for this view. "),
            f"You chose “{DEFINITIONS[asked].label}”, but none of the filtered "
            f"patients has a {source} value, so every number below uses "
            f"“{DEFINITIONS[used].label}”. Widen the sidebar filters to analyse "
            f"“{DEFINITIONS[asked].label}” again.",
        ],
        color="warning",
        className="small py-2",
        id=f"{PREFIX}-definition-changed",
    )


def _empty_hint(view, nk_timepoint: str) -> str:
    """Which control to change when nothing is left to analyse."""
    present = [t for t in schema.TIMEPOINTS if t in set(view.samples["timepoint"])]
    sidebar = view.filter.timepoint
    if view.samples.empty:
        return "Remove a filter in the sidebar."
    if nk_timepoint not in present:
        others = " or ".join(f"“{t}”" for t in present)
        if sidebar and nk_timepoint not in sidebar:
            return (
                f"The sidebar filter “Timepoint” keeps only "
                f"{', '.join(TIMEPOINT_LABELS[t] for t in sidebar)} samples. Set "
                f"“NK timepoint” on this page to {others}, or add "
                f"“{nk_timepoint}” to “Timepoint” in the sidebar."
            )
        return (
            f"Set “NK timepoint” on this page to {others}, or widen the sidebar "
            "filters."
        )
    return "Remove a filter in the sidebar or change “NK timepoint” on this page."


def _missing(key: str) -> str:
    if key.startswith("nk-km-"):
        return "This dataset has no survival data for this endpoint"
    return "Not available for this dataset"


def _summary(summary: dict, provenance: dict, told: set[str] = frozenset()) -> list:
    """Headline: what was analysed, who was excluded, the test, its direction."""
    timepoint = summary.get("timepoint_label") or TIMEPOINT_LABELS.get(
        summary["timepoint"], summary["timepoint"]
    )
    n = summary["n_patients"]
    if summary["empty_message"]:
        parts = [html.Strong(summary["empty_message"])]
        if provenance.get("exclusions"):
            parts.append(" " + provenance["exclusions"] + ".")
        return parts
    parts = [
        html.Strong(f"{n} patient{'s' if n != 1 else ''} analysed", id=f"{PREFIX}-n"),
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
    parts += [html.Br(), html.Span(_test_text(summary), id=f"{PREFIX}-test")]
    survival = _survival_text(summary)
    if survival:
        parts += [html.Br(), html.Span(survival, id=f"{PREFIX}-survival")]
    for note in summary["notes"]:
        if note in told:
            continue  # shown in the link notice or the banner
        parts += [html.Br(), html.Span(note, className="text-warning-emphasis")]
    return parts


def _test_text(summary: dict) -> str:
    """The test, its p-value and the effect direction in words (with r and AUC)."""
    parts = []
    mw, kw, auc = summary["mann_whitney"], summary["kruskal_wallis"], summary["auc"]
    if mw:
        parts.append(
            mw["message"]
            or f"Two-sided Mann-Whitney U = {mw['u']:g}, {format_p(mw['p'])}: "
            f"{mw['direction']}."
        )
    elif kw:
        parts.append(
            f"Kruskal-Wallis H = {kw['h']:.2f}, {format_p(kw['p'])}."
            if kw["p"] is not None
            else str(kw.get("message") or "")
        )
        if auc and auc["effect_direction"]:
            parts.append(f"{auc['effect_direction']}.")
    if auc and auc["auc"] is not None:
        parts.append(f"{auc['sentence']}.")
    return " ".join(p for p in parts if p)


def _survival_text(summary: dict) -> str:
    """Where survival time starts and how the NK groups are cut."""
    if summary["survival_message"]:
        return (
            "Survival panels: not drawn from treatment start for "
            f"{TIMEPOINT_LABELS[summary['timepoint']]} NK values (immortal-time "
            "bias); set a landmark to compare survival from then on."
        )
    if not summary["survival"]:
        return ""
    groups = "; ".join(
        f"{g}: {t}" for g, t in summary["nk_groups"]["definitions"].items()
    )
    landmark = summary["landmark_months"]
    origin = (
        "from treatment start"
        if landmark is None
        else f"from a landmark {landmark:g} months after treatment start"
    )
    return f"Survival {origin}; NK groups: {groups}."


# Page state -> address bar, so a copied link reproduces the view.
clientside_callback(
    "function (state) { if (state) { window.icbSetQuery(state); }"
    " return window.dash_clientside.no_update; }",
    Output(URL_DUMMY, "data"),
    Input(STATE_STORE, "data"),
)
