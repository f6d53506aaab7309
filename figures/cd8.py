"""Figures of the CD8 differentiation-state page (no Dash).

The UMAP is a single ``Scattergl`` trace whose coordinates are ``uint16`` (quantized
over the embedding's full range, so they do not move when filters change) and whose
colour is one ``uint8`` code per cell: category codes on a stepped colour scale, or
expression quantized to 256 levels. A colour bar always names what is shown. No
per-cell text travels with the figure; hover details are asked for on demand.

Statistics are per patient: the fraction of each patient's CD8 cells in the gate.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import gating
from analysis.nk_metrics import (
    Metric,
    available_metrics,
    patient_metric,
    split_by_metric,
)
from analysis.response import (
    DEFINITIONS,
    ResponseDefinition,
    assign_response,
    available_definitions,
    default_definition,
)
from data.cells import CellStore, cell_store
from data.schema import PROTEIN_NAMES
from figures.panel import Panel
from figures.template import (
    QUALITATIVE,
    RESPONSE_COLORS,
    TREATMENT_COLORS,
    empty_figure,
)

PAGE_ID = "cd8-states"
DEFAULT_METRIC = "nk_lymphocytes"
DEFAULT_COLOR = "state"
#: colour-by choices: key -> label
COLOR_CHOICES = {
    "state": "Differentiation state",
    "gene": "Gene expression",
    "gate": "Gate membership",
    "patient": "Patient",
    "response": "Response",
    "treatment": "Treatment",
    "tumor_type": "Tumor type",
    "nk_level": "Patient NK level",
}
#: Marker genes of the states, shown in the dot plot after the gate genes.
STATE_MARKERS = (
    "TCF7", "SELL", "CCR7", "IL7R", "GZMK", "CX3CR1", "KLRG1", "FGFBP2", "ITGAE",
    "ZNF683", "PDCD1", "TOX", "ENTPD1", "LAG3", "MKI67", "TOP2A", "RARA", "IL2RB",
)  # fmt: skip
GATE_IN_COLOR = "#c2185b"
GATE_OUT_COLOR = "rgba(170,170,170,0.28)"
HIGHLIGHT_COLOR = "#ff6f00"
MISSING_COLOR = "#bdbdbd"
NOT_EVALUABLE = "not evaluable"
#: expression colour scale: visible grey at zero, then warm colours
EXPRESSION_SCALE = [
    [0.0, "#d9d9d9"],
    [0.1, "#fdd0a2"],
    [0.4, "#f16913"],
    [0.7, "#c6262e"],
    [1.0, "#4a0010"],
]
CATEGORY_PALETTE = [
    *QUALITATIVE,
    "#e377c2", "#17becf", "#8c564b", "#bcbd22", "#1f77b4", "#ff7f0e", "#2ca02c",
    "#d62728", "#9467bd", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
    "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939",
    "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
    "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#969696", "#9ecae1",
    "#fdae6b",
]  # fmt: skip
QUANT_MAX = 65535


# --------------------------------------------------------------------------- state
@dataclass(frozen=True)
class PageState:
    """The page's control state, parsed and checked against the data."""

    color: str = DEFAULT_COLOR
    gene: str = ""
    gate: gating.Gate = field(default_factory=gating.default_gate)
    accept_missing: bool = False
    metric: str = DEFAULT_METRIC
    definition: str = "objective"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The keys the page keeps in its URL and Store."""
        return {
            "color": self.color,
            "gene": self.gene,
            "gate": gating.gate_to_string(self.gate),
            "gate_name": self.gate.name,
            "accept_missing": "1" if self.accept_missing else "",
            "metric": self.metric,
            "definition": self.definition,
        }


def _truthy(value: object) -> bool:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _first(value: object) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def parse_state(
    state: Mapping[str, object] | None,
    *,
    samples: pd.DataFrame,
    genes: pd.Index | None = None,
) -> PageState:
    """Read the page state; odd values fall back to defaults with a note (no error).

    Parameters
    ----------
    state
        ``color``, ``gene``, ``gate``, ``gate_name``, ``accept_missing``, ``metric``,
        ``definition`` (strings, as in the URL).
    samples
        The filtered cohort (decides which metrics and definitions exist).
    genes
        Genes of the cell data (to check the colour-by gene).
    """
    state = dict(state or {})
    notes: list[str] = []
    color = _first(state.get("color")) or DEFAULT_COLOR
    if color not in COLOR_CHOICES:
        notes.append(f"unknown colour-by {color!r}; showing states")
        color = DEFAULT_COLOR
    gene = _first(state.get("gene"))
    if genes is not None and gene and gene not in genes:
        notes.append(f"gene {gene!r} is not in the data")
        gene = ""
    if genes is not None and not gene and len(genes):
        gene = next((g for g in ("GZMB", "CD69") if g in genes), str(genes[0]))
    if color == "gene" and not gene:
        color = DEFAULT_COLOR
    try:
        gate = gating.parse_gate(
            _first(state.get("gate")), name=_first(state.get("gate_name"))
        )
    except gating.GateError as err:
        notes.append(f"gate in the link ignored ({err}); showing the default gate")
        gate = gating.default_gate()
    if not gate.markers:
        gate = gating.default_gate()
    metric = _first(state.get("metric")) or DEFAULT_METRIC
    metric_keys = [m.key for m in available_metrics(samples)]
    if metric not in metric_keys:
        if metric != DEFAULT_METRIC or DEFAULT_METRIC not in metric_keys:
            notes.append(f"NK metric {metric!r} is not available here")
        metric = (
            DEFAULT_METRIC
            if DEFAULT_METRIC in metric_keys
            else (metric_keys[0] if metric_keys else "")
        )
    definition = _first(state.get("definition"))
    defs = available_definitions(samples) if not samples.empty else []
    if definition not in DEFINITIONS or (defs and definition not in defs):
        if definition:
            notes.append(f"response definition {definition!r} is not available here")
        definition = default_definition(samples) if not samples.empty else "objective"
    return PageState(
        color=color,
        gene=gene,
        gate=gate,
        accept_missing=_truthy(state.get("accept_missing")),
        metric=metric,
        definition=definition,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class CellData:
    """The CD8 cells of the filtered samples and their patients.

    Attributes
    ----------
    store
        The dataset's cell store (all cells).
    cells
        Sorted indices (into the store) of the cells of the filtered samples.
    patients
        One row per patient with cells: ``key``, ``label``, ``cohort``,
        ``patient_id``, patient fields, ``nk`` (the NK metric, pre-treatment),
        ``group`` (response under the definition), ``n_cells``.
    patient_codes
        Row of ``patients`` for each cell in ``cells``.
    state_codes, state_names
        Differentiation state of each cell in ``cells``.
    metric, definition
        The NK metric and response definition used.
    """

    store: CellStore
    cells: np.ndarray
    patients: pd.DataFrame
    patient_codes: np.ndarray
    state_codes: np.ndarray
    state_names: list[str]
    metric: Metric | None
    definition: ResponseDefinition

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def expression(self, gene: str) -> np.ndarray:
        """Expression of ``gene`` in the filtered cells."""
        return self.store.gene(gene)[self.cells]


_CELL_DATA_LOCK = threading.Lock()
_CELL_DATA: OrderedDict[tuple, tuple[object, CellData | None]] = OrderedDict()
_CELL_DATA_SIZE = 8


def cached_cell_data(view, page: PageState) -> CellData | None:
    """:func:`cell_data`, remembered per process for the last few views.

    Every UMAP recolour, gate edit and highlight of one view needs the same cells;
    at 10^6 cells building them takes ~25 ms of an 80 ms recolour budget. The key
    is the loaded bundle object (a new object when the dataset's files change),
    the filter, the NK metric and the response definition. Shared read-only.
    """
    key = (
        id(view.bundle),
        json.dumps(view.filter.to_dict(), sort_keys=True, default=str),
        page.metric,
        page.definition,
    )
    with _CELL_DATA_LOCK:
        hit = _CELL_DATA.get(key)
        if hit is not None and hit[0] is view.bundle:
            _CELL_DATA.move_to_end(key)
            return hit[1]
    data = cell_data(view, page)
    with _CELL_DATA_LOCK:
        _CELL_DATA[key] = (view.bundle, data)  # the bundle is kept: ids stay unique
        while len(_CELL_DATA) > _CELL_DATA_SIZE:
            _CELL_DATA.popitem(last=False)
    return data


def cell_data(view, page: PageState) -> CellData | None:
    """Cells of the view's filtered samples, or ``None`` when there are none."""
    store = cell_store(view.bundle)
    if store is None or store.umap is None:
        return None
    samples = view.samples
    sample_ids = samples["sample_id"].astype(str)
    key_of_sample = pd.Series(
        (
            samples["cohort"].astype(str) + "|" + samples["patient_id"].astype(str)
        ).to_numpy(),
        index=sample_ids.to_numpy(),
    )
    # work on the categorical codes of obs: per category, not per cell, strings
    obs_sample = store.obs["sample_id"]
    if not isinstance(obs_sample.dtype, pd.CategoricalDtype):
        obs_sample = obs_sample.astype("category")
    categories = obs_sample.cat.categories.astype(str)
    category_key = pd.Series(categories).map(key_of_sample)
    sample_codes = obs_sample.cat.codes.to_numpy()
    wanted = np.append(category_key.notna().to_numpy(), False)  # code -1 -> False
    cells = np.flatnonzero(wanted[sample_codes])
    if len(cells) == 0:
        return None
    key_codes, keys = pd.factorize(category_key, sort=True)
    codes = key_codes[sample_codes[cells]]
    fields = ["cohort", "patient_id", "tumor_type", "treatment", "recist"]
    fields += [c for c in ("response",) if c in samples.columns]
    first = (
        samples.assign(key=key_of_sample.to_numpy())
        .drop_duplicates("key")
        .set_index("key")
    )
    patients = first.loc[list(keys), fields].reset_index()
    patients["label"] = (
        patients["patient_id"].astype(str) + " (" + patients["cohort"].astype(str) + ")"
    )
    patients["n_cells"] = np.bincount(codes, minlength=len(keys))
    metric = None
    patients["nk"] = np.nan
    if page.metric:
        metric = next(m for m in available_metrics(samples) if m.key == page.metric)
        nk = patient_metric(samples, page.metric, timepoint="pre")
        if not nk.empty:
            nk_key = nk["cohort"].astype(str) + "|" + nk["patient_id"].astype(str)
            patients["nk"] = patients["key"].map(
                pd.Series(nk["value"].to_numpy(), index=nk_key)
            )
    patients["group"] = assign_response(patients, page.definition).to_numpy()
    state = store.obs["cd8_state"]
    if not isinstance(state.dtype, pd.CategoricalDtype):
        state = state.astype("category")
    return CellData(
        store=store,
        cells=cells,
        patients=patients,
        patient_codes=codes.astype(np.int32),
        state_codes=state.cat.codes.to_numpy()[cells].astype(np.int16),
        state_names=[str(c) for c in state.cat.categories],
        metric=metric,
        definition=DEFINITIONS[page.definition],
    )


def evaluate(data: CellData, page: PageState) -> gating.GateResult:
    """Gate membership of the filtered cells (raises ``GateError`` subclasses)."""
    return gating.evaluate_gate(
        page.gate,
        data.store.gene,
        available=data.store.var_names,
        n_cells=data.store.n_cells,
        accept_missing=page.accept_missing,
        cells=data.cells,
    )


def patient_gate_table(data: CellData, result: gating.GateResult) -> pd.DataFrame:
    """Per patient: cells, cells in the gate, gate fraction, NK metric, response."""
    n_in, n_cells, fraction = gating.patient_fractions(
        result.in_gate, data.patient_codes, len(data.patients)
    )
    table = data.patients.copy()
    table["n_in_gate"] = n_in
    table["n_cells"] = n_cells
    table["gate_fraction"] = fraction
    return table


def binary_groups(data: CellData) -> tuple[pd.Series, str, str, str]:
    """Responder / non-responder labels per patient for two-group statistics.

    A four-group definition (RECIST) is collapsed to objective response (CR/PR vs
    SD/PD) and the note says so.
    """
    definition = data.definition
    if definition.binary:
        groups = pd.Series(data.patients["group"].to_numpy())
        return groups, definition.groups[0], definition.groups[1], ""
    groups = assign_response(data.patients, "objective").reset_index(drop=True)
    objective = DEFINITIONS["objective"]
    note = "RECIST collapsed to objective response (CR/PR vs SD/PD)"
    return groups, objective.groups[0], objective.groups[1], note


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
    )


