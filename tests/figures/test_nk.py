"""NK vs response figure builders: n per group, metric, definition and test named."""

from __future__ import annotations

import math

import pandas as pd

from analysis import stats
from analysis.survival import kaplan_meier
from data.filters import CohortFilter
from data.view import cohort_view
from figures.nk import (
    forest_figure,
    logistic_table,
    nk_panels,
    nk_response_box,
    roc_figure,
)
from figures.nk_survival import km_figure
from tests.conftest import DATA_DIR


def _view(**fields):
    return cohort_view(
        CohortFilter.from_mapping({"dataset": "demo", **fields}),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )


def _title(fig) -> str:
    return fig.to_dict()["layout"]["title"]["text"]


def test_box_has_n_in_ticks_and_names_metric_and_test():
    patients = pd.DataFrame(
        {
            "group": ["Responder"] * 3 + ["Non-responder"] * 4,
            "value": [0.1, 0.2, 0.15, 0.3, 0.4, 0.35, 0.5],
            "cohort": "A",
            "patient_id": [f"P{i}" for i in range(7)],
            "tumor_type": "melanoma",
            "n_samples": 1,
        }
    )
    fig = nk_response_box(
        patients,
        metric_label="NK / (NK + CD8)",
        definition_label="Objective response (CR/PR vs SD/PD)",
        groups=("Responder", "Non-responder"),
        annotation="Two-sided Mann-Whitney U = 0, p = 0.057",
    )
    data = fig.to_dict()
    names = [trace["name"] for trace in data["data"]]
    assert names == ["Responder<br>(n=3)", "Non-responder<br>(n=4)"]
    assert data["data"][0]["boxpoints"] == "all"  # every patient is a point
    assert "NK / (NK + CD8)" in data["layout"]["yaxis"]["title"]["text"]
    assert "Mann-Whitney" in _title(fig) and "Objective response" in _title(fig)


def test_roc_states_direction_auc_and_ci():
    roc = stats.roc_lower_predicts_response([1.0, 2, 3, 5], [2.5, 4, 6, 7, 8])
    fig = roc_figure(roc, metric_label="NK metric", binary_label="Objective response")
    assert "lower NK metric" in _title(fig) and "predicts response" in _title(fig)
    assert "n=4 responders, 5 non-responders" in _title(fig)
    legend = fig.to_dict()["data"][1]["name"]
    assert f"AUC {roc.auc:.2f}" in legend and "DeLong" in legend


def test_forest_rows_carry_n_and_pooled_i2():
    effects = [
        stats.StratumEffect("tumor_type", "melanoma", 20, 30, 0.4, 0.1, 0.2, 0.6),
        stats.StratumEffect("tumor_type", "RCC", 15, 25, 0.0, 0.12, -0.24, 0.24),
        stats.StratumEffect("tumor_type", "HNSCC", 2, 10, message="too few patients"),
    ]
    pooled = stats.pool_strata(effects)
    fig = forest_figure(
        {"tumor_type": effects},
        {"tumor_type": pooled},
        metric_label="NK metric",
        binary_label="Objective response",
    )
    data = fig.to_dict()
    ticks = data["layout"]["yaxis"]["ticktext"]
    assert "melanoma (n=20 R / 30 NR)" in ticks
    assert "HNSCC (n=2 R / 10 NR)" in ticks
    notes = [a["text"] for a in data["layout"]["annotations"]]
    assert "too few patients" in notes
    assert any(f"I² = {100 * pooled.i2:.0f}%" in n for n in notes)
    assert (
        "r > 0: lower NK metric in responders"
        in (data["layout"]["xaxis"]["title"]["text"])
    )
    squares = data["data"][0]
    assert len(squares["x"]) == 2  # the stratum without an estimate has no point


def test_km_has_number_at_risk_and_logrank():
    frame = pd.DataFrame(
        {
            "t": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            "e": [1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1],
            "g": ["NK-low", "NK-high"] * 6,
        }
    )
    km = kaplan_meier(
        frame, time="t", event="e", group="g", order=["NK-low", "NK-high"],
        endpoint="Overall survival",
    )  # fmt: skip
    fig = km_figure(km, {}, metric_label="NK metric", split="median")
    data = fig.to_dict()
    text_traces = [t for t in data["data"] if t.get("mode") == "text"]
    assert [t["text"][0] for t in text_traces] == ["6", "6"]  # all at risk at 0
    assert "log-rank p" in _title(fig)
    legends = [t["name"] for t in data["data"] if t.get("showlegend") is not False]
    assert any("NK-low (≤ median): n=6" in name for name in legends)


def test_logistic_table_or_and_failure_message():
    ok = stats.LogisticResult(
        100,
        40,
        formula="response ~ z(metric) + C(tumor_type)",
        terms=(
            stats.LogisticTerm("Intercept", 0.7, 0.5, 0.9, 0.01),
            stats.LogisticTerm("z(metric), per SD", 0.55, 0.4, 0.76, 0.0003),
        ),
        metric_sd=0.02,
    )
    fig = logistic_table(ok, metric_label="NK metric", binary_label="Objective")
    cells = fig.to_dict()["data"][0]["cells"]["values"]
    assert cells[0] == ["z(NK metric), per SD"] and cells[1] == ["0.55"]
    assert cells[2] == ["0.40 to 0.76"]
    assert "Objective<br>~ z(metric) + tumor type" in _title(fig)
    failed = stats.LogisticResult(10, 10, message="The model separates the groups")
    fig = logistic_table(failed, metric_label="NK", binary_label="Objective")
    assert "separates" in fig.to_dict()["layout"]["annotations"][0]["text"]


