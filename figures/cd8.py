"""The CD8 differentiation-state page's figures (no Dash): entry point.

The work is split by responsibility; this module re-exports their public names (the
pages, exports, the CLI and tests import ``figures.cd8``) and builds every panel of
the page for exports (:func:`cd8_panels`):

* :mod:`figures.cd8_state`: page state (URL keys) and the cells of a view;
* :mod:`figures.cd8_umap`: the UMAP, its colourings and lasso selection;
* :mod:`figures.cd8_gate`: gate histograms, gate fraction by response / vs NK,
  threshold sensitivity;
* :mod:`figures.cd8_composition`: state composition per patient, marker dot plot.

Statistics are per patient: the fraction of each patient's CD8 cells in the gate.
"""

from __future__ import annotations

from analysis import gating
from data.cells import cell_store
from figures.cd8_composition import (
    dot_plot,
    state_composition,
)
from figures.cd8_gate import (
    gate_fraction_box,
    gate_title_suffix,
    gate_vs_nk,
    marker_histograms,
    sensitivity_caption,
    sensitivity_figure,
    sensitivity_table,
)
from figures.cd8_state import (
    CATEGORY_PALETTE,
    COLOR_CHOICES,
    DEFAULT_COLOR,
    DEFAULT_METRIC,
    DEFINITIONS,
    EXPRESSION_SCALE,
    GATE_IN_COLOR,
    GATE_OUT_COLOR,
    HIGHLIGHT_COLOR,
    KEY_LABELS,
    MISSING_COLOR,
    NOT_EVALUABLE,
    PAGE_ID,
    QUANT_MAX,
    STATE_MARKERS,
    CellData,
    Fallback,
    PageState,
    binary_groups,
    cached_cell_data,
    category_palette,
    cell_data,
    check_highlight,
    evaluate,
    match_choice,
    parse_state,
    patient_gate_table,
)
from figures.cd8_tables import marker_table, umap_table
from figures.cd8_umap import (
    Colouring,
    cells_in_selection,
    colouring,
    display_sample,
    quantize_embedding,
    selection_summary,
    shown_caption,
    store_quantized,
    typed_array,
    umap_figure,
    umap_title,
)
from figures.panel import Panel
from figures.template import empty_figure

__all__ = [
    "CATEGORY_PALETTE",
    "COLOR_CHOICES",
    "DEFAULT_COLOR",
    "DEFAULT_METRIC",
    "DEFINITIONS",
    "EXPRESSION_SCALE",
    "GATE_IN_COLOR",
    "GATE_OUT_COLOR",
    "HIGHLIGHT_COLOR",
    "KEY_LABELS",
    "MISSING_COLOR",
    "NOT_EVALUABLE",
    "PAGE_ID",
    "QUANT_MAX",
    "STATE_MARKERS",
    "CellData",
    "Colouring",
    "Fallback",
    "PageState",
    "binary_groups",
    "cached_cell_data",
    "category_palette",
    "cd8_panels",
    "cell_data",
    "cells_in_selection",
    "check_highlight",
    "colouring",
    "display_sample",
    "dot_plot",
    "evaluate",
    "gate_fraction_box",
    "gate_title_suffix",
    "gate_vs_nk",
    "marker_histograms",
    "match_choice",
    "parse_state",
    "patient_gate_table",
    "quantize_embedding",
    "selection_summary",
    "sensitivity_caption",
    "sensitivity_figure",
    "sensitivity_table",
    "shown_caption",
    "state_composition",
    "store_quantized",
    "typed_array",
    "umap_figure",
    "umap_title",
]


# ------------------------------------------------------------------- page builder
def _provenance(view, page: PageState, result: gating.GateResult | None) -> dict:
    out = dict(view.provenance)
    out.update(
        {
            "gate": gating.gate_to_string(page.gate),
            "gate_name": page.gate.display_name,
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
        out["gate_cells_passing"] = result.n_in
        if result.warnings:
            out["gate_warnings"] = result.warnings
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
    highlight, _ = check_highlight(page, data.patients)
    colour = colouring(data, page, shown, gate_result=result, highlight=highlight)
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
            table=umap_table(data, shown, colour, page=page, gate_result=result),
            caption=shown_caption(len(shown), data.n_cells),
            provenance=dict(provenance, colour_by=colour.what),
        ),
        Panel(
            "markers",
            "Gate markers",
            marker_histograms(data, page, title_note=result.note if result else ""),
            table=marker_table(data, page),
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
                sensitivity_caption(sens, note, gate_title_suffix(page, result)),
                provenance,
            )
        )
    return panels
