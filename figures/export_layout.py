"""Lay a screen figure out for an export size: fonts, margins, marks, footnote.

Pure functions on plotly figure dicts (no renderer, no Dash).
"""

from __future__ import annotations

import base64
import copy
import re

import numpy as np
import plotly.graph_objects as go

from figures.export_settings import PRESETS, ExportSize
from figures.template import FONT_FAMILY

# ------------------------------------------------------------------------ restyle


def trace_array(value: object) -> np.ndarray | None:
    """A per-point array from a figure dict (list, numpy or plotly's typed array)."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            dims = [int(s) for s in str(shape).split(",")]
            array = array.reshape(dims)
        return array
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=object)
    return None


def _scale_fonts(node: object, factor: float) -> None:
    """Scale every font size and unify every font family, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("font") and isinstance(value, dict):
                size = value.get("size")
                if isinstance(size, (int, float)) and not isinstance(size, bool):
                    value["size"] = round(size * factor, 2)
                if "family" in value:
                    value["family"] = FONT_FAMILY
            if isinstance(value, (dict, list)):
                _scale_fonts(value, factor)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _scale_fonts(item, factor)


def _scale_scalar(holder: dict, key: str, factor: float, minimum: float) -> None:
    value = holder.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        holder[key] = max(minimum, round(value * factor, 2))


def _base_font(layout: dict) -> float:
    for source in (layout, layout.get("template", {}).get("layout", {})):
        size = source.get("font", {}).get("size")
        if isinstance(size, (int, float)):
            return float(size)
    return 12.0  # plotly.js default


def _margin(layout: dict) -> dict[str, float]:
    template = layout.get("template", {}).get("layout", {}).get("margin", {})
    margin = {"l": 80, "r": 80, "t": 100, "b": 80} | template | layout.get("margin", {})
    return {k: float(margin[k]) for k in ("l", "r", "t", "b")}


def restyle(figure: go.Figure | dict, size: ExportSize) -> dict:
    """A copy of ``figure`` laid out for ``size``: fonts, margins, marks, background.

    Fonts, margins, marker sizes and line widths scale by ``size.font_px`` over the
    figure's base font, so a slide has large text and a column figure 7 pt text;
    every font uses the template's one family; the background is white.

    Returns
    -------
    dict
        A plotly figure dict (the input is not modified).
    """
    fig = copy.deepcopy(figure if isinstance(figure, dict) else figure.to_dict())
    layout = fig.setdefault("layout", {})
    base = _base_font(layout)
    factor = size.font_px / base
    margin = _margin(layout)
    _scale_fonts(fig, factor)  # also scales the embedded template's fonts
    layout.setdefault("font", {})
    layout["font"]["family"] = FONT_FAMILY
    layout["font"]["size"] = round(base * factor, 2)
    for trace in fig.get("data", []):
        marker = trace.get("marker")
        if isinstance(marker, dict):
            _scale_scalar(marker, "size", factor, 1.0)
            if isinstance(marker.get("colorbar"), dict):
                _scale_scalar(marker["colorbar"], "thickness", factor, 4.0)
            if isinstance(marker.get("line"), dict):
                _scale_scalar(marker["line"], "width", factor, 0.25)
        if isinstance(trace.get("line"), dict):
            _scale_scalar(trace["line"], "width", factor, 0.5)
    margin = {k: v * factor for k, v in margin.items()}
    if not PRESETS[size.preset].keep_title:
        title = layout.get("title")
        if title:
            layout["title"] = {"text": ""}
        margin["t"] = min(margin["t"], 2 * size.font_px)
    # margins sized for a wide screen card must not eat a narrow figure: keep at
    # least half the width and height for the plot and let axes claim label room
    for pair, total in ((("l", "r"), size.width), (("t", "b"), size.height)):
        used = margin[pair[0]] + margin[pair[1]]
        if used > total / 2:
            for side in pair:
                margin[side] *= total / 2 / used
    for key in list(layout):
        if re.fullmatch(r"[xy]axis\d*", key) and isinstance(layout[key], dict):
            layout[key].setdefault("automargin", True)
    layout["margin"] = {k: round(v, 1) for k, v in margin.items()}
    layout.update(
        width=size.width,
        height=size.height,
        autosize=False,
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def add_caption(fig: dict, text: str, size: ExportSize) -> dict:
    """Draw ``text`` as a small footnote in its own band at the bottom of the canvas.

    The band is reserved by plotly on top of the room the axes and the figure's own
    legend take (see :mod:`figures.export_fit`), so it is never drawn over them; the
    figure keeps its size.
    """
    from figures.export_fit import with_caption

    return with_caption(fig, [text], size)
