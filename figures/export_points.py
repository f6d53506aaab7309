"""Many marker points in vector formats: all as vector, a raster layer, or a sample.

A seeded sample is stratified by trace and by categorical colour, so every group keeps
its share of the drawn points.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from figures.export_layout import trace_array

# ------------------------------------------------------------------- many points


def _marker_traces(fig: dict) -> list[dict]:
    return [
        t
        for t in fig.get("data", [])
        if t.get("type", "scatter") in ("scatter", "scattergl")
        and "markers" in str(t.get("mode", "markers"))
        and trace_array(t.get("x")) is not None
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


def prepare_points(
    fig: dict, *, fmt: str, mode: str, limit: int, seed: int
) -> tuple[dict, str]:
    """Decide how marker points are drawn in ``fmt``; return the figure and a note.

    PNG keeps the figure as is. In SVG and PDF, up to ``limit`` points are drawn as
    vector points (WebGL traces become SVG scatter). Above it, ``mode="raster"``
    draws the points with WebGL, which plotly embeds as one image inside the
    vector axes; ``mode="sample"`` keeps a seeded sample of ``limit`` points as
    vector points, stratified by trace and by categorical colour with proportional
    allocation, so every group keeps its share.
    """
    traces = _marker_traces(fig)
    total = sum(_n_points(t) for t in traces)
    if fmt == "png" or not traces:
        return fig, ""
    fig = copy.deepcopy(fig)
    traces = _marker_traces(fig)
    if total <= limit:
        for trace in traces:
            trace["type"] = "scatter"
        return fig, f"All {total:,} points drawn as vector points."
    if mode == "raster":
        for trace in traces:
            trace["type"] = "scattergl"
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
    return fig, (
        f"A seeded (seed {seed}) random sample of {kept:,} of {total:,} points drawn "
        f"as vector points, stratified over {groups} group(s) in proportion to size."
    )
