"""The shared plotly template and colour conventions, registered once."""

from __future__ import annotations

import textwrap

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE_NAME = "icb"
FONT_FAMILY = "Arial, Helvetica, sans-serif"

#: RECIST and reported-response colours (colour-blind safe, responders in blue/green).
RESPONSE_COLORS = {
    "CR": "#1b7837",
    "PR": "#7fbf7b",
    "SD": "#f1a340",
    "PD": "#b2182b",
    "NE": "#999999",
    "not reported": "#d9d9d9",
    "R": "#2166ac",
    "NR": "#b2182b",
    "Responder": "#2166ac",
    "Non-responder": "#b2182b",
}
TREATMENT_COLORS = {
    "anti-PD-1": "#4477aa",
    "anti-PD-L1": "#66ccee",
    "anti-CTLA-4": "#ccbb44",
    "anti-PD-1 + anti-CTLA-4": "#aa3377",
    "other": "#bbbbbb",
}
QUALITATIVE = [
    "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb",
    "#332288", "#117733", "#882255", "#999933", "#44aa99",
]  # fmt: skip


def register_template() -> None:
    """Register the ``icb`` template and make it the default (idempotent)."""
    template = go.layout.Template()
    template.layout = go.Layout(
        font={"family": FONT_FAMILY, "size": 13, "color": "#222"},
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=QUALITATIVE,
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
        title={"x": 0.0, "xanchor": "left", "font": {"size": 15}},
        xaxis={
            "automargin": True,  # long rotated category labels are not clipped
            "showline": True,
            "linecolor": "#444",
            "ticks": "outside",
            "zeroline": False,
        },
        yaxis={
            "automargin": True,
            "showline": True,
            "linecolor": "#444",
            "ticks": "outside",
            "zeroline": False,
            "gridcolor": "#eee",
        },
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
        hoverlabel={"font": {"family": FONT_FAMILY}},
    )
    pio.templates[TEMPLATE_NAME] = template
    pio.templates.default = TEMPLATE_NAME


def empty_figure(message: str, *, width: int = 55) -> go.Figure:
    """A blank figure carrying a message (for 'nothing to show').

    A message without line breaks of its own is wrapped at ``width`` characters: an
    annotation is one line, and a long one was cut off at both sides of a card.
    """
    if "<br>" not in message:
        message = "<br>".join(textwrap.wrap(message, width)) or message
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font={"size": 14, "color": "#666"},
    )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


# ------------------------------------------------------------------ titles


def titled(main: str, *subs: str, width: int = 80) -> str:
    """Title with small subtitle lines (each ``sub`` on its own line, long ones
    wrapped so a half-width card does not cut them off)."""
    lines = [
        line
        for sub in subs
        if sub
        for line in (
            textwrap.wrap(sub, width, break_on_hyphens=False)
            if "<" not in sub
            else [sub]
        )
    ]
    return main + "".join(f"<br><sup>{line}</sup>" for line in lines)


def top_margin(title: str, minimum: int) -> int:
    """Top margin that fits a title of this many lines (see :func:`top_title`)."""
    # plotly spaces every title line at the main font's height, <sup> lines too
    return max(minimum, 62 + 21 * title.count("<br>"))


def top_title(title: str) -> dict:
    """A title hung from the top of the figure: plotly centres a title in the top
    margin by default, so a long one spills into the plot."""
    return {
        "text": title,
        "yref": "container",
        "y": 1,
        "yanchor": "top",
        "pad": {"t": 34},  # below the modebar
    }
