"""Loader and validator: the demo loads; each bad input gets a located message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from data.bundle import load_bundle, validate_bundle
from data.errors import DataError
from tests.conftest import small_cohort


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _cells(sample_ids: list[str], *, umap: bool = True) -> ad.AnnData:
    n = len(sample_ids)
    obs = pd.DataFrame(
        {
            "sample_id": sample_ids,
            "patient_id": [s.split("-")[1] for s in sample_ids],
            "cd8_state": ["a"] * n,
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(
        X=np.ones((n, 3), dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=["CD69", "GZMB", "EOMES"]),
    )
    if umap:
        adata.obsm["X_umap"] = np.zeros((n, 2), dtype=np.float32)
    return adata


def _error_text(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_bundle(path)
    return str(info.value)


def test_small_bundle_loads_typed(bundle_factory):
    bundle = load_bundle(bundle_factory())
    cohort = bundle.cohort
    assert len(cohort) == 12
    assert cohort["frac_nk"].dtype == float
    assert pd.isna(cohort.loc[cohort["sample_id"] == "B-P3-pre", "recist"]).all()
    assert bundle.meta.synthetic is True
    assert not bundle.has_cells


def test_demo_bundle_is_valid(demo_dir):
    problems = validate_bundle(demo_dir)
    assert [p for p in problems if p.severity == "error"] == []
    bundle = load_bundle(demo_dir)
    assert bundle.meta.synthetic
    assert bundle.n_cells >= 30_000


def test_missing_required_column(bundle_factory):
    text = _error_text(bundle_factory(small_cohort().drop(columns=["timepoint"])))
    assert "cohort.csv, column `timepoint`: required column is missing" in text
    assert "Fix:" in text


def test_unknown_recist_value_names_row_and_choices(bundle_factory):
    cohort = small_cohort()
    cohort.loc[3, "recist"] = "Resp"  # spreadsheet row 5
    text = _error_text(bundle_factory(cohort))
    assert "column `recist`" in text
    assert "row 5" in text
    assert "`Resp`" in text
    assert "CR, PR, SD, PD, NE" in text


def test_non_numeric_fraction(bundle_factory):
    cohort = small_cohort().astype({"frac_nk": object})
    cohort.loc[0, "frac_nk"] = "high"
    text = _error_text(bundle_factory(cohort))
    assert "column `frac_nk`, row 2" in text
    assert "non-numeric" in text


def test_percentages_instead_of_fractions_suggest_dividing(bundle_factory):
    cohort = small_cohort()
    cohort["frac_cd8"] = cohort["frac_cd8"] * 100
    text = _error_text(bundle_factory(cohort))
    assert "column `frac_cd8`" in text
    assert "percentages" in text and "divide the column by 100" in text


def test_negative_fraction(bundle_factory):
    cohort = small_cohort()
    cohort.loc[2, "frac_nk"] = -0.1
    text = _error_text(bundle_factory(cohort))
    assert "column `frac_nk`, row 4" in text and "out of range" in text
    # a negative value is not a percentage: say it is negative and what to check
    assert "negative value(s)" in text and "-0.1" in text
    assert "divide" not in text and "percentage" not in text
    assert "-1 or -99" in text and "score_" in text


def test_negative_and_percentage_values_get_one_message_each(bundle_factory):
    cohort = small_cohort()
    cohort.loc[2, "frac_nk"] = -0.1
    cohort.loc[5, "frac_nk"] = 45.0
    text = _error_text(bundle_factory(cohort))
    assert "negative value(s) (out of range): -0.1" in text
    assert "out of range: 45" in text
    # with a negative value in the column the values are not percentages either
    assert "divide the column by 100" not in text


def test_negative_survival_time_is_called_negative(bundle_factory):
    cohort = small_cohort()
    cohort.loc[0, "os_months"] = -3.0
    text = _error_text(bundle_factory(cohort))
    assert "column `os_months`, row 2" in text and "negative value(s)" in text
    assert "[0, inf]" in text


def test_infinite_fraction(bundle_factory):
    text = _error_text(
        bundle_factory(small_cohort().assign(frac_nk=[np.inf] + [0.01] * 11))
    )
    assert "column `frac_nk`, row 2" in text and "infinite" in text


def test_duplicate_sample_id(bundle_factory):
    cohort = small_cohort()
    cohort.loc[4, "sample_id"] = cohort.loc[0, "sample_id"]
    text = _error_text(bundle_factory(cohort))
    assert "column `sample_id`, rows 2, 6" in text
    assert "duplicated" in text


def test_patient_fields_must_agree_across_samples(bundle_factory):
    """A patient's tumor type differs between samples; the same patient id in the
    other cohort is another patient; a missing value against a present one differs."""
    cohort = small_cohort()
    cohort.loc[1, "tumor_type"] = "NSCLC"  # A-P1-on: A/P1 was melanoma (row 2)
    cohort.loc[11, "os_months"] = np.nan  # B-P4-on: B/P4 had a value (row 12)
    text = _error_text(bundle_factory(cohort))
    assert "column `tumor_type`, rows 2, 3: differs between samples" in text
    assert "patient `P1` in cohort `A`" in text
    assert "column `os_months`, rows 12, 13" in text
    # P1 in cohort B has one sample: not part of the problem
    assert "rows 2, 3, 8" not in text


def test_patient_fields_consistent_in_small_cohort(bundle_factory):
    bundle = load_bundle(bundle_factory(small_cohort()))
    assert len(bundle.cohort) == 12


def test_empty_file(bundle_factory):
    text = _error_text(bundle_factory(""))
    assert "cohort.csv: the file is empty" in text


def test_header_only(bundle_factory):
    text = _error_text(bundle_factory(",".join(small_cohort().columns) + "\n"))
    assert "no rows" in text


def test_non_utf8_file(bundle_factory):
    raw = small_cohort().to_csv(index=False).replace("melanoma", "mélanome", 1)
    text = _error_text(bundle_factory(raw.encode("latin-1")))
    assert "cohort.csv, row 2: the file is not UTF-8" in text
    assert "CSV UTF-8" in text


def test_binary_garbage(bundle_factory):
    text = _error_text(bundle_factory(b"\x89PNG\r\n\x1a\n\x00\x00\x00garbage"))
    assert "not a text table" in text


def test_duplicated_column_header(bundle_factory):
    raw = small_cohort().to_csv(index=False).replace("frac_cd8", "frac_nk", 1)
    text = _error_text(bundle_factory(raw))
    assert "column `frac_nk`" in text and "appears 2 times" in text


def test_patient_fields_must_agree(bundle_factory):
    cohort = small_cohort()
    cohort.loc[1, "recist"] = "PD"  # P1 in A is CR in its other sample
    text = _error_text(bundle_factory(cohort))
    assert "column `recist`" in text and "patient `P1` in cohort `A`" in text


def test_bad_event_coding(bundle_factory):
    cohort = small_cohort()
    cohort.loc[0, "os_event"] = 2
    text = _error_text(bundle_factory(cohort))
    assert "column `os_event`, row 2" in text


def test_h5ad_samples_not_in_cohort(bundle_factory):
    cells = _cells(["A-P1-pre", "A-P1-pre", "Z-P9-pre"])
    text = _error_text(bundle_factory(cells=cells))
    assert "cd8_cells.h5ad, column `obs.sample_id`" in text
    assert "`Z-P9-pre`" in text and "not in cohort.csv" in text


def test_h5ad_without_umap(bundle_factory):
    text = _error_text(bundle_factory(cells=_cells(["A-P1-pre"] * 3, umap=False)))
    assert "column `obsm.X_umap`" in text and "python cli.py prepare" in text


def test_valid_h5ad_counts_cells(bundle_factory):
    bundle = load_bundle(bundle_factory(cells=_cells(["A-P1-pre", "B-P1-pre"])))
    assert bundle.n_cells == 2


def test_dataset_json_problems(bundle_factory):
    text = _error_text(bundle_factory(meta={"name": "x"}))
    assert "dataset.json" in text and "missing key(s)" in text
    text = _error_text(
        bundle_factory(
            name="t2",
            meta={
                "name": "x", "title": "t", "description": "d", "source": "s",
                "license": "l", "synthetic": "yes", "version": "1",
            },
        )
    )  # fmt: skip
    assert "true or false" in text


def test_loading_never_modifies_files(bundle_factory):
    cohort = small_cohort()
    cohort.loc[0, "recist"] = "Resp"
    good = bundle_factory(name="good", cells=_cells(["A-P1-pre"]))
    bad = bundle_factory(cohort, name="bad")
    before = {p: _digest(p) for p in (good, bad)}
    load_bundle(good)
    validate_bundle(good)
    validate_bundle(bad)
    with pytest.raises(DataError):
        load_bundle(bad)
    assert {p: _digest(p) for p in (good, bad)} == before


def test_validate_collects_every_problem(bundle_factory):
    cohort = small_cohort()
    cohort.loc[0, "recist"] = "Resp"
    cohort.loc[1, "timepoint"] = "baseline"
    cohort.loc[2, "frac_nk"] = 3.0
    problems = validate_bundle(bundle_factory(cohort))
    columns = {p.column for p in problems if p.severity == "error"}
    assert {"recist", "timepoint", "frac_nk"} <= columns


def test_blank_first_line_is_named(bundle_factory):
    text = _error_text(bundle_factory("\n" + small_cohort().to_csv(index=False)))
    assert "row 1: the first line, which must hold the column names, is empty" in text
