"""UMAP figures of the CD8 page (no Dash).

The UMAP is a single ``Scattergl`` trace whose coordinates are ``uint16`` (quantized
over the embedding's full range, so they do not move when filters change) and whose
colour is one ``uint8`` code per cell: category codes on a stepped colour scale, or
expression quantized to 256 levels. A colour bar always names what is shown. No
per-cell text travels with the figure; hover details are asked for on demand.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import gating
from analysis.nk_metrics import (
    split_by_metric,
)
from analysis.programs import OBS_PREFIX as PROGRAM_PREFIX
from data.cells import CellStore
from figures.cd8_state import (
    COLOR_CHOICES,
    EXPRESSION_SCALE,
    GATE_IN_COLOR,
    GATE_OUT_COLOR,
    HIGHLIGHT_COLOR,
    MISSING_COLOR,
    NOT_EVALUABLE,
    QUANT_MAX,
    CellData,
    PageState,
    category_palette,
)
from figures.template import (
    RESPONSE_COLORS,
    TREATMENT_COLORS,
)


# -------------------------------------------------------------------- point budget
def display_sample(
    state_codes: np.ndarray, budget: int, *, seed: int = 0
) -> np.ndarray:
    """Positions of the cells to draw: all, or a seeded sample stratified by state.

    Each state keeps its share of the cells (largest remainders), so rare states are
    neither lost nor inflated. Returned positions are sorted.
    """
    n = len(state_codes)
    if n <= budget:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    codes, counts = np.unique(state_codes, return_counts=True)
    exact = counts * budget / n
    take = np.floor(exact).astype(int)
    remainder = budget - take.sum()
    if remainder > 0:
        take[np.argsort(-(exact - take))[:remainder]] += 1
    picked = [
        rng.choice(np.flatnonzero(state_codes == code), size=k, replace=False)
        for code, k in zip(codes, take, strict=True)
        if k > 0
    ]
    return np.sort(np.concatenate(picked))


def quantize_embedding(umap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``uint16`` x and y over the embedding's full range (all cells of the file)."""
    low = np.nanmin(umap, axis=0)
    span = np.nanmax(umap, axis=0) - low
    span[span == 0] = 1.0
    scaled = np.rint((umap - low) / span * QUANT_MAX)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return scaled[:, 0].astype(np.uint16), scaled[:, 1].astype(np.uint16)


