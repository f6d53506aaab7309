"""CD8-states page: callbacks as functions (checked against independent references),
payload size at 100k cells, a real-browser test, and real data with missing markers."""

from __future__ import annotations

import gzip
import json
import re
from contextvars import copy_context

import dash
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from data.filters import CohortFilter
from tests.conftest import REALDATA, free_port, small_cohort, write_bundle

SONG = ["CD69", "BCL2", "EOMES", "GZMB", "HAVCR2", "TNFRSF18"]
SADE = REALDATA / "sadefeldman2018_tcells" / "sadefeldman_subsample_550cells.h5ad"


def _title(fig) -> str:
    """A figure's title as one text: long subtitles are wrapped onto several
    ``<sup>`` lines, which a sentence may cross."""
    text = fig.to_dict()["layout"]["title"]["text"] if hasattr(fig, "to_dict") else fig
    return re.sub(r"</sup><br><sup>", " ", text)


def _store(dataset: str = "demo", **fields) -> dict:
    return CohortFilter.from_mapping({"dataset": dataset, **fields}).to_dict()


def _run(callback, trigger: str, *args):
    """Call a callback as Dash would, with ``trigger`` as the changed input."""
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    def run():
        context_value.set(
            AttributeDict(triggered_inputs=[{"prop_id": trigger, "value": 1}])
        )
        return callback(*args)

    return copy_context().run(run)


def _umap_args(
    store,
    *,
    color="state",
    gene="GZMB",
    gate="",
    accept=False,
    highlight=None,
    drawn=None,
):
    return (
        store,
        color,
        gene,
        gate,
        "",
        accept,
        "nk_lymphocytes",
        "objective",
        highlight,
        drawn,
    )


@pytest.fixture(scope="module")
def demo_reference(demo_dir):
    """Demo cells read independently of the app: full AnnData + cohort."""
    import anndata as ad

    adata = ad.read_h5ad(demo_dir / "cd8_cells.h5ad")
    cohort = pd.read_csv(demo_dir / "cohort.csv")
    x = adata[:, SONG].X.toarray()
    song = (x[:, :4] > 0).all(axis=1) & (x[:, 4:] <= 0).all(axis=1)
    cells = adata.obs[["sample_id"]].astype(str).assign(song=song)
    cells = cells.merge(cohort, on="sample_id", how="left")
    return cells


def test_gate_views_match_independent_reference(demo_bundle, demo_reference):
    from pages.cd8_states import update_gate_views

    cells = demo_reference[demo_reference["tumor_type"] == "melanoma"]
    out = update_gate_views(
        _store(tumor_type=["melanoma"]), "", "", False, "nk_lymphocytes", "objective"
    )
    hist, count, missing, box = out[0], out[1], out[2], out[3]
    n_in = int(cells["song"].sum())
    assert count[0].children == f"{n_in:,}"
    assert f"of {len(cells):,} filtered CD8 cells" in count[1]
    assert missing is None  # the demo has every Song marker
    # per-patient fractions (pandas groupby) and Mann-Whitney U (scipy)
    frac = cells.groupby(["cohort", "patient_id"]).agg(
        song=("song", "mean"), recist=("recist", "first")
    )
    resp = frac[frac["recist"].isin(["CR", "PR"])]["song"]
    nonresp = frac[frac["recist"].isin(["SD", "PD"])]["song"]
    p = stats.mannwhitneyu(resp, nonresp).pvalue
    box_dict = box.to_dict()
    assert f"p = {p:.3f}" in box_dict["layout"]["title"]["text"] or p < 0.001
    names = [t["name"] for t in box_dict["data"]]
    assert names == [
        f"Responder<br>(n={len(resp)})",
        f"Non-responder<br>(n={len(nonresp)})",
    ]
    got = sorted(np.round(np.concatenate([np.asarray(t.y) for t in box.data]), 9))
    want = sorted(np.round(100 * pd.concat([resp, nonresp]).to_numpy(), 9))
    np.testing.assert_allclose(got, want)
    assert "6 vs" not in out[8]  # caption has real n
    assert hist.to_dict()["layout"]["title"]["text"].startswith("Gate markers in")


