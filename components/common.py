"""Small shared UI pieces: empty states, error messages, figure cards."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components.export_menu import export_menu
from data.errors import DataError


def empty_state(message: str, hint: str = "") -> html.Div:
    """A friendly 'nothing to show' block with a hint on what to change."""
    return html.Div(
        [
            html.Div("∅", className="empty-state-icon", **{"aria-hidden": "true"}),
            html.P(message, className="lead mb-1"),
            html.P(hint, className="text-muted") if hint else None,
        ],
        className="empty-state text-center py-5",
    )


def data_error_alert(err: DataError) -> dbc.Alert:
    """Show a data problem as the user reads it: one line per problem, no trace."""
    return dbc.Alert(
        [
            html.Strong("The dataset cannot be used as it is."),
            html.Ul(
                [html.Li(str(p)) for p in err.problems[:20]], className="mb-0 mt-2"
            ),
        ],
        color="danger",
        className="data-error",
    )


def figure_card(
    graph_id: str,
    title: str,
    *,
    caption_id: str | None = None,
    height: int = 420,
    tools: list | None = None,
    config: dict | None = None,
    export: tuple[str, str] | None = None,
) -> dbc.Card:
    """A card holding one figure with a loading indicator and a caption line.

    The caption states n per group, the metric and the test; the modebar keeps its
    client-side image download. ``export`` names the (page id, panel key) whose panel
    the card shows, as built by ``figures.reports.build_panels``; server-side export
    uses it to rebuild the figure.
    """
    graph_config = {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "scale": 2},
    }
    graph_config.update(config or {})
    body = [
        dcc.Loading(
            dcc.Graph(
                id=graph_id, config=graph_config, style={"height": f"{height}px"}
            ),
            type="circle",
            delay_show=300,
        ),
    ]
    if caption_id:
        body.append(
            html.Div(id=caption_id, className="figure-caption small text-muted")
        )
    header = [html.Span(title, className="fw-semibold")]
    tools = list(tools or [])
    if export is not None:
        tools.append(export_menu(*export))
    if tools:
        header.append(html.Div(tools, className="ms-auto d-flex gap-2"))
    return dbc.Card(
        [
            dbc.CardHeader(header, className="d-flex align-items-center"),
            dbc.CardBody(body),
        ],
        className="figure-card mb-3",
    )


def stat_tile(value_id: str, label: str) -> dbc.Card:
    """A headline number (e.g. patients) with its label."""
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div("–", id=value_id, className="stat-value"),
                html.Div(label, className="stat-label text-muted"),
            ]
        ),
        className="stat-tile text-center",
    )
