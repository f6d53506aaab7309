"""On the demo, pseudobulk DE recovers the simulated DE genes, while a Welch t-test
over cells (cells as samples) on the same data calls many null genes significant.

The numbers are printed (``pytest -s``) and are the ones the README reports; the same
function runs in ``python -m bench.de_bench --recovery``.
"""

from __future__ import annotations

import json

import pytest

from bench.de_bench import recovery
from data.demo_de import LOG2FC_RANGE
from data.view import cohort_view
from tests.conftest import DATA_DIR


@pytest.fixture(scope="module")
def demo_truth(demo_dir):
    meta = json.loads((demo_dir / "dataset.json").read_text())
    assert "simulated" in meta, "regenerate the demo: make demo (python cli.py demo)"
    return meta["simulated"]


@pytest.mark.parametrize("key", ["gate", "response"])
def test_pseudobulk_recovers_simulated_genes_cells_do_not(demo_truth, key):
    view = cohort_view({}, data_dir=DATA_DIR, default_dataset="demo")
    out = recovery(view, demo_truth, key)
    print(f"\n{key}: {json.dumps(out)}")
    assert out["design"] == ("~ patient + group" if key == "gate" else "~ group")
    assert out["precision_top"] >= 0.9 and out["recall_top"] >= 0.9
    # the cell-level test calls many null genes significant, more than pseudobulk
    assert out["cell_level_false_positives"] >= 100
    assert out["cell_level_false_positives"] > out["pseudobulk_false_positives"]
    if key == "response":  # patients differ: cells as samples fail most here
        assert out["cell_level_false_positives"] >= 10 * max(
            out["pseudobulk_false_positives"], 1
        )
    # null genes the pseudobulk test does call differ by a normalization offset
    # (the gate-defining markers and the response-linked program genes of the
    # mechanism simulation pull the size factors), never by as much as the smallest
    # simulated true effect: an effect-size cut-off separates them
    smallest_true = LOG2FC_RANGE[0]
    assert out["pseudobulk_false_positive_max_abs_log2fc"] < smallest_true
