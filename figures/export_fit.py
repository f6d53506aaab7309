"""Export layout per figure type: tables, category axes, legends, header and caption.

:func:`figures.export_layout.restyle` scales a screen figure to an export size; this
module then gives each part its own room, so no text is cut off by the canvas or
drawn over another text in any preset:

- the header (the title on slides; on column presets, which drop the title, the
  panel's key numbers from :func:`figures.export_stats.stats_line`) and the caption
  footnote are legends anchored to the canvas (``yref="container"``): plotly then
  reserves their height on top of what the axes need, so they never meet tick labels,
  axis titles or the figure's own legend;
- the figure's own legend leaves the plot area for a band above the caption, with
  long names wrapped;
- tables get row heights and a font size that fit every row;
- category axes with more labels than room rotate, then thin out; long labels wrap;
- annotations above subplots (panel titles) get their own margin.

Text widths, wrapping and the bands themselves are in :mod:`figures.export_text`.
Pure functions on figure dicts, no renderer.
"""

from __future__ import annotations

import copy
import math
import re

from figures.export_layout import restyle, trace_array
from figures.export_settings import PRESETS, ExportSize
from figures.export_stats import stats_line
from figures.export_text import (
    BAND_TRACE,
    CAPTION_LEGEND,
    HEADER_LEGEND,
    LEGEND_TEXT_INDENT_PX,
    LINE,
    _lines,
    _note_shortened,
    add_text_band,
    escape_text,
    shorten_px,
    text_width,
    wrap_px,
)
from figures.panel import Panel

# ------------------------------------------------------------------ pieces


def _plot_width(layout: dict, size: ExportSize) -> float:
    margin = layout.get("margin", {})
    return max(50.0, size.width - float(margin.get("l", 0)) - float(margin.get("r", 0)))


def _plot_height(layout: dict, size: ExportSize) -> float:
    margin = layout.get("margin", {})
    return max(
        50.0, size.height - float(margin.get("t", 0)) - float(margin.get("b", 0))
    )


def _band_room(layout: dict, size: ExportSize) -> float:
    """Width a band's text may take: it starts at the plot's left edge, whose
    margin the axes may still widen (hence the 8% kept free)."""
    left = float((layout.get("margin") or {}).get("l", 0))
    return max(60.0, (size.width - left) * 0.92 - LEGEND_TEXT_INDENT_PX)


def _title_text(layout: dict) -> str:
    title = layout.get("title")
    if isinstance(title, dict):
        return title.get("text") or ""
    return title or ""


def _header(fig: dict, panel: Panel, size: ExportSize) -> float:
    """The title (slides) or the key numbers (column presets) as the top band."""
    layout = fig["layout"]
    font = size.font_px
    room = _band_room(layout, size)
    if PRESETS[size.preset].keep_title:
        text = _title_text(layout)
        if not text:
            return 0.0
        lines = []
        for part in re.split(r"<br\s*/?>", text):
            small = "<sup>" in part
            plain = re.sub(r"</?sup>", "", part)
            scale = 0.8 if small else 1.15
            # bold glyphs are about a tenth wider than the regular ones measured
            for line in wrap_px(plain, font * scale * (1.0 if small else 1.12), room):
                lines.append(f"<sup>{line}</sup>" if small else f"<b>{line}</b>")
        layout["title"] = {"text": ""}
        # sup lines are drawn smaller but spaced like the others: size by the font
        return add_text_band(
            fig, lines, legend=HEADER_LEGEND, font_px=font * 1.15, size=size, top=True,
            color="#222",
        )  # fmt: skip
    text = stats_line(panel)
    if not text:
        return 0.0
    return add_text_band(
        fig, wrap_px(text, font, room), legend=HEADER_LEGEND, font_px=font,
        size=size, top=True, color="#222",
    )  # fmt: skip


def _legend_rows(
    names: list[str], font: float, room: float, width: float, entry: float | None
) -> float:
    """Height of a horizontal legend whose names wrap to ``room`` px."""
    height, used, row_lines = 0.0, 0.0, 1
    for name in names:
        lines = wrap_px(name, font, room)
        w = entry or max(text_width(line, font) for line in lines) + 40
        if used and used + w > width:
            height += row_lines * font * LINE + 4
            used, row_lines = 0.0, 1
        used += w
        row_lines = max(row_lines, len(lines))
    return height + row_lines * font * LINE + 4


