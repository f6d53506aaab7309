"""Cell store: obs + UMAP eagerly, one gene lazily (gene-major copy or fallback),
checked against anndata reading the whole file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _adata(n=400, genes=("CD69", "GZMB", "HAVCR2", "TOX"), dense=False, seed=0):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    x = sp.random(
        n, len(genes), density=0.3, format="csr", random_state=seed, dtype=np.float32
    )
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(rng.choice(["s1", "s2"], n)),
            "patient_id": pd.Categorical(rng.choice(["p1", "p2"], n)),
            "cd8_state": pd.Categorical(rng.choice(["a", "b"], n)),
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(
        X=x.toarray() if dense else x, obs=obs, var=pd.DataFrame(index=list(genes))
    )
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    return adata


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("with_copy", [True, False])
def test_gene_reads_match_anndata(tmp_path, dense, with_copy):
    from data.cells import CellStore, gene_major_path, write_gene_major

    adata = _adata(dense=dense)
    path = tmp_path / "cd8_cells.h5ad"
    adata.write_h5ad(path)
    before = path.read_bytes()
    if with_copy:
        assert write_gene_major(path) == gene_major_path(path)
        assert gene_major_path(path).name == "cd8_cells.genes.h5"
    store = CellStore(path)
    assert (store.gene_major is not None) == with_copy
    assert store.shape == adata.shape
    np.testing.assert_array_equal(store.umap, adata.obsm["X_umap"])
    assert list(store.obs["sample_id"]) == list(adata.obs["sample_id"])
    # obs is read without the cell names (indexed by cell number); a name on demand
    pd.testing.assert_frame_equal(
        store.obs, adata.obs.reset_index(drop=True), check_categorical=False
    )
    assert [store.cell_name(i) for i in (0, len(adata) - 1)] == [
        adata.obs_names[0],
        adata.obs_names[-1],
    ]
    for gene in adata.var_names:
        expected = np.asarray(
            adata[:, gene].X.todense() if not dense else adata[:, gene].X
        ).ravel()
        np.testing.assert_array_equal(store.gene(gene), expected)
    assert store.genes(["TOX", "NOPE"]).keys() == {"TOX"}
    with pytest.raises(KeyError):
        store.gene("NOPE")
    assert path.read_bytes() == before  # the h5ad is never modified


def test_stale_copy_is_ignored(tmp_path):
    from data.cells import CellStore, write_gene_major

    path = tmp_path / "cd8_cells.h5ad"
    _adata(seed=1).write_h5ad(path)
    write_gene_major(path)
    _adata(n=300, seed=2).write_h5ad(path)  # the h5ad changed after the copy
    store = CellStore(path)
    assert store.gene_major is None
    import anndata as ad

    fresh = ad.read_h5ad(path)
    np.testing.assert_array_equal(
        store.gene("GZMB"), np.asarray(fresh[:, "GZMB"].X.todense()).ravel()
    )


def test_demo_generator_writes_the_gene_major_copy(tmp_path):
    from data.cells import CellStore, gene_major_path
    from data.demo import write_demo

    out = write_demo(
        tmp_path / "demo", n_cells=1500, n_cell_patients=6, progress=lambda _m: None
    )
    h5ad = out / "cd8_cells.h5ad"
    assert gene_major_path(h5ad).exists()
    assert CellStore(h5ad).gene_major == gene_major_path(h5ad)


def test_cells_per_sample_counts_every_cell_once(demo_bundle):
    import anndata

    from data.cells import cells_per_sample

    counts = cells_per_sample(demo_bundle)
    obs = anndata.read_h5ad(demo_bundle.cells_path, backed="r").obs
    expected = obs["sample_id"].astype(str).value_counts()
    assert counts.sort_index().to_dict() == expected.sort_index().to_dict()
    assert (counts > 0).all() and counts.sum() == len(obs)