def _palette(n: int) -> list[str]:
    return [CATEGORY_PALETTE[i % len(CATEGORY_PALETTE)] for i in range(n)]


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
    if page.color == "gate" and gate_result is not None:
        member = gate_result.in_gate[shown].astype(np.uint8)
        colouring_ = _category_colouring(
            member,
            ["not in gate", "in gate"],
            [GATE_OUT_COLOR, GATE_IN_COLOR],
            f"{page.gate.name}: {page.gate.phenotype}",
        )
        what = f"gate membership ({page.gate.name}: {page.gate.phenotype})"
        return replace(colouring_, what=what)
    patients = data.patients
    if page.color == "patient":
        labels = patients["label"].tolist()
        codes = data.patient_codes[shown]
        return _category_colouring(codes, labels, _palette(len(labels)), "Patient")
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
            lookup = dict(zip(order, _palette(len(order)), strict=True))
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
    palette = _palette(len(labels))
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
    """``showing 200,000 of 1,000,000 cells (...)`` or ``all 36,000 cells``."""
    if n_shown < n_total:
        return (
            f"showing {n_shown:,} of {n_total:,} cells (seeded sample stratified by "
            "state; statistics use all cells)"
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
    )
    return fig


def umap_title(data: CellData, colour: Colouring, n_shown: int, note: str = "") -> str:
    """Figure title: what colours mean, and how many cells are drawn."""
    sub = shown_caption(n_shown, data.n_cells)
    if note:
        sub += f"; {note}"
    return f"UMAP of CD8 T cells, coloured by {colour.what}<br><sup>{sub}</sup>"