def test_gate_vs_nk_uses_pretreatment_metric_and_spearman(demo_bundle, demo_reference):
    from analysis.nk_metrics import metric_values
    from pages.cd8_states import update_gate_views

    out = update_gate_views(_store(), "", "", False, "nk_over_nk_cd8", "objective")
    scatter = out[5].to_dict()
    cohort = demo_bundle.cohort
    pre = cohort[cohort["timepoint"] == "pre"]
    means = pre.groupby(["cohort", "patient_id"])[["frac_nk", "frac_cd8"]].mean()
    nk = metric_values(means, "nk_over_nk_cd8")
    frac = demo_reference.groupby(["cohort", "patient_id"])["song"].mean()
    joined = pd.concat([frac, nk.rename("nk")], axis=1, join="inner")
    rho, _ = stats.spearmanr(joined["nk"], joined["song"])
    assert f"rho = {rho:.2f}" in scatter["layout"]["title"]["text"]
    assert f"n={len(joined)}<br>" in scatter["layout"]["title"]["text"]
    assert (
        "NK / (NK + CD8) (pre-treatment)" in scatter["layout"]["xaxis"]["title"]["text"]
    )


def test_umap_first_render_then_patch_recolour(demo_bundle):
    from pages import cd8_states as page

    store = _store(tumor_type=["NSCLC"])
    fig, caption, drawn, _ = _run(
        page.update_umap, f"{page.COLOR}.value", *_umap_args(store)
    )
    payload = json.loads(page_json(fig))["data"][0]
    assert payload["x"]["dtype"] == "u2" and payload["y"]["dtype"] == "u2"
    assert payload["marker"]["color"]["dtype"] == "u1"
    assert "text" not in payload and "customdata" not in payload
    n = len(fig.data[0].x)
    assert caption == f"showing all {n:,} cells"
    # recolour by a gene: a Patch without coordinates, colours as a typed array
    patch, _, _, _ = _run(
        page.update_umap,
        f"{page.COLOR}.value",
        *_umap_args(store, color="gene", drawn=drawn),
    )
    ops = patch.to_plotly_json()["operations"]
    locations = [op["location"] for op in ops]
    assert all("x" not in loc and "y" not in loc for loc in locations)
    color = next(op["params"]["value"] for op in ops if op["location"][-1] == "color")
    assert color["dtype"] == "u1"
    codes = np.frombuffer(__import__("base64").b64decode(color["bdata"]), np.uint8)
    assert len(codes) == n
    # 256 levels track expression: the brightest code is the highest GZMB cell
    bar = next(op["params"]["value"] for op in ops if op["location"][-1] == "colorbar")
    assert "GZMB" in bar["title"]["text"]


def test_gate_colour_and_patient_highlight(demo_bundle, demo_reference):
    from pages import cd8_states as page

    store = _store()
    _, _, drawn, _ = _run(page.update_umap, f"{page.COLOR}.value", *_umap_args(store))
    patch, *_ = _run(
        page.update_umap,
        f"{page.COLOR}.value",
        *_umap_args(store, color="gate", drawn=drawn),
    )
    ops = {
        tuple(op["location"]): op["params"]["value"]
        for op in patch.to_plotly_json()["operations"]
    }
    codes = np.frombuffer(
        __import__("base64").b64decode(ops[("data", 0, "marker", "color")]["bdata"]),
        np.uint8,
    )
    assert codes.sum() == demo_reference["song"].sum()  # all cells drawn (< budget)
    # clicking a patient in the NK scatter highlights exactly its cells
    key = "SYN-A|P012"
    assert (
        _run(
            page.set_highlight,
            f"{page.NK}.clickData",
            {"points": [{"customdata": [key, "x", 1]}]},
            None,
        )
        == key
    )
    patch, _, _, clear = _run(
        page.update_umap,
        f"{page.HIGHLIGHT}.data",
        *_umap_args(store, highlight=key, drawn=drawn),
    )
    ops = {
        tuple(op["location"]): op["params"]["value"]
        for op in patch.to_plotly_json()["operations"]
    }
    codes = np.frombuffer(
        __import__("base64").b64decode(ops[("data", 0, "marker", "color")]["bdata"]),
        np.uint8,
    )
    expected = (demo_reference["sample_id"] == "SYN-A-P012-pre").sum()
    assert codes.sum() == expected > 0
    assert "P012 (SYN-A)" in ops[("layout", "title", "text")]
    assert clear == {}


