"""CD8 page state and cell data (no Dash, no figures).

The page state (:class:`PageState`) is what the URL keeps; :class:`CellData` holds the
CD8 cells of the filtered samples and their patients, built once per view. Statistics
are per patient: the fraction of each patient's CD8 cells in the gate.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import gating
from analysis.nk_metrics import (
    Metric,
    available_metrics,
    patient_metric,
)
from analysis.programs import PROGRAMS
from analysis.response import (
    DEFINITIONS,
    ResponseDefinition,
    assign_response,
    available_definitions,
    default_definition,
)
from data.cells import CellStore, cell_store
from figures.template import (
    QUALITATIVE,
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
# per-cell program scores stored at prepare/import time (issue 15, /mechanism)
COLOR_CHOICES.update({p.column: f"Program score: {p.label}" for p in PROGRAMS})
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
#: The page's URL keys and how a reader names each (the control's label).
KEY_LABELS = {
    "color": "Colour cells by",
    "gene": "Gene",
    "gate": "Phenotype gate",
    "gate_name": "Gate name",
    "accept_missing": "Evaluate the gate without missing markers",
    "metric": "NK metric",
    "definition": "Response definition",
    "highlight": "Highlighted patient",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class Fallback(NamedTuple):
    """A page-state value that could not be honoured and what is shown instead.

    Fields as :class:`components.common.LinkFallback` (in the reader's words).
    """

    key: str
    label: str
    value: str
    shown: str
    reason: str = "is not available here"


@dataclass(frozen=True)
class PageState:
    """The page's control state, parsed and checked against the data.

    ``highlight`` is a patient key ``cohort|patient_id`` whose cells are highlighted
    on the UMAP (checked against the view's patients by :func:`check_highlight`).
    ``fallbacks`` lists every value that was replaced, and by what.
    """

    color: str = DEFAULT_COLOR
    gene: str = ""
    gate: gating.Gate = field(default_factory=gating.default_gate)
    accept_missing: bool = False
    metric: str = DEFAULT_METRIC
    definition: str = "objective"
    highlight: str = ""
    fallbacks: tuple[Fallback, ...] = ()

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
            "highlight": self.highlight,
        }


def _first(value: object) -> str:
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def match_choice(value: str, choices) -> str:
    """``value`` spelled as in ``choices``, ignoring case (``Gene`` -> ``gene``,
    ``gzmb`` -> ``GZMB``); ``value`` itself when nothing matches."""
    if value in choices:
        return value
    folded = value.casefold()
    return next((str(c) for c in choices if str(c).casefold() == folded), value)


def _truthy(value: object) -> bool:
    return _first(value).strip().lower() in _TRUE


def _metric_label(key: str, metrics) -> str:
    return next((m.label for m in metrics if m.key == key), key)


def parse_state(
    state: Mapping[str, object] | None,
    *,
    samples: pd.DataFrame,
    genes: pd.Index | None = None,
) -> PageState:
    """Read the page state; odd values fall back to defaults, each listed in
    ``fallbacks`` with what is shown instead (never an error, never silent).

    Parameters
    ----------
    state
        ``color``, ``gene``, ``gate``, ``gate_name``, ``accept_missing``, ``metric``,
        ``definition``, ``highlight`` (strings, as in the URL).
    samples
        The filtered cohort (decides which metrics and definitions exist).
    genes
        Genes of the cell data (to check the colour-by gene and the gate markers).
    """
    state = dict(state or {})
    fallbacks: list[Fallback] = []

    def fall(key: str, value: str, shown: str, reason: str = "") -> None:
        fallbacks.append(
            Fallback(
                key, KEY_LABELS[key], value, shown, reason or "is not available here"
            )
        )

    color = match_choice(_first(state.get("color")), COLOR_CHOICES) or DEFAULT_COLOR
    if color not in COLOR_CHOICES:
        fall(
            "color",
            color,
            COLOR_CHOICES[DEFAULT_COLOR],
            "is not a colouring of this page",
        )
        color = DEFAULT_COLOR
    gene = _first(state.get("gene"))
    if genes is not None and gene:
        gene = match_choice(gene, genes)
    asked_gene = gene
    if genes is not None and gene and gene not in genes:
        gene = ""
    if genes is not None and not gene and len(genes):
        gene = next((g for g in ("GZMB", "CD69") if g in genes), str(genes[0]))
    if asked_gene and gene != asked_gene:
        fall("gene", asked_gene, gene or "no gene", "is not in this dataset")
    if color == "gene" and not gene:
        fall("color", COLOR_CHOICES["gene"], COLOR_CHOICES[DEFAULT_COLOR],
             "needs genes this dataset does not have")  # fmt: skip
        color = DEFAULT_COLOR
    gate_text = _first(state.get("gate"))
    try:
        gate = gating.parse_gate(gate_text, name=_first(state.get("gate_name")))
    except gating.GateError as err:
        gate = gating.default_gate()
        fall("gate", gate_text, f"the published gate ({gate.phenotype})",
             f"could not be read ({err})")  # fmt: skip
    if not gate.markers:
        gate = gating.default_gate()
    if genes is not None:
        try:  # a hand-typed link: cd69 is CD69
            gate = gating.with_dataset_spelling(gate, genes)
        except gating.GateError as err:
            gate = gating.default_gate()
            fall("gate", gate_text, f"the published gate ({gate.phenotype})",
                 f"could not be read ({err})")  # fmt: skip
    asked_name = " ".join(_first(state.get("gate_name")).split())
    if asked_name and not gate.name and asked_name != gate.display_name:
        # the published name on a modified gate (older links wrote it for every gate)
        fall("gate_name", asked_name, gate.display_name,
             "is the published gate's name and this gate differs from it")  # fmt: skip
    accept_text = _first(state.get("accept_missing")).strip().lower()
    accept = accept_text in _TRUE
    if accept_text not in _TRUE | _FALSE:
        fall("accept_missing", accept_text, "off", "is not on or off")
    if genes is not None:
        for missing in gating.missing_markers(gate, genes):
            shown = (
                f"the gate evaluated without {missing}"
                if accept
                else f"the gate with {missing} marked “not in data”, not evaluated "
                "until you tick “Evaluate the gate without missing markers”"
            )
            fall("gate", missing, shown, "is a marker this dataset does not have")
    metrics = available_metrics(samples)
    metric_keys = [m.key for m in metrics]
    metric = match_choice(_first(state.get("metric")), metric_keys) or DEFAULT_METRIC
    if metric not in metric_keys:
        asked = metric
        metric = (
            DEFAULT_METRIC
            if DEFAULT_METRIC in metric_keys
            else (metric_keys[0] if metric_keys else "")
        )
        if asked != DEFAULT_METRIC or not metric_keys:
            shown = _metric_label(metric, metrics) if metric else "no NK metric"
            fall("metric", asked, shown,
                 "is not an NK metric available for these samples")  # fmt: skip
    definition = match_choice(_first(state.get("definition")), DEFINITIONS)
    defs = available_definitions(samples) if not samples.empty else []
    if definition not in DEFINITIONS or (defs and definition not in defs):
        asked = definition
        definition = default_definition(samples) if not samples.empty else "objective"
        if asked:
            reason = "is not a response definition available for these patients"
            fall("definition", asked, DEFINITIONS[definition].label, reason)
    return PageState(
        color=color,
        gene=gene,
        gate=gate,
        accept_missing=accept,
        metric=metric,
        definition=definition,
        highlight=_first(state.get("highlight")).strip(),
        fallbacks=tuple(fallbacks),
    )


def check_highlight(
    page: PageState, patients: pd.DataFrame
) -> tuple[str, Fallback | None]:
    """The highlighted patient key if it is among ``patients`` (column ``key``),
    otherwise ``""`` and the fallback saying so."""
    if not page.highlight:
        return "", None
    if page.highlight in set(patients["key"]):
        return page.highlight, None
    return "", Fallback(
        "highlight",
        KEY_LABELS["highlight"],
        page.highlight,
        "no highlighted patient",
        "is not among the patients with CD8 cells in this view",
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


def category_palette(n: int) -> list[str]:
    """``n`` category colours (the palette repeats beyond its length)."""
    return [CATEGORY_PALETTE[i % len(CATEGORY_PALETTE)] for i in range(n)]
