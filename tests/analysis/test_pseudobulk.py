"""Pseudobulk DE: sums checked by hand, the test equal to a direct PyDESeq2 call, the
fallback equal to scipy on per-patient means, and the drop / pairing rules."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from analysis import pseudobulk


def _write(path, counts, *, with_counts=True, raw=False):
    counts = np.asarray(counts, dtype=np.float32)
    total = counts.sum(1, keepdims=True)
    lognorm = np.log1p(counts / np.maximum(total, 1) * 1e4)
    adata = ad.AnnData(
        X=sp.csr_matrix(lognorm),
        var=pd.DataFrame(index=[f"G{i}" for i in range(counts.shape[1])]),
    )
    if with_counts:
        if raw:
            adata.raw = ad.AnnData(X=sp.csr_matrix(counts), var=adata.var)
        else:
            adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    return lognorm


def test_sums_by_hand(tmp_path):
    counts = [
        [1, 0, 2],  # cell 0: patient 0, set A
        [3, 1, 0],  # cell 1: patient 0, set A and B
        [0, 5, 1],  # cell 2: patient 1, set B
        [2, 2, 2],  # cell 3: not selected
        [4, 0, 0],  # cell 4: patient 1, set A
    ]
    lognorm = _write(tmp_path / "c.h5ad", counts)
    cells = np.array([0, 1, 2, 4])  # cell 3 is outside the view
    codes = np.array([0, 0, 1, 1])
    mask_a = np.array([True, True, False, True])
    mask_b = np.array([False, True, True, False])
    pb = pseudobulk.pseudobulk(
        tmp_path / "c.h5ad", cells, ["P|0", "P|1"], codes, mask_a, mask_b
    )
    assert pb.counts_source == "layers/counts"
    assert list(pb.samples["sample"]) == ["A:P|0", "A:P|1", "B:P|0", "B:P|1"]
    assert list(pb.samples["n_cells"]) == [2, 1, 1, 1]
    expected = np.array(
        [
            [1 + 3, 0 + 1, 2 + 0],  # A, patient 0: cells 0 + 1
            [4, 0, 0],  # A, patient 1: cell 4
            [3, 1, 0],  # B, patient 0: cell 1
            [0, 5, 1],  # B, patient 1: cell 2
        ]
    )
    np.testing.assert_array_equal(pb.counts, expected)
    np.testing.assert_allclose(pb.lognorm_sum[0], lognorm[0] + lognorm[1], rtol=1e-6)
    np.testing.assert_array_equal(pb.detected[0], [2, 1, 1])
    assert pb.n_overlap == 1


def test_raw_counts_are_used_when_integer(tmp_path):
    _write(tmp_path / "r.h5ad", [[1, 2], [3, 4]], raw=True)
    assert pseudobulk.counts_source(tmp_path / "r.h5ad") == "raw/X"
    _write(tmp_path / "n.h5ad", [[1, 2], [3, 4]], with_counts=False)
    assert pseudobulk.counts_source(tmp_path / "n.h5ad") is None


def _simulated(tmp_path, *, n_patients=8, cells=30, genes=40, paired=True, seed=1):
    """Cells of ``n_patients``; set A/B split within patients (paired) or by
    patient (unpaired); genes 0-4 are 3-fold higher in A."""
    rng = np.random.default_rng(seed)
    n = n_patients * cells
    codes = np.repeat(np.arange(n_patients), cells)
    if paired:
        in_a = np.tile(np.arange(cells) < cells // 2, n_patients)
    else:
        in_a = codes < n_patients // 2
    patient = rng.lognormal(0, 0.3, size=(n_patients, genes))
    mean = rng.lognormal(0.5, 1.0, size=genes)[None, :] * patient[codes]
    mean[:, :5] *= np.where(in_a, 3.0, 1.0)[:, None]
    counts = rng.poisson(rng.gamma(2.0, mean / 2.0))
    _write(tmp_path / "s.h5ad", counts)
    keys = [f"C|P{i}" for i in range(n_patients)]
    return pseudobulk.pseudobulk(
        tmp_path / "s.h5ad", np.arange(n), keys, codes, in_a, ~in_a
    )


def _direct_deseq2(counts: pd.DataFrame, metadata: pd.DataFrame, design: str):
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    inference = DefaultInference(n_cpus=1)
    dds = DeseqDataSet(
        counts=counts,
        metadata=metadata,
        design=design,
        size_factors_fit_type="poscounts",
        inference=inference,
        quiet=True,
    )
    dds.deseq2()
    res = DeseqStats(dds, contrast=["group", "A", "B"], inference=inference, quiet=True)
    res.summary()
    return res.results_df


@pytest.mark.parametrize("paired", [True, False])
def test_equals_direct_pydeseq2(tmp_path, paired):
    pb = _simulated(tmp_path, paired=paired)
    result = pseudobulk.compare(pb)
    assert result.paired is paired
    assert result.design == ("~ patient + group" if paired else "~ group")
    assert result.n_patients == ({"A": 8, "B": 8} if paired else {"A": 4, "B": 4})
    # the same matrix, built independently from the pseudobulk sums
    kept = pb.samples["n_cells"] >= pseudobulk.MIN_CELLS
    assert result.counts.shape[0] == int(kept.sum())
    np.testing.assert_array_equal(
        result.counts.to_numpy(),
        pb.counts[kept.to_numpy()][:, pb.genes.get_indexer(result.counts.columns)],
    )
    direct = _direct_deseq2(
        result.counts, result.metadata, design=result.design.replace(" ", "")
    )
    mine = result.table.set_index("gene").loc[direct.index]
    np.testing.assert_allclose(mine["log2FC"], direct["log2FoldChange"], rtol=1e-6)
    np.testing.assert_allclose(mine["lfcSE"], direct["lfcSE"], rtol=1e-6)
    np.testing.assert_allclose(mine["pvalue"], direct["pvalue"], rtol=1e-6)
    np.testing.assert_allclose(
        mine["padj"].fillna(-1), direct["padj"].fillna(-1), rtol=1e-6
    )
    np.testing.assert_allclose(mine["baseMean"], direct["baseMean"], rtol=1e-6)
    # the simulated DE genes come first (4 vs 4 patients: at least 4 of 5), higher
    # in A
    top = set(result.table["gene"].head(5)) & {f"G{i}" for i in range(5)}
    assert len(top) >= (5 if paired else 4)
    assert (result.table.set_index("gene").loc[list(top), "log2FC"] > 1).all()


def test_small_samples_dropped_and_counted(tmp_path):
    pb = _simulated(tmp_path, cells=30)
    pb.samples.loc[pb.samples["sample"] == "A:C|P0", "n_cells"] = 3
    result = pseudobulk.compare(pb, min_cells=10)
    reasons = {(d["patient"], d["set"]): d["reason"] for d in result.dropped}
    assert "fewer than 10 cells" in reasons[("C|P0", "A")]
    # its pair in set B cannot be paired any more: dropped too, counted
    assert "paired design" in reasons[("C|P0", "B")]
    assert result.n_patients == {"A": 7, "B": 7}
    assert result.n_cells == {"A": 7 * 15, "B": 7 * 15}  # kept samples only


def test_too_few_patients_is_a_clear_error(tmp_path):
    pb = _simulated(tmp_path, n_patients=2, paired=False)
    with pytest.raises(pseudobulk.DEError, match="too few patients"):
        pseudobulk.compare(pb)


def test_fallback_without_counts_is_welch_on_patient_means(tmp_path):
    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(6), 20)
    in_a = codes < 3
    counts = rng.poisson(2.0, size=(120, 5))
    lognorm = _write(tmp_path / "f.h5ad", counts, with_counts=False)
    keys = [f"C|P{i}" for i in range(6)]
    pb = pseudobulk.pseudobulk(
        tmp_path / "f.h5ad", np.arange(120), keys, codes, in_a, ~in_a
    )
    result = pseudobulk.compare(pb)
    assert result.fallback and "FALLBACK" in result.method
    means = np.array([lognorm[codes == p].astype(float).mean(0) for p in range(6)])
    ref = stats.ttest_ind(means[:3], means[3:], equal_var=False)
    from statsmodels.stats.multitest import multipletests

    table = result.table.set_index("gene").loc[[f"G{i}" for i in range(5)]]
    np.testing.assert_allclose(table["pvalue"], ref.pvalue, rtol=1e-6)
    np.testing.assert_allclose(
        table["padj"], multipletests(ref.pvalue, method="fdr_bh")[1], rtol=1e-6
    )
    diff = (means[:3].mean(0) - means[3:].mean(0)) / np.log(2)
    np.testing.assert_allclose(table["log2FC"], diff, rtol=1e-5)


def test_covariate_confounded_with_groups_is_left_out(tmp_path):
    pb = _simulated(tmp_path, paired=False)
    patients = pd.DataFrame(
        {
            "key": [f"C|P{i}" for i in range(8)],
            # cohort X holds exactly set A's patients: not estimable
            "cohort": ["X"] * 4 + ["Y"] * 4,
            "tumor_type": ["m", "n"] * 4,
        }
    )
    result = pseudobulk.compare(
        pb, patients=patients, covariates=("cohort", "tumor_type")
    )
    assert result.design == "~ tumor_type + group"
    assert any("cohort not added" in note for note in result.notes)