def test_box_selection_counts_all_cells_inside(demo_bundle, demo_reference):
    from pages.cd8_states import selection_details

    everything = {"range": {"x": [-1, 70000], "y": [-1, 70000]}}
    out = selection_details(everything, _store(), {})
    n = len(demo_reference)
    assert out[0].children.startswith(f"Selection: {n:,} cells from 48 patients")
    n_in = int(demo_reference["song"].sum())
    assert out[2].children.startswith(f"In gate: {n_in:,} of {n:,}")


def test_controls_take_the_links_values_not_the_dropdowns(demo_bundle):
    """Dash 4's Dropdown hands back None for a value it had no option for; the
    link's metric and definition come from the link Store instead."""
    from pages import cd8_states as page

    link = {
        "metric": "nk_over_nk_cd8",
        "definition": "benefit",
        "highlight": "SYN-A|P012",
    }
    out = page.update_controls(_store(), link, None, None, "SYN-A|P012")
    assert out[1] == "nk_over_nk_cd8" and out[3] == "benefit"
    assert out[9] is None  # nothing to report
    assert out[10] is None  # the link is used once; later runs keep the controls
    # a later filter change keeps what the controls show
    out = page.update_controls(_store(), None, "log2_nk_cd8", "recist", None)
    assert out[1] == "log2_nk_cd8" and out[3] == "recist"
    # a patient outside the filtered view is named, and the highlight is cleared
    link = {"highlight": "SYN-A|P012"}
    out = page.update_controls(_store(tumor_type=["RCC"]), link, None, None, None)
    notice = json.dumps(out[9].to_plotly_json(), default=str)
    assert "Highlighted patient" in notice and "SYN-A|P012" in notice
    assert out[11] is dash.no_update or out[11] is None


def test_typing_in_the_gene_search_does_not_recolour(demo_bundle):
    """Each key typed in the gene search box re-runs the options callback; writing
    the unchanged gene back would fire a full UMAP recolour per key."""
    from pages import cd8_states as page

    options, value = page.gene_options("GZ", _store(), "GZMB")
    assert value is dash.no_update
    assert "GZMB" in json.dumps(options, default=str)
    # a link's lower-case spelling and a gene the dataset lacks are still replaced
    assert page.gene_options(None, _store(), "gzmb")[1] == "GZMB"
    assert page.gene_options(None, _store(), "NOT-A-GENE")[1] == "GZMB"
    assert page.gene_options(None, _store(), None)[1] == "GZMB"


def test_clicked_patient_goes_into_the_page_state(demo_bundle):
    from pages import cd8_states as page

    state = page.collect_state("state", "GZMB", "", "", False, "", "", "SYN-A|P012")
    assert state["highlight"] == "SYN-A|P012"
    assert (
        page.collect_state("state", "", "", "", False, "", "", None)["highlight"] == ""
    )


def test_layout_survives_odd_query(demo_bundle):
    from pages.cd8_states import layout

    layout(color="nonsense", gate="%%%", accept_missing="maybe", gene=["A", "B"])
    layout(gate="CD69.gt.0.5~HAVCR2.le.1", gate_name="mine", definition="nope")


def test_missing_gate_markers_block_until_accepted(tmp_path, monkeypatch):
    from config import Settings
    from pages import cd8_states as page

    adata = _synthetic_cells(
        small_cohort(), 3000, genes=["CD69", "EOMES", "GZMB", "HAVCR2", "CD8A"]
    )
    write_bundle(tmp_path / "nomarkers", small_cohort(), cells=adata)
    monkeypatch.setattr(page, "get_settings", lambda: Settings(data_dir=tmp_path))
    store = _store("nomarkers")
    out = page.update_gate_views(store, "", "", False, "nk_lymphocytes", "objective")
    alert = json.dumps(out[2].to_plotly_json(), default=str)
    assert "Missing in this dataset: BCL2, TNFRSF18" in alert
    assert "Gate not evaluated" in out[1].children
    assert (
        "lack gate marker(s) BCL2, TNFRSF18"
        in out[3].to_dict()["layout"]["annotations"][0]["text"]
    )
    out = page.update_gate_views(store, "", "", True, "nk_lymphocytes", "objective")
    assert "gate evaluated without BCL2, TNFRSF18" in _title(out[3])
    assert "gate evaluated without BCL2, TNFRSF18" in _title(out[7])


