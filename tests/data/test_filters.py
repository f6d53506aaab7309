"""The global filter: query-string round trip and filtering semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.bundle import load_bundle
from data.errors import DataError
from data.filters import (
    CohortFilter,
    apply_filter,
    filter_options,
    require_known_values,
    resolve_filter,
    shown_instead,
    sort_categories,
)


def test_query_round_trip_keeps_lists_and_plus_signs():
    flt = CohortFilter(
        dataset="demo",
        tumor_type=("melanoma", "NSCLC"),
        treatment=("anti-PD-1 + anti-CTLA-4",),
    )
    again = CohortFilter.from_query("?" + flt.to_query())
    assert again == flt


def test_unknown_query_keys_are_ignored():
    flt = CohortFilter.from_query("?metric=frac_nk&tumor_type=RCC&foo=1")
    assert flt.tumor_type == ("RCC",) and flt.dataset == ""


def test_apply_filter_by_field_and_response(bundle_factory):
    cohort = load_bundle(bundle_factory()).cohort
    melanoma = apply_filter(cohort, CohortFilter(tumor_type=("melanoma",)))
    assert set(melanoma["cohort"]) == {"A"} and len(melanoma) == 6
    responders = apply_filter(cohort, CohortFilter(response=("CR", "PR")))
    assert set(responders["sample_id"]) == {
        "A-P1-pre",
        "A-P1-on",
        "A-P2-pre",
        "B-P1-pre",
    }
    reported = apply_filter(cohort, CohortFilter(response=("R",)))
    assert "B-P3-pre" in set(reported["sample_id"])  # reported R, no RECIST
    none = apply_filter(cohort, CohortFilter(response=("none",)))
    assert none.empty  # B-P3 has a reported response; NE counts as a RECIST value
    assert len(apply_filter(cohort, CohortFilter())) == len(cohort)


def test_apply_filter_does_not_touch_input(bundle_factory):
    cohort = load_bundle(bundle_factory()).cohort
    before = cohort.copy()
    out = apply_filter(cohort, CohortFilter(tumor_type=("NSCLC",)))
    out.loc[:, "frac_nk"] = 0
    assert cohort.equals(before)


def test_filter_options_ordered(bundle_factory):
    options = filter_options(load_bundle(bundle_factory()).cohort)
    assert options["timepoint"] == ["pre", "on"]
    assert options["response"] == ["CR", "PR", "SD", "PD", "NE", "R", "NR"]


def test_filter_options_sort_categories_ignoring_case(demo_bundle):
    # plain sorted() gave HNSCC, NSCLC, RCC, melanoma, urothelial
    options = filter_options(demo_bundle.cohort)
    assert options["tumor_type"] == [
        "breast (TNBC)",
        "cervical",
        "CRC (MSI-high)",
        "cSCC",
        "gastric",
        "HCC",
        "HNSCC",
        "melanoma",
        "NSCLC",
        "RCC",
        "urothelial",
    ]


def test_sort_categories_is_case_insensitive_and_stable():
    assert sort_categories(["b", "A", "a", "B", "C10", "c2"]) == [
        "A",
        "a",
        "B",
        "b",
        "C10",
        "c2",
    ]


OPTIONS = {
    "tumor_type": ["HNSCC", "melanoma", "NSCLC"],
    "treatment": ["anti-PD-1", "anti-PD-1 + anti-CTLA-4"],
    "cohort": ["SYN-A"],
    "timepoint": ["pre", "on"],
    "response": ["CR", "PR", "R", "none"],
}


def test_resolve_filter_matches_values_ignoring_case_and_spaces():
    asked = CohortFilter.from_query(
        "?tumor_type=Melanoma&tumor_type=nsclc&timepoint=PRE&response=cr"
        "&treatment=ANTI-pd-1++%2B+anti-ctla-4&cohort=syn-a&response=NONE"
    )
    resolved, unknown = resolve_filter(asked, OPTIONS)
    assert unknown == []
    assert resolved == CohortFilter(
        tumor_type=("melanoma", "NSCLC"),
        treatment=("anti-PD-1 + anti-CTLA-4",),
        cohort=("SYN-A",),
        timepoint=("pre",),
        response=("CR", "none"),
    )


def test_resolve_filter_reports_every_unknown_value_in_order():
    asked = CohortFilter(
        tumor_type=("martian", "melanoma", "MELANOMA"), timepoint=("later",)
    )
    resolved, unknown = resolve_filter(asked, OPTIONS)
    assert resolved.tumor_type == ("melanoma",)  # duplicates collapse
    assert resolved.timepoint == ()
    assert unknown == [("tumor_type", "martian"), ("timepoint", "later")]


def test_resolve_filter_exact_spelling_wins_over_case_insensitive():
    options = {"tumor_type": ["nsclc", "NSCLC"]}
    resolved, unknown = resolve_filter(CohortFilter(tumor_type=("NSCLC",)), options)
    assert resolved.tumor_type == ("NSCLC",) and unknown == []


def test_resolve_filter_unknown_dataset_falls_back_to_default_options():
    asked_for = []

    def options_of(name):
        asked_for.append(name)
        return OPTIONS if name == "demo" else {}

    resolved, unknown = resolve_filter(
        CohortFilter(dataset="nope", tumor_type=("Melanoma",)),
        options_of,
        datasets=["demo", "other"],
        default_dataset="demo",
    )
    assert resolved.dataset == "demo" and resolved.tumor_type == ("melanoma",)
    assert unknown == [("dataset", "nope")]
    assert asked_for == ["demo"]
    again, unknown = resolve_filter(
        CohortFilter(dataset="OTHER"), options_of, datasets=["demo", "other"]
    )
    assert again.dataset == "other" and unknown == []


def test_shown_instead_in_the_readers_words():
    resolved = CohortFilter(dataset="demo", tumor_type=("melanoma",))
    assert shown_instead("tumor_type", resolved) == "only melanoma"
    assert shown_instead("cohort", resolved) == "all cohorts"
    assert shown_instead("response", resolved) == "all response categories"
    assert (
        shown_instead("dataset", resolved, "Synthetic ICB demo cohort")
        == "the default dataset “Synthetic ICB demo cohort”"
    )


def test_require_known_values_lists_the_valid_values():
    resolved = require_known_values(CohortFilter(tumor_type=("NSCLC",)), OPTIONS)
    assert resolved.tumor_type == ("NSCLC",)
    with pytest.raises(DataError) as caught:
        require_known_values(
            CohortFilter(tumor_type=("martian", "melanoma"), timepoint=("Later",)),
            OPTIONS,
        )
    first, second = caught.value.problems
    assert "--tumor-type 'martian' matches no tumor type" in str(first)
    assert "HNSCC, melanoma, NSCLC" in str(first)
    assert "--timepoint 'Later'" in str(second) and "pre, on" in str(second)


@given(
    options=st.lists(
        st.text(alphabet="abcXYZ +-", min_size=1, max_size=6), min_size=1, max_size=6
    ),
    data=st.data(),
)
def test_any_case_of_an_option_resolves_to_an_option_of_the_same_spelling(
    options, data
):
    value = data.draw(st.sampled_from(options))
    asked = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in value)
    resolved, unknown = resolve_filter(
        CohortFilter(cohort=(asked,)), {"cohort": options}
    )
    if value.strip():
        assert unknown == []
        (found,) = resolved.cohort
        assert " ".join(found.split()).casefold() == " ".join(value.split()).casefold()
