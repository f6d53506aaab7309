"""CD8 page: colour by a stored program score through the Patch recolour path."""

from __future__ import annotations

import base64
import json

import numpy as np

from tests.pages.test_cd8_states import _run, _store, _umap_args, page_json


def test_program_score_colour_is_a_patch_of_uint8_codes(demo_bundle):
    import app  # noqa: F401
    from data.cells import cell_store
    from data.view import cohort_view
    from pages import cd8_states as page

    store = _store(tumor_type=["melanoma"])
    fig, _, drawn, _ = _run(page.update_umap, f"{page.COLOR}.value", *_umap_args(store))
    assert json.loads(page_json(fig))["data"][0]["marker"]["color"]["dtype"] == "u1"
    n = len(fig.data[0].x)
    patch, _, _, _ = _run(
        page.update_umap,
        f"{page.COLOR}.value",
        *_umap_args(store, color="program_ifna", drawn=drawn),
    )
    ops = patch.to_plotly_json()["operations"]
    assert all("x" not in op["location"] for op in ops)
    color = next(op["params"]["value"] for op in ops if op["location"][-1] == "color")
    assert color["dtype"] == "u1"
    codes = np.frombuffer(base64.b64decode(color["bdata"]), np.uint8)
    assert len(codes) == n
    bar = next(op["params"]["value"] for op in ops if op["location"][-1] == "colorbar")
    assert "IFN-alpha response" in bar["title"]["text"]
    # codes follow the stored scores: the top-coded cells have the highest scores
    cells = cell_store(demo_bundle)
    data = page.cd8.cached_cell_data(
        cohort_view(store, data_dir=demo_bundle.path.parent, default_dataset="demo"),
        page.cd8.parse_state({}, samples=demo_bundle.cohort, genes=cells.var_names),
    )
    shown = page.cd8.display_sample(data.state_codes, 10**9)
    scores = cells.obs["program_ifna"].to_numpy()[data.cells[shown]]
    assert np.corrcoef(codes.astype(float), scores)[0, 1] > 0.95
    # the choice exists in the colour menu
    assert "program_ifna" in page.cd8.COLOR_CHOICES
