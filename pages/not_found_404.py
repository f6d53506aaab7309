"""Any unknown address: say the page does not exist and link back home.

Dash shows this module's layout for every path no page claims (the module name
``not_found_404`` is what it looks for). The links keep the global filter of the
address, so a mistyped page name does not lose the cohort the reader was looking at.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from data.filters import CohortFilter

dash.register_page(__name__, path="/404", name="Page not found", nav=False)

PREFIX = "not-found"
HOME = f"{PREFIX}-home"


def _with_query(path: str, query: str) -> str:
    return dash.get_relative_path(path) + (f"?{query}" if query else "")


def layout(**query) -> html.Div:
    """The message, a link home and links to every page, filter kept."""
    global_query = CohortFilter.from_mapping(query).to_query()
    pages = [
        p
        for p in dash.page_registry.values()
        if p.get("nav", True) and p["path"] != "/"
    ]
    return html.Div(
        [
            html.H2("Page not found", className="h4"),
            dbc.Alert(
                [
                    html.P(
                        "This page does not exist: the address may be mistyped or "
                        "come from an older version of the app.",
                        className="mb-2",
                    ),
                    dcc.Link(
                        "Back to the cohort overview",
                        href=_with_query("/", global_query),
                        id=HOME,
                        className="btn btn-primary btn-sm",
                    ),
                ],
                color="warning",
                className="not-found",
            ),
            html.P("Or open another page:", className="small text-muted mb-1"),
            html.Ul(
                [
                    html.Li(
                        dcc.Link(p["name"], href=_with_query(p["path"], global_query))
                    )
                    for p in pages
                ],
                className="small",
                id=f"{PREFIX}-pages",
            ),
        ]
    )
