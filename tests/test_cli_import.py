"""`cli.py import` and `cli.py prepare` on small inputs whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cli
from data.bundle import load_bundle, validate_bundle
from data.registry import get_bundle, list_datasets
from tests.conftest import small_cohort, write_bundle
from tests.data.importers.helpers import (
    CLINICAL_MAP,
    cibersort_frame,
    clinical_text,
    make_adata,
    tree_hash,
)


def run(data_dir: Path, capsys, *argv: str) -> str:
    code = cli.main(["--data-dir", str(data_dir), *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture
def clinical_csv(tmp_path) -> Path:
    path = tmp_path / "clinical.csv"
    path.write_text(clinical_text())
    return path


def test_clinical_import_maps_vocabulary_units_and_percentages(
    tmp_path, clinical_csv, capsys
):
    data_dir = tmp_path / "datasets"
    out = run(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        str(clinical_csv),
        "--name",
        "mine",
        "--map",
        CLINICAL_MAP,
        "--license",
        "CC-BY-4.0",
    )
    bundle = load_bundle(data_dir / "mine")
    cohort = bundle.cohort.set_index("sample_id")
    assert cohort["treatment"].to_dict() == {
        "P1": "anti-PD-1",
        "P2": "anti-PD-1",
        "P3": "anti-PD-1 + anti-CTLA-4",
        "P4": "anti-PD-L1",
    }
    assert cohort.loc["P2", "frac_nk"] == pytest.approx(0.12)
    assert cohort.loc["P1", "frac_cd8"] == pytest.approx(0.30)
    assert cohort.loc["P1", "os_months"] == pytest.approx(300 / (365.25 / 12))
    assert cohort["os_event"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert cohort["timepoint"].eq("pre").all() and cohort["cohort"].eq("mine").all()
    assert "read as percentages and divided by 100" in out
    assert "Pembrolizumab -> anti-PD-1" in out and "days to months" in out
    meta = json.loads((data_dir / "mine" / "dataset.json").read_text())
    assert meta["synthetic"] is False and meta["license"] == "CC-BY-4.0"
    assert any("percentages" in n for n in meta["imports"][0]["notes"])
    # stats/validate/the app find it by name
    assert [e.name for e in list_datasets(data_dir)] == ["mine"]
    assert get_bundle("mine", data_dir).meta.name == "mine"
    assert run(data_dir, capsys, "validate", "mine").strip().endswith("mine: valid.")


def test_mapping_file_and_xlsx(tmp_path, capsys):
    frame = pd.read_csv(pd.io.common.StringIO(clinical_text()))
    xlsx = tmp_path / "clinical.xlsx"
    frame.to_excel(xlsx, index=False)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(dict(p.split("=") for p in CLINICAL_MAP.split(","))))
    data_dir = tmp_path / "datasets"
    run(
        data_dir,
        capsys,
        "import",
        "clinical",
        "--file",
        str(xlsx),
        "--name",
        "x",
        "--map-file",
        str(mapping),
    )
    cohort = load_bundle(data_dir / "x").cohort
    assert cohort["frac_nk"].tolist() == pytest.approx([0.05, 0.12, 0.03, 0.08])


def test_replacing_needs_force_and_keeps_old_until_done(tmp_path, clinical_csv, capsys):
    data_dir = tmp_path / "datasets"
    args = ["import", "clinical", "--file", str(clinical_csv), "--map", CLINICAL_MAP]
    run(data_dir, capsys, *args, "--name", "mine")
    assert cli.main([*args, "--name", "mine", "--data-dir", str(data_dir)]) == 1
    assert "already exists" in capsys.readouterr().err
    run(data_dir, capsys, *args, "--name", "mine", "--force", "--set", "cohort=B")
    assert load_bundle(data_dir / "mine").cohort["cohort"].eq("B").all()
    assert sorted(p.name for p in data_dir.iterdir()) == ["mine"]  # no leftovers


def test_failure_while_writing_leaves_data_dir_unchanged(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "datasets"
    write_bundle(data_dir / "existing", small_cohort())
    adata = make_adata(cell_types=["NK cells", "CD8 T cells", "B cells"])
    adata.obs["patient"] = adata.obs["patient"].map(
        {"Pt1": "A-P1-pre", "Pt2": "A-P2-pre", "Pt3": "A-P3-pre"}
    )
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    before = tree_hash(data_dir)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("anndata.AnnData.write_h5ad", broken)
    with pytest.raises(OSError, match="disk full"):
        cli.main(
            [
                "import",
                "h5ad",
                "--file",
                str(path),
                "--name",
                "existing",
                "--add",
                "--force",
                "--map",
                "cd8_state=state",
                "--data-dir",
                str(data_dir),
            ]
        )
    assert tree_hash(data_dir) == before


def test_cibersort_added_to_existing_dataset(tmp_path, capsys):
    data_dir = tmp_path / "datasets"
    write_bundle(data_dir / "mine", small_cohort())
    ids = ["A-P1-pre", "A-P2-pre", "B-P1-pre", "UNKNOWN-1"]
    frame = cibersort_frame(ids, underscores=True)
    path = tmp_path / "CIBERSORTx_Results.txt"
    frame.to_csv(path, sep="\t", index=False)
    out = run(
        data_dir, capsys, "import", "cibersort", "--file", str(path), "--name", "mine"
    )
    cohort = load_bundle(data_dir / "mine").cohort.set_index("sample_id")
    row = frame.set_index("Mixture").loc["B-P1-pre"]
    assert cohort.loc["B-P1-pre", "frac_nk"] == pytest.approx(
        row["NK_cells_resting"] + row["NK_cells_activated"]
    )
    assert cohort.loc["B-P1-pre", "frac_cd8"] == pytest.approx(row["T_cells_CD8"])
    cd4 = [c for c in frame.columns if "CD4" in c or "follicular" in c or "Tregs" in c]
    assert len(cd4) == 5
    assert cohort.loc["B-P1-pre", "frac_cd4"] == pytest.approx(row[cd4].sum())
    assert cohort.loc["B-P1-pre", "frac_b"] == pytest.approx(
        row["B_cells_naive"] + row["B_cells_memory"]
    )
    assert np.isnan(cohort.loc["A-P4-pre", "frac_nk"])  # not in the CIBERSORT file
    assert "UNKNOWN-1" in out and "match no clinical row" in out
    assert "P-value" not in " ".join(cohort.columns)


def test_expression_scores_are_mean_z_scores(tmp_path, capsys):
    data_dir = tmp_path / "datasets"
    write_bundle(data_dir / "mine", small_cohort())
    rng = np.random.default_rng(3)
    samples = small_cohort()["sample_id"].tolist()
    genes = ["NCAM1", "NKG7", "GNLY", "KLRD1", "CD8A", "CD8B", "ACTB"]
    matrix = pd.DataFrame(
        rng.normal(5, 2, size=(len(genes), len(samples))), index=genes, columns=samples
    )
    path = tmp_path / "expr.tsv"
    matrix.to_csv(path, sep="\t", index_label="gene_name")
    out = run(
        data_dir, capsys, "import", "expression", "--file", str(path), "--name", "mine"
    )
    cohort = load_bundle(data_dir / "mine").cohort.set_index("sample_id")
    nk = ["NCAM1", "NKG7", "GNLY", "KLRD1"]
    expected = stats.zscore(matrix.loc[nk].to_numpy(), axis=1, ddof=1).mean(axis=0)
    assert cohort.loc[samples, "score_NK_signature"].to_numpy() == pytest.approx(
        expected
    )
    cd8 = stats.zscore(matrix.loc[["CD8A", "CD8B"]].to_numpy(), axis=1, ddof=1).mean(0)
    assert cohort.loc[samples, "score_CD8_signature"].to_numpy() == pytest.approx(cd8)
    assert "missing or constant: FCGR3A, NCR1, KLRF1, PRF1" in out
    from analysis.nk_metrics import available_metrics

    labels = {m.key: m.label for m in available_metrics(cohort)}
    assert labels["score_NK_signature"] == "NK signature (score, not a fraction)"


def test_h5ad_all_immune_cells(tmp_path, capsys):
    data_dir = tmp_path / "datasets"
    types = ["NK cells", "CD8 T cells", "CD8 T cells", "B cells", "NKT cells"]
    adata = make_adata(n_cells=60, cell_types=types)
    path = tmp_path / "immune.h5ad"
    adata.write_h5ad(path)
    out = run(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        str(path),
        "--name",
        "sc",
        "--map",
        "cd8_state=state,response=response,treatment=therapy",
        "--set",
        "tumor_type=melanoma",
    )
    bundle = load_bundle(data_dir / "sc")
    obs = adata.obs
    cohort = bundle.cohort.set_index("sample_id")
    for patient in ("Pt1", "Pt2", "Pt3"):
        cells = obs[obs["patient"] == patient]
        assert cohort.loc[patient, "frac_nk"] == pytest.approx(
            (cells["cell_type"] == "NK cells").mean()  # NKT cells are not NK cells
        )
        assert cohort.loc[patient, "frac_cd8"] == pytest.approx(
            (cells["cell_type"] == "CD8 T cells").mean()
        )
    assert (
        cohort.loc["Pt1", "response"] == "R" and cohort.loc["Pt2", "response"] == "NR"
    )
    assert bundle.n_cells == int((obs["cell_type"] == "CD8 T cells").sum())
    assert "treated as all immune cells" in out
    assert not [p for p in validate_bundle(data_dir / "sc") if p.severity == "error"]


def test_h5ad_ensembl_ids_mapped_with_symbol_column(tmp_path, capsys):
    data_dir = tmp_path / "datasets"
    path = tmp_path / "ens.h5ad"
    make_adata(ensembl=True, symbol_column=True).write_h5ad(path)
    out = run(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        str(path),
        "--name",
        "sc",
        "--map",
        "cd8_state=state",
        "--set",
        "tumor_type=melanoma,treatment=anti-PD-1",
    )
    assert "Ensembl ids mapped to symbols from var['gene_symbols']" in out
    import anndata

    written = anndata.read_h5ad(data_dir / "sc" / "cd8_cells.h5ad")
    assert "CD8A" in written.var_names and "GZMB" in written.var_names


def test_h5ad_raw_counts_prepared_on_import(tmp_path, capsys):
    data_dir = tmp_path / "datasets"
    path = tmp_path / "raw.h5ad"
    adata = make_adata(raw_counts=True, umap=False)
    adata.write_h5ad(path)
    before = path.read_bytes()
    out = run(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        str(path),
        "--name",
        "sc",
        "--prepare",
        "--set",
        "tumor_type=melanoma,treatment=nivolumab",
    )
    assert path.read_bytes() == before  # the input is never modified
    assert "raw counts detected" in out and "UMAP computed" in out
    assert "Leiden clusters" in out
    import anndata

    written = anndata.read_h5ad(data_dir / "sc" / "cd8_cells.h5ad")
    assert written.obsm["X_umap"].shape == (adata.n_obs, 2)
    # normalized to 10,000 per cell, then log1p: expm1 of each row sums to 1e4
    row_sums = np.expm1(written.X.toarray()).sum(axis=1)
    assert row_sums == pytest.approx(np.full(adata.n_obs, 1e4), rel=1e-4)
    assert written.obs["cd8_state"].str.startswith("cluster ").all()


def test_h5ad_added_to_an_imported_clinical_table_then_cibersort(tmp_path, capsys):
    """Cells join an existing dataset; a later CIBERSORT import keeps them."""
    data_dir = tmp_path / "datasets"
    write_bundle(data_dir / "mine", small_cohort())
    adata = make_adata(cell_types=["NK cells", "CD8 T cells", "B cells"])
    adata.obs["sample"] = adata.obs["patient"].map(
        {"Pt1": "A-P1-pre", "Pt2": "A-P2-pre", "Pt3": "B-P1-pre"}
    )
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    run(
        data_dir, capsys, "import", "h5ad", "--file", str(path), "--name", "mine",
        "--add", "--map", "sample_id=sample,cd8_state=state",
    )  # fmt: skip
    bundle = load_bundle(data_dir / "mine")
    cohort = bundle.cohort.set_index("sample_id")
    nk = (
        adata.obs[adata.obs["sample"] == "B-P1-pre"]["cell_type"] == "NK cells"
    ).mean()
    assert cohort.loc["B-P1-pre", "frac_nk"] == pytest.approx(nk)
    assert np.isnan(cohort.loc["A-P4-pre", "frac_nk"])  # no cells for that sample
    assert bundle.n_cells == 20 and bundle.meta.title == "Test bundle"  # meta kept
    h5ad = data_dir / "mine" / "cd8_cells.h5ad"
    cells_before = h5ad.read_bytes()
    frame = cibersort_frame(["A-P1-pre", "A-P2-pre"])
    ciber = tmp_path / "ciber.csv"
    frame.to_csv(ciber, index=False)
    run(data_dir, capsys, "import", "cibersort", "--file", str(ciber), "--name", "mine")
    assert h5ad.read_bytes() == cells_before
    assert load_bundle(data_dir / "mine").n_cells == 20
    meta = json.loads((data_dir / "mine" / "dataset.json").read_text())
    assert len(meta["imports"]) == 2
