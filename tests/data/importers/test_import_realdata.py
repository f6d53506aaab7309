"""Real public ICB data import cleanly (read from ../shared/realdata, never copied)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cli
from analysis.nk_metrics import available_metrics, metric_values
from data.bundle import load_bundle
from tests.conftest import REALDATA

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not REALDATA.exists(), reason="../shared/realdata (real public data) is absent"
    ),
]
PREDICTIOR = REALDATA / "predictior_icb"
STUDIES = [
    "Hugo",
    "Liu",
    "Mariathasan",
    "Miao",
    "Nathanson",
    "Padron",
    "Riaz",
    "Van_Allen",
]
SADE = REALDATA / "sadefeldman2018_tcells" / "sadefeldman_subsample_550cells.h5ad"


def run(data_dir: Path, capsys, *argv: str) -> str:
    code = cli.main(["--data-dir", str(data_dir), *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("study", STUDIES)
def test_predictior_cohort_imports_with_nk_score(tmp_path, capsys, study):
    clinical = PREDICTIOR / f"ICB_small_{study}_clinical.csv"
    expression = PREDICTIOR / f"ICB_small_{study}_expr_log2tpm.csv"
    name = study.lower()
    run(
        tmp_path,
        capsys,
        "import",
        "clinical",
        "--file",
        str(clinical),
        "--name",
        name,
        "--set",
        f"cohort={study}",
    )
    out = run(
        tmp_path,
        capsys,
        "import",
        "expression",
        "--file",
        str(expression),
        "--name",
        name,
    )
    assert "missing or constant: NCR1, KLRF1" in out  # absent from these matrices
    cohort = load_bundle(tmp_path / name).cohort
    source = pd.read_csv(clinical)
    assert len(cohort) == len(source)
    assert set(cohort["response"].dropna()) <= {"R", "NR"}
    assert cohort["response"].isna().sum() == source["response"].isna().sum()
    keys = [m.key for m in available_metrics(cohort)]
    assert "score_NK_signature" in keys and "score_CD8_signature" in keys
    # independent reference: z-score each NK gene across the cohort with scipy
    matrix = pd.read_csv(expression, index_col=0)
    genes = ["NCAM1", "FCGR3A", "KLRD1", "NKG7", "GNLY", "PRF1"]
    expected = stats.zscore(matrix.loc[genes].to_numpy(), axis=1, ddof=1).mean(0)
    got = cohort.set_index("sample_id").loc[matrix.columns, "score_NK_signature"]
    assert got.to_numpy() == pytest.approx(expected)


def test_predictior_treatments_are_read_from_drug_names(tmp_path, capsys):
    clinical = PREDICTIOR / "ICB_small_Miao_clinical.csv"
    run(tmp_path, capsys, "import", "clinical", "--file", str(clinical), "--name", "m")
    cohort = load_bundle(tmp_path / "m").cohort
    source = pd.read_csv(clinical)
    expected = source["treatmentid"].map(
        {
            "Nivolumab": "anti-PD-1",
            "Atezolizumab": "anti-PD-L1",
            "Nivolumab:Ipilimumab": "anti-PD-1 + anti-CTLA-4",
        }
    )
    assert cohort["treatment"].tolist() == expected.tolist()


def test_imvigor210_with_cibersort_mcpcounter_and_epic(tmp_path, capsys):
    pdata = REALDATA / "imvigor210" / "imvigor210_pdata.csv"
    sig = REALDATA / "imvigor210" / "imvigor210_sig.csv"
    out = run(
        tmp_path,
        capsys,
        "import",
        "cibersort",
        "--file",
        str(sig),
        "--name",
        "imv",
        "--clinical",
        str(pdata),
        "--map",
        "sample_id=ID,recist=BOR,response=BOR_binary,os_months=OS_days,"
        "os_event=OS_status",
        "--set",
        "tumor_type=urothelial,treatment=atezolizumab,cohort=IMvigor210",
        "--scores",
        "NK_cells_MCPcounter,NKcells_EPIC",
    )
    assert "converted from days to months" in out
    cohort = load_bundle(tmp_path / "imv").cohort.set_index("sample_id")
    assert len(cohort) == 348 and cohort["treatment"].eq("anti-PD-L1").all()
    keys = {m.key: m for m in available_metrics(cohort.reset_index())}
    assert {
        "frac_nk",
        "nk_lymphocytes",
        "score_NK_cells_MCPcounter",
        "score_NKcells_EPIC",
    } <= set(keys)
    assert keys["score_NK_cells_MCPcounter"].kind == "score"
    raw = pd.read_csv(sig).set_index("ID")
    nk = raw["NK_cells_resting_CIBERSORT"] + raw["NK_cells_activated_CIBERSORT"]
    assert cohort.loc[raw.index, "frac_nk"].to_numpy() == pytest.approx(nk.to_numpy())
    assert cohort.loc[raw.index, "score_NKcells_EPIC"].to_numpy() == pytest.approx(
        raw["NKcells_EPIC"].to_numpy()
    )
    days = pd.read_csv(pdata).set_index("ID")["OS_days"]
    assert cohort.loc[days.index, "os_months"].to_numpy() == pytest.approx(
        days.to_numpy() * 12 / 365.25
    )
    # every estimator gives a value per patient, usable as the NK metric
    for key in ("frac_nk", "score_NK_cells_MCPcounter", "score_NKcells_EPIC"):
        assert metric_values(cohort.reset_index(), key).notna().sum() == 348


def test_sadefeldman_prepares_and_imports(tmp_path, capsys):
    before = _sha(SADE)
    prepared = tmp_path / "sade_prepared.h5ad"
    out = run(tmp_path, capsys, "prepare", "--file", str(SADE), "--out", str(prepared))
    assert "UMAP computed" in out and "Leiden clusters" in out
    assert _sha(SADE) == before  # the real file is never modified
    data_dir = tmp_path / "datasets"
    out = run(
        data_dir,
        capsys,
        "import",
        "h5ad",
        "--file",
        str(prepared),
        "--name",
        "sade",
        "--map",
        "patient_id=patient,sample_id=sample,response=respond,"
        "treatment=therapy,timepoint=pre_post",
        "--set",
        "tumor_type=melanoma,cohort=Sade-Feldman",
        "--source",
        "Sade-Feldman et al. 2018, GSE120575",
    )
    assert "BCL2 (BCL2), TNFRSF18 (GITR)" in out
    bundle = load_bundle(data_dir / "sade")
    assert bundle.n_cells == 550 and len(bundle.cohort) == 19
    assert (
        bundle.cohort["treatment"]
        .isin(["anti-PD-1", "anti-CTLA-4", "anti-PD-1 + anti-CTLA-4"])
        .all()
    )
    import anndata

    cells = anndata.read_h5ad(data_dir / "sade" / "cd8_cells.h5ad")
    assert cells.obsm["X_umap"].shape == (550, 2)
    assert np.isfinite(cells.obsm["X_umap"]).all()
    assert "BCL2" not in cells.var_names and "GZMB" in cells.var_names
