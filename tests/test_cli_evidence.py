"""`cli.py evidence`: the JSON the issue lists, on the demo and on real cohorts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import cli
import cli_analyses
from analysis.meta import BINARY_DEFINITIONS
from tests.conftest import DATA_DIR, REALDATA

POOLED_KEYS = {"k", "r", "ci_low", "ci_high", "p", "tau2", "i2", "pi_low", "pi_high"}


def run(capsys, *argv: str, data_dir: Path = DATA_DIR) -> tuple[int, str, str]:
    code = cli.main(["--data-dir", str(data_dir), "evidence", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_response_choices_are_the_binary_definitions():
    assert set(cli_analyses.BINARY_DEFINITIONS_CLI) == set(BINARY_DEFINITIONS)


def test_evidence_json_keys_on_the_demo(demo_dir, capsys):
    code, out, err = run(capsys, "--datasets", "demo", "--multiverse", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert len(report["cohorts"]) >= 8
    first = report["cohorts"][0]
    assert {"dataset", "cohort", "n_responders", "n_non_responders", "r", "ci_low",
            "ci_high", "auc"} <= set(first)  # fmt: skip
    assert set(report["pooled"]) == {"dl", "reml_hk"}
    for pooled in report["pooled"].values():
        assert set(pooled) >= POOLED_KEYS
        assert pooled["ci_low"] < pooled["r"] < pooled["ci_high"]
        assert pooled["pi_low"] <= pooled["ci_low"]
    assert len(report["leave_one_out"]) == report["pooled"]["reml_hk"]["k"]
    assert len(report["multiverse"]) >= 100
    spec = report["multiverse"][0]
    assert {"metric", "denominator", "definition", "timepoint", "k", "r", "ci_low",
            "ci_high"} <= set(spec)  # fmt: skip
    assert report["synthetic"] is True


def test_evidence_filters_and_errors(demo_dir, capsys):
    code, out, err = run(
        capsys, "--datasets", "demo", "--tumor-type", "Melanoma", "--json"
    )
    assert code == 0, err
    cohorts = json.loads(out)["cohorts"]
    assert {c["cohort"] for c in cohorts} == {"SYN-A", "SYN-G"}
    code, _, err = run(capsys, "--datasets", "demo", "--metric", "nk_magic")
    assert code == 1 and "--metric nk_magic" in err and "nk_lymphocytes" in err
    code, _, err = run(capsys, "--datasets", "nowhere")
    assert code == 1 and "no dataset named `nowhere`" in err
    code, out, _ = run(capsys, "--datasets", "demo")
    assert code == 0 and "Pooled REML, Hartung-Knapp" in out


# ------------------------------------------------------------------ real data

PREDICTIOR = REALDATA / "predictior_icb"
STUDIES = ["Hugo", "Liu", "Mariathasan", "Miao", "Nathanson", "Padron", "Riaz",
           "Van_Allen"]  # fmt: skip
IMVIGOR = REALDATA / "imvigor210"
realdata = pytest.mark.skipif(
    not REALDATA.exists(), reason="../shared/realdata (real public data) is absent"
)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    """The 8 PredictioR cohorts and IMvigor210 imported into a temporary DATA_DIR."""
    if not REALDATA.exists():
        pytest.skip("../shared/realdata (real public data) is absent")
    data_dir = tmp_path_factory.mktemp("real")
    for study in STUDIES:
        name = study.lower()
        for argv in (
            ["import", "clinical", "--file",
             str(PREDICTIOR / f"ICB_small_{study}_clinical.csv"), "--name", name,
             "--set", f"cohort={study}"],
            ["import", "expression", "--file",
             str(PREDICTIOR / f"ICB_small_{study}_expr_log2tpm.csv"), "--name", name],
        ):  # fmt: skip
            assert cli.main(["--data-dir", str(data_dir), *argv]) == 0
    argv = [
        "import", "cibersort", "--file", str(IMVIGOR / "imvigor210_sig.csv"),
        "--name", "imvigor210", "--clinical", str(IMVIGOR / "imvigor210_pdata.csv"),
        "--map", "sample_id=ID,recist=BOR,response=BOR_binary,os_months=OS_days,"
        "os_event=OS_status",
        "--set", "tumor_type=urothelial,treatment=atezolizumab,cohort=IMvigor210",
        "--scores", "NK*,T_cells_CD8*,CD8_T*,CD8_Tcells_EPIC",
    ]  # fmt: skip
    assert cli.main(["--data-dir", str(data_dir), *argv]) == 0
    return data_dir


def _nk_signature(study: str) -> pd.Series:
    # independent reference: the importer's NK score, recomputed with scipy
    matrix = pd.read_csv(
        PREDICTIOR / f"ICB_small_{study}_expr_log2tpm.csv", index_col=0
    )
    genes = ["NCAM1", "FCGR3A", "KLRD1", "NKG7", "GNLY", "PRF1"]
    z = stats.zscore(matrix.loc[genes].to_numpy(), axis=1, ddof=1).mean(0)
    return pd.Series(z, index=matrix.columns)


def _r(pos, neg) -> float:
    u = stats.mannwhitneyu(pos, neg).statistic
    return 1 - 2 * u / (len(pos) * len(neg))


@realdata
def test_real_cohorts_match_scipy(real_dir, capsys):
    code, out, err = run(
        capsys, "--metric", "score_NK_signature", "--response", "reported",
        "--multiverse", "--json", data_dir=real_dir,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert "imvigor210" not in report["datasets"] or all(
        c["dataset"] != "imvigor210" or not c["pooled"] for c in report["cohorts"]
    )
    by_cohort = {c["cohort"]: c for c in report["cohorts"]}
    checked = 0
    for study in ("Hugo", "Liu", "Riaz", "Van_Allen"):
        clinical = pd.read_csv(PREDICTIOR / f"ICB_small_{study}_clinical.csv")
        score = _nk_signature(study)
        clinical["nk"] = score.reindex(clinical["sample_id"]).to_numpy()
        # the pre-treatment samples, as the importer dated them (Hugo's Pt16 is
        # an on-treatment biopsy)
        bundle = pd.read_csv(real_dir / study.lower() / "cohort.csv")
        pre = bundle.loc[bundle["timepoint"] == "pre", "sample_id"]
        clinical = clinical[clinical["sample_id"].isin(pre)]
        pos = clinical.loc[clinical["response"] == "R", "nk"].dropna()
        neg = clinical.loc[clinical["response"] == "NR", "nk"].dropna()
        entry = by_cohort[study]
        assert (entry["n_responders"], entry["n_non_responders"]) == (
            len(pos),
            len(neg),
        )
        assert entry["r"] == pytest.approx(_r(pos, neg), abs=1e-9)
        checked += 1
    assert checked == 4
    assert report["pooled"]["reml_hk"]["k"] >= 6
    assert any(s["metric"] == "score_NK_signature" for s in report["multiverse"])


@realdata
def test_imvigor210_estimators_match_scipy(real_dir, capsys):
    sig = pd.read_csv(IMVIGOR / "imvigor210_sig.csv").set_index("ID")
    pdata = pd.read_csv(IMVIGOR / "imvigor210_pdata.csv").set_index("ID")
    response = pdata["BOR_binary"]
    for metric, values in (
        ("frac_nk", sig["NK_cells_resting_CIBERSORT"]
         + sig["NK_cells_activated_CIBERSORT"]),
        ("score_NKcells_EPIC", sig["NKcells_EPIC"]),
        ("score_NK_cells_MCPcounter", sig["NK_cells_MCPcounter"]),
    ):  # fmt: skip
        code, out, err = run(
            capsys, "--datasets", "imvigor210", "--metric", metric,
            "--response", "reported", "--json", data_dir=real_dir,
        )  # fmt: skip
        assert code == 0, err
        (entry,) = json.loads(out)["cohorts"]
        joined = pd.DataFrame({"v": values, "resp": response.reindex(values.index)})
        pos = joined.loc[joined["resp"] == "R", "v"]
        neg = joined.loc[joined["resp"] == "NR", "v"]
        assert entry["r"] == pytest.approx(_r(pos, neg), abs=1e-9), metric
        assert entry["auc"] == pytest.approx((1 + _r(pos, neg)) / 2, abs=1e-9)
    # the multiverse offers IMvigor210's estimators (pooled with nothing: k < 2)
    assert np.isfinite(entry["r"])


@realdata
def test_page_runs_on_real_cohorts_with_the_cli_numbers(real_dir, capsys, monkeypatch):
    import app  # noqa: F401 - registers the pages
    from pages import evidence as page

    settings = type("S", (), {"data_dir": real_dir})()
    monkeypatch.setattr(page, "get_settings", lambda: settings)
    datasets = [o["value"] for o in page.dataset_options()]
    assert {"hugo", "imvigor210"} <= set(datasets) and len(datasets) == 9
    # the sidebar still names the demo, which this DATA_DIR does not hold
    out = page.compute_page({"dataset": "demo"}, datasets, "score_NK_signature",
                            "reported", "pre", "tumor_type")  # fmt: skip
    code, cli_out, err = run(
        capsys, "--metric", "score_NK_signature", "--response", "reported", "--json",
        data_dir=real_dir,
    )  # fmt: skip
    assert code == 0, err
    assert out["summary"] == json.loads(cli_out)["direction"]
    assert "Pooled over" in out["summary"]
    spec = out["figure:evidence-multiverse"].layout.title.text
    assert "specifications" in spec