# ------------------------------------------------------------------ gate histograms
def marker_histograms(
    data: CellData, page: PageState, *, title_note: str = ""
) -> go.Figure:
    """Expression histogram of each gate marker in the filtered cells, with its
    threshold (cells are counted server-side in 40 bins; y on a log scale).

    Passing and failing cells are stacked per bin, so the bin holding the threshold
    (e.g. all the zeros at threshold 0) is split exactly. The figure is assembled as
    plain dicts: plotly's subplot helpers cost ~0.3 s for six panels.
    """
    markers = page.gate.markers
    cols = 3 if len(markers) > 4 else max(1, len(markers))
    rows = int(np.ceil(len(markers) / cols))
    present = set(data.store.var_names)
    h_gap, v_gap = 0.07, (min(0.22, 0.5 / rows) if rows > 1 else 0.0)
    width = (1 - h_gap * (cols - 1)) / cols
    height = (1 - v_gap * (rows - 1)) / rows
    traces, shapes, annotations, layout = [], [], [], {}
    for i, marker in enumerate(markers):
        row, col = i // cols, i % cols
        axis = "" if i == 0 else str(i + 1)
        x0 = col * (width + h_gap)
        y1 = 1 - row * (height + v_gap)
        layout[f"xaxis{axis}"] = {
            "domain": [max(0.0, x0), min(1.0, x0 + width)],
            "anchor": f"y{axis}",
            "title": {"text": "log-norm. expression", "font": {"size": 10}},
        }
        layout[f"yaxis{axis}"] = {
            "domain": [max(0.0, y1 - height), min(1.0, y1)],
            "anchor": f"x{axis}",
            "type": "log",
            "dtick": 1,
            "title": {"text": "cells", "font": {"size": 10}},
        }
        if marker.gene not in present:
            title = f"{marker.label}: not in the data"
            annotations.append(
                {
                    "text": "missing from this dataset",
                    "showarrow": False,
                    # paper coordinates: an axis without traces is not drawn
                    "x": x0 + width / 2,
                    "y": y1 - height / 2,
                    "xref": "paper",
                    "yref": "paper",
                    "font": {"color": "#b2182b", "size": 12},
                }
            )
            layout[f"xaxis{axis}"].update(
                showticklabels=False, showline=False, ticks="", title=None
            )
            layout[f"yaxis{axis}"].update(
                showticklabels=False,
                showline=False,
                ticks="",
                title=None,
                showgrid=False,
            )
        else:
            values = data.expression(marker.gene)
            passes = marker.passes(values)
            share = passes.mean() if len(values) else float("nan")
            title = f"{marker.label}: {share:.0%} pass ({marker.rule})"
            high = max(float(values.max()), marker.threshold + 0.1)
            low = min(float(values.min()), marker.threshold)
            edges = np.histogram_bin_edges(values, bins=40, range=(low, high))
            centers = (edges[:-1] + edges[1:]) / 2
            for part, colour, name in (
                (passes, "#2166ac", "passes"),
                (~passes, "#bdbdbd", "fails"),
            ):
                counts, _ = np.histogram(values[part], bins=edges)
                traces.append(
                    {
                        "type": "bar",
                        "x": centers,
                        "y": counts,
                        "width": np.diff(edges),
                        "marker": {"color": colour, "line": {"width": 0}},
                        "showlegend": False,
                        "xaxis": f"x{axis}",
                        "yaxis": f"y{axis}",
                        "hovertemplate": f"{marker.gene} %{{x:.2f}}: %{{y:,}} cells "
                        f"({name})<extra></extra>",
                    }
                )
            shapes.append(
                {
                    "type": "line",
                    "x0": marker.threshold,
                    "x1": marker.threshold,
                    "xref": f"x{axis}",
                    "y0": 0,
                    "y1": 1,
                    "yref": f"y{axis} domain",
                    "line": {"color": "#b2182b", "width": 2, "dash": "dash"},
                }
            )
        annotations.append(
            {
                "text": title,
                "showarrow": False,
                "x": x0 + width / 2,
                "y": y1,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "font": {"size": 11},
            }
        )
    title = (
        f"Gate markers in {data.n_cells:,} filtered CD8 cells (blue = passes; "
        "dashed = threshold)"
    )
    if title_note:
        title += f"<br><sup>{title_note}</sup>"
    layout.update(
        shapes=shapes,
        annotations=annotations,
        title={"text": title},
        bargap=0,
        barmode="stack",
        height=max(260, 190 * rows + 80),
        margin={"l": 50, "r": 10, "t": 90, "b": 40},
    )
    return go.Figure({"data": traces, "layout": layout})


