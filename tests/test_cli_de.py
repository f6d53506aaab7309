"""`cli.py de` prints what the /compare page computes (figures.de.run_comparison)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from data.filters import CohortFilter
from data.view import cohort_view
from figures import de
from tests.conftest import DATA_DIR, ROOT


def _run(*args: str):
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_json_equals_page(demo_dir):
    # one cohort keeps PyDESeq2 short: 10 patients, response groups (unpaired)
    result = _run(
        "de", "--dataset", "demo", "--cohort", "SYN-A", "--a", "response:R",
        "--b", "response:NR", "--covariates", "tumor_type", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    view = cohort_view(
        CohortFilter(dataset="demo", cohort=("SYN-A",)),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    page = de.run_comparison(
        view, de.Comparison(a="response:R", b="response:NR", covariates=("tumor_type",))
    ).to_dict()
    assert printed["design"] == page["design"] == "~ group"
    # melanoma only in SYN-A: the covariate has one value and is said to be left out
    assert any("tumor_type not added" in n for n in printed["notes"])
    for key in ("n_patients", "n_cells", "dropped", "set_a", "set_b", "method"):
        assert printed[key] == page[key]
    assert [g["gene"] for g in printed["genes"]] == [g["gene"] for g in page["genes"]]
    for field in ("log2FC", "lfcSE", "pvalue", "padj", "baseMean", "pct_A", "pct_B"):
        mine = np.array([g[field] for g in printed["genes"]], dtype=float)
        ref = np.array([g[field] for g in page["genes"]], dtype=float)
        np.testing.assert_allclose(mine, ref, rtol=1e-9, equal_nan=True)


def test_cli_bad_set_is_a_clear_error(demo_dir):
    result = _run("de", "--a", "state:Nonexistent", "--b", "gate")
    assert result.returncode == 1
    assert "is not a state of this dataset" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run("de", "--a", "gate", "--b", "not:gate", "--covariates", "age")
    assert result.returncode == 1 and "--covariates age" in result.stderr
