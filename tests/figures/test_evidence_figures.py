"""Evidence figures state n, the effect and its direction; the adjusted model is
checked against scikit-learn's unpenalized logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from analysis import meta
from analysis.adjusted import cohort_model, covariate_for
from analysis.evidence_view import evidence
from analysis.multiverse import Specification
from figures import evidence as fig_ev
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def result(demo_dir):
    return evidence(["demo"], DATA_DIR)


def test_forest_labels_carry_n_and_pooled_rows(result):
    fig = fig_ev.forest_figure(result, group_by="tumor_type").to_dict()
    labels = fig["layout"]["yaxis"]["ticktext"]
    assert any("SYN-A (demo), n=" in t and " R / " in t for t in labels)
    assert any("Pooled, REML + Hartung-Knapp (k=11)" in t for t in labels)
    assert any("prediction interval" in t for t in labels)
    assert (
        "lower NK among lymphocytes in responders"
        in (fig["layout"]["xaxis"]["title"]["text"])
    )


def test_funnel_needs_three_cohorts_and_says_egger(result):
    few = meta.analyze(result.cohorts[:2], metric="m", metric_label="m",
                       definition="objective", timepoint="pre", datasets=["d"],
                       filters="")  # fmt: skip
    text = fig_ev.funnel_figure(few).to_dict()["layout"]["annotations"][0]["text"]
    assert "at least three" in text
    title = fig_ev.funnel_figure(result).layout.title.text
    assert "Egger's test: intercept" in title  # 11 cohorts >= 10


def test_spec_curve_dot_matrix_names_each_choice():
    specs = [
        Specification("frac_nk", "raw", "objective", "pre", 3, -0.2, -0.5, 0.1, 0.2),
        Specification("score_NKcells_EPIC", "nk_cd8", "reported", "on", 4, 0.3, 0.1,
                      0.5, 0.01),
    ]  # fmt: skip
    fig = fig_ev.spec_curve_figure(specs).to_dict()
    ticks = fig["layout"]["yaxis2"]["ticktext"]
    for label in ("NK cell fraction", "NKcells EPIC", "raw", "NK / (NK + CD8)",
                  "objective response", "study-reported", "pre-treatment",
                  "on-treatment"):  # fmt: skip
        assert label in ticks
    title = fig["layout"]["title"]["text"]
    assert "Of 2 specifications, 1 (50%) find the NK measure lower" in title


def test_adjusted_model_matches_sklearn():
    rng = np.random.default_rng(3)
    n = 80
    cd8 = rng.normal(size=n)
    nk = 0.5 * cd8 + rng.normal(size=n)
    eta = 0.8 * cd8 - 0.6 * nk
    recist = np.where(rng.random(n) < 1 / (1 + np.exp(-eta)), "PR", "PD")
    patients = pd.DataFrame({"value": nk, "frac_cd8": cd8, "recist": recist})
    model = cohort_model(patients, dataset="d", cohort="c", covariate="frac_cd8",
                         definition="objective")  # fmt: skip
    y = (recist == "PR").astype(int)
    z = np.column_stack([(nk - nk.mean()) / nk.std(ddof=1),
                         (cd8 - cd8.mean()) / cd8.std(ddof=1)])  # fmt: skip
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    assert model.log_or_adjusted == pytest.approx(ref.fit(z, y).coef_[0][0], abs=1e-5)
    assert model.log_or == pytest.approx(ref.fit(z[:, :1], y).coef_[0][0], abs=1e-5)
    assert covariate_for("score_NK_cells_MCPcounter",
                         ["score_CD8_T_cells_MCPcounter", "frac_cd8"]) == (
        "score_CD8_T_cells_MCPcounter"
    )  # fmt: skip
    assert covariate_for("nk_lymphocytes", ["frac_cd8"]) == "frac_cd8"


def test_export_all_builds_the_evidence_panels(demo_dir):
    from data.view import cohort_view
    from figures.reports import PAGE_BUILDERS, build_panels

    assert "evidence" in PAGE_BUILDERS
    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    panels = build_panels("evidence", view, {"datasets": "demo", "metric": "frac_nk"})
    assert [p.key for p in panels] == [
        "evidence-forest", "evidence-loo", "evidence-funnel", "evidence-adjusted",
        "evidence-multiverse",
    ]  # fmt: skip
    forest = panels[0]
    assert len(forest.table) == 11 and {"r", "ci_low", "auc"} <= set(forest.table)
    assert forest.provenance["pooled"]["reml_hk"]["k"] == 11
    assert len(panels[-1].table) >= 100