def _move_legend(fig: dict, size: ExportSize) -> float:
    """The figure's legend below the plot, in its own band, names wrapped.

    On a column figure the band takes at most about a quarter of the height: the
    font shrinks (to 5 pt) before the plot would be squeezed (a plot too flat fails
    plotly's axis scaling).
    """
    layout = fig["layout"]
    legend = layout.get("legend") or {}
    inside = (
        legend.get("x") is not None
        and 0 <= float(legend.get("x", 1.02)) <= 1
        and 0 <= float(legend.get("y", 1)) <= 1
        and legend.get("orientation") != "h"
    )
    shown = [
        t for t in fig.get("data", [])
        if t.get("showlegend") is not False and t.get("legend", "legend") == "legend"
    ]  # fmt: skip
    if inside or not shown or layout.get("showlegend") is False:
        return 0.0
    narrow = size.width < 800
    names = [re.sub(r"<br\s*/?>", " ", t.get("name") or "") for t in shown]
    title = legend.get("title") or {}
    title_text = title.get("text") if isinstance(title, dict) else None
    font = size.font_px * (0.85 if narrow else 0.9)
    # a column figure has room for one legend item per row; a slide for two
    room, entry = max(60.0, size.width * (0.8 if narrow else 0.45) - 40), None
    most = size.height * 0.27
    smallest = 5 * 96 / 72
    while narrow:
        title_h = _lines(title_text or "") * font * LINE
        if _legend_rows(names, font, room, size.width, entry) + title_h <= most:
            break
        if font <= smallest:
            break
        font = max(smallest, font * 0.92)
    for trace, name in zip(shown, names, strict=True):
        trace["name"] = "<br>".join(wrap_px(name, font, room))
    if title_text:
        title = dict(title, side="top")
        title["text"] = "<br>".join(wrap_px(title_text, font, size.width - 8))
    legend = {
        **legend,
        "orientation": "h",
        "xref": "paper",
        "yref": "container",
        "x": 0.0,
        "xanchor": "left",
        "y": 0.0,
        "yanchor": "bottom",
        "title": title,
        "font": {**(legend.get("font") or {}), "size": round(font, 2)},
    }
    if any(t.get("legendgroup") for t in shown):
        # grouped items each start a row of their own in a horizontal legend
        legend.update(traceorder="normal", tracegroupgap=0)
    if entry:
        legend.update(entrywidth=round(entry), entrywidthmode="pixels", itemwidth=30)
    layout["legend"] = legend
    height = _legend_rows(names, font, room, size.width, entry)
    if title_text:
        height += _lines(title["text"]) * font * LINE
    return height + 10


