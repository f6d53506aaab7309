"""The demo cohort carries the design the issue asks for, checked with scipy."""

from __future__ import annotations

import numpy as np
from scipy import stats

from analysis.cohort import patient_table
from data import schema


def test_demo_size_and_design(demo_bundle):
    cohort = demo_bundle.cohort
    patients = cohort[["cohort", "patient_id"]].drop_duplicates()
    assert len(patients) >= 400
    assert cohort["cohort"].nunique() >= 3
    assert {"melanoma", "NSCLC", "RCC", "urothelial", "HNSCC"} <= set(
        cohort["tumor_type"]
    )
    assert set(schema.TREATMENTS[:4]) <= set(cohort["treatment"])
    pre = cohort[cohort["timepoint"] == "pre"][
        ["cohort", "patient_id"]
    ].drop_duplicates()
    assert len(pre) == len(patients)  # every patient has a pre-treatment sample
    assert (cohort["timepoint"] == "on").sum() > 50
    assert cohort["os_event"].isin([0, 1]).all() and (cohort["os_event"] == 0).any()
    assert (cohort["pfs_months"] <= cohort["os_months"] + 1e-9).all()
    assert demo_bundle.meta.synthetic


def _pre_patients(cohort):
    patients = patient_table(cohort)
    patients = patients[patients["recist"].isin(["CR", "PR", "SD", "PD"])].copy()
    patients["responder"] = patients["recist"].isin(["CR", "PR"])
    lymph = patients[["frac_nk_pre", "frac_cd8_pre", "frac_cd4_pre", "frac_b_pre"]].sum(
        1
    )
    patients["nk_lymph"] = patients["frac_nk_pre"] / lymph
    return patients


def test_normalized_nk_lower_in_responders_raw_confounded(demo_bundle):
    patients = _pre_patients(demo_bundle.cohort)
    r = patients[patients["responder"]]
    nr = patients[~patients["responder"]]
    normalized = stats.mannwhitneyu(r["nk_lymph"], nr["nk_lymph"], alternative="less")
    assert normalized.pvalue < 1e-4
    # raw NK (fraction of CD45+) is NOT lower in responders: infiltration confounds it
    assert r["frac_nk_pre"].median() >= nr["frac_nk_pre"].median()


def test_nk_effect_absent_in_rcc(demo_bundle):
    patients = _pre_patients(demo_bundle.cohort)
    rcc = patients[patients["tumor_type"] == "RCC"]
    p = stats.mannwhitneyu(
        rcc.loc[rcc["responder"], "nk_lymph"], rcc.loc[~rcc["responder"], "nk_lymph"]
    ).pvalue
    assert p > 0.2


def test_cells_design(demo_bundle):
    import anndata as ad

    adata = ad.read_h5ad(demo_bundle.cells_path)
    assert adata.n_obs >= 30_000
    assert (
        adata.obs["patient_id"].nunique() >= 40
        or adata.obs["sample_id"].nunique() >= 40
    )
    assert adata.obs["cd8_state"].nunique() >= 6
    assert adata.n_vars >= 60
    for gene, _, _ in schema.SONG_GATE:
        assert gene in adata.var_names
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)
    # patients with more target-state cells are responders more often
    from data.demo import SONG_STATE

    share = adata.obs.groupby("sample_id", observed=True)["cd8_state"].apply(
        lambda s: float(np.mean(s == SONG_STATE))
    )
    cohort = demo_bundle.cohort.set_index("sample_id")
    responder = cohort.loc[share.index, "recist"].isin(["CR", "PR"])
    assert stats.mannwhitneyu(share[responder], share[~responder]).pvalue < 0.05
    assert share[responder].median() > share[~responder].median()


def test_same_seed_same_cohort():
    from data.demo import make_cohort

    a, _ = make_cohort(np.random.default_rng(1))
    b, _ = make_cohort(np.random.default_rng(1))
    assert a.equals(b)
