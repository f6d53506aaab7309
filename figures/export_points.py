"""Many marker points in vector formats: all as vector, a raster layer, or a sample.

A seeded sample is stratified by trace and by categorical colour, so every group keeps
its share of the drawn points. A figure drawn from a sample says so in the figure
itself ("20,000 of 36,000 cells (seeded stratified sample)"): a figure that states how
many points it draws declares it in ``layout.meta["sampling"]`` (``drawn``, ``of``,
``unit`` and the ``text`` it shows), and that text is rewritten wherever it appears;
a figure that does not show it gets a small note at the top left of its plot area.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from figures.export_layout import trace_array
from figures.export_text import BAND_TRACE

# ------------------------------------------------------------------- many points


def _marker_traces(fig: dict) -> list[dict]:
    return [
        t
        for t in fig.get("data", [])
        if t.get("type", "scatter") in ("scatter", "scattergl")
        and "markers" in str(t.get("mode", "markers"))
        and trace_array(t.get("x")) is not None
        # the layout's text bands ride on invisible one-point traces
        and t.get("meta") != BAND_TRACE
    ]


def _n_points(trace: dict) -> int:
    x = trace_array(trace.get("x"))
    return 0 if x is None else len(x)


def _stratum_labels(trace: dict, n: int) -> np.ndarray:
    """Strata within a trace: its categorical colours if it has any, else one."""
    color = trace_array((trace.get("marker") or {}).get("color"))
    # strings are categories; integer codes are categories too (the CD8 UMAP colours
    # states, and binned expression, by uint8 codes on a stepped colour scale)
    if color is not None and len(color) == n and color.dtype.kind in "OUSiu":
        return color.astype(str)
    return np.zeros(n, dtype=int)


_PER_POINT = ("x", "y", "text", "hovertext", "customdata", "ids")
_PER_POINT_MARKER = ("color", "size", "symbol", "opacity")


def _take(trace: dict, keep: np.ndarray, n: int) -> None:
    for key in _PER_POINT:
        array = trace_array(trace.get(key))
        if array is not None and len(array) == n:
            trace[key] = array[keep]
    marker = trace.get("marker")
    if isinstance(marker, dict):
        for key in _PER_POINT_MARKER:
            array = trace_array(marker.get(key))
            if array is not None and len(array) == n:
                marker[key] = array[keep]
    trace.pop("selectedpoints", None)


def _allocate(counts: Sequence[int], total: int) -> list[int]:
    """Largest-remainder proportional allocation, at least one per non-empty group."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    take = [
        min(c, max(1 if c else 0, math.floor(e)))
        for c, e in zip(counts, exact, strict=True)
    ]
    order = sorted(range(len(counts)), key=lambda i: exact[i] - take[i], reverse=True)
    for i in order:
        if sum(take) >= total:
            break
        if take[i] < counts[i]:
            take[i] += 1
    return take


#: the note of a figure drawn from a sample (``N of M cells (...)``)
SAMPLE_NOTE = "{drawn:,} of {of:,} {unit} (seeded stratified sample)"
#: name of the annotation added when the figure shows no sampling text of its own
NOTE_NAME = "sampling-note"


def _sampling(fig: dict) -> dict:
    meta = (fig.get("layout") or {}).get("meta")
    sampling = meta.get("sampling") if isinstance(meta, dict) else None
    return sampling if isinstance(sampling, dict) else {}


def _text_holders(layout: dict) -> list[dict]:
    """Layout parts whose ``text`` a reader sees: title, subtitle, annotations."""
    holders = []
    title = layout.get("title")
    if isinstance(title, dict):
        holders.append(title)
        if isinstance(title.get("subtitle"), dict):
            holders.append(title["subtitle"])
    holders += [a for a in layout.get("annotations") or [] if isinstance(a, dict)]
    return holders


def sampling_text(fig: dict) -> str:
    """The text by which ``fig`` says how many points it draws ("" if none)."""
    return str(_sampling(fig).get("text") or "")