def _fit_table(fig: dict, size: ExportSize, header_h: float) -> None:
    """A table drawn as a grid of text that fits every row.

    Plotly's table pads each cell by 8 px and scrolls what does not fit, so a column
    figure showed 4 of 8 rows; here the font shrinks (to 5 px at the least) until
    every wrapped row fits the canvas under the header band, and the cells are drawn
    as annotations with rules between the rows.
    """
    layout = fig["layout"]
    table = next(t for t in fig["data"] if t.get("type") == "table")
    cells, header = table.get("cells") or {}, table.get("header") or {}
    columns = [[str(v) for v in c] for c in cells.get("values") or []]
    heads = [re.sub(r"</?b>", "", str(v)) for v in header.get("values") or []]
    weights = list(table.get("columnwidth") or [1] * len(columns))
    body = [list(r) for r in zip(*columns, strict=False)]
    rows = [heads, *body] if heads else body
    margin = {"l": 4.0, "r": 4.0, "t": 4.0, "b": 4.0}
    # slack for the header band's own estimate
    avail = size.height - header_h - margin["t"] - margin["b"] - 10
    width = size.width - margin["l"] - margin["r"]
    font = size.font_px
    while True:
        pad = font * 0.35
        widths = [width * w / sum(weights) - 2 * pad for w in weights]
        wrapped = [
            [
                wrap_px(cell, font, max(10.0, w))
                for cell, w in zip(row, widths, strict=False)
            ]
            for row in rows
        ]
        heights = [max(len(c) for c in row) * font * LINE + 2 * pad for row in wrapped]
        if sum(heights) <= avail or font <= 5:
            break
        font *= 0.93
    plot_h = size.height - header_h - margin["t"] - margin["b"]
    lefts = [sum(weights[:i]) / sum(weights) for i in range(len(weights))]
    annotations, shapes, top = [], [], 0.0
    fills = cells.get("fill_color") or cells.get("fill", {}).get("color")
    first_fill = None
    if isinstance(fills, list) and fills and isinstance(fills[0], list):
        first_fill = fills[0][0]
    for i, (row, height) in enumerate(zip(wrapped, heights, strict=True)):
        is_head = bool(heads) and i == 0
        y0, y1 = 1 - (top + height) / plot_h, 1 - top / plot_h
        fill = "#f2f2f2" if is_head else (first_fill if i == int(bool(heads)) else None)
        if fill and fill != "white":
            shapes.append(
                {"type": "rect", "xref": "paper", "yref": "paper", "x0": 0, "x1": 1,
                 "y0": y0, "y1": y1, "fillcolor": fill, "line": {"width": 0},
                 "layer": "below"}
            )  # fmt: skip
        shapes.append(
            {"type": "line", "xref": "paper", "yref": "paper", "x0": 0, "x1": 1,
             "y0": y0, "y1": y0, "line": {"color": "#999", "width": 0.5}}
        )  # fmt: skip
        for lines, left in zip(row, lefts, strict=False):
            text = "<br>".join(escape_text(line) for line in lines)
            annotations.append(
                {"text": f"<b>{text}</b>" if is_head else text, "xref": "paper",
                 "yref": "paper", "x": left, "xshift": pad, "y": y1, "yshift": -pad,
                 "xanchor": "left", "yanchor": "top", "align": "left",
                 "showarrow": False, "font": {"size": round(font, 2)}}
            )  # fmt: skip
        top += height
    fig["data"] = [t for t in fig["data"] if t is not table]
    layout["annotations"] = [*(layout.get("annotations") or []), *annotations]
    layout["shapes"] = [*(layout.get("shapes") or []), *shapes]
    layout["margin"] = margin
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {"visible": False, "range": [0, 1], "fixedrange": True}