# ----------------------------------------------------------------------- payload
def page_json(value) -> str:
    """JSON exactly as Dash serialises a callback output."""
    from plotly.io.json import to_json_plotly

    return to_json_plotly(value)


def _synthetic_cells(cohort: pd.DataFrame, n: int, *, genes=None, seed: int = 0):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    genes = genes or [*SONG, "CD8A", "TCF7"]
    samples = cohort["sample_id"].to_numpy()
    sample = rng.choice(samples, size=n)
    patient = cohort.set_index("sample_id").loc[sample, "patient_id"].to_numpy()
    states = rng.integers(0, 5, size=n)
    centres = rng.normal(0, 10, size=(5, 2))
    umap = (centres[states] + rng.normal(0, 1.5, size=(n, 2))).astype(np.float32)
    x = sp.random(
        n, len(genes), density=0.4, format="csr", random_state=seed, dtype=np.float32
    )
    x.data = np.log1p(x.data * 20).astype(np.float32)
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(sample),
            "patient_id": pd.Categorical(patient),
            "cd8_state": pd.Categorical.from_codes(
                states, [f"state {i}" for i in range(5)]
            ),
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["X_umap"] = umap
    return adata


@pytest.fixture(scope="module")
def bundle_100k(tmp_path_factory):
    from data.cells import write_gene_major

    root = tmp_path_factory.mktemp("cd8-100k")
    path = write_bundle(
        root / "big", small_cohort(), cells=_synthetic_cells(small_cohort(), 100_000)
    )
    write_gene_major(path / "cd8_cells.h5ad")
    return root


def test_payload_bytes_per_cell_at_100k(bundle_100k, monkeypatch, capsys):
    from config import Settings
    from pages import cd8_states as page

    monkeypatch.setattr(page, "get_settings", lambda: Settings(data_dir=bundle_100k))
    store = _store("big")
    n = 100_000
    fig, _, drawn, _ = _run(page.update_umap, f"{page.COLOR}.value", *_umap_args(store))
    first = page_json({"figure": fig}).encode()
    assert len(json.loads(first)["figure"]["data"][0]["x"]["bdata"]) > n  # all cells
    first_gz = gzip.compress(first, compresslevel=6)
    results = {"first": (len(first) / n, len(first_gz) / n)}
    for name, kwargs in {
        "gene": {"color": "gene", "gene": "GZMB"},
        "gate": {"color": "gate"},
        "category": {"color": "response"},
    }.items():
        patch, *_ = _run(
            page.update_umap,
            f"{page.COLOR}.value",
            *_umap_args(store, drawn=drawn, **kwargs),
        )
        body = page_json({"figure": patch.to_plotly_json()}).encode()
        results[name] = (len(body) / n, len(gzip.compress(body)) / n)
    with capsys.disabled():
        print(
            "\nbytes per cell at 100k cells (uncompressed, gzip):",
            {k: (round(a, 3), round(b, 3)) for k, (a, b) in results.items()},
        )
    # first render: uint16 x, y + uint8 colour = 5 B raw, 6.67 B as base64 JSON, plus
    # ~0.35 B because plotly's JSON encoder (used by Dash) writes every "/" of the
    # base64 as "\u002f" for HTML safety. On the wire (Dash compress=True, gzip) the
    # bound is 6 B per cell.
    assert results["first"][0] <= 7.1
    assert results["first"][1] <= 6.0
    for name in ("gene", "gate", "category"):
        assert results[name][0] <= 1.5, name  # uncompressed already