def sampling_note(fig: dict, drawn: int, total: int) -> dict:
    """``fig`` saying how many of its points are drawn, when not all of them are.

    ``total`` is the number of points in the figure; the figure's own
    ``layout.meta["sampling"]`` may say they are already a sample of more (the
    CD8 UMAP under the page's point budget). When ``drawn`` is less than all, the
    figure's sampling text is replaced by ``N of M <unit> (seeded stratified
    sample)``, or that note is added at the top left of the plot area when the
    figure shows no such text (e.g. a preset dropped the title). Returns ``fig``
    itself when nothing changes, else a changed copy.
    """
    sampling = _sampling(fig)
    of = int(sampling.get("of") or total)
    old = str(sampling.get("text") or "")
    if drawn >= of:
        return fig
    shown = [h.get("text") for h in _text_holders(fig.get("layout") or {})]
    if drawn == sampling.get("drawn") and any(
        isinstance(t, str) and old and old in t for t in shown
    ):
        return fig  # the figure already says how many it draws
    fig = copy.deepcopy(fig)
    layout = fig.setdefault("layout", {})
    note = SAMPLE_NOTE.format(drawn=drawn, of=of, unit=sampling.get("unit") or "points")
    found = False
    for holder in _text_holders(layout):
        text = holder.get("text")
        if not isinstance(text, str):
            continue
        if holder.get("name") == NOTE_NAME:
            holder["text"], found = note, True
        elif old and old in text:
            holder["text"], found = text.replace(old, note), True
    if not found:
        base = float((layout.get("font") or {}).get("size") or 12)
        layout.setdefault("annotations", []).append(
            {
                "name": NOTE_NAME,
                "text": note,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": 1,
                "xanchor": "left",
                "yanchor": "bottom",
                "yshift": 2,
                "font": {"size": round(base * 0.85, 2), "color": "#444444"},
            }
        )
    if sampling:
        layout["meta"] = {
            **layout["meta"],
            "sampling": {**sampling, "drawn": drawn, "text": note},
        }
    return fig


def prepare_points(
    fig: dict, *, fmt: str, mode: str, limit: int, seed: int
) -> tuple[dict, str]:
    """Decide how marker points are drawn in ``fmt``; return the figure and a note.

    PNG keeps the figure as is. In SVG and PDF, up to ``limit`` points are drawn as
    vector points (WebGL traces become SVG scatter). Above it, ``mode="raster"``
    draws the points with WebGL, which plotly embeds as one image inside the
    vector axes; ``mode="sample"`` keeps a seeded sample of ``limit`` points as
    vector points, stratified by trace and by categorical colour with proportional
    allocation, so every group keeps its share, and the figure's text says
    ``N of M cells (seeded stratified sample)`` (:func:`sampling_note`).
    """
    traces = _marker_traces(fig)
    total = sum(_n_points(t) for t in traces)
    if fmt == "png" or not traces:
        return sampling_note(fig, total, total), ""
    fig = copy.deepcopy(fig)
    traces = _marker_traces(fig)
    if total <= limit:
        for trace in traces:
            trace["type"] = "scatter"
        fig = sampling_note(fig, total, total)
        return fig, f"All {total:,} points drawn as vector points."
    if mode == "raster":
        for trace in traces:
            trace["type"] = "scattergl"
        fig = sampling_note(fig, total, total)
        return fig, (
            f"{total:,} points drawn as a raster layer inside vector axes "
            "(text, axes and legend stay vector)."
        )
    rng = np.random.default_rng(seed)
    strata: list[tuple[int, np.ndarray]] = []
    for index, trace in enumerate(traces):
        labels = _stratum_labels(trace, _n_points(trace))
        for value in pd.unique(labels):
            strata.append((index, np.flatnonzero(labels == value)))
    take = _allocate([len(rows) for _, rows in strata], limit)
    keep: dict[int, list[np.ndarray]] = {i: [] for i in range(len(traces))}
    for (index, rows), k in zip(strata, take, strict=True):
        keep[index].append(rng.choice(rows, size=k, replace=False))
    kept = 0
    for index, trace in enumerate(traces):
        chosen = np.sort(np.concatenate(keep[index])) if keep[index] else []
        _take(trace, np.asarray(chosen, dtype=int), _n_points(trace))
        trace["type"] = "scatter"
        kept += len(chosen)
    groups = len(strata)
    fig = sampling_note(fig, kept, total)
    return fig, (
        f"A seeded (seed {seed}) random sample of {kept:,} of {total:,} points drawn "
        f"as vector points, stratified over {groups} group(s) in proportion to size."
    )