def _category_axes(fig: dict, size: ExportSize) -> None:
    """Category x axes: rotate labels that collide, thin out what still collides."""
    layout = fig["layout"]
    font = size.font_px
    for key, axis in list(layout.items()):
        if not re.fullmatch(r"xaxis\d*", key) or not isinstance(axis, dict):
            continue
        if axis.get("visible") is False or axis.get("showticklabels") is False:
            continue
        ref = "x" + key[5:]
        labels: list[str] = []
        for trace in fig.get("data", []):
            if (trace.get("xaxis") or "x") != ref or trace.get("type") == "table":
                continue
            xs = trace_array(trace.get("x"))
            if (
                xs is not None
                and len(xs)
                and all(isinstance(v, str) or v is None for v in xs.tolist())
            ):
                for v in dict.fromkeys(xs.tolist()):
                    if v is not None and v not in labels:
                        labels.append(v)
        if "ticktext" in axis and axis.get("ticktext"):
            labels = [str(t) for t in axis["ticktext"]]
        if len(labels) < 2:
            continue
        tick_font = float((axis.get("tickfont") or {}).get("size") or font)
        tick_font = min(tick_font, font)
        domain = axis.get("domain") or [0, 1]
        y_labels = [
            str(t)
            for k, a in layout.items()
            if re.fullmatch(r"yaxis\d*", k) and isinstance(a, dict)
            for t in a.get("ticktext") or []
        ]
        # category y labels drawn from the trace values take room left of the plot
        y_labels += [
            str(v)
            for trace in fig.get("data", [])
            if trace.get("type") != "table"
            and (ys := trace_array(trace.get("y"))) is not None
            for v in dict.fromkeys(ys.tolist())
            if isinstance(v, str)
        ]
        y_room = max(
            (text_width(line, font) for t in y_labels for line in t.split("<br>")),
            default=0.0,
        )
        length = (_plot_width(layout, size) - y_room) * (domain[1] - domain[0])
        spacing = length / len(labels)
        widest = max(text_width(lab, tick_font) for lab in labels)
        axis["tickfont"] = {**(axis.get("tickfont") or {}), "size": round(tick_font, 2)}
        # the plot is narrower than margins alone say (colour bars, long y labels)
        if widest <= spacing * 0.6:
            axis["tickangle"] = 0
            continue
        axis["tickangle"] = -90
        # rotated labels take at most a quarter of a column figure's height
        limit = size.height * (0.22 if size.width < 800 else 0.3)
        if widest > limit:
            order = axis.get("categoryarray") or labels
            axis["tickmode"] = "array"
            axis["tickvals"] = list(order)
            if size.width < 800:
                # a column figure has no height for wrapped rotated labels: one line
                # each, cut with an ellipsis; the full names go into the metadata
                axis["ticktext"] = [shorten_px(str(v), tick_font, limit) for v in order]
                _note_shortened(layout, order, axis["ticktext"])
            else:
                axis["ticktext"] = [
                    "<br>".join(wrap_px(str(v), tick_font, limit)) for v in order
                ]
        thickness = max(_lines(str(t)) for t in axis.get("ticktext") or labels)
        step = math.ceil(thickness * tick_font * LINE * 1.25 / max(spacing, 1e-6))
        if step > 1:
            order = list(axis.get("categoryarray") or labels)
            # thinned labels keep their wrapping (the tick text, not the raw value)
            text = dict(
                zip(axis.get("tickvals") or order, axis.get("ticktext") or order,
                    strict=False)
            )  # fmt: skip
            axis["tickmode"] = "array"
            axis["tickvals"] = order[::step]
            axis["ticktext"] = [str(text.get(v, v)) for v in order[::step]]


def _category_y_axes(fig: dict, size: ExportSize) -> None:
    """Category y axes: long labels wrap (a third of the width at most), thin out."""
    layout = fig["layout"]
    font = size.font_px
    for key, axis in list(layout.items()):
        if not re.fullmatch(r"yaxis\d*", key) or not isinstance(axis, dict):
            continue
        if axis.get("visible") is False or axis.get("showticklabels") is False:
            continue
        ref = "y" + key[5:]
        labels: list[str] = []
        for trace in fig.get("data", []):
            if (trace.get("yaxis") or "y") != ref or trace.get("type") == "table":
                continue
            ys = trace_array(trace.get("y"))
            if (
                ys is not None
                and len(ys)
                and all(isinstance(v, str) or v is None for v in ys.tolist())
            ):
                for v in dict.fromkeys(ys.tolist()):
                    if v is not None and v not in labels:
                        labels.append(v)
        if len(labels) < 2 or axis.get("tickvals"):
            continue
        domain = axis.get("domain") or [0, 1]
        spacing = (size.height * 0.55) * (domain[1] - domain[0]) / len(labels)
        room, tick_font = size.width * 0.3, font
        for _ in range(6):
            wrapped = [wrap_px(lab, tick_font, room) for lab in labels]
            tallest = max(len(w) for w in wrapped) * tick_font * LINE
            if tallest <= spacing * 0.9 or tick_font <= font * 0.7:
                break
            room, tick_font = min(size.width * 0.4, room * 1.15), tick_font * 0.93
        if len(wrapped[0]) > 1 or any(len(w) > 1 for w in wrapped) or tick_font < font:
            axis["tickmode"] = "array"
            axis["tickvals"] = labels
            axis["ticktext"] = ["<br>".join(w) for w in wrapped]
            axis["tickfont"] = {
                **(axis.get("tickfont") or {}),
                "size": round(tick_font, 2),
            }