# ----------------------------------------------------------------- per-patient views
def _p_text(p: float) -> str:
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def gate_title_suffix(page: PageState, result: gating.GateResult) -> str:
    """``Song et al. CD8 state (CD69+ ...); gate evaluated without BCL2``."""
    text = f"{page.gate.name} ({' '.join(m.rule for m in result.evaluated)})"
    if result.note:
        text += f"; {result.note}"
    return text


def gate_fraction_box(
    table: pd.DataFrame, data: CellData, page: PageState, result: gating.GateResult
) -> tuple[go.Figure, str, dict]:
    """Per-patient gate fraction by response group: box + points, Mann-Whitney U
    (two groups) or Kruskal-Wallis (more), n patients per group."""
    from scipy import stats

    definition = data.definition
    ok = table[table["group"].notna() & np.isfinite(table["gate_fraction"])]
    groups = [g for g in definition.groups if (ok["group"] == g).any()]
    if len(groups) == 0:
        return (
            empty_figure("No patient with cells has a response under this definition"),
            "",
            {},
        )
    samples = [ok.loc[ok["group"] == g, "gate_fraction"].to_numpy() for g in groups]
    if len(groups) == 2:
        test = "two-sided Mann-Whitney U"
        p = float(stats.mannwhitneyu(*samples, alternative="two-sided").pvalue)
    elif len(groups) > 2:
        test = "Kruskal-Wallis"
        p = float(stats.kruskal(*samples).pvalue)
    else:
        test, p = "no test (one group)", float("nan")
    fig = go.Figure()
    for group, values in zip(groups, samples, strict=True):
        part = ok[ok["group"] == group]
        fig.add_box(
            y=100 * values,
            name=f"{group}<br>(n={len(values)})",
            marker_color=RESPONSE_COLORS.get(group, "#666"),
            boxpoints="all",
            jitter=0.4,
            pointpos=0,
            customdata=np.column_stack(
                [part["label"], part["n_in_gate"], part["n_cells"]]
            ),
            hovertemplate="%{customdata[0]}: %{y:.1f}% "
            "(%{customdata[1]} of %{customdata[2]} cells)<extra></extra>",
        )
    excluded = int(table["group"].isna().sum())
    fig.update_layout(
        title=f"Gate fraction by response: {test}, {_p_text(p)}"
        f"<br><sup>{gate_title_suffix(page, result)}</sup>",
        yaxis_title="% of patient's CD8 cells in gate",
        xaxis_title=definition.label,
        showlegend=False,
    )
    n_text = ", ".join(f"{g} n={len(v)}" for g, v in zip(groups, samples, strict=True))
    caption = (
        f"One point per patient ({n_text}); {test} on per-patient fractions, "
        f"{_p_text(p)}."
        + (f" {excluded} patient(s) without a response excluded." if excluded else "")
    )
    provenance = {"test": test, "p_value": p, "n_per_group": dict(
        zip(groups, [len(v) for v in samples], strict=True))}  # fmt: skip
    return fig, caption, provenance


