"""Text in exported figures: width estimates, wrapping, and text bands.

Text widths are estimated with the font Chromium draws ``Arial, Helvetica,
sans-serif`` with on this system (DejaVu Sans where Arial is missing, which is wider,
so the estimate errs on the safe side). A *band* is a block of text lines (the header
or the caption footnote) drawn as a legend anchored to the canvas, so plotly reserves
its height on top of what the axes need. Used by :mod:`figures.export_fit`; pure
functions on figure dicts, no renderer.
"""

from __future__ import annotations

import re
from functools import lru_cache

from figures.export_settings import ExportSize

#: ``meta`` of the invisible traces that carry a band's text in a legend
BAND_TRACE = "icb-layout-band"

#: legend names (plotly ids) used for the header and the caption bands
HEADER_LEGEND = "legend2"
CAPTION_LEGEND = "legend3"
#: plotly draws a legend item's text 40 px right of the legend's x (symbol room);
#: the band legends pull it back by the largest indentation plotly allows (-15)
LEGEND_TEXT_INDENT_PX = 25.0
#: line height of plotly text relative to the font size
LINE = 1.3


@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    for name in ("Arial.ttf", "LiberationSans-Regular.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, 100)
        except OSError:
            continue
    return None


def text_width(text: str, font_px: float) -> float:
    """Drawn width in pixels of one line of ``text`` (tags removed)."""
    plain = re.sub(r"<[^>]+>", "", text)
    font = _font()
    if font is None:  # no font file at all: DejaVu-like average advance
        return len(plain) * font_px * 0.62
    return font.getlength(plain) * font_px / 100.0


def wrap_px(text: str, font_px: float, width_px: float) -> list[str]:
    """``text`` broken into lines no wider than ``width_px`` (at spaces if any)."""
    lines: list[str] = []
    for part in re.split(r"<br\s*/?>", text):
        words = part.split(" ")
        line = ""
        for word in words:
            trial = f"{line} {word}" if line else word
            if not line or text_width(trial, font_px) <= width_px:
                line = trial
                continue
            lines.append(line)
            line = word
        while text_width(line, font_px) > width_px and len(line) > 4:
            # one word wider than the room: cut it (ids, formulas without spaces)
            cut = max(3, int(len(line) * width_px / text_width(line, font_px)) - 1)
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return lines


def shorten_px(text: str, font_px: float, width_px: float) -> str:
    """``text`` on one line no wider than ``width_px``, cut with an ellipsis."""
    plain = re.sub(r"<br\s*/?>", " ", text)
    if text_width(plain, font_px) <= width_px:
        return plain
    keep = len(plain)
    while keep > 1 and text_width(plain[:keep].rstrip() + "…", font_px) > width_px:
        keep -= 1
    return plain[:keep].rstrip() + "…"


def _note_shortened(layout: dict, full: list, shown: list) -> None:
    """Record labels drawn shortened (``layout.meta.icb_shortened``: shown -> full),
    so nothing cut on the figure is lost: the caption and provenance can name it."""
    pairs = {
        str(s): str(f) for f, s in zip(full, shown, strict=False) if str(f) != str(s)
    }
    if pairs:
        meta = layout.setdefault("meta", {})
        meta["icb_shortened"] = {**(meta.get("icb_shortened") or {}), **pairs}


_NOT_A_TAG = re.compile(r"<(?!/?(b|i|sup|sub|br|span|em)\b)")
_NOT_AN_ENTITY = re.compile(r"&(?!#?\w+;)")


def escape_text(text: str) -> str:
    """Plotly's pseudo-HTML: ``<`` and ``&`` that start no tag or entity escaped.

    A legend name with "p < 0.001" otherwise stops the whole render.
    """
    return _NOT_A_TAG.sub("&lt;", _NOT_AN_ENTITY.sub("&amp;", text))


def _lines(text: str) -> int:
    return len(re.split(r"<br\s*/?>", text or "")) if text else 0


# ------------------------------------------------------------------- bands


def _band_axes(fig: dict) -> tuple[str, str]:
    """Hidden axes of their own for a band's placeholder trace (a missing point on a
    figure's category axis fails plotly's axis scaling)."""
    layout = fig["layout"]
    for axis in ("xaxis99", "yaxis99"):
        layout.setdefault(axis, {"visible": False, "fixedrange": True})
    # the hidden axes form a subplot drawn over the figure's own: its background
    # must not cover the data (the paper is white, so the plots look the same)
    layout["plot_bgcolor"] = "rgba(0,0,0,0)"
    return "x99", "y99"


def _keep_existing_legend_choices(fig: dict) -> None:
    """Turning ``showlegend`` on for the bands must not show traces that were hidden.

    Plotly shows a legend for two or more traces unless told otherwise, and for a
    single trace not at all; that decision is written onto each trace before the
    layout-wide switch is turned on.
    """
    layout = fig["layout"]
    traces = fig.get("data", [])
    eligible = [t for t in traces if t.get("showlegend") is not False]
    shown = layout.get("showlegend")
    configured = bool(set(layout.get("legend") or {}) - {"bgcolor"})
    # a figure without a legend of its own keeps none (the forest plot's traces
    # in a legend also broke plotly's axis scaling)
    if shown is False or (shown is None and (len(eligible) < 2 or not configured)):
        for trace in traces:
            trace["showlegend"] = False
    layout["showlegend"] = True


def add_text_band(
    fig: dict,
    lines: list[str],
    *,
    legend: str,
    font_px: float,
    size: ExportSize,
    top: bool,
    color: str = "#333",
) -> float:
    """Draw ``lines`` as a legend anchored to the canvas top or bottom.

    Returns the band's height in pixels (text plus padding).
    """
    if not lines:
        return 0.0
    layout = fig["layout"]
    if legend not in layout or "yref" not in layout.get(legend, {}):
        _keep_existing_legend_choices(fig)
    xaxis, yaxis = _band_axes(fig)
    fig["data"].append(
        {
            "type": "scatter",
            # one missing point: drawn nowhere, listed in the legend (an empty
            # trace is left out of it)
            "x": [None],
            "y": [None],
            "mode": "markers",
            "marker": {"color": "rgba(0,0,0,0)", "size": 1},
            "name": "<br>".join(escape_text(line) for line in lines),
            "legend": legend,
            "showlegend": True,
            "hoverinfo": "skip",
            "xaxis": xaxis,
            "yaxis": yaxis,
            # not data: the many-points sampler must not give it a share
            "meta": BAND_TRACE,
        }
    )
    pad = max(2.0, font_px * 0.3)
    layout[legend] = {
        # x from the plot's left edge: a legend placed by the container's x
        # pushed the side margins and failed plotly's axis scaling
        "xref": "paper",
        "yref": "container",
        "x": 0.0,
        "xanchor": "left",
        "y": 1.0 if top else 0.0,
        "yanchor": "top" if top else "bottom",
        "bgcolor": "rgba(0,0,0,0)",
        "borderwidth": 0,
        "itemclick": False,
        "font": {
            "size": round(font_px, 2),
            "color": color,
            "family": "Arial, Helvetica, sans-serif",
        },
        "tracegroupgap": 0,
        "indentation": -15,
    }
    return len(lines) * font_px * LINE + 2 * pad + 6