def _fit_y_rows(fig: dict, size: ExportSize, reserved: float) -> float:
    """Category y axes with many rows (forest plots): the tick font (and the row
    annotations) shrink, to 5 pt at the least, until each row has its own line.

    Returns the plot height in px the rows need, so the caption band can leave it.
    """
    layout = fig["layout"]
    smallest = 5 * 96 / 72
    need = 0.0
    x_title = (layout.get("xaxis") or {}).get("title") or {}
    x_lines = _lines(x_title.get("text", "") if isinstance(x_title, dict) else "")
    plot_h = size.height - reserved - (x_lines + 2) * size.font_px * LINE - 10
    for key, axis in list(layout.items()):
        if not re.fullmatch(r"yaxis\d*", key) or not isinstance(axis, dict):
            continue
        rows = axis.get("tickvals") if axis.get("type") == "category" else None
        if not rows or len(rows) < 8:
            continue
        domain = axis.get("domain") or [0, 1]
        row_px = plot_h * (domain[1] - domain[0]) / len(rows)
        font = float((axis.get("tickfont") or {}).get("size") or size.font_px)
        fitted = max(smallest, min(font, row_px / 1.2))
        need = max(need, len(rows) * fitted * 1.2 / (domain[1] - domain[0]))
        texts = axis.get("ticktext")
        if size.width < 800 and texts:
            # long row labels would push the plot off a column figure: one line,
            # cut with an ellipsis (full labels in layout.meta.icb_shortened)
            shown = [
                t if "<" in str(t) else shorten_px(str(t), fitted, size.width * 0.4)
                for t in texts
            ]
            _note_shortened(layout, texts, shown)
            axis["ticktext"] = shown
        if fitted >= font:
            continue
        axis["tickfont"] = {**(axis.get("tickfont") or {}), "size": round(fitted, 2)}
        ref = "y" + key[5:]
        for ann in layout.get("annotations") or []:
            if ann.get("yref") == ref:
                old = float((ann.get("font") or {}).get("size") or size.font_px)
                ann["font"] = {
                    **(ann.get("font") or {}),
                    "size": round(min(old, fitted), 2),
                }
    return need


def _right_annotations(fig: dict, size: ExportSize) -> None:
    """Text right of the plot (forest-plot estimates): the right margin fits it."""
    layout = fig["layout"]
    widest = 0.0
    for ann in layout.get("annotations") or []:
        if ann.get("xref") != "paper" or float(ann.get("x", 0)) < 1:
            continue
        font = float((ann.get("font") or {}).get("size") or size.font_px)
        lines = re.split(r"<br\s*/?>", ann.get("text", ""))
        widest = max(widest, max(text_width(line, font) for line in lines))
    if widest:
        margin = layout.setdefault("margin", {})
        most = size.width * (0.3 if size.width < 800 else 0.4)
        margin["r"] = max(float(margin.get("r", 0)), min(widest + 8, most))
        if widest + 8 > most:
            for ann in layout["annotations"]:
                if ann.get("xref") == "paper" and float(ann.get("x", 0)) >= 1:
                    font = float((ann.get("font") or {}).get("size") or size.font_px)
                    ann["text"] = "<br>".join(
                        wrap_px(ann.get("text", ""), font, most - 10)
                    )


def _stacked_subplots(fig: dict, size: ExportSize, reserved: float) -> None:
    """A table under a plot (KM numbers at risk): the gap holds the upper plot's
    tick labels and axis title and the table's heading, whatever the size."""
    layout = fig["layout"]
    heading = [
        a for a in layout.get("annotations") or []
        if re.fullmatch(r"y\d+ domain", str(a.get("yref", ""))) and a.get("y", 0) >= 1
    ]  # fmt: skip
    if not heading or "yaxis2" not in layout:
        return
    font = size.font_px
    upper, lower = layout.setdefault("yaxis", {}), layout["yaxis2"]
    x_title = (layout.get("xaxis") or {}).get("title") or {}
    title_lines = _lines(x_title.get("text", "") if isinstance(x_title, dict) else "")
    gap_px = font * LINE * (2 + title_lines + 1) + 10
    plot_h = max(60.0, size.height - reserved - 3 * font)
    table_px = max(font * LINE * 3.2, plot_h * 0.22)
    low_top = table_px / plot_h
    gap = gap_px / plot_h
    lower["domain"] = [0, round(min(0.4, low_top), 4)]
    upper["domain"] = [round(min(0.75, low_top + gap), 4), 1]
    for ann in heading:
        ann["font"] = {**(ann.get("font") or {}), "size": round(font, 2)}