@lru_cache(maxsize=4)
def store_quantized(store: CellStore) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_embedding` of a cell store's UMAP, computed once per store.

    Stores are shared read-only per process; at 10^6 cells quantizing took 121 ms
    on every first render. The arrays must not be modified.
    """
    return quantize_embedding(store.umap)


def typed_array(values: np.ndarray) -> dict[str, str]:
    """Plotly's base64 typed-array form (``Patch`` sends numpy arrays as lists)."""
    values = np.ascontiguousarray(values)
    code = {np.dtype(np.uint8): "u1", np.dtype(np.uint16): "u2"}[values.dtype]
    return {"dtype": code, "bdata": base64.b64encode(values.tobytes()).decode()}


# ------------------------------------------------------------------ UMAP colouring
@dataclass(frozen=True)
class Colouring:
    """One ``uint8`` code per drawn cell and the scale that explains it."""

    codes: np.ndarray
    colorscale: list
    cmin: float
    cmax: float
    colorbar: dict
    what: str
    #: name of each code, for categories (empty for expression): the export table
    labels: tuple[str, ...] = ()

    def marker(self) -> dict:
        """Marker properties for a Patch (codes as a typed array)."""
        return {
            "color": typed_array(self.codes),
            "colorscale": self.colorscale,
            "cmin": self.cmin,
            "cmax": self.cmax,
            "colorbar": self.colorbar,
            "showscale": True,
        }


def _stepped(colors: list[str]) -> list:
    k = len(colors)
    scale = []
    for i, colour in enumerate(colors):
        scale += [[i / k, colour], [(i + 1) / k, colour]]
    return scale


def _category_colouring(
    codes: np.ndarray, labels: list[str], colors: list[str], title: str
) -> Colouring:
    counts = np.bincount(codes, minlength=len(labels))
    many = len(labels) > 16
    colorbar = {
        "title": {"text": title, "side": "right"},
        "tickvals": list(range(len(labels))),
        "ticktext": [
            f"{lab} ({n:,})" if not many else lab
            for lab, n in zip(labels, counts, strict=True)
        ],
        "tickfont": {"size": 9 if many else 11},
        "len": 1.0,
        "thickness": 14,
        "outlinewidth": 0,
    }
    return Colouring(
        codes=codes.astype(np.uint8),
        colorscale=_stepped(colors),
        cmin=-0.5,
        cmax=len(labels) - 0.5,
        colorbar=colorbar,
        what=title,
        labels=tuple(labels),
    )


def _patient_category(
    data: CellData, shown: np.ndarray, values: pd.Series, order: list[str], colors
) -> tuple[np.ndarray, list[str], list[str]]:
    """Codes of a patient-level category for the drawn cells ('not evaluable' last)."""
    labels = [v for v in order if v in set(values.dropna())]
    lookup = {v: i for i, v in enumerate(labels)}
    per_patient = np.array(
        [lookup.get(v, len(labels)) if pd.notna(v) else len(labels) for v in values]
    )
    codes = per_patient[data.patient_codes[shown]]
    palette = [colors(v) for v in labels]
    if (codes == len(labels)).any():
        labels.append(NOT_EVALUABLE)
        palette.append(MISSING_COLOR)
    return codes, labels, palette


def _program_colouring(data: CellData, page: PageState, shown: np.ndarray):
    """Per-cell program score (stored with the cells), 1st-99th percentile range."""
    from analysis.programs import PROGRAMS

    program = next((p for p in PROGRAMS if p.column == page.color), None)
    label = COLOR_CHOICES.get(page.color, page.color)
    if program is None or program.column not in data.store.obs.columns:
        codes = np.zeros(len(shown), dtype=np.uint8)
        return _category_colouring(
            codes,
            ["not scored in this dataset (re-import or `cli.py prepare`)"],
            [MISSING_COLOR],
            label,
        )
    values = data.store.obs[program.column].to_numpy()[data.cells[shown]]
    finite = values[np.isfinite(values)]
    low, high = (
        (float(np.percentile(finite, 1)), float(np.percentile(finite, 99)))
        if len(finite)
        else (0.0, 1.0)
    )
    if high <= low:
        high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0, 1)
    codes = np.rint(np.nan_to_num(scaled) * 255).astype(np.uint8)
    ticks = _nice_ticks(low, high)
    ticks = ticks[(ticks >= low) & (ticks <= high)]
    colorbar = {
        "title": {"text": f"{program.label}<br>score", "side": "right"},
        "tickvals": list((ticks - low) / (high - low) * 255),
        "ticktext": [f"{t:g}" for t in np.round(ticks, 6)],
        "len": 0.8,
        "thickness": 14,
        "outlinewidth": 0,
    }
    what = f"{program.label} program score"
    if program.key == "ra":  # shown wherever the RA set is
        what += " (set not derived from T cells)"
    return Colouring(codes, EXPRESSION_SCALE, 0, 255, colorbar, what)


def colouring(
    data: CellData,
    page: PageState,
    shown: np.ndarray,
    *,
    gate_result: gating.GateResult | None = None,
    highlight: str | None = None,
) -> Colouring:
    """Colour codes of the drawn cells ``shown`` (positions into ``data.cells``).

    ``highlight`` (a patient key) overrides the colour-by choice: that patient's
    cells in a strong colour, all others light grey.
    """
    if highlight and highlight in set(data.patients["key"]):
        row = int(np.flatnonzero(data.patients["key"].to_numpy() == highlight)[0])
        member = (data.patient_codes[shown] == row).astype(np.uint8)
        label = data.patients["label"].iloc[row]
        return _category_colouring(
            member,
            ["other patients", label],
            [GATE_OUT_COLOR, HIGHLIGHT_COLOR],
            f"Cells of patient {label}",
        )
    if page.color == "gene" and page.gene:
        values = data.store.gene(page.gene)[data.cells[shown]]
        low = min(0.0, float(values.min())) if len(values) else 0.0
        high = float(values.max()) if len(values) else 1.0
        if high <= low:
            high = low + 1.0
        codes = np.rint((values - low) / (high - low) * 255).astype(np.uint8)
        ticks = _nice_ticks(low, high)
        colorbar = {
            "title": {"text": f"{page.gene}<br>log-norm.", "side": "right"},
            "tickvals": list((ticks - low) / (high - low) * 255),
            "ticktext": [f"{t:g}" for t in np.round(ticks, 6)],
            "len": 0.8,
            "thickness": 14,
            "outlinewidth": 0,
        }
        return Colouring(
            codes, EXPRESSION_SCALE, 0, 255, colorbar, f"{page.gene} expression"
        )
    if page.color.startswith(PROGRAM_PREFIX):
        return _program_colouring(data, page, shown)
    if page.color == "gate" and gate_result is not None:
        member = gate_result.in_gate[shown].astype(np.uint8)
        colouring_ = _category_colouring(
            member,
            ["not in gate", "in gate"],
            [GATE_OUT_COLOR, GATE_IN_COLOR],
            f"{page.gate.display_name}: {page.gate.phenotype}",
        )
        what = f"gate membership ({page.gate.display_name}: {page.gate.phenotype})"
        return replace(colouring_, what=what)
    patients = data.patients
    if page.color == "patient":
        labels = patients["label"].tolist()
        codes = data.patient_codes[shown]
        return _category_colouring(
            codes, labels, category_palette(len(labels)), "Patient"
        )
    if page.color in ("response", "treatment", "tumor_type", "nk_level"):
        if page.color == "response":
            values = patients["group"].astype(object)
            order = list(data.definition.groups)
            colors = RESPONSE_COLORS.get
            title = data.definition.label
        elif page.color == "treatment":
            values = patients["treatment"].astype(object)
            order = list(TREATMENT_COLORS)
            colors = TREATMENT_COLORS.get
            title = "Treatment"
        elif page.color == "tumor_type":
            values = patients["tumor_type"].astype(object)
            order = sorted(set(values.dropna()))
            lookup = dict(zip(order, category_palette(len(order)), strict=True))
            colors = lookup.get
            title = "Tumor type"
        else:
            values = split_by_metric(patients["nk"]).astype(object)
            order = ["NK-low", "NK-high"]
            colors = {"NK-low": "#2166ac", "NK-high": "#e08214"}.get
            label = data.metric.label if data.metric else "NK metric"
            title = f"Patient NK level (median split)<br>{label}"
        codes, labels, palette = _patient_category(data, shown, values, order, colors)
        return _category_colouring(codes, labels, palette, title)
    codes = data.state_codes[shown].astype(np.int64)
    codes[codes < 0] = len(data.state_names)
    labels = list(data.state_names)
    palette = category_palette(len(labels))
    if (codes == len(labels)).any():
        labels.append("no state")
        palette.append(MISSING_COLOR)
    return _category_colouring(codes, labels, palette, "CD8 differentiation state")


def _nice_ticks(low: float, high: float, target: int = 5) -> np.ndarray:
    """Round tick values (1, 2 or 5 times a power of ten) within [low, high]."""
    raw = (high - low) / max(target - 1, 1)
    power = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = np.arange(np.ceil(low / step) * step, high + step * 1e-9, step) + 0.0
    return ticks if len(ticks) >= 2 else np.array([low, high])


def shown_caption(n_shown: int, n_total: int) -> str:
    """``showing 200,000 of 1,000,000 cells (seeded stratified sample; ...)`` or
    ``showing all 36,000 cells``."""
    if n_shown < n_total:
        return (
            f"showing {n_shown:,} of {n_total:,} cells (seeded stratified sample; "
            "statistics use all cells)"
        )
    return f"showing all {n_total:,} cells"


def umap_figure(
    data: CellData,
    shown: np.ndarray,
    colour: Colouring,
    *,
    title: str = "",
    point_size: float | None = None,
) -> go.Figure:
    """UMAP of the drawn cells, coordinates as ``uint16`` typed arrays."""
    x_all, y_all = store_quantized(data.store)
    cells = data.cells[shown]
    size = point_size or float(np.clip(9 - np.log10(max(len(cells), 10)) * 1.4, 2, 6))
    marker = {
        "color": colour.codes,
        "colorscale": colour.colorscale,
        "cmin": colour.cmin,
        "cmax": colour.cmax,
        "colorbar": colour.colorbar,
        "showscale": True,
        "size": size,
    }
    fig = go.Figure(
        go.Scattergl(
            x=x_all[cells],
            y=y_all[cells],
            mode="markers",
            marker=marker,
            hoverinfo="none",  # details come on demand, no per-cell text is sent
            showlegend=False,
        )
    )
    axis = {
        "visible": False,
        "range": [-0.02 * QUANT_MAX, 1.02 * QUANT_MAX],
        "showgrid": False,
    }
    fig.update_layout(
        title=title or "UMAP of CD8 T cells",
        xaxis=dict(axis, constrain="domain"),
        yaxis=dict(axis, scaleanchor="x", scaleratio=1, constrain="domain"),
        dragmode="lasso",
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        uirevision="cd8-umap",
        # how many cells are drawn, for an export that draws fewer: it rewrites
        # ``text`` wherever the figure shows it (figures.export_points)
        meta={
            "sampling": {
                "drawn": len(cells),
                "of": data.n_cells,
                "unit": "cells",
                "text": shown_caption(len(cells), data.n_cells),
            }
        },
    )
    return fig


def umap_title(data: CellData, colour: Colouring, n_shown: int, note: str = "") -> str:
    """Figure title: what colours mean, and how many cells are drawn."""
    sub = shown_caption(n_shown, data.n_cells)
    if note:
        sub += f"; {note}"
    return f"UMAP of CD8 T cells, coloured by {colour.what}<br><sup>{sub}</sup>"


# ---------------------------------------------------------------- linked selection
def cells_in_selection(data: CellData, selection: Mapping | None) -> np.ndarray | None:
    """Positions (into ``data.cells``) of all cells inside a box or lasso selection.

    Uses the selection's shape, so cells not drawn (point budget) count too.
    ``None`` when the selection has no shape.
    """
    if not selection:
        return None
    x_all, y_all = store_quantized(data.store)
    x = x_all[data.cells].astype(float)
    y = y_all[data.cells].astype(float)
    if selection.get("range"):
        (x0, x1), (y0, y1) = (
            sorted(selection["range"]["x"]),
            sorted(selection["range"]["y"]),
        )
        return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    lasso = selection.get("lassoPoints")
    if lasso and len(lasso.get("x", [])) >= 3:
        from matplotlib.path import Path as PolygonPath

        polygon = PolygonPath(np.column_stack([lasso["x"], lasso["y"]]))
        return np.flatnonzero(polygon.contains_points(np.column_stack([x, y])))
    return None


def selection_summary(
    data: CellData, positions: np.ndarray, result: gating.GateResult | None
) -> dict:
    """State composition, gate fraction and patients of selected cells."""
    codes = data.state_codes[positions]
    counts = np.bincount(codes[codes >= 0], minlength=len(data.state_names))
    n = len(positions)
    return {
        "n": n,
        "states": [
            (state, int(c), c / n if n else float("nan"))
            for state, c in zip(data.state_names, counts, strict=True)
            if c
        ],
        "in_gate": int(result.in_gate[positions].sum()) if result else None,
        "patients": len(np.unique(data.patient_codes[positions])),
    }