def gate_vs_nk(
    table: pd.DataFrame, data: CellData, page: PageState, result: gating.GateResult
) -> tuple[go.Figure, str, dict]:
    """Per-patient gate fraction vs NK metric, coloured by response, Spearman rho."""
    from scipy import stats

    metric_label = data.metric.label if data.metric else "NK metric"
    ok = table[np.isfinite(table["gate_fraction"]) & table["nk"].notna()]
    if len(ok) < 3:
        return (
            empty_figure(
                "Fewer than 3 patients have both cells and a pre-treatment NK value"
            ),
            "",
            {},
        )
    rho, p = stats.spearmanr(ok["nk"], ok["gate_fraction"])
    fig = go.Figure()
    groups = [*data.definition.groups, None]
    for group in groups:
        part = ok[ok["group"] == group] if group else ok[ok["group"].isna()]
        if part.empty:
            continue
        name = group or NOT_EVALUABLE
        fig.add_scatter(
            x=part["nk"],
            y=100 * part["gate_fraction"],
            mode="markers",
            name=f"{name} (n={len(part)})",
            marker={
                "color": RESPONSE_COLORS.get(name, MISSING_COLOR),
                "size": 10,
                "line": {"width": 1, "color": "white"},
            },
            customdata=np.column_stack([part["key"], part["label"], part["n_cells"]]),
            hovertemplate="%{customdata[1]}<br>NK: %{x:.3g}<br>gate: %{y:.1f}% of "
            "%{customdata[2]} cells<br>click to highlight on the UMAP<extra></extra>",
        )
    fig.update_layout(
        title=f"Gate fraction vs NK: Spearman rho = {rho:.2f}, {_p_text(p)}, "
        f"n={len(ok)}<br><sup>{gate_title_suffix(page, result)}</sup>",
        xaxis_title=f"{metric_label} (pre-treatment)",
        xaxis_title_font_size=11,
        yaxis_title="% of patient's CD8 cells in gate",
        legend_title_text=data.definition.label,
        # legend below the plot: at the side it left the half-width card's x axis
        # too narrow for the metric's name
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -0.22,
            "x": 0,
            "title": {"side": "top"},
        },
        clickmode="event",
    )
    caption = (
        f"One point per patient (n={len(ok)}); Spearman rank correlation of the gate "
        f"fraction with {metric_label} (pre-treatment samples): rho = {rho:.2f}, "
        f"{_p_text(p)}. Click a patient to highlight its cells on the UMAP."
    )
    return fig, caption, {"test": "Spearman", "rho": float(rho), "p_value": float(p),
                          "n": len(ok)}  # fmt: skip


