"""NK vs response page: the callback as a function, and in a real browser."""

from __future__ import annotations

import pytest

from data.filters import CohortFilter
from tests.conftest import free_port


def _store(**fields) -> dict:
    return CohortFilter.from_mapping({"dataset": "demo", **fields}).to_dict()


def _call(
    filter_data, metric=None, definition=None, timepoint="pre", split="median",
    landmark=None, stored=None, link=None, chosen=None, trigger=None,
):  # fmt: skip
    """The page's outputs by name (``pages.nk_response.OUTPUT_NAMES``)."""
    from pages.nk_response import compute_page

    controls = {
        "metric": metric, "definition": definition, "nk_timepoint": timepoint,
        "split": split, "landmark": landmark,
    }  # fmt: skip
    return compute_page(
        filter_data, controls, stored=stored, link=link, chosen=chosen,
        trigger=trigger,
    )  # fmt: skip


def _text(children) -> str:
    if children is None:
        return ""
    if isinstance(children, str):
        return children
    if isinstance(children, list | tuple):
        return "".join(_text(c) for c in children)
    return _text(getattr(children, "children", ""))


def test_defaults_and_exclusions(demo_bundle):
    from analysis.nk_response import analyze_nk_response

    out = _call(_store())
    expected = analyze_nk_response(demo_bundle.cohort, {})
    assert out["metric"] == "nk_lymphocytes"
    assert out["definition"] == "objective"
    assert out["state"] == {
        "metric": "nk_lymphocytes",
        "definition": "objective",
        "nk_timepoint": "pre",
        "split": "median",
        "landmark": None,
    }
    summary = _text(out["summary"])
    assert f"{expected.n_no_response} patients without evaluable response excluded" in (
        summary
    )
    box = out["figure:nk-box"].to_dict()
    assert [t["name"] for t in box["data"]] == [
        f"{s.group}<br>(n={s.n})" for s in expected.summaries
    ]
    assert out["content_hidden"] is False and out["empty_hidden"] is True


def test_metric_and_filter_change_figures_and_p(demo_bundle):
    base = _call(_store())
    raw = _call(_store(), metric="frac_nk")
    melanoma = _call(_store(tumor_type=["melanoma"]), metric="frac_nk")
    titles = [
        o["figure:nk-box"].to_dict()["layout"]["title"]["text"]
        for o in (base, raw, melanoma)
    ]
    assert "NK among lymphocytes" in titles[0] and "fraction of CD45+" in titles[1]
    captions = {o["caption:nk-box"] for o in (base, raw, melanoma)}
    assert len(captions) == 3  # p-values and n differ
    assert (
        "melanoma"
        in melanoma["figure:nk-forest"].to_dict()["layout"]["yaxis"]["ticktext"][1]
    )


def test_url_state_survives_dropdown_reset(demo_bundle):
    # the metric dropdown loses its URL value before options arrive: the store wins
    out = _call(_store(), metric=None, stored={"metric": "log2_nk_cd8"})
    assert out["metric"] == "log2_nk_cd8"


def test_odd_values_fall_back_with_note(demo_bundle):
    out = _call(_store(), metric="bogus", split="quartile")
    assert out["metric"] == "nk_lymphocytes"
    assert "NK metric “bogus” is not a known choice" in _text(out["summary"])


def test_empty_filter_shows_empty_state(demo_bundle):
    out = _call(_store(tumor_type=["RCC"], treatment=["anti-CTLA-4"]))
    assert out["content_hidden"] is True and out["empty_hidden"] is False
    assert "No samples match" in str(out["empty"])


def test_recist_definition_names_kruskal(demo_bundle):
    out = _call(_store(), definition="recist")
    assert "Kruskal-Wallis" in out["figure:nk-box"].to_dict()["layout"]["title"]["text"]
    assert "Benjamini-Hochberg" in out["caption:nk-box"]


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


# ------------------------------------------------- issue 12: links, banner, timepoint


