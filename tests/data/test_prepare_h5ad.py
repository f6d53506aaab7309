"""prepare: raw counts detected, embedding and states computed, input untouched."""

from __future__ import annotations

import numpy as np

from data.prepare import looks_like_raw_counts, prepare_cells
from tests.data.importers.helpers import make_adata


def test_raw_count_detection():
    assert looks_like_raw_counts(make_adata(raw_counts=True).X)
    assert not looks_like_raw_counts(make_adata(raw_counts=False).X)


def test_prepare_returns_a_new_object_and_leaves_the_input_alone():
    adata = make_adata(raw_counts=True, umap=False)
    x_before = adata.X.toarray().copy()
    obs_before = adata.obs.copy()
    prepared, notes = prepare_cells(
        adata, state_column="state", progress=lambda m: None
    )
    assert "X_umap" not in adata.obsm and np.array_equal(adata.X.toarray(), x_before)
    assert adata.obs.equals(obs_before)
    assert prepared.obsm["X_umap"].shape == (adata.n_obs, 2)
    assert prepared.obsm["X_umap"].dtype == np.float32
    assert prepared.obs["cd8_state"].astype(str).tolist() == adata.obs["state"].tolist()
    # log1p of counts per 10,000, computed independently
    expected = np.log1p(x_before / x_before.sum(axis=1, keepdims=True) * 1e4)
    assert np.allclose(prepared.X.toarray(), expected, atol=1e-4)
    assert any("raw counts detected" in n for n in notes)
    assert not prepared.obsp and "neighbors" not in prepared.uns  # small output file


def test_existing_umap_is_kept_and_leiden_added():
    adata = make_adata(umap=True)
    prepared, notes = prepare_cells(adata, progress=lambda m: None)
    assert np.array_equal(prepared.obsm["X_umap"], adata.obsm["X_umap"])
    assert prepared.obs["cd8_state"].str.startswith("cluster ").all()
    assert any("Leiden" in n for n in notes)
