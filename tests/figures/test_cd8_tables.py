"""The tables behind the CD8 UMAP and gate-marker panels (export-all CSVs).

Checked against the h5ad read independently with anndata, not against the code that
built the figures.
"""

from __future__ import annotations

import anndata
import numpy as np
import pytest

from analysis import gating
from data import schema
from data.view import cohort_view
from figures.export_layout import trace_array
from figures.reports import build_panels
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def panels(demo_bundle):
    view = cohort_view(
        {"dataset": "demo", "tumor_type": ["melanoma"]},
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    return {p.key: p for p in build_panels("cd8-states", view, {"color": "gate"})}


@pytest.fixture(scope="module")
def adata(demo_bundle):
    return anndata.read_h5ad(DATA_DIR / "demo" / "cd8_cells.h5ad")


def _column(adata, rows, gene: str) -> np.ndarray:
    x = adata.X[:, adata.var_names.get_loc(gene)]
    x = np.asarray(x.todense() if hasattr(x, "todense") else x).ravel()
    return x[rows]


def test_umap_table_is_one_row_per_drawn_cell(panels, adata):
    umap = panels["umap"]
    table = umap.table
    drawn = len(trace_array(umap.figure.to_dict()["data"][0]["x"]))
    assert len(table) == drawn > 0
    assert list(table.columns) == [
        "cell_id", "patient", "cd8_state", "umap_1", "umap_2", "colour_by",
        "colour_value", "in_gate",
    ]  # fmt: skip
    # the cells are melanoma cells of the h5ad, with their own names and embedding
    rows = adata.obs_names.get_indexer(table["cell_id"])
    assert (rows >= 0).all() and len(set(rows)) == len(rows)
    obs = adata.obs.iloc[rows]
    np.testing.assert_allclose(
        table[["umap_1", "umap_2"]].to_numpy(), adata.obsm[schema.UMAP_KEY][rows, :2]
    )
    assert (table["cd8_state"].to_numpy() == obs["cd8_state"].astype(str)).all()
    # gate membership: the published rule evaluated here on the raw matrix
    gene_rows = {}
    for marker in gating.parse_gate(umap.provenance["gate"]).markers:
        gene_rows[marker.gene] = marker.passes(_column(adata, rows, marker.gene))
    expected = np.logical_and.reduce(list(gene_rows.values()))
    assert (table["in_gate"].to_numpy(dtype=bool) == expected).all()
    # the colour value names what the colour shows (gate membership here)
    assert set(table["colour_value"]) <= {"in gate", "not in gate"}
    assert ((table["colour_value"] == "in gate") == expected).all()
    assert table["colour_by"].iloc[0].startswith("gate membership")
    # patients: the per-patient gate table counts the same cells
    box = panels["gate-box"].table
    assert box["n_cells"].sum() == len(table)
    assert box["n_in_gate"].sum() == int(expected.sum())


def test_marker_table_holds_the_histogram_bins_and_thresholds(panels, adata):
    markers = panels["markers"]
    table = markers.table
    fig = markers.figure.to_dict()
    n_cells = len(panels["umap"].table)
    rows = adata.obs_names.get_indexer(panels["umap"].table["cell_id"])
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    for i, (gene, part) in enumerate(table.groupby("gene", sort=False)):
        assert len(part) == 40
        assert (part["cells_passing"] + part["cells_failing"]).sum() == n_cells
        # counts passing, from the matrix and the rule, independently
        marker = next(
            m for m in gating.parse_gate(markers.provenance["gate"]).markers
            if m.gene == gene
        )  # fmt: skip
        values = _column(adata, rows, gene)
        assert part["cells_passing"].sum() == int(marker.passes(values).sum())
        assert (part["threshold"] == marker.threshold).all()
        assert part["bin_low"].min() <= marker.threshold <= part["bin_high"].max()
        # the same bins the figure draws: passing then failing bars per marker
        passing, failing = bars[2 * i], bars[2 * i + 1]
        np.testing.assert_array_equal(
            trace_array(passing["y"]).astype(int), part["cells_passing"]
        )
        np.testing.assert_array_equal(
            trace_array(failing["y"]).astype(int), part["cells_failing"]
        )


def test_a_missing_marker_gets_a_row_that_says_so(demo_bundle):
    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    state = {"gate": "CD69.gt.0~NOPE.gt.0", "accept_missing": True}
    markers = next(
        p for p in build_panels("cd8-states", view, state) if p.key == "markers"
    )
    missing = markers.table[markers.table["gene"] == "NOPE"]
    assert list(missing["note"]) == ["missing from this dataset"]
    present = markers.table[markers.table["gene"] == "CD69"]
    assert len(present) == 40 and present["cells_passing"].dtype.name == "Int64"