def test_point_budget_draws_stratified_sample(bundle_100k, monkeypatch):
    from config import Settings
    from figures import cd8
    from pages import cd8_states as page

    settings = Settings(data_dir=bundle_100k, max_points_on_screen=20_000)
    monkeypatch.setattr(page, "get_settings", lambda: settings)
    fig, caption, _, _ = _run(
        page.update_umap, f"{page.COLOR}.value", *_umap_args(_store("big"))
    )
    assert caption.startswith("showing 20,000 of 100,000 cells")
    assert "showing 20,000 of 100,000 cells" in fig.layout.title.text
    codes = np.random.default_rng(0).integers(0, 3, size=1000)
    picked = cd8.display_sample(codes, 100)
    assert len(picked) == 100
    share = np.bincount(codes[picked], minlength=3)
    np.testing.assert_allclose(share, np.bincount(codes) / 10, atol=1)
    # statistics use all cells, not the drawn sample
    out = page.update_gate_views(
        _store("big"), "", "", False, "nk_lymphocytes", "objective"
    )
    assert "of 100,000 filtered CD8 cells" in out[1][1]


def test_cd8_panels_builder(demo_bundle):
    from config import get_settings
    from data.view import cohort_view
    from figures.reports import build_panels

    settings = get_settings()
    view = cohort_view(_store(), data_dir=settings.data_dir, default_dataset="demo")
    panels = build_panels("cd8-states", view, {"color": "gate"})
    keys = [p.key for p in panels]
    assert keys == [
        "umap",
        "markers",
        "gate-box",
        "gate-nk",
        "composition",
        "dotplot",
        "sensitivity",
    ]
    for panel in panels:
        assert panel.provenance["gate_phenotype"] == " ".join(
            ["CD69+", "BCL2+", "EOMES+", "GZMB+", "HAVCR2-", "TNFRSF18-"]
        )


# ---------------------------------------------------------------------- real data
@pytest.mark.skipif(
    not SADE.exists(),
    reason="real data ../shared/realdata/sadefeldman2018_tcells not present",
)
def test_sadefeldman_missing_markers_warning(tmp_path, monkeypatch):
    """Prepare the real T cells (UMAP via data.prepare), bundle them, and see the
    page name BCL2 and TNFRSF18 as missing."""
    import anndata as ad

    from config import Settings
    from data.prepare import prepare_cells
    from pages import cd8_states as page

    raw = ad.read_h5ad(SADE)
    prepared, _ = prepare_cells(raw, state_column="cellTypes", progress=lambda _: None)
    obs = prepared.obs
    patients = obs["patient"].astype(str)
    prepared.obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(patients + "-pre"),
            "patient_id": pd.Categorical(patients),
            "cd8_state": obs["cd8_state"],
        },
        index=obs.index,
    )
    first = obs.assign(patient=patients).drop_duplicates("patient")
    cohort = pd.DataFrame(
        {
            "sample_id": first["patient"] + "-pre",
            "patient_id": first["patient"],
            "cohort": "Sade-Feldman 2018",
            "tumor_type": "melanoma",
            "treatment": first["therapy"]
            .astype(str)
            .map(
                {
                    "anti-PD1": "anti-PD-1",
                    "anti-CTLA4": "anti-CTLA-4",
                    "anti-CTLA4+PD1": "anti-PD-1 + anti-CTLA-4",
                }
            )
            .fillna("other"),
            "timepoint": "pre",
            "recist": "",
            "response": first["respond"]
            .astype(str)
            .map({"Responder": "R", "Non-responder": "NR"}),
            "frac_nk": "",
            "frac_cd8": "",
        }
    )
    write_bundle(
        tmp_path / "sade",
        cohort,
        cells=prepared,
        meta={
            "name": "sade",
            "title": "Sade-Feldman 2018 T cells (subsample)",
            "description": "test",
            "source": "GSE120575",
            "license": "see PROVENANCE",
            "synthetic": False,
            "version": "1",
        },
    )
    monkeypatch.setattr(page, "get_settings", lambda: Settings(data_dir=tmp_path))
    store = _store("sade")
    out = page.update_gate_views(store, "", "", False, "", "reported")
    alert = json.dumps(out[2].to_plotly_json(), default=str)
    assert "Missing in this dataset: BCL2, TNFRSF18" in alert
    out = page.update_gate_views(store, "", "", True, "", "reported")
    n_in = int(out[1][0].children.replace(",", ""))
    x = raw[:, ["CD69", "EOMES", "GZMB", "HAVCR2"]].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    expected = ((x[:, :3] > 0).all(axis=1) & (x[:, 3] <= 0)).sum()
    assert n_in == expected
    assert "gate evaluated without BCL2, TNFRSF18" in _title(out[3])
    fig, *_ = _run(
        page.update_umap,
        f"{page.COLOR}.value",
        store,
        "gate",
        "",
        "",
        "",
        True,
        "",
        "reported",
        None,
        None,
    )
    assert "gate evaluated without BCL2, TNFRSF18" in _title(fig)


