"""The sidebar's link handling, called as functions (the browser side is in pages/)."""

from __future__ import annotations

from dash import no_update

from components.filter_panel import sidebar_outputs
from data.filters import CohortFilter
from tests.components.test_link_notice import _text

# sidebar_outputs returns: dataset options, dataset, info, 5 x field options,
# 5 x field values, the filter Store, the link notice
STORE, NOTICE = -2, -1


def _values(out) -> dict[str, list[str]]:
    fields = ("tumor_type", "treatment", "cohort", "timepoint", "response")
    return dict(zip(fields, out[8:13], strict=True))


def test_link_values_match_ignoring_case_without_notice(demo_bundle):
    flt = CohortFilter.from_query(
        "?dataset=DEMO&tumor_type=Melanoma&timepoint=PRE&response=cr"
    )
    out = sidebar_outputs(flt, from_link=True, stored=None)
    assert out[1] == "demo"
    assert _values(out)["tumor_type"] == ["melanoma"]
    assert out[STORE]["timepoint"] == ["pre"] and out[STORE]["response"] == ["CR"]
    assert out[NOTICE] is None


def test_unknown_link_values_are_named_with_what_is_shown(demo_bundle):
    flt = CohortFilter.from_query("?dataset=nope&tumor_type=martian&cohort=SYN-A")
    out = sidebar_outputs(flt, from_link=True, stored=None)
    assert out[1] == "demo" and out[STORE]["tumor_type"] == []
    assert out[STORE]["cohort"] == ["SYN-A"]
    text = _text(out[NOTICE])
    title = demo_bundle.meta.title
    assert "Dataset “nope”" in text and "dataset=nope" in text
    assert f"showing the default dataset “{title}” instead" in text
    assert f"there are: {demo_bundle.meta.label}" in text  # labels, not folder names
    assert "Tumor type “martian”" in text and "tumor_type=martian" in text
    assert "showing all tumor types instead" in text
    assert "HNSCC, melanoma, NSCLC, RCC, urothelial" in text  # what it has


def test_notice_stays_for_the_same_view_and_goes_when_the_filter_changes(
    demo_bundle,
):
    shown = sidebar_outputs(
        CohortFilter.from_query("?tumor_type=martian"), from_link=True, stored=None
    )[STORE]
    # the URL rewritten to the view shown, or a nav link to another page
    same = sidebar_outputs(
        CohortFilter.from_mapping(shown), from_link=True, stored=shown
    )
    assert same[NOTICE] is no_update
    # the user changes a filter in the sidebar
    changed = sidebar_outputs(
        CohortFilter.from_mapping(dict(shown, tumor_type=["RCC"])),
        from_link=False,
        stored=shown,
    )
    assert changed[NOTICE] is None
    # an in-app link to another view (e.g. "Open" on the data page)
    other = sidebar_outputs(
        CohortFilter.from_query("?dataset=demo&cohort=SYN-B"),
        from_link=True,
        stored=shown,
    )
    assert other[NOTICE] is None