def _subplot_titles(fig: dict, size: ExportSize) -> float:
    """Annotations above the plot area (panel titles): wrap and return their height."""
    layout = fig["layout"]
    extra = 0.0
    tops = {
        round(float((a.get("domain") or [0, 1])[1]), 4)
        for k, a in layout.items()
        if re.fullmatch(r"yaxis\d*", k) and isinstance(a, dict)
    }
    lower_rows = False
    for ann in layout.get("annotations") or []:
        if ann.get("yref") != "paper" or ann.get("yanchor") not in ("bottom", None):
            continue
        y = float(ann.get("y", 0))
        # a title above a lower row of subplots sits at that row's top
        if y < 1 and round(y, 4) not in tops:
            continue
        lower_rows = lower_rows or y < 1
        font = float((ann.get("font") or {}).get("size") or size.font_px)
        room = _plot_width(layout, size) / max(1, _n_columns(layout)) - 4
        ann["text"] = "<br>".join(wrap_px(ann.get("text", ""), font, room))
        if y >= 1:
            extra = max(extra, _lines(ann["text"]) * font * LINE + 4)
    if lower_rows and size.width < 800:
        _drop_repeated_x_titles(layout)
    return extra


def _drop_repeated_x_titles(layout: dict) -> None:
    """Upper rows lose an x title the bottom row repeats (it would sit on the lower
    row's panel titles); the bottom row keeps it, so nothing is lost."""
    axes = {
        k: a for k, a in layout.items()
        if re.fullmatch(r"xaxis\d*", k) and isinstance(a, dict)
    }  # fmt: skip

    def bottom(axis: dict) -> float:
        anchor = str(axis.get("anchor") or "y")
        y_axis = layout.get("yaxis" + anchor[1:]) or {}
        return float((y_axis.get("domain") or [0, 1])[0])

    def text(axis: dict) -> str:
        title = axis.get("title")
        return (title.get("text") if isinstance(title, dict) else title) or ""

    lowest = min((bottom(a) for a in axes.values()), default=0.0)
    kept = {text(a) for a in axes.values() if bottom(a) <= lowest + 1e-6}
    for axis in axes.values():
        if bottom(axis) > lowest + 1e-6 and text(axis) and text(axis) in kept:
            title = axis.get("title")
            axis["title"] = {**(title if isinstance(title, dict) else {}), "text": ""}


def _n_columns(layout: dict) -> int:
    domains = {
        tuple(axis.get("domain") or (0, 1))
        for key, axis in layout.items()
        if re.fullmatch(r"xaxis\d*", key) and isinstance(axis, dict)
    }
    return max(1, len(domains))


def _axis_titles(fig: dict, size: ExportSize, reserved: float = 0.0) -> None:
    """Long axis titles wrap to the axis length (``reserved``: px taken by bands)."""
    layout = fig["layout"]
    y_lines = 0
    keys = sorted(
        (k for k in layout if re.fullmatch(r"[xy]axis\d*", k)),
        key=lambda k: k.startswith("x"),
    )
    for key in keys:
        axis = layout[key]
        if not isinstance(axis, dict):
            continue
        title = axis.get("title")
        text = title.get("text") if isinstance(title, dict) else title
        if not text:
            continue
        font = float(
            ((title if isinstance(title, dict) else {}).get("font") or {}).get("size")
            or size.font_px
        )
        domain = axis.get("domain") or [0, 1]
        along = (
            # the y title's lines and tick labels widen the left margin
            _plot_width(layout, size)
            - (y_lines * font * LINE + 3 * font if y_lines else 0.0)
            if key.startswith("x")
            else max(40.0, size.height - reserved - 5 * size.font_px)
        )
        room = max(40.0, along * (domain[1] - domain[0]) * 0.95)
        plain = re.sub(r"<br\s*/?>", " ", text)
        wrapped = "<br>".join(wrap_px(plain, font, room))
        if key.startswith("y"):
            y_lines = max(y_lines, _lines(wrapped))
        axis["title"] = {**(title if isinstance(title, dict) else {}), "text": wrapped}