def test_link_with_unknown_values_shows_notice_and_rewrites_state(demo_bundle):
    link = {"metric": "foo", "definition": "nope", "nk_timepoint": "later",
            "split": "x", "landmark": "-3"}  # fmt: skip
    out = _call(_store(), metric="foo", definition="nope", timepoint="later",
                split="x", link=link, stored=link)  # fmt: skip
    notice = _text(out["notice"])
    for key, value, label in (
        ("metric", "foo", "NK metric"),
        ("definition", "nope", "Response definition"),
        ("nk_timepoint", "later", "NK timepoint"),
        ("split", "x", "NK groups (survival)"),
        ("landmark", "-3", "Landmark (months)"),
    ):
        assert f"{key}={value}" in notice
        assert f"The link asked for {label} “{value}”" in notice
    assert "showing NK among lymphocytes" in notice
    assert "showing Objective response (CR/PR vs SD/PD) instead" in notice
    assert "showing pre-treatment instead" in notice
    assert "showing no landmark (survival from treatment start) instead" in notice
    # the URL (written from the state store) becomes the state shown
    assert out["state"] == {"metric": "nk_lymphocytes", "definition": "objective",
                            "nk_timepoint": "pre", "split": "median",
                            "landmark": None}  # fmt: skip
    assert out["link"] is None  # consumed: later changes are not "the link"
    assert (out["metric"], out["nk_timepoint"], out["landmark"]) == (
        "nk_lymphocytes", "pre", None,
    )  # fmt: skip
    # the same state computed directly gives the same numbers
    clean = _call(_store())
    assert _text(clean["summary"]) == _text(out["summary"])
    assert clean["notice"] is None


def test_valid_link_has_no_notice(demo_bundle):
    link = {"metric": "frac_nk", "nk_timepoint": "on", "landmark": "3"}
    out = _call(_store(), metric="frac_nk", timepoint="on", landmark=3, link=link)
    assert out["notice"] is None
    assert out["state"]["landmark"] == 3.0 and out["landmark"] == 3.0
    assert "landmark 3 months after treatment start" in _text(out["summary"])


@pytest.fixture(scope="module")
def no_recist_hnscc(tmp_path_factory, demo_bundle):
    """The demo with RECIST removed for HNSCC (the study-reported R/NR kept)."""
    from tests.conftest import write_bundle

    cohort = demo_bundle.cohort.copy()
    cohort["recist"] = cohort["recist"].astype(object)
    cohort.loc[cohort["tumor_type"] == "HNSCC", "recist"] = None
    return write_bundle(tmp_path_factory.mktemp("mixed") / "mixed", cohort)


def test_definition_banner_when_filtered_view_has_no_recist(no_recist_hnscc):
    dataset = str(no_recist_hnscc)
    hnscc = CohortFilter(dataset=dataset, tumor_type=("HNSCC",)).to_dict()
    out = _call(hnscc, definition="objective", chosen={"definition": "objective"},
                trigger="shell-filter")  # fmt: skip
    banner = _text(out["banner"])
    assert "You chose “Objective response (CR/PR vs SD/PD)”" in banner
    assert "none of the filtered patients has a RECIST value" in banner
    assert "“Response as reported by the study (R vs NR)”" in banner
    assert out["definition"] == "reported" and out["state"]["definition"] == "reported"
    assert [o["value"] for o in out["definition_options"]] == ["reported"]
    assert "Response: Response as reported by the study" in _text(out["summary"])
    # still remembered: the next change keeps the banner while it applies...
    again = _call(
        hnscc, metric="frac_nk", definition="reported",
        chosen={"definition": "objective"}, trigger="nk-response-metric",
    )  # fmt: skip
    assert "You chose" in _text(again["banner"])
    # ... and objective response comes back once the filter allows it
    wider = CohortFilter(dataset=dataset, tumor_type=("HNSCC", "melanoma")).to_dict()
    back = _call(wider, definition="reported", chosen={"definition": "objective"},
                 trigger="shell-filter")  # fmt: skip
    assert back["banner"] is None and back["definition"] == "objective"
    # choosing a definition in the menu replaces the remembered one
    picked = _call(wider, definition="benefit", chosen={"definition": "objective"},
                   trigger="nk-response-definition")  # fmt: skip
    assert picked["definition"] == "benefit"
    assert picked["chosen"] == {"definition": "benefit"}


