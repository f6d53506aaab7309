"""CD8 figure helpers: quantization, point budget, colour codes, lasso selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from figures import cd8


def test_quantize_embedding_spans_uint16_and_keeps_order():
    umap = np.array([[-3.0, 10.0], [0.0, 12.0], [5.0, 11.0]], dtype=np.float32)
    x, y = cd8.quantize_embedding(umap)
    assert x.dtype == np.uint16 and y.dtype == np.uint16
    assert x.tolist() == [0, round(3 / 8 * 65535), 65535]
    assert y.tolist() == [0, 65535, round(0.5 * 65535)]


def test_store_quantized_is_computed_once_per_store(demo_bundle):
    from data.cells import cell_store

    store = cell_store(demo_bundle)
    first = cd8.store_quantized(store)
    assert cd8.store_quantized(store) is first  # cached, not recomputed
    x, y = cd8.quantize_embedding(store.umap)
    assert np.array_equal(first[0], x) and np.array_equal(first[1], y)


def test_cell_data_is_cached_per_view_and_rebuilt_for_a_new_bundle(demo_dir):
    import dataclasses

    from data.view import cohort_view

    def view_of(choices):
        return cohort_view(choices, data_dir=demo_dir.parent, default_dataset="demo")

    all_cells = view_of({"dataset": "demo"})
    page = cd8.parse_state({}, samples=all_cells.samples)
    first = cd8.cached_cell_data(all_cells, page)
    assert cd8.cached_cell_data(view_of({"dataset": "demo"}), page) is first
    rcc_view = view_of({"dataset": "demo", "tumor_type": ["RCC"]})
    rcc = cd8.cached_cell_data(rcc_view, page)
    assert rcc is not first and rcc.n_cells < first.n_cells
    fresh = cd8.cell_data(all_cells, page)
    assert np.array_equal(first.cells, fresh.cells)
    pd.testing.assert_frame_equal(first.patients, fresh.patients)
    # a reloaded dataset (a new bundle object) is never answered from the cache
    new_bundle = dataclasses.replace(all_cells.bundle)
    reloaded = dataclasses.replace(all_cells, bundle=new_bundle)
    assert cd8.cached_cell_data(reloaded, page) is not first


def test_display_sample_keeps_state_shares_and_is_seeded():
    codes = np.repeat([0, 1, 2], [7000, 2900, 100])
    picked = cd8.display_sample(codes, 1000)
    assert len(picked) == 1000 and np.all(np.diff(picked) > 0)
    assert np.bincount(codes[picked]).tolist() == [700, 290, 10]
    assert np.array_equal(picked, cd8.display_sample(codes, 1000))
    assert np.array_equal(cd8.display_sample(codes, 20_000), np.arange(10_000))


def test_typed_array_round_trip():
    import base64

    values = np.array([0, 7, 255], dtype=np.uint8)
    out = cd8.typed_array(values)
    assert out["dtype"] == "u1"
    assert np.frombuffer(base64.b64decode(out["bdata"]), np.uint8).tolist() == [
        0, 7, 255,
    ]  # fmt: skip


class _Store:
    """Just enough of a CellStore for the helpers."""

    def __init__(self, umap, genes):
        self.umap = umap
        self._genes = genes
        self.var_names = pd.Index(list(genes))

    def gene(self, name):
        return self._genes[name]


def _data(umap, genes, states, patients):
    return cd8.CellData(
        store=_Store(umap, genes),
        cells=np.arange(len(umap)),
        patients=pd.DataFrame(
            {"key": ["A|1", "A|2"], "label": ["1 (A)", "2 (A)"],
             "group": ["Responder", pd.NA], "nk": [0.1, 0.2],
             "treatment": ["anti-PD-1"] * 2, "tumor_type": ["melanoma"] * 2}
        ),
        patient_codes=np.asarray(patients, dtype=np.int32),
        state_codes=np.asarray(states, dtype=np.int16),
        state_names=["s0", "s1"],
        metric=None,
        definition=cd8.DEFINITIONS["objective"],
    )  # fmt: skip


def test_gene_colour_is_256_levels_over_the_range():
    values = np.array([0.0, 1.0, 2.0, 4.0], dtype=np.float32)
    data = _data(np.zeros((4, 2)), {"GZMB": values}, [0, 0, 1, 1], [0, 0, 1, 1])
    page = cd8.PageState(color="gene", gene="GZMB")
    colour = cd8.colouring(data, page, np.arange(4))
    assert colour.codes.dtype == np.uint8
    assert colour.codes.tolist() == [0, 64, 128, 255]  # round(v / 4 * 255)
    labels = colour.colorbar["ticktext"]
    assert labels[0] == "0" and labels[-1] == "4"
    assert "GZMB" in colour.colorbar["title"]["text"]


def test_response_colour_puts_unevaluable_patients_last():
    data = _data(np.zeros((4, 2)), {}, [0, 0, 1, 1], [0, 1, 1, 0])
    colour = cd8.colouring(data, cd8.PageState(color="response"), np.arange(4))
    assert colour.codes.tolist() == [0, 1, 1, 0]
    assert [t.split(" (")[0] for t in colour.colorbar["ticktext"]] == [
        "Responder", "not evaluable",
    ]  # fmt: skip


def test_lasso_and_box_select_every_cell_inside():
    rng = np.random.default_rng(0)
    umap = rng.uniform(0, 1, size=(5000, 2)).astype(np.float32)
    umap[0], umap[1] = (0, 0), (1, 1)  # pin the range to [0, 1]
    data = _data(umap, {}, np.zeros(5000), np.zeros(5000))
    x, y = cd8.quantize_embedding(umap)
    # lower-left triangle x + y < 65535 (in quantized units)
    lasso = {"lassoPoints": {"x": [0, 65535, 0], "y": [0, 0, 65535]}}
    inside = cd8.cells_in_selection(data, lasso)
    expected = np.flatnonzero(x.astype(float) + y.astype(float) < 65535)
    # points exactly on the hypotenuse may go either way
    on_edge = np.flatnonzero(
        (x.astype(float) + y.astype(float) == 65535) | (x == 0) | (y == 0)
    )
    expected = np.setdiff1d(expected, on_edge)
    assert set(expected) <= set(inside) <= set(expected) | set(on_edge)
    box = {"range": {"x": [0, 32767], "y": [32767, 65535]}}
    inside = cd8.cells_in_selection(data, box)
    expected = np.flatnonzero((x <= 32767) & (y >= 32767))
    assert inside.tolist() == expected.tolist()
    assert cd8.cells_in_selection(data, {"points": []}) is None


@pytest.mark.parametrize(
    "state, expect",
    [
        ({}, ("state", "objective", "nk_lymphocytes")),
        ({"color": "bogus", "definition": "x", "metric": "y"},
         ("state", "objective", "nk_lymphocytes")),
        ({"color": "gate", "definition": "benefit"}, ("gate", "benefit",
                                                      "nk_lymphocytes")),
    ],
)  # fmt: skip
def test_parse_state_never_fails(state, expect):
    from tests.conftest import small_cohort

    page = cd8.parse_state(state, samples=small_cohort())
    assert (page.color, page.definition, page.metric) == expect


@pytest.mark.parametrize("n_markers", [1, 2, 4, 5, 7, 9, 12])
def test_marker_histograms_any_number_of_markers(n_markers):
    from analysis.gating import Gate, Marker

    rng = np.random.default_rng(n_markers)
    genes = {f"G{i}": rng.exponential(1, 500).astype(np.float32) for i in range(12)}
    data = _data(np.zeros((500, 2)), genes, np.zeros(500), np.zeros(500))
    gate = Gate(tuple(Marker(f"G{i}", "+-"[i % 2], 0.5) for i in range(n_markers)))
    fig = cd8.marker_histograms(data, cd8.PageState(gate=gate))
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == n_markers
    shares = [float(t.split(": ")[1].split("%")[0]) for t in titles]
    expected = [
        round(100 * Marker(f"G{i}", "+-"[i % 2], 0.5).passes(genes[f"G{i}"]).mean())
        for i in range(n_markers)
    ]
    assert shares == expected