# ------------------------------------------------------------------------ browser
@pytest.mark.browser
def test_colour_by_gene_and_move_threshold_in_browser(
    dash_duo, demo_bundle, demo_reference
):
    from selenium.webdriver.common.keys import Keys

    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/cd8-states")
    n_in = int(demo_reference["song"].sum())
    dash_duo.wait_for_text_to_equal("#cd8-states-gate-n", f"{n_in:,}", timeout=40)
    dash_duo.select_dcc_dropdown("#cd8-states-color", value="Gene expression")
    dash_duo.wait_for_contains_text(
        "#cd8-states-umap", "coloured by GZMB expression", timeout=20
    )
    field = dash_duo.find_element('input[id*="cd8-states-threshold"][id*="CD69"]')
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("1.5", Keys.ENTER)
    # the gate with CD69 > 1.5, recomputed independently from the full AnnData
    import anndata as ad

    adata = ad.read_h5ad(demo_bundle.cells_path)
    x = adata[:, SONG].X.toarray()
    moved = (x[:, 0] > 1.5) & (x[:, 1:4] > 0).all(axis=1) & (x[:, 4:] <= 0).all(axis=1)
    assert moved.sum() < n_in
    dash_duo.wait_for_text_to_equal(
        "#cd8-states-gate-n", f"{int(moved.sum()):,}", timeout=30
    )
    assert "gate=CD69.gt.1.5" in dash_duo.driver.current_url
    assert "color=gene" in dash_duo.driver.current_url
    # a moved threshold is no longer the published gate, in the figures too
    from dash.testing.wait import until

    name = dash_duo.find_element("#cd8-states-gate-name")
    until(
        lambda: (
            name.get_attribute("placeholder") == "custom (modified from Song et al.)"
        ),
        timeout=20,
    )
    until(
        lambda: "custom (modified from Song et al.)" in _layout_text(dash_duo, BOX_ID),
        timeout=20,
    )
    assert "Song et al. CD8 state" not in _layout_text(dash_duo, BOX_ID)


HIST_ID, BOX_ID = "cd8-states-histograms", "cd8-states-box"


def _layout_text(dash_duo, graph_id: str) -> str:
    """Title and annotations of a plotly graph as drawn (plotly's own state)."""
    return dash_duo.driver.execute_script(
        "const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');"
        "if (!el || !el.layout) return '';"
        "const t = el.layout.title; const title = t && (t.text || t) || '';"
        "const notes = (el.layout.annotations || []).map(a => a.text);"
        "return title + ' ' + notes.join(' ');",
        graph_id,
    )


@pytest.mark.browser
def test_add_and_remove_gate_markers_in_browser(dash_duo, demo_bundle):
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/cd8-states")
    dash_duo.wait_for_element(
        'input[id*="cd8-states-threshold"][id*="HAVCR2"]', timeout=40
    )
    dash_duo.select_dcc_dropdown("#cd8-states-add-gene", value="TOX")
    dash_duo.find_element("#cd8-states-add").click()
    dash_duo.wait_for_element(
        'input[id*="cd8-states-threshold"][id*="TOX"]', timeout=20
    )
    until(lambda: "TOX+" in _layout_text(dash_duo, HIST_ID), timeout=20)
    assert "TOX.gt.0" in dash_duo.driver.current_url
    remove = dash_duo.find_element('button[id*="cd8-states-remove"][id*="HAVCR2"]')
    remove.click()
    dash_duo.wait_for_no_elements(
        'input[id*="cd8-states-threshold"][id*="HAVCR2"]', timeout=20
    )
    until(
        lambda: (
            "TOX > 0" in _layout_text(dash_duo, BOX_ID)
            and "HAVCR2" not in _layout_text(dash_duo, BOX_ID)
        ),
        timeout=20,
    )
    assert "HAVCR2" not in dash_duo.driver.current_url
    assert "TOX.gt.0" in dash_duo.driver.current_url