def layout_panel(panel: Panel, size: ExportSize) -> dict:
    """A copy of the panel's figure laid out for ``size``, every text in its own room.

    Parameters
    ----------
    panel
        The panel as built by ``figures.reports.build_panels``.
    size
        The resolved export size.

    Returns
    -------
    dict
        A plotly figure dict (the panel is not modified).
    """
    fig = restyle(panel.figure, size)
    fig["data"] = list(fig.get("data", []))
    layout = fig["layout"]
    has_table = any(t.get("type") == "table" for t in fig["data"])
    header_h = _header(fig, panel, size)
    if has_table:
        _fit_table(fig, size, header_h)
        return fig
    for trace in fig["data"]:  # axes set by no layout key still get adapted
        if trace.get("type") in (None, "scatter", "scattergl", "bar", "box"):
            for letter in ("x", "y"):
                ref = trace.get(f"{letter}axis") or letter
                layout.setdefault(f"{letter}axis{ref[1:]}", {})
    legend_h = _move_legend(fig, size)
    _category_y_axes(fig, size)
    _category_axes(fig, size)
    _right_annotations(fig, size)
    above = _subplot_titles(fig, size)
    reserved = header_h + legend_h + above
    _axis_titles(fig, size, reserved)
    _stacked_subplots(fig, size, reserved + 3 * size.font_px)
    rows_px = _fit_y_rows(fig, size, reserved)
    layout["meta"] = {
        **(layout.get("meta") or {}),
        "icb_reserved_px": reserved,
        "icb_rows_px": rows_px,
    }
    margin = layout.setdefault("margin", {})
    # the header band is reserved by plotly; the margin holds what sits above plots
    # annotations above the plots do not take part in plotly's margin reservation
    margin["t"] = round(
        (header_h + above + size.font_px) if above else size.font_px * 0.5, 1
    )
    return fig


def with_caption(fig: dict, text_lines: list[str], size: ExportSize) -> dict:
    """``fig`` with the caption footnote as a band at the canvas bottom."""
    fig = copy.deepcopy(fig)
    fig["data"] = list(fig.get("data", []))
    font = max(5 * 96 / 72, size.font_px * 0.75)  # 5 pt at the least
    room = _band_room(fig["layout"], size)
    lines = [line for text in text_lines for line in wrap_px(text, font, room)]
    reserved = float((fig["layout"].get("meta") or {}).get("icb_reserved_px") or 0)
    # the plot keeps about half of the height; a longer footnote ends with a
    # pointer to the full provenance, which every exported file carries
    room_px = min(size.height * 0.22, size.height * 0.45 - reserved)
    rows_px = float((fig["layout"].get("meta") or {}).get("icb_rows_px") or 0)
    if rows_px:
        # a plot of many rows (forest) keeps the height its rows need
        x_px = 4 * size.font_px * LINE + 10
        room_px = min(room_px, size.height - reserved - rows_px - x_px)
    # at least one line of the caption besides the pointer, unless a plot of many
    # rows needs the height (then the pointer alone)
    most = max(1 if rows_px else 2, int(room_px / (font * LINE)) - 1)
    pointer = "... (full caption and provenance in this file's metadata)"
    if len(lines) > most:
        lines = [*lines[: most - 1], pointer]
    height = add_text_band(
        fig, lines, legend=CAPTION_LEGEND, font_px=font, size=size, top=False,
        color="#555",
    )  # fmt: skip
    legend = fig["layout"].get("legend") or {}
    if legend.get("yref") == "container" and legend.get("yanchor") == "bottom":
        legend["y"] = height / size.height
    _axis_titles(fig, size, reserved + height)
    return fig


__all__ = [
    "BAND_TRACE",
    "CAPTION_LEGEND",
    "HEADER_LEGEND",
    "layout_panel",
    "text_width",
    "with_caption",
    "wrap_px",
]
