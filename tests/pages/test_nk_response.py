"""NK vs response page: the callback as a function, and in a real browser."""

from __future__ import annotations

import pytest

from data.filters import CohortFilter
from tests.conftest import free_port

# positions in the callback's outputs
BOX, ROC, FOREST, KM_OS = 0, 1, 2, 3
BOX_CAPTION = 7
METRIC_VALUE, DEFINITION_VALUE, STORE, SUMMARY = 15, 17, 20, 21
CONTENT_HIDDEN, EMPTY_HIDDEN, EMPTY = 23, 24, 25


def _store(**fields) -> dict:
    return CohortFilter.from_mapping({"dataset": "demo", **fields}).to_dict()


def _call(filter_data, metric=None, definition=None, timepoint="pre", split="median",
          stored=None):  # fmt: skip
    from pages.nk_response import update_nk_response

    return update_nk_response(
        filter_data, metric, definition, timepoint, split, stored or {}
    )


def _text(children) -> str:
    return "".join(
        c if isinstance(c, str) else str(getattr(c, "children", "")) for c in children
    )


def test_defaults_and_exclusions(demo_bundle):
    from analysis.nk_response import analyze_nk_response

    out = _call(_store())
    expected = analyze_nk_response(demo_bundle.cohort, {})
    assert out[METRIC_VALUE] == "nk_lymphocytes"
    assert out[DEFINITION_VALUE] == "objective"
    assert out[STORE] == {
        "metric": "nk_lymphocytes",
        "definition": "objective",
        "nk_timepoint": "pre",
        "split": "median",
    }
    summary = _text(out[SUMMARY])
    assert f"{expected.n_no_response} patients without evaluable response excluded" in (
        summary
    )
    box = out[BOX].to_dict()
    assert [t["name"] for t in box["data"]] == [
        f"{s.group}<br>(n={s.n})" for s in expected.summaries
    ]
    assert out[CONTENT_HIDDEN] is False and out[EMPTY_HIDDEN] is True


def test_metric_and_filter_change_figures_and_p(demo_bundle):
    base = _call(_store())
    raw = _call(_store(), metric="frac_nk")
    melanoma = _call(_store(tumor_type=["melanoma"]), metric="frac_nk")
    titles = [
        o[BOX].to_dict()["layout"]["title"]["text"] for o in (base, raw, melanoma)
    ]
    assert "NK among lymphocytes" in titles[0] and "fraction of CD45+" in titles[1]
    captions = {o[BOX_CAPTION] for o in (base, raw, melanoma)}
    assert len(captions) == 3  # p-values and n differ
    assert "melanoma" in melanoma[FOREST].to_dict()["layout"]["yaxis"]["ticktext"][1]


def test_url_state_survives_dropdown_reset(demo_bundle):
    # the metric dropdown loses its URL value before options arrive: the store wins
    out = _call(_store(), metric=None, stored={"metric": "log2_nk_cd8"})
    assert out[METRIC_VALUE] == "log2_nk_cd8"


def test_odd_values_fall_back_with_note(demo_bundle):
    out = _call(_store(), metric="bogus", split="quartile")
    assert out[METRIC_VALUE] == "nk_lymphocytes"
    assert "'bogus' is not available" in _text(out[SUMMARY])


def test_empty_filter_shows_empty_state(demo_bundle):
    out = _call(_store(tumor_type=["RCC"], treatment=["anti-CTLA-4"]))
    assert out[CONTENT_HIDDEN] is True and out[EMPTY_HIDDEN] is False
    assert "No samples match" in str(out[EMPTY])


def test_recist_definition_names_kruskal(demo_bundle):
    out = _call(_store(), definition="recist")
    assert "Kruskal-Wallis" in out[BOX].to_dict()["layout"]["title"]["text"]
    assert "Benjamini-Hochberg" in out[BOX_CAPTION]


def test_layout_tolerates_odd_query():
    from pages.nk_response import layout

    layout(metric=["a", "b"], split="weird", nk_timepoint=3, unknown="x")


@pytest.mark.browser
def test_metric_and_tumor_type_change_in_browser(dash_duo, demo_bundle):
    import app
    from analysis.nk_response import analyze_nk_response

    cohort = demo_bundle.cohort
    default = analyze_nk_response(cohort, {}).two_group
    raw = analyze_nk_response(cohort, {"metric": "frac_nk"}).two_group
    melanoma = analyze_nk_response(
        cohort[cohort["tumor_type"] == "melanoma"], {"metric": "frac_nk"}
    ).two_group
    caption = "#nk-response-box-caption"
    dash_duo.start_server(app.app, port=free_port())
    dash_duo.driver.get(dash_duo.server_url + "/nk-response")
    dash_duo.wait_for_contains_text(caption, f"r = {default.r:.2f}", timeout=60)
    dash_duo.wait_for_contains_text("#nk-response-box", "NK among lymphocytes", 20)

    dash_duo.select_dcc_dropdown(
        "#nk-response-metric", value="NK cells, fraction of CD45+ cells"
    )
    dash_duo.wait_for_contains_text(caption, f"r = {raw.r:.2f}", timeout=60)
    dash_duo.wait_for_contains_text("#nk-response-box", "fraction of CD45+", 20)
    assert f"U = {raw.u:g}" in dash_duo.find_element(caption).text

    dash_duo.select_dcc_dropdown("#shell-filter-tumor_type", value="melanoma")
    dash_duo.wait_for_contains_text(caption, f"r = {melanoma.r:.2f}", timeout=60)
    assert f"n={melanoma.n1}" in dash_duo.find_element(caption).text
    url = dash_duo.driver.current_url
    assert "metric=frac_nk" in url and "tumor_type=melanoma" in url
