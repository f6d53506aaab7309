"""Overview builders: the patient table's CD8 gate column, checked cell by cell."""

from __future__ import annotations

import numpy as np
import pytest

from data.cells import cell_store
from data.filters import CohortFilter
from data.schema import SONG_GATE
from data.view import cohort_view
from figures.overview import overview_panels, overview_patients
from tests.conftest import DATA_DIR


def _view(**fields):
    return cohort_view(
        CohortFilter.from_mapping({"dataset": "demo", **fields}),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )


def test_gate_column_matches_a_cell_by_cell_count(demo_bundle):
    view = _view(tumor_type=["melanoma"])
    table, info = overview_patients(view, {})
    assert info["gate_note"] == ""
    store = cell_store(demo_bundle)
    obs = store.obs
    # the published gate written out by hand: + means > 0, - means <= 0
    passes = np.ones(store.n_cells, dtype=bool)
    for gene, _protein, sign in SONG_GATE:
        values = store.gene(gene)
        passes &= values > 0 if sign == "+" else values <= 0
    checked = 0
    for _, row in table[table["n_cells"] > 0].head(6).iterrows():
        own = view.samples[
            (view.samples["cohort"] == row["cohort"])
            & (view.samples["patient_id"] == row["patient_id"])
        ]["sample_id"]
        mask = obs["sample_id"].astype(str).isin(own).to_numpy()
        assert row["n_cells"] == mask.sum()
        assert row["n_in_gate"] == passes[mask].sum()
        assert row["gate_pct"] == pytest.approx(100 * passes[mask].mean())
        checked += 1
    assert checked == 6
    # patients without cells have no fraction (blank, not 0 %)
    assert table.loc[table["n_cells"] == 0, "gate_pct"].isna().all()


def test_timepoint_filter_restricts_cells_and_empties_pre_nk(demo_bundle):
    table, _info = overview_patients(_view(timepoint=["on"]), {})
    assert table["nk_value"].isna().all()  # the NK column is pre-treatment
    cells = cell_store(demo_bundle).obs
    on_samples = _view(timepoint=["on"]).samples["sample_id"]
    assert (
        table["n_cells"].sum() == cells["sample_id"].astype(str).isin(on_samples).sum()
    )


def test_patients_panel_exports_the_same_columns_and_names_them():
    panels = {p.key: p for p in overview_panels(_view(), {"metric": "frac_nk"})}
    panel = panels["patients"]
    assert {
        *("cohort", "patient_id", "nk_value", "response_group", "gate_pct"),
        *("frac_nk_pre", "frac_cd8_pre"),
    } <= set(panel.table.columns)
    assert panel.provenance["metric"] == "NK cells, fraction of CD45+ cells"
    assert panel.provenance["nk_timepoint"] == "pre-treatment"
    assert panel.provenance["response_definition"].startswith("Objective response")
    assert panel.provenance["gate"].startswith("Song et al.")
    assert "pre-treatment" in panel.caption and "Song et al." in panel.caption


def _bundle_view(path):
    from data.registry import get_bundle

    bundle = get_bundle(path.name, path.parent)
    return cohort_view(
        CohortFilter.from_mapping({"dataset": path.name}),
        data_dir=path.parent,
        default_dataset=path.name,
    ), bundle


def _cells_without(gene_missing: str):
    """Cells of two small-cohort samples; every Song et al. gene but one."""
    import anndata as ad
    import pandas as pd

    genes = [g for g, _p, _s in SONG_GATE if g != gene_missing]
    n = 6
    x = np.ones((n, len(genes)), dtype=np.float32)
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(["A-P1-pre"] * 4 + ["B-P1-pre"] * 2),
            "patient_id": pd.Categorical(["P1"] * n),
            "cd8_state": pd.Categorical(["a", "b", "a", "a", "b", "b"]),
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["X_umap"] = np.zeros((n, 2), dtype=np.float32)
    return adata


def test_missing_gate_gene_gives_no_gate_column_and_says_why(bundle_factory):
    view, _bundle = _bundle_view(bundle_factory(cells=_cells_without("TNFRSF18")))
    table, info = overview_patients(view, {})
    assert "gate_pct" not in table.columns
    assert "TNFRSF18" in info["gate_note"] and "No gate column" in info["gate_note"]
    # the cell counts are still there
    assert table.set_index("key").loc["A|P1", "n_cells"] == 4
    panel = {p.key: p for p in overview_panels(view, {})}["patients"]
    assert "TNFRSF18" in panel.caption and panel.provenance["gate"] == ""


def test_cohort_without_cells_has_no_cell_columns(bundle_factory):
    view, _bundle = _bundle_view(bundle_factory())
    table, info = overview_patients(view, {"definition": "reported"})
    assert info["has_cells"] is False
    assert not {"n_cells", "gate_pct"} & set(table.columns)
    assert info["state"]["definition"] == "reported"
    assert table.set_index("key").loc["B|P3", "response_group"] == "Responder"
