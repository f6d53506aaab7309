"""Compare-page panels: n per group, design and test in titles and provenance."""

from __future__ import annotations

import numpy as np

from data.filters import CohortFilter
from data.view import cohort_view
from figures import de
from figures.reports import build_panels
from tests.conftest import DATA_DIR


def test_compare_panels_state_design_and_n(demo_dir):
    view = cohort_view(
        CohortFilter(dataset="demo", cohort=("SYN-A",)),
        data_dir=DATA_DIR,
        default_dataset="demo",
    )
    state = {"a": "response:R", "b": "response:NR"}
    panels = {p.key: p for p in build_panels("compare", view, state)}
    assert set(panels) == {"volcano", "heatmap", "composition"}
    volcano = panels["volcano"]
    prov = volcano.provenance
    assert prov["design"] == "~ group" and prov["set_a"] == "response:R"
    n_a, n_b = prov["n_patients_A"], prov["n_patients_B"]
    title = volcano.figure.layout.title.text
    assert f"{n_a} vs {n_b} patients" in title and "PyDESeq2" in title
    assert "higher in A" in title
    # the three traces partition the tested genes; the legend counts them
    fig = volcano.figure.to_dict()
    assert sum(len(t["customdata"]) for t in fig["data"]) == len(volcano.table)
    up = volcano.table[(volcano.table["padj"] < 0.05) & (volcano.table["log2FC"] > 0)]
    assert f"({len(up)})" in fig["data"][0]["name"]
    assert list(volcano.table.columns[:6]) == [
        "gene", "log2FC", "lfcSE", "stat", "pvalue", "padj"
    ]  # fmt: skip
    z = np.asarray(panels["heatmap"].figure.data[0].z)
    assert z.shape[1] == n_a + n_b
    comp = panels["composition"]
    names = [t.name for t in comp.figure.data]
    assert any(name.startswith("Responder (n=") for name in names)
    assert "Mann-Whitney" in comp.provenance["test"]
    assert "centred log-ratio" in comp.figure.layout.title.text


def test_comparison_request_round_trip():
    request = de.Comparison(a="state:X", b="gate", covariates=("cohort",), min_cells=3)
    assert de.Comparison.from_mapping(request.to_dict()) == request


def test_lasso_on_the_cd8_umap_becomes_a_set_with_the_same_cells(demo_dir):
    from analysis import cellsets
    from figures import cd8

    view = cohort_view({"dataset": "demo"}, data_dir=DATA_DIR, default_dataset="demo")
    ctx, data = de.cell_context(view, "objective")
    # a triangle in the page's quantized plot coordinates (0..65535)
    selection = {"lassoPoints": {"x": [10000, 40000, 25000], "y": [8000, 8000, 50000]}}
    inside, outside = de.lasso_sets(data.store, selection)
    assert outside == "not:" + inside
    page_cells = cd8.cells_in_selection(data, selection)
    mask = cellsets.evaluate_set(cellsets.parse_set(inside), ctx)
    # the same cells up to rounding on the boundary (3 decimals in UMAP units)
    assert abs(int(mask.sum()) - len(page_cells)) <= 0.002 * len(page_cells) + 3
    assert len(np.intersect1d(np.flatnonzero(mask), page_cells)) >= 0.99 * len(
        page_cells
    )
    notmask = cellsets.evaluate_set(cellsets.parse_set(outside), ctx)
    assert not (mask & notmask).any() and (mask | notmask).all()
    href = de.compare_href(inside, outside, {"dataset": "demo", "cohort": ["SYN-A"]})
    assert href.startswith("/compare?dataset=demo&cohort=SYN-A&a=lasso%3A")
