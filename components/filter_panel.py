"""The sidebar: global cohort filters, mirrored in a Store and in the URL query."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)

from components import ids
from components.common import LinkFallback, link_notice
from config import get_settings
from data import schema
from data.errors import DataError
from data.filters import (
    FIELD_LABELS,
    CohortFilter,
    Unknown,
    filter_options,
    resolve_filter,
    shown_instead,
)
from data.registry import get_bundle, list_datasets

#: A notice lists at most this many valid values per key (real cohorts have dozens).
MAX_LISTED = 12

LABELS = {
    "tumor_type": "Tumor type",
    "treatment": "Treatment",
    "cohort": "Cohort",
    "timepoint": "Timepoint",
    "response": "Response (RECIST or reported)",
}


def filter_panel() -> html.Div:
    """Sidebar with the dataset picker and one multi-select per cohort field."""
    controls = [
        html.Label("Dataset", htmlFor=ids.DATASET, className="form-label fw-semibold"),
        dcc.Dropdown(id=ids.DATASET, clearable=False, className="mb-2"),
        html.Div(id=ids.DATASET_INFO, className="small mb-3"),
    ]
    for field, dropdown_id in zip(
        schema.FILTER_FIELDS, ids.FIELD_DROPDOWNS, strict=True
    ):
        controls += [
            html.Label(LABELS[field], htmlFor=dropdown_id, className="form-label mb-1"),
            dcc.Dropdown(
                id=dropdown_id, multi=True, placeholder="All", className="mb-3"
            ),
        ]
    controls.append(
        html.P(
            "Filters apply to every page and are kept in the address bar: copy the "
            "link "
            "to share this view.",
            className="small text-muted",
        )
    )
    return html.Div(controls, className="filter-panel")


def _dataset_options() -> list[dict[str, object]]:
    options = []
    for entry in list_datasets(get_settings().data_dir):
        if entry.meta is None:
            options.append({"label": f"{entry.name} (invalid)", "value": entry.name})
        else:
            options.append({"label": entry.meta.label, "value": entry.name})
    return options


def _dataset_info(name: str) -> tuple[object, dict[str, list[str]] | None, str]:
    """Sidebar blurb, filter options (None on error) and title of a dataset."""
    try:
        bundle = get_bundle(name, get_settings().data_dir)
    except DataError as err:
        alert = dbc.Alert(str(err.problems[0]), color="danger", className="p-2")
        return alert, None, name
    meta = bundle.meta
    badge = (
        dbc.Badge(
            "synthetic data", color="warning", text_color="dark", className="me-1"
        )
        if meta.synthetic
        else dbc.Badge("real data", color="info", className="me-1")
    )
    info = html.Div(
        [badge, html.Span(f"v{meta.version} · {meta.license}", className="text-muted")],
        title=meta.description,
    )
    return info, filter_options(bundle.cohort), meta.title


def _listed(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_LISTED])
    more = len(values) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "") if values else "none"


def link_fallbacks(
    unknown: list[Unknown],
    resolved: CohortFilter,
    options: dict[str, list[str]],
    *,
    datasets: list[str],
    title: str,
) -> list[LinkFallback]:
    """Each link value the sidebar could not honour, in the reader's words.

    ``datasets`` are the datasets' labels as the dataset picker shows them.
    """
    fallbacks = []
    for key, value in unknown:
        if key == "dataset":
            reason = f"is not a dataset here (there are: {_listed(datasets)})"
        else:
            reason = (
                f"is not in the dataset “{title}” "
                f"(it has: {_listed(options.get(key, []))})"
            )
        fallbacks.append(
            LinkFallback(
                key=key,
                label=FIELD_LABELS[key],
                value=value,
                shown=shown_instead(key, resolved, title),
                reason=reason,
            )
        )
    return fallbacks


@callback(
    Output(ids.DATASET, "options"),
    Output(ids.DATASET, "value"),
    Output(ids.DATASET_INFO, "children"),
    *[Output(i, "options") for i in ids.FIELD_DROPDOWNS],
    *[Output(i, "value") for i in ids.FIELD_DROPDOWNS],
    Output(ids.FILTER_STORE, "data"),
    Output(ids.LINK_NOTICE, "children"),
    Input(ids.URL, "search"),
    Input(ids.DATASET, "value"),
    *[Input(i, "value") for i in ids.FIELD_DROPDOWNS],
    State(ids.FILTER_STORE, "data"),
)
def sync_filters(search, dataset, *field_values_and_store):
    """Keep URL, dropdowns and the filter Store in agreement (URL wins on load)."""
    *field_values, stored = field_values_and_store
    from_link = ctx.triggered_id in (None, ids.URL)
    if from_link:
        flt = CohortFilter.from_query(search)
    else:
        values = dict(zip(schema.FILTER_FIELDS, field_values, strict=True))
        flt = CohortFilter.from_mapping({"dataset": dataset, **values})
    return sidebar_outputs(flt, from_link=from_link, stored=stored)


def sidebar_outputs(flt: CohortFilter, *, from_link: bool, stored: dict | None):
    """Outputs of :func:`sync_filters` for a filter asked for by a link or the user.

    Values are matched to the dataset case-insensitively; a link value that matches
    nothing is named in the link notice, which stays while the same view is shown
    at another address and goes when a filter changes.
    """
    settings = get_settings()
    datasets = _dataset_options()
    names = [str(o["value"]) for o in datasets]
    seen: dict[str, tuple] = {}

    def options_of(name: str) -> dict[str, list[str]]:
        seen[name] = _dataset_info(name)
        options = seen[name][1]
        if options is None:
            # the dataset cannot be loaded (its alert says why): keep the choices
            # rather than report every value as unknown
            return {f: list(getattr(flt, f)) for f in schema.FILTER_FIELDS}
        return options

    flt, unknown = resolve_filter(
        flt, options_of, datasets=names, default_dataset=settings.default_dataset
    )
    info, options, title = seen[flt.dataset]
    options = options or {}
    if from_link and unknown:
        notice = link_notice(
            link_fallbacks(
                unknown,
                flt,
                options,
                datasets=[str(o["label"]) for o in datasets],
                title=title,
            ),
            id=ids.LINK_NOTICE_ALERT,
        )
    elif from_link and flt.to_dict() == stored:
        # the same view at another address (a nav link, the URL rewritten to what
        # is shown): the notice about the opened link stays until a filter changes
        notice = no_update
    else:
        notice = None
    field_options = [
        [{"label": v, "value": v} for v in options.get(f, [])]
        for f in schema.FILTER_FIELDS
    ]
    return (
        datasets,
        flt.dataset,
        info,
        *field_options,
        *[list(getattr(flt, f)) for f in schema.FILTER_FIELDS],
        flt.to_dict(),
        notice,
    )


# The URL mirrors the filter without reloading the page (history.replaceState), and the
# navigation links carry the filter to the next page.
clientside_callback(
    ClientsideFunction(namespace="icb", function_name="syncFilterToUrl"),
    Output(ids.URL_SYNC, "data"),
    Input(ids.FILTER_STORE, "data"),
)
clientside_callback(
    ClientsideFunction(namespace="icb", function_name="navHrefs"),
    Output({"type": "nav-link", "path": ALL}, "href"),
    Input(ids.FILTER_STORE, "data"),
    Input(ids.NAV_PATHS, "data"),
)
