"""Program scoring: scanpy called directly as the reference, gate markers absent,
coverage and refusal, patient roll-up by hand."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analysis import programs
from analysis.programs import (
    GATE_MARKERS,
    MIN_GENES,
    PROGRAMS,
    Program,
    coverage,
    patient_means,
    patient_program_table,
    score_programs,
)


def _adata(genes, n_cells=300, seed=1):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(2.0, 0.5, size=(n_cells, len(genes))))
    x = np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)
    return ad.AnnData(
        X=sp.csr_matrix(x.astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=list(genes)),
    )


def _genes_with_programs(n_filler=150):
    genes = []
    for program in PROGRAMS:
        genes += [g for g in program.genes()[:30] if g not in genes]
    genes += [g for g in GATE_MARKERS if g not in genes]
    return genes + [f"FILL{i}" for i in range(n_filler)]


def test_vendored_sets_are_the_published_lists():
    assert len(programs.PROGRAM_BY_KEY["ifna"].genes()) == 97
    il2 = programs.PROGRAM_BY_KEY["il2"].genes()
    assert len(il2) == 199 and {"BCL2", "EOMES", "TNFRSF18"} <= set(il2)
    assert len(programs.PROGRAM_BY_KEY["ra"].genes()) == 47
    assert "CD69" in programs.PROGRAM_BY_KEY["ifng"].genes()
    # the RA set is not from T cells, and says so
    assert "not derived from T cells" in programs.PROGRAM_BY_KEY["ra"].caveat


def test_gate_markers_are_absent_from_every_scored_program():
    genes = _genes_with_programs()
    for program in PROGRAMS:
        cov = coverage(program, genes)
        assert not set(cov.used) & set(GATE_MARKERS)
        assert set(cov.removed) == set(program.genes()) & set(GATE_MARKERS)
    il2 = coverage(programs.PROGRAM_BY_KEY["il2"], genes)
    assert set(il2.removed) == {"BCL2", "EOMES", "TNFRSF18"}
    # and from the control-gene pool
    assert not set(programs.control_pool(genes)) & set(GATE_MARKERS)


def test_coverage_counts_found_missing_and_matches_case():
    program = programs.PROGRAM_BY_KEY["ifna"]
    set_genes = list(program.genes())
    present = [g.lower() for g in set_genes[:20]] + ["OTHER"]
    cov = coverage(program, present)
    assert cov.found == 20 and cov.total == 97
    assert cov.used[0] == set_genes[0].lower()  # dataset spelling
    assert len(cov.missing) == 77 and cov.scored
    assert "20 / 97 genes found" in cov.text


def test_program_with_fewer_than_ten_genes_is_refused():
    program = programs.PROGRAM_BY_KEY["ra"]
    genes = list(program.genes()[: MIN_GENES - 1]) + [f"F{i}" for i in range(80)]
    adata = _adata(genes)
    adata.obs["program_ra"] = 1.0  # a stale score must not survive
    scores = score_programs(adata, programs=[program], progress=lambda _m: None)
    assert scores.coverage["ra"]["scored"] is False
    assert "program_ra" not in adata.obs
    assert "not scored" in coverage(program, genes).text


def test_scores_equal_scanpy_score_genes_called_directly():
    import scanpy as sc

    genes = _genes_with_programs()
    adata = _adata(genes)
    scored = adata.copy()
    meta = score_programs(scored, progress=lambda _m: None)
    pool = [g for g in genes if g not in GATE_MARKERS]
    for program in PROGRAMS:
        used = [g for g in program.genes() if g in genes and g not in GATE_MARKERS]
        reference = adata.copy()
        sc.tl.score_genes(
            reference, used, ctrl_size=50, n_bins=25, gene_pool=pool,
            random_state=0, score_name="ref", use_raw=False,
        )  # fmt: skip
        np.testing.assert_allclose(
            scored.obs[program.column].to_numpy(),
            reference.obs["ref"].to_numpy(),
            rtol=1e-5,
            atol=1e-6,
        )
        assert meta.coverage[program.key]["found"] == len(used)
    stored = json.loads(scored.uns[programs.UNS_KEY])
    assert stored["coverage"]["il2"]["removed"] == ["TNFRSF18", "BCL2", "EOMES"]


def test_score_rule_by_hand(monkeypatch):
    """The documented rule by hand: program mean minus control mean, controls drawn
    from the pool genes of the program genes' expression bins. With n_bins=2 and
    ctrl_size above the pool size, scanpy's bins are "every gene below the highest
    mean" and "the highest-mean gene", so the controls are all pool genes of the
    first bin that are not program genes."""
    import scanpy as sc

    genes = (
        [f"G{i}" for i in range(12)] + ["CD69", "GZMB"] + [f"F{i}" for i in range(6)]
    )
    adata = _adata(genes, n_cells=50, seed=3)
    used = genes[:12]
    x = adata.X.toarray().astype(np.float64)
    pool = [g for g in genes if g not in GATE_MARKERS]
    means = pd.Series(x[:, [genes.index(g) for g in pool]].mean(0), index=pool)
    top = means.idxmax()  # alone in the second bin: never a control
    controls = [genes.index(g) for g in pool if g not in used and g != top]
    expected = x[:, [genes.index(g) for g in used]].mean(1) - x[:, controls].mean(1)
    sc.tl.score_genes(
        adata, used, ctrl_size=100, n_bins=2, gene_pool=pool, score_name="s",
        random_state=0, use_raw=False,
    )  # fmt: skip
    np.testing.assert_allclose(adata.obs["s"], expected, rtol=1e-5, atol=1e-6)
    # and the project's function gives the same numbers with the same settings
    ours = adata.copy()
    program = Program("t", "test", "", "")
    object.__setattr__(program, "genes", lambda: tuple(used))
    monkeypatch.setattr(programs, "CTRL_SIZE", 100)
    monkeypatch.setattr(programs, "N_BINS", 2)
    score_programs(ours, programs=[program], progress=lambda _m: None)
    np.testing.assert_allclose(ours.obs["program_t"], expected, rtol=1e-5, atol=1e-6)


def test_patient_means_and_gate_split_by_hand():
    values = np.array([1.0, 3.0, 5.0, np.nan, 2.0, 4.0])
    codes = np.array([0, 0, 0, 1, 1, -1])
    mean, n = patient_means(values, codes, 3)
    assert mean[0] == 3.0 and mean[1] == 2.0 and np.isnan(mean[2])
    assert list(n) == [3, 1, 0]
    patients = pd.DataFrame({"key": ["a", "b", "c"]})
    gate = np.array([True, False, True, False, True, True])
    table = patient_program_table({"ifna": values}, codes, patients, in_gate=gate)
    assert table.loc[0, "ifna_gate_pos"] == 3.0  # cells 1.0 and 5.0
    assert table.loc[0, "ifna_gate_neg"] == 3.0  # cell 3.0
    assert table.loc[1, "ifna_gate_pos"] == 2.0
    assert np.isnan(table.loc[1, "ifna_gate_neg"])  # its gate- cell has no score
    assert table.loc[0, "gate_fraction"] == pytest.approx(2 / 3)
    assert table.loc[1, "gate_fraction"] == pytest.approx(1 / 2)


def test_demo_bundle_stores_scores_and_coverage(demo_bundle):
    from data.cells import cell_store

    store = cell_store(demo_bundle)
    for program in PROGRAMS:
        values = store.obs[program.column].to_numpy()
        assert values.dtype == np.float32 and np.isfinite(values).all()
    meta = programs.read_scores_meta(store.path)
    assert meta.coverage["il2"]["scored"]
    assert meta.coverage["ifna"]["found"] < meta.coverage["ifna"]["total"]


def test_bulk_scores_use_the_documented_bulk_rule_without_gate_markers():
    """Mean z-score across samples (ddof=1) of the program genes, by hand."""
    from analysis.programs import BULK_PREFIX, bulk_program_scores

    rng = np.random.default_rng(5)
    il2 = programs.PROGRAM_BY_KEY["il2"].genes()
    genes = [*il2[:40], "BCL2", "EOMES", "CD69", "X1", "X2"]
    genes = list(dict.fromkeys(genes))
    expression = pd.DataFrame(
        rng.normal(5, 1, size=(len(genes), 8)),
        index=genes,
        columns=[f"S{i}" for i in range(8)],
    )
    scores, notes = bulk_program_scores(expression)
    used = [g for g in il2[:40] if g not in GATE_MARKERS]
    block = expression.loc[used]
    z = block.sub(block.mean(axis=1), axis=0).div(block.std(axis=1, ddof=1), axis=0)
    np.testing.assert_allclose(scores[BULK_PREFIX + "il2"], z.mean(axis=0))
    assert any("gate markers removed: TNFRSF18, BCL2, EOMES" in n for n in notes)
    # the RA set has no gene here: refused, and said so
    assert BULK_PREFIX + "ra" not in scores
    assert any("score_program_ra" in n and "NOT scored" in n for n in notes)