@pytest.mark.browser
def test_umap_webgl_points_are_drawn_in_browser(dash_duo, demo_bundle):
    """Under the app's real CSP, plotly.js's WebGL layer can compile: without
    'unsafe-eval' in script-src the UMAP shows 'WebGL is not supported'."""
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/cd8-states")
    until(lambda: "coloured by" in _layout_text(dash_duo, "cd8-states-umap"), 40)
    text = dash_duo.find_element("#cd8-states-umap").text
    assert "WebGL is not supported" not in text


def test_a_modified_gate_is_never_called_the_published_one(demo_bundle):
    """Every figure title, caption and export provenance of the page names a
    modified gate "custom (modified from Song et al.)" (issue 12, item 6)."""
    from config import get_settings
    from data.view import cohort_view
    from figures.reports import build_panels

    settings = get_settings()
    view = cohort_view(_store(), data_dir=settings.data_dir, default_dataset="demo")
    modified = "CD69.gt.0.5~BCL2.gt.0~EOMES.gt.0~GZMB.gt.0~HAVCR2.le.0~TNFRSF18.le.0"
    for gate_name, shown in (
        ("", "custom (modified from Song et al.)"),
        ("Song et al. CD8 state", "custom (modified from Song et al.)"),
        ("CD69-high", "CD69-high"),
    ):
        state = {"color": "gate", "gate": modified, "gate_name": gate_name}
        panels = build_panels("cd8-states", view, state)
        for panel in panels:
            text = json.dumps(
                [panel.figure.to_dict()["layout"], panel.caption, panel.provenance],
                default=str,
            )
            assert "Song et al. CD8 state" not in text, panel.key
            assert panel.provenance["gate_name"] == shown
            if panel.key in {"umap", "markers", "gate-box", "gate-nk", "sensitivity"}:
                assert shown in panel.figure.layout.title.text, panel.key
            if panel.key in {"gate-box", "gate-nk"}:
                assert shown in panel.caption
    # the published gate keeps its name
    panels = build_panels("cd8-states", view, {"color": "gate"})
    assert all(p.provenance["gate_name"] == "Song et al. CD8 state" for p in panels)


# ---------------------------------------------- degenerate gates (issue 12, 7)
def _gate_texts(out) -> dict:
    """Title and annotations of each gate figure, and the count line, as text."""

    def text(fig):
        layout = fig.to_dict()["layout"]
        title = (layout.get("title") or {}).get("text", "")
        notes = " ".join(a.get("text", "") for a in layout.get("annotations", []))
        return f"{title} {notes}"

    count = json.dumps(out[1], default=lambda o: o.to_plotly_json())
    return {"count": count, "box": text(out[3]) + out[4], "nk": text(out[5]) + out[6]}


def test_a_gate_no_cell_passes_draws_no_statistics(demo_bundle):
    import anndata as ad

    from pages.cd8_states import update_gate_views

    gate = "CD69.gt.99~BCL2.gt.0~EOMES.gt.0~GZMB.gt.0~HAVCR2.le.0~TNFRSF18.le.0"
    out = update_gate_views(_store(), gate, "", False, "nk_lymphocytes", "objective")
    texts = _gate_texts(out)
    assert out[1][0].children == "0"
    assert "cells pass the gate" in texts["count"]
    # the observed CD69 range of the filtered (here: all) cells, read independently
    cd69 = ad.read_h5ad(demo_bundle.cells_path)[:, "CD69"].X.toarray().ravel()
    range_text = f"({cd69.min():.2f} to {cd69.max():.2f})"
    warning = (
        "CD69 threshold 99 is outside the observed CD69 range in the filtered cells "
        f"{range_text}: no cell passes CD69+"
    )
    assert warning in texts["count"]
    for key in ("box", "nk"):
        assert "0 cells pass the gate" in texts[key], key
        assert warning in texts[key]
        for statistic in ("p =", "p <", "rho", "nan", "r ="):
            assert statistic not in texts[key], (key, statistic)
    assert not out[3].to_dict()["data"] and not out[5].to_dict()["data"]
    sensitivity = out[7].to_dict()
    assert "0 cells pass, no AUC" in sensitivity["layout"]["title"]["text"]


