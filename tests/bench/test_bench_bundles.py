"""The generator options used for benchmark bundles (small sizes, checked by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data import demo
from data.bundle import validate_bundle


def test_scaled_cohort_sizes_add_up_and_keep_the_demo_default():
    assert demo.scaled_cohort_sizes(480) == demo.COHORT_SIZES
    for n in (3, 100, 10_000):
        sizes = demo.scaled_cohort_sizes(n)
        assert sum(sizes.values()) == n
        assert set(sizes) == set(demo.COHORT_SIZES)
    sizes = demo.scaled_cohort_sizes(10_000)
    assert sizes["SYN-A"] == round(160 * 10_000 / 480)


def test_large_bundle_options(tmp_path):
    out = demo.write_demo(
        tmp_path / "big",
        n_cells=3_000,
        n_cell_patients=12,
        n_patients=600,
        n_genes=120,
        umap_subsample=1_000,
        progress=lambda _msg: None,
    )
    assert [p for p in validate_bundle(out) if p.severity == "error"] == []
    cohort = pd.read_csv(out / "cohort.csv")
    assert len(cohort[["cohort", "patient_id"]].drop_duplicates()) == 600
    import anndata as ad

    adata = ad.read_h5ad(out / "cd8_cells.h5ad")
    assert adata.shape == (3_000, 120)
    markers = list(demo.GENES_BASE)
    assert list(adata.var_names[: len(markers)]) == markers
    assert all(g.startswith("FILL") for g in adata.var_names[len(markers) :])
    umap = adata.obsm["X_umap"]
    assert umap.shape == (3_000, 2) and np.isfinite(umap).all()
    assert "subsample of 1,000 cells" in adata.uns["umap_method"]
    # filler genes carry no state programme: their mean barely differs by state,
    # while a marker (HAVCR2, exhausted) differs many-fold
    x = adata.X.tocsc()
    state = adata.obs["cd8_state"].astype(str).to_numpy()
    exhausted = state == "Exhausted (HAVCR2+TOX+)"
    havcr2 = x[:, markers.index("HAVCR2")].toarray().ravel()
    assert havcr2[exhausted].mean() > 3 * havcr2[~exhausted].mean()
    filler = np.asarray(x[:, len(markers) :].mean(axis=1)).ravel()
    ratio = filler[exhausted].mean() / filler[~exhausted].mean()
    assert 0.8 < ratio < 1.25
    # sparse like real data: most filler entries are zero
    assert x[:, len(markers) :].nnz / (3_000 * (120 - len(markers))) < 0.3
    # subsample-placed cells sit near cells of their own state: the state of a
    # cell's nearest fitted neighbour in UMAP agrees for most cells
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(5).fit(umap[::3], state[::3])
    assert (knn.predict(umap[1::3]) == state[1::3]).mean() > 0.8
    assert "filler genes" in (out / "dataset.json").read_text()
