"""The sidebar: global cohort filters, mirrored in a Store and in the URL query."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
)

from components import ids
from config import get_settings
from data import schema
from data.errors import DataError
from data.filters import CohortFilter, filter_options
from data.registry import get_bundle, list_datasets

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


def _dataset_info(name: str) -> tuple[object, dict[str, list[str]]]:
    """Sidebar blurb for a dataset and its filter options (empty on error)."""
    try:
        bundle = get_bundle(name, get_settings().data_dir)
    except DataError as err:
        return dbc.Alert(str(err.problems[0]), color="danger", className="p-2"), {}
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
    return info, filter_options(bundle.cohort)


@callback(
    Output(ids.DATASET, "options"),
    Output(ids.DATASET, "value"),
    Output(ids.DATASET_INFO, "children"),
    *[Output(i, "options") for i in ids.FIELD_DROPDOWNS],
    *[Output(i, "value") for i in ids.FIELD_DROPDOWNS],
    Output(ids.FILTER_STORE, "data"),
    Input(ids.URL, "search"),
    Input(ids.DATASET, "value"),
    *[Input(i, "value") for i in ids.FIELD_DROPDOWNS],
)
def sync_filters(search, dataset, *field_values):
    """Keep URL, dropdowns and the filter Store in agreement (URL wins on load)."""
    settings = get_settings()
    if ctx.triggered_id in (None, ids.URL):
        flt = CohortFilter.from_query(search)
    else:
        values = dict(zip(schema.FILTER_FIELDS, field_values, strict=True))
        flt = CohortFilter.from_mapping({"dataset": dataset, **values})
    datasets = _dataset_options()
    known = {o["value"] for o in datasets}
    name = flt.dataset if flt.dataset in known else settings.default_dataset
    info, options = _dataset_info(name)
    # drop choices the dataset does not have (e.g. after switching datasets)
    chosen = {
        f: [v for v in getattr(flt, f) if v in options.get(f, [])]
        for f in schema.FILTER_FIELDS
    }
    flt = CohortFilter.from_mapping({"dataset": name, **chosen})
    field_options = [
        [{"label": v, "value": v} for v in options.get(f, [])]
        for f in schema.FILTER_FIELDS
    ]
    return (
        datasets,
        name,
        info,
        *field_options,
        *[chosen[f] for f in schema.FILTER_FIELDS],
        flt.to_dict(),
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