def test_sidebar_timepoint_on_with_nk_pre_names_the_control(demo_bundle):
    out = _call(_store(timepoint=["on"]), timepoint="pre")
    assert out["content_hidden"] is True
    text = _text(out["empty"])
    assert "No pre-treatment samples in the filtered cohort" in text
    assert "The sidebar filter “Timepoint” keeps only on-treatment samples" in text
    assert "Set “NK timepoint” on this page to “on”" in text
    assert "add “pre” to “Timepoint” in the sidebar" in text
    disabled = {o["value"]: o["disabled"] for o in out["timepoint_options"]}
    assert disabled == {"pre": True, "on": False, "post": True}
    # following the advice fills the page
    fixed = _call(_store(timepoint=["on"]), timepoint="on")
    assert fixed["content_hidden"] is False


def test_landmark_typed_and_cleared(demo_bundle):
    bad = _call(_store(), timepoint="on", landmark=-3, trigger="nk-response-landmark")
    assert "Landmark (months) “-3” must be more than 0" in _text(bad["notice"])
    assert bad["landmark"] is None
    assert "immortal-time bias" in bad["caption:nk-km-os"]
    cleared = _call(
        _store(), timepoint="on", landmark=None, stored={"landmark": 3.0},
        trigger="nk-response-landmark",
    )  # fmt: skip
    assert cleared["state"]["landmark"] is None
    kept = _call(_store(), timepoint="on", landmark=None, stored={"landmark": 3.0},
                 trigger="nk-response-metric")  # fmt: skip
    assert kept["state"]["landmark"] == 3.0


def test_summary_and_figures_state_direction_in_words(demo_bundle):
    from analysis.nk_response import analyze_nk_response

    out = _call(_store())
    result = analyze_nk_response(demo_bundle.cohort, {})
    r, auc = result.two_group.r, result.roc.auc
    sentence = (
        f"NK among lymphocytes is lower in responders than in non-responders "
        f"(r = {r:.2f})"
    )
    summary = _text(out["summary"])
    assert sentence in summary
    assert f"AUC = {auc:.2f}: in {auc:.0%} of responder/non-responder pairs" in summary

    def title(key):  # wrapped subtitle lines joined back
        text = out[f"figure:{key}"].to_dict()["layout"]["title"]["text"]
        return text.replace("</sup><br><sup>", " ")

    ranked = sentence.replace("(r = ", "(rank-biserial r = ")
    assert (
        ranked.removesuffix(")") + "; r > 0: lower in responders)"
        in (out["caption:nk-box"])
    )
    assert ranked in title("nk-box")
    assert f"AUC = {auc:.2f}: in {auc:.0%} of responder/non-responder pairs" in (
        title("nk-roc")
    )
    assert f"AUC = {auc:.2f}" in out["caption:nk-roc"]
    assert sentence in out["caption:nk-roc"]
    assert "Pooled across tumor types: NK among lymphocytes is" in title("nk-forest")
    assert "across tumor types: pooled r" in out["caption:nk-forest"]
    assert "NK among lymphocytes is lower in responders" in out["caption:nk-forest"]
    recist = _call(_store(), definition="recist")
    assert (
        "Objective response (CR/PR vs SD/PD): NK among lymphocytes is lower"
        in recist["caption:nk-box"]
    )


# every NK page URL key, each allowed value on the demo; then the unknown values
ROUND_TRIP = [
    *(("metric", v) for v in ("frac_nk", "nk_lymphocytes", "nk_over_nk_cd8",
                              "log2_nk_cd8")),
    *(("definition", v) for v in ("objective", "benefit", "recist", "reported")),
    *(("nk_timepoint", v) for v in ("pre", "on", "post")),
    *(("split", v) for v in ("median", "tertile")),
    *(("landmark", v) for v in ("3", "4.5")),
]  # fmt: skip
UNKNOWN = [
    ("metric", "foo", "NK metric"),
    ("definition", "nope", "Response definition"),
    ("nk_timepoint", "later", "NK timepoint"),
    ("split", "x", "NK groups (survival)"),
    ("landmark", "-3", "Landmark (months)"),
]