def test_nk_panels_on_demo_agree_with_each_other(demo_bundle):
    panels = nk_panels(_view(tumor_type=["melanoma"]), {"metric": "frac_nk"})
    keys = [p.key for p in panels]
    assert keys == [
        "nk-box", "nk-roc", "nk-forest", "nk-km-os", "nk-km-pfs", "nk-logistic",
        "nk-paired",
    ]  # fmt: skip
    summary = panels[0].provenance["stats"]
    assert all(p.provenance["stats"] is summary for p in panels)  # computed once
    n = {g["group"]: g["n"] for g in summary["groups"]}
    box = panels[0].figure.to_dict()
    assert [t["name"] for t in box["data"]] == [
        f"Responder<br>(n={n['Responder']})",
        f"Non-responder<br>(n={n['Non-responder']})",
    ]
    assert "NK cells, fraction of CD45+ cells" in _title(panels[0].figure)
    mw = summary["mann_whitney"]
    assert f"r = {mw['rank_biserial_r']:.2f}" in panels[0].caption
    assert panels[0].provenance["filters"] == "tumor type: melanoma"
    assert len(panels[0].table) == summary["n_patients"]


def test_nk_panels_empty_filter_gives_message(demo_bundle):
    panels = nk_panels(_view(tumor_type=["RCC"], treatment=["anti-CTLA-4"]), {})
    assert len(panels) == 1 and "No samples" in panels[0].caption


def test_paired_titles_carry_wilcoxon(demo_bundle):
    panels = {p.key: p for p in nk_panels(_view(), {})}
    paired = panels["nk-paired"]
    titles = [a["text"] for a in paired.figure.to_dict()["layout"]["annotations"]]
    tests = paired.provenance["stats"]["paired"]
    for test, title in zip(tests, titles, strict=True):
        assert title.startswith(f"{test['group']} (n={test['n']})")
        assert not math.isnan(test["p"])
    assert "Wilcoxon" in _title(paired.figure)
    assert len(paired.table) == sum(t["n"] for t in tests)


def test_km_draws_95_bands_and_names_cutoffs_and_origin():
    frame = pd.DataFrame(
        {
            "t": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            "e": [1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 1],
            "g": ["NK-low", "NK-high"] * 6,
        }
    )
    km = kaplan_meier(
        frame, time="t", event="e", group="g", order=["NK-low", "NK-high"],
        endpoint="Overall survival",
    )  # fmt: skip
    fig = km_figure(
        km, {}, metric_label="NK metric", split="median",
        group_labels={"NK-low": "NK metric ≤ 0.05", "NK-high": "NK metric > 0.05"},
        origin="landmark (3 mo)",
        landmark_note="Landmark 3 months: time from the landmark; 2 patients excluded",
    )  # fmt: skip
    data = fig.to_dict()
    bands = [t for t in data["data"] if t.get("fill") == "tonexty"]
    assert len(bands) == 2  # one per group
    for curve, band in zip(km.curves, bands, strict=True):
        assert list(band["y"]) == list(curve.ci_low)
    legends = [t["name"] for t in data["data"] if t.get("showlegend") is not False]
    assert any(n.startswith("NK-low: NK metric ≤ 0.05: n=6") for n in legends)
    assert "Landmark 3 months" in _title(fig)
    assert data["layout"]["xaxis"]["title"]["text"] == "Months since landmark (3 mo)"


def test_nk_panels_survival_empty_on_treatment_and_landmark_stated(demo_bundle):
    view = _view()
    on = {p.key: p for p in nk_panels(view, {"nk_timepoint": "on"})}
    for key in ("nk-km-os", "nk-km-pfs"):
        assert "immortal-time bias" in on[key].caption
        fig = on[key].figure.to_dict()
        assert fig["data"] == []  # nothing drawn
        assert "pre-treatment values only" in fig["layout"]["annotations"][0]["text"]
    landmark = {
        p.key: p for p in nk_panels(view, {"nk_timepoint": "on", "landmark": 3})
    }
    stats_ = landmark["nk-box"].provenance["stats"]
    for p in landmark.values():
        assert p.provenance["landmark_months"] == 3.0
    for key in ("nk-km-os", "nk-km-pfs"):
        panel = landmark[key]
        surv = stats_["survival"][key.removeprefix("nk-km-")]
        n_out = surv["n_excluded_before_landmark"]
        assert f"Landmark 3 months after treatment start: {n_out} patients" in (
            panel.caption
        )
        assert "Landmark 3 months" in _title(panel.figure)
        cut = stats_["nk_groups"]["cutoffs"][0]
        assert f"NK-low: NK among lymphocytes ≤ {cut:.3g}" in panel.caption
        assert panel.provenance["survival_time_from"].startswith("the landmark")