def state_composition(data: CellData) -> tuple[go.Figure, str, pd.DataFrame]:
    """Stacked bars: each patient's CD8 state composition, patients ordered by NK."""
    patients = data.patients
    counts = np.zeros((len(patients), len(data.state_names)), dtype=np.int64)
    valid = data.state_codes >= 0
    np.add.at(counts, (data.patient_codes[valid], data.state_codes[valid]), 1)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, np.maximum(totals, 1))
    order = np.lexsort((patients["label"].to_numpy(), patients["nk"].to_numpy()))
    labels = patients["label"].to_numpy()[order]
    palette = _palette(len(data.state_names))
    fig = go.Figure()
    for k, state in enumerate(data.state_names):
        fig.add_bar(
            x=labels,
            y=100 * share[order, k],
            name=state,
            marker_color=palette[k],
            customdata=np.column_stack([counts[order, k], totals[order, 0]]),
            hovertemplate="%{x}<br>" + state + ": %{y:.1f}% "
            "(%{customdata[0]} of %{customdata[1]} cells)<extra></extra>",
        )
    # response of each patient as a strip of squares above the bars
    groups = patients["group"].to_numpy(dtype=object)[order]
    for group in [*data.definition.groups, None]:
        mask = np.array(
            [g == group if group else not isinstance(g, str) for g in groups]
        )
        if not mask.any():
            continue
        name = group or NOT_EVALUABLE
        fig.add_scatter(
            x=labels[mask],
            y=np.full(mask.sum(), 104.0),
            mode="markers",
            marker={
                "symbol": "square",
                "size": 9,
                "color": RESPONSE_COLORS.get(name, MISSING_COLOR),
            },
            name=f"{name} (response)",
            legendgroup="response",
            hovertemplate="%{x}: " + name + "<extra></extra>",
        )
    metric_label = data.metric.label if data.metric else "NK metric"
    no_nk = int(patients["nk"].isna().sum())
    fig.update_layout(
        barmode="stack",
        title=f"CD8 state composition per patient (n={len(patients)}), ordered by "
        f"{metric_label}, low to high",
        yaxis={
            "title": "% of patient's CD8 cells",
            "range": [0, 108],
            "tickvals": [0, 20, 40, 60, 80, 100],
        },
        xaxis={"tickangle": -60, "tickfont": {"size": 9}},
        legend={"orientation": "h", "y": -0.45, "font": {"size": 10}},
        margin={"b": 170},
    )
    caption = (
        f"Patients (n={len(patients)}) ordered by {metric_label} (pre-treatment), "
        f"lowest NK on the left; squares above the bars: {data.definition.label}"
        + (f"; {no_nk} patient(s) without an NK value on the right." if no_nk else ".")
    )
    table = pd.DataFrame(counts[order], columns=data.state_names)
    table.insert(0, "patient", labels)
    table.insert(1, "nk", patients["nk"].to_numpy()[order])
    return fig, caption, table


