"""The tables behind the CD8 page's cell-level figures (no Dash).

Exports write each panel's table as CSV next to its figure, so a reader can redraw
or re-check it: the UMAP's table holds one row per drawn cell (name, coordinates,
colour value, gate membership) and the gate markers' table one row per histogram bin
(counts passing and failing, the threshold). The histogram bins are computed here
once (:func:`marker_bins`) for both the figure and its table, so they cannot differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import gating
from data.bundle import read_cell_names
from figures.cd8_state import CellData, PageState

#: bins of each gate-marker histogram
MARKER_BINS = 40


def marker_bins(
    values: np.ndarray, marker: gating.Marker
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of one marker's expression, split into passing and failing cells.

    Parameters
    ----------
    values
        Expression of the marker gene in the cells.
    marker
        The gate marker (gene, sign, threshold).

    Returns
    -------
    edges, passing, failing
        ``MARKER_BINS + 1`` bin edges spanning the values and the threshold, and the
        number of cells per bin that pass and fail the marker's rule.
    """
    passes = marker.passes(values)
    high = max(float(values.max()), marker.threshold + 0.1)
    low = min(float(values.min()), marker.threshold)
    edges = np.histogram_bin_edges(values, bins=MARKER_BINS, range=(low, high))
    passing, _ = np.histogram(values[passes], bins=edges)
    failing, _ = np.histogram(values[~passes], bins=edges)
    return edges, passing, failing


def marker_table(data: CellData, page: PageState) -> pd.DataFrame:
    """One row per histogram bin of each gate marker, as drawn in the figure.

    Markers missing from the dataset get one row with ``note`` saying so (the
    figure shows an empty panel for them).
    """
    present = set(data.store.var_names)
    frames = []
    for marker in page.gate.markers:
        base = {
            "marker": marker.label,
            "gene": marker.gene,
            "rule": marker.rule,
            "threshold": marker.threshold,
        }
        if marker.gene not in present:
            frames.append(pd.DataFrame([{**base, "note": "missing from this dataset"}]))
            continue
        edges, passing, failing = marker_bins(data.expression(marker.gene), marker)
        frames.append(
            pd.DataFrame(
                {
                    **base,
                    "bin_low": edges[:-1],
                    "bin_high": edges[1:],
                    "cells_passing": passing,
                    "cells_failing": failing,
                    "note": "",
                }
            )
        )
    columns = [
        "marker", "gene", "rule", "threshold", "bin_low", "bin_high",
        "cells_passing", "cells_failing", "note",
    ]  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    # counts stay integers beside a missing marker's empty row
    return table.astype({"cells_passing": "Int64", "cells_failing": "Int64"})


def umap_table(
    data: CellData,
    shown: np.ndarray,
    colour,
    *,
    page: PageState,
    gate_result: gating.GateResult | None = None,
) -> pd.DataFrame:
    """One row per drawn cell of the UMAP: what the figure shows, cell by cell.

    Parameters
    ----------
    data
        The filtered cells.
    shown
        Positions (into ``data.cells``) of the drawn cells (the point budget).
    colour
        The :class:`figures.cd8_umap.Colouring` of the drawn cells.
    page
        Page state (the gene, when colouring by expression).
    gate_result
        Gate membership of ``data.cells``; ``None`` when the gate cannot be
        evaluated (``in_gate`` is then empty).

    Returns
    -------
    pandas.DataFrame
        ``cell_id`` (the h5ad's cell name), ``patient``, ``cd8_state``, ``umap_1``,
        ``umap_2`` (the embedding), ``colour_by``, ``colour_value`` (the category,
        or the log-normalized expression) and ``in_gate``.
    """
    cells = data.cells[shown]
    codes = data.state_codes[shown]
    states = np.array([*data.state_names, "no state"], dtype=object)
    if colour.labels:
        value = np.asarray(colour.labels, dtype=object)[colour.codes]
    else:  # expression: the value itself, not the 256-level colour code
        value = data.store.gene(page.gene)[cells]
    in_gate = (
        gate_result.in_gate[shown]
        if gate_result is not None
        else np.full(len(shown), None, dtype=object)
    )
    return pd.DataFrame(
        {
            "cell_id": read_cell_names(data.store.path, cells),
            "patient": data.patients["label"].to_numpy()[data.patient_codes[shown]],
            "cd8_state": states[np.where(codes < 0, len(data.state_names), codes)],
            "umap_1": data.store.umap[cells, 0],
            "umap_2": data.store.umap[cells, 1],
            "colour_by": colour.what,
            "colour_value": value,
            "in_gate": in_gate,
        }
    )
