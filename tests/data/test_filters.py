"""The global filter: query-string round trip and filtering semantics."""

from __future__ import annotations

from data.bundle import load_bundle
from data.filters import CohortFilter, apply_filter, filter_options


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