def test_a_gate_every_cell_passes_says_why_there_is_no_test(demo_bundle):
    from pages.cd8_states import update_gate_views

    out = update_gate_views(
        _store(), "CD8A.gt.-1", "", False, "nk_lymphocytes", "objective"
    )
    texts = _gate_texts(out)
    assert "every cell passes CD8A+" in texts["count"]
    assert "every cell passes CD8A+" in out[4] and "every cell passes CD8A+" in out[6]
    why = "no test: every patient has the same gate fraction (100.0%)"
    for key in ("box", "nk"):
        assert why in texts[key], key
        for statistic in ("p =", "p <", "rho =", "nan", "r ="):
            assert statistic not in texts[key], (key, statistic)
    assert out[3].to_dict()["data"]  # the points are still shown
    # the sweep has no AUC where every patient is the same (scipy would say p = 1)
    curve = out[7].data[0]  # CD8A swept; its own threshold -1 keeps every cell
    assert curve.x[0] == -1 and np.isnan(np.asarray(curve.y, dtype=float)[0])


# -------------------------------------------- effect direction (issue 12, 9)
def test_effect_directions_in_words_match_scipy(demo_bundle, demo_reference):
    from analysis.stats import auc_sentence
    from pages.cd8_states import update_gate_views

    out = update_gate_views(_store(), "", "", False, "nk_over_nk_cd8", "objective")
    frac = demo_reference.groupby(["cohort", "patient_id"]).agg(
        song=("song", "mean"), recist=("recist", "first")
    )
    resp = frac[frac["recist"].isin(["CR", "PR"])]["song"]
    nonresp = frac[frac["recist"].isin(["SD", "PD"])]["song"]
    u = stats.mannwhitneyu(resp, nonresp).statistic  # U of the responders
    r = 1 - 2 * u / (len(resp) * len(nonresp))
    word = "lower" if r > 0 else "higher"
    sentence = (
        f"The gate fraction is {word} in responders than in non-responders "
        f"(r = {r:.2f})"
    )
    box = _title(out[3])
    assert sentence in box and sentence in out[4]
    # Spearman rho vs NK, its sign in words
    cohort = demo_bundle.cohort
    pre = cohort[cohort["timepoint"] == "pre"]
    means = pre.groupby(["cohort", "patient_id"])[["frac_nk", "frac_cd8"]].mean()
    nk = means["frac_nk"] / (means["frac_nk"] + means["frac_cd8"])
    joined = pd.concat([frac["song"], nk.rename("nk")], axis=1, join="inner")
    rho = stats.spearmanr(joined["nk"], joined["song"]).statistic
    more = "higher" if rho > 0 else "lower"
    words = (
        f"atients with more NK (NK / (NK + CD8)) have a {more} gate fraction "
        f"(rho = {rho:.2f})"
    )
    assert words in _title(out[5]) and words in out[6]
    # sensitivity: AUC = U / (n1 n2) = share of pairs where the responder is higher
    auc = u / (len(resp) * len(nonresp))
    said = auc_sentence(auc, quantity="gate fraction", lower_predicts=False)
    assert said in _title(out[7])
    assert said in out[8]
    assert "the responder has the higher gate fraction" in out[8]


@pytest.mark.browser
def test_a_gate_no_cell_passes_in_browser(dash_duo, demo_bundle):
    from dash.testing.wait import until

    import app

    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/cd8-states?gate=CD69.gt.99~GZMB.gt.0")
    dash_duo.wait_for_text_to_equal("#cd8-states-gate-n", "0", timeout=60)
    count = dash_duo.find_element("#cd8-states-gate-count").text
    assert "cells pass the gate" in count and "observed CD69 range" in count
    until(lambda: "0 cells pass the gate" in _layout_text(dash_duo, BOX_ID), 30)
    until(
        lambda: "0 cells pass the gate" in _layout_text(dash_duo, "cd8-states-nk"), 30
    )
    for graph in (BOX_ID, "cd8-states-nk"):
        text = _layout_text(dash_duo, graph)
        assert "p =" not in text and "rho" not in text and "nan" not in text
