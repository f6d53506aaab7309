"""Small shared UI pieces: empty states, error messages, figure cards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

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


class LinkFallback(NamedTuple):
    """A value a link asked for that the view cannot show, and what it shows instead.

    ``label`` and ``shown`` are in the reader's words (control labels and option
    labels, never internal keys); ``key`` is the query key as it appears in the URL.
    """

    key: str
    label: str
    value: str
    shown: str
    reason: str = "is not available here"


def link_notice(fallbacks: Sequence[LinkFallback], **alert_kwargs) -> dbc.Alert | None:
    """A visible notice listing every link value that was replaced (None when none).

    One line each: "The link asked for Tumor type “martian” (`tumor_type=martian`),
    which is not available here; showing all tumor types instead." Never a silent
    fallback: pages call this with every value they could not honour.
    """
    if not fallbacks:
        return None
    lines = [
        html.Li(
            [
                f"The link asked for {f.label} “{f.value}” (",
                html.Code(f"{f.key}={f.value}"),
                f"), which {f.reason}; showing {f.shown} instead.",
            ]
        )
        for f in fallbacks
    ]
    return dbc.Alert(
        [
            html.Strong("Part of this link could not be followed."),
            html.Ul(lines, className="mb-0 mt-1"),
        ],
        color="warning",
        dismissable=True,
        className="link-notice small py-2",
        **alert_kwargs,
    )