def dot_plot(data: CellData, page: PageState) -> tuple[go.Figure, pd.DataFrame]:
    """Genes x states: dot size = % of cells expressing (> 0), colour = mean
    log-normalized expression."""
    present = set(data.store.var_names)
    genes = [g for g in page.gate.genes if g in present]
    genes += [g for g in STATE_MARKERS if g in present and g not in genes]
    rows = []
    codes = data.state_codes
    n_states = len(data.state_names)
    size = np.bincount(codes[codes >= 0], minlength=n_states)
    for gene in genes:
        values = data.expression(gene)
        ok = codes >= 0
        mean = np.bincount(codes[ok], weights=values[ok], minlength=n_states)
        expressing = np.bincount(codes[ok], weights=values[ok] > 0, minlength=n_states)
        for k, state in enumerate(data.state_names):
            if size[k] == 0:
                continue
            rows.append(
                {
                    "gene": gene,
                    "state": state,
                    "mean": mean[k] / size[k],
                    "pct_expressing": 100 * expressing[k] / size[k],
                    "n_cells": int(size[k]),
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return empty_figure("No marker genes in the data"), table
    gene_label = {
        g: f"{g} ({PROTEIN_NAMES[g]})" if PROTEIN_NAMES.get(g, g) != g else g
        for g in genes
    }
    fig = go.Figure(
        go.Scatter(
            x=table["gene"].map(gene_label),
            y=table["state"] + " (n=" + table["n_cells"].map("{:,}".format) + ")",
            mode="markers",
            marker={
                "size": 4 + table["pct_expressing"] * 0.22,
                "color": table["mean"],
                "colorscale": "Viridis",
                "reversescale": False,
                "colorbar": {
                    "title": {"text": "mean<br>log-norm.", "side": "right"},
                    "thickness": 12,
                },
                "line": {"width": 0.5, "color": "#555"},
            },
            customdata=np.column_stack([table["pct_expressing"], table["mean"]]),
            hovertemplate="%{x} in %{y}<br>%{customdata[0]:.0f}% expressing, mean "
            "%{customdata[1]:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Marker genes by CD8 state (dot size = % of cells with expression > 0;"
        " colour = mean log-normalized expression)",
        xaxis={"tickangle": -45, "type": "category"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        margin={"l": 10, "b": 110},
    )
    return fig, table


def sensitivity_figure(
    table: pd.DataFrame, page: PageState, result: gating.GateResult, note: str
) -> go.Figure:
    """AUC of the per-patient gate fraction (responders vs non-responders) as each
    marker's threshold is swept, the others fixed."""
    if table.empty:
        return empty_figure("No sensitivity to show")
    fig = go.Figure()
    palette = _palette(len(result.evaluated))
    for colour, marker in zip(palette, result.evaluated, strict=True):
        part = table[table["gene"] == marker.gene]
        fig.add_scatter(
            x=part["threshold"],
            y=part["auc"],
            mode="lines+markers",
            name=marker.label,
            line={"color": colour},
            marker={"size": np.where(part["current"], 13, 5), "color": colour,
                    "symbol": np.where(part["current"], "diamond", "circle")},
            customdata=np.column_stack(
                [part["p"], part["cells_in_gate"], part["n_pos"], part["n_neg"]]
            ),
            hovertemplate=marker.gene + " threshold %{x:.2f}: AUC %{y:.2f}, "
            "MWU p = %{customdata[0]:.3g}<br>%{customdata[1]:,} cells in gate; "
            "%{customdata[2]} vs %{customdata[3]} patients<extra></extra>",
        )  # fmt: skip
    fig.add_hline(y=0.5, line={"color": "#888", "dash": "dot"})
    n_pos = int(table["n_pos"].max()) if len(table) else 0
    n_neg = int(table["n_neg"].max()) if len(table) else 0
    sub = gate_title_suffix(page, result) + (f"; {note}" if note else "")
    fig.update_layout(
        title="Does the association with response depend on one cut-off? "
        f"(n={n_pos} vs {n_neg} patients)<br><sup>{sub}</sup>",
        xaxis_title="threshold of the swept marker (log-norm. expression)",
        yaxis_title="AUC, responders vs non-responders",
        yaxis_range=[0, 1],
        legend_title_text="swept marker (◆ = current)",
    )
    return fig


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


# ------------------------------------------------------------------- page builder
def _provenance(view, page: PageState, result: gating.GateResult | None) -> dict:
    out = dict(view.provenance)
    out.update(
        {
            "gate": gating.gate_to_string(page.gate),
            "gate_name": page.gate.name,
            "gate_phenotype": page.gate.phenotype,
            "nk_metric": page.metric,
            "response_definition": page.definition,
        }
    )
    if result is not None:
        out["gate_rule"] = " AND ".join(m.rule for m in result.evaluated)
        out["gate_missing_markers"] = list(result.missing)
        if result.note:
            out["gate_note"] = result.note
    return out


def cd8_panels(view, state: dict, *, max_points: int | None = None) -> list[Panel]:
    """Every panel of the CD8-states page for ``view`` and the page ``state``.

    Parameters
    ----------
    view
        A :class:`data.view.CohortView`.
    state
        Page state (``color``, ``gene``, ``gate``, ``gate_name``, ``accept_missing``,
        ``metric``, ``definition``).
    max_points
        On-screen point budget of the UMAP (default: the app setting).
    """
    from config import get_settings

    store = cell_store(view.bundle)
    page = parse_state(
        state, samples=view.samples, genes=store.var_names if store else None
    )
    data = cached_cell_data(view, page)
    if data is None:
        message = (
            "This dataset has no CD8 single-cell data with a UMAP"
            if store is None or store.umap is None
            else "No CD8 cells in the filtered samples"
        )
        return [Panel("umap", "UMAP", empty_figure(message), caption=message)]
    budget = max_points or get_settings().max_points_on_screen
    try:
        result = evaluate(data, page)
        gate_error = ""
    except gating.GateError as err:
        result, gate_error = None, str(err)
    provenance = _provenance(view, page, result)
    shown = display_sample(data.state_codes, budget)
    colour = colouring(data, page, shown, gate_result=result)
    umap = umap_figure(
        data,
        shown,
        colour,
        title=umap_title(data, colour, len(shown), result.note if result else ""),
    )
    panels = [
        Panel(
            "umap",
            "UMAP",
            umap,
            caption=shown_caption(len(shown), data.n_cells),
            provenance=dict(provenance, colour_by=colour.what),
        ),
        Panel(
            "markers",
            "Gate markers",
            marker_histograms(data, page, title_note=result.note if result else ""),
            provenance=provenance,
        ),
    ]
    composition, comp_caption, comp_table = state_composition(data)
    dots, dot_table = dot_plot(data, page)
    if result is None:
        blocked = empty_figure(gate_error)
        panels += [
            Panel("gate-box", "Gate fraction by response", blocked, caption=gate_error,
                  provenance=provenance),
            Panel("gate-nk", "Gate fraction vs NK", blocked, caption=gate_error,
                  provenance=provenance),
        ]  # fmt: skip
    else:
        table = patient_gate_table(data, result)
        box, box_caption, box_prov = gate_fraction_box(table, data, page, result)
        scatter, sc_caption, sc_prov = gate_vs_nk(table, data, page, result)
        export = table.drop(columns=["key"]).rename(columns={"nk": page.metric})
        panels += [
            Panel("gate-box", "Gate fraction by response", box, export, box_caption,
                  dict(provenance, **box_prov)),
            Panel("gate-nk", "Gate fraction vs NK", scatter, export, sc_caption,
                  dict(provenance, **sc_prov)),
        ]  # fmt: skip
    panels += [
        Panel("composition", "State composition by patient", composition,
              comp_table, comp_caption, provenance),
        Panel("dotplot", "Marker genes by state", dots, dot_table, "", provenance),
    ]  # fmt: skip
    if result is not None:
        sens, note = sensitivity_table(data, page)
        panels.append(
            Panel(
                "sensitivity",
                "Gate sensitivity",
                sensitivity_figure(sens, page, result, note),
                sens,
                sensitivity_caption(sens, note),
                provenance,
            )
        )
    return panels


def sensitivity_table(data: CellData, page: PageState) -> tuple[pd.DataFrame, str]:
    """Threshold sweep of every marker (see :func:`analysis.gating.sensitivity`)."""
    groups, positive, negative, note = binary_groups(data)
    table = gating.sensitivity(
        page.gate,
        data.store.gene,
        available=data.store.var_names,
        n_cells=data.store.n_cells,
        patient_codes=data.patient_codes,
        patient_groups=groups.to_numpy(dtype=object),
        positive=positive,
        negative=negative,
        accept_missing=page.accept_missing,
        cells=data.cells,
    )
    return table, note


def sensitivity_caption(table: pd.DataFrame, note: str) -> str:
    """What the sensitivity curves show, with n."""
    if table.empty:
        return ""
    n_pos, n_neg = int(table["n_pos"].max()), int(table["n_neg"].max())
    return (
        "Each curve sweeps one marker's threshold from its minimum to its 99th "
        "percentile with the other markers fixed; y is the AUC of the per-patient gate "
        f"fraction, responders (n={n_pos}) vs non-responders (n={n_neg}) (0.5 = no "
        "association; two-sided Mann-Whitney p in the hover)."
        + (f" {note}." if note else "")
    )