def _fresh(dash_duo, path: str) -> None:
    """Open ``path`` as a new visit: no storage, no cookies, a full page load."""
    driver = dash_duo.driver
    driver.get(dash_duo.server_url + "/404-blank")
    driver.delete_all_cookies()
    driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    driver.get(dash_duo.server_url + path)


def _shown_controls(dash_duo) -> dict:
    find = dash_duo.find_element
    return {
        "metric": find("#nk-response-metric").text,
        "definition": find("#nk-response-definition").text,
        "nk_timepoint": find("#nk-response-timepoint input:checked").get_attribute(
            "value"
        ),
        "split": find("#nk-response-split input:checked").get_attribute("value"),
        "landmark": find("#nk-response-landmark").get_attribute("value"),
    }


def _expected(state: dict) -> tuple[dict, str, str]:
    """Controls, 'n patients analysed' and the test line, computed server-side."""
    from analysis.nk_metrics import get_metric
    from analysis.response import DEFINITIONS
    from data.registry import get_bundle
    from pages.nk_response import compute_page
    from tests.conftest import DATA_DIR

    out = compute_page(_store(), {}, link=state)
    resolved = out["state"]
    summary = out["summary"]
    n_text = next(
        c.children for c in summary if getattr(c, "id", "") == "nk-response-n"
    )
    test = next(
        c.children for c in summary if getattr(c, "id", "") == "nk-response-test"
    )
    table = get_bundle("demo", DATA_DIR).cohort
    controls = {
        "metric": get_metric(table, resolved["metric"]).label,
        "definition": DEFINITIONS[resolved["definition"]].label,
        "nk_timepoint": resolved["nk_timepoint"],
        "split": resolved["split"],
        "landmark": "" if resolved["landmark"] is None else f"{resolved['landmark']:g}",
    }
    return controls, n_text, test


@pytest.mark.browser
def test_every_url_key_round_trips_in_a_fresh_browser(dash_duo, demo_bundle):
    """Each key at each allowed value: same controls and numbers as the server's."""
    import app

    dash_duo.start_server(app.app, port=free_port())
    for key, value in ROUND_TRIP:
        _fresh(dash_duo, f"/nk-response?dataset=demo&{key}={value}")
        controls, n_text, test = _expected({key: value})
        dash_duo.wait_for_text_to_equal("#nk-response-n", n_text, timeout=60)
        dash_duo.wait_for_text_to_equal("#nk-response-test", test, timeout=20)
        assert _shown_controls(dash_duo) == controls, (key, value)
        assert f"{key}={value}" in dash_duo.driver.current_url, (key, value)
        assert not dash_duo.driver.find_elements("css selector", ".link-notice")
    # survival from a landmark is stated on the page
    assert (
        "landmark 4.5 months after treatment start"
        in dash_duo.find_element("#nk-response-survival").text
    )
    assert dash_duo.get_logs() == []


@pytest.mark.browser
def test_unknown_url_values_show_a_notice_and_rewrite_the_url(dash_duo, demo_bundle):
    import app

    dash_duo.start_server(app.app, port=free_port())
    controls, n_text, test = _expected({})
    for key, value, label in UNKNOWN:
        _fresh(dash_duo, f"/nk-response?dataset=demo&{key}={value}")
        dash_duo.wait_for_contains_text(
            ".link-notice", f"The link asked for {label} “{value}”", timeout=60
        )
        notice = dash_duo.find_element(".link-notice").text
        assert f"{key}={value}" in notice and "instead" in notice
        dash_duo.wait_for_text_to_equal("#nk-response-n", n_text, timeout=20)
        assert dash_duo.find_element("#nk-response-test").text == test
        assert _shown_controls(dash_duo) == controls, key
        url = dash_duo.driver.current_url
        assert f"{key}={value}" not in url, url  # the address shows the state shown
        if key != "landmark":  # the default landmark is none: no key in the URL
            assert f"{key}=" in url, url
