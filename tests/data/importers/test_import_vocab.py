"""Vocabulary normalization: each mapping is right and is written in the notes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.errors import DataError
from data.importers import vocab


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Pembrolizumab", "anti-PD-1"),
        ("nivolumab", "anti-PD-1"),
        ("Pembrolizumab (Keytruda)", "anti-PD-1"),
        ("anti-PD1", "anti-PD-1"),
        ("Atezolizumab", "anti-PD-L1"),
        ("durvalumab", "anti-PD-L1"),
        ("Avelumab", "anti-PD-L1"),
        ("Ipilimumab", "anti-CTLA-4"),
        ("CTLA4", "anti-CTLA-4"),
        ("Nivolumab:Ipilimumab", "anti-PD-1 + anti-CTLA-4"),
        ("ipilimumab + nivolumab", "anti-PD-1 + anti-CTLA-4"),
        ("anti-CTLA4+PD1", "anti-PD-1 + anti-CTLA-4"),
        ("anti-PD-1 + anti-CTLA-4", "anti-PD-1 + anti-CTLA-4"),
        ("PD-1/PD-L1", "anti-PD-(L)1"),
        ("PD-(L)1", "anti-PD-(L)1"),
        ("anti-PD-(L)1", "anti-PD-(L)1"),
        ("ICI", "ICB, unspecified"),
        ("IO", "ICB, unspecified"),
        ("IO+combo", "ICB + other agent"),
        ("CTLA-4 + PD-1", "anti-PD-1 + anti-CTLA-4"),
        ("durvalumab + tremelimumab", "anti-PD-L1 + anti-CTLA-4"),
        ("cemiplimab", "anti-PD-1"),
        ("Atezolizumab + Bevacizumab", "ICB + other agent"),
        ("Nivolumab + Relatlimab", "ICB + other agent"),
        ("chemotherapy", "other"),
        ("herbal tea", None),
    ],
)
def test_treatment_vocabulary(raw, expected):
    assert vocab.classify_treatment(raw)[0] == expected


def test_pooled_class_keeps_its_checkpoint_class_and_is_counted():
    # Why: `PD-1/PD-L1` became `other` (read as non-checkpoint) for most samples
    values = pd.Series(["PD-1/PD-L1", "Nivolumab", "PD-1/PD-L1"])
    out, notes, warnings = vocab.normalize_treatment(values, file="f", source="drug")
    assert out.tolist() == ["anti-PD-(L)1", "anti-PD-1", "anti-PD-(L)1"]
    assert not warnings
    assert any("`PD-1/PD-L1` (2 samples) is a pooled label" in n for n in notes)


def test_every_unknown_drug_name_is_reported_in_one_message():
    # Why: 5 unusual combinations were reported one per run
    names = ["Nivolumab + Foo", "Bar", "Pembrolizumab", "Baz + Qux", "Bar"]
    with pytest.raises(DataError) as err:
        vocab.normalize_treatment(pd.Series(names), file="t.csv", source="drug")
    text = str(err.value)
    assert len(err.value.problems) == 1
    for bad in ("`Nivolumab + Foo` (1 row)", "`Bar` (2 rows)", "`Baz + Qux` (1 row)"):
        assert bad in text
    assert "--recode drug:Bar=other" in text and "Pembrolizumab" not in text


def test_response_synonyms_and_recist_values():
    values = pd.Series(
        ["Responder", "Non-responder", "R", "NR", "CR", "SD", "NE", "NA"]
    )
    out, notes = vocab.normalize_response(values, file="f", source="resp")
    assert out.tolist() == ["R", "NR", "R", "NR", "R", "NR", "", ""]
    assert any("CR/PR -> R, SD/PD -> NR" in n for n in notes)


def test_recist_long_names():
    values = pd.Series(["Complete Response", "progressive disease", "PR", ""])
    out, _ = vocab.normalize_recist(values, file="f", source="bor")
    assert out.tolist() == ["CR", "PD", "PR", ""]


@pytest.mark.parametrize(
    ("unit", "factor"), [("days", 12 / 365.25), ("weeks", 7 * 12 / 365.25),
                         ("years", 12.0), ("months", 1.0)]
)  # fmt: skip
def test_survival_units_to_months(unit, factor):
    values = pd.Series(["10", "", "365.25"])
    out, notes = vocab.survival_to_months(
        values, file="f", source="os", column="os_months", unit=unit
    )
    assert out.iloc[0] == pytest.approx(10 * factor) and np.isnan(out.iloc[1])
    assert out.iloc[2] == pytest.approx(365.25 * factor)
    assert notes


def test_survival_unit_from_column_name_and_per_row_unit_column():
    out, notes = vocab.survival_to_months(
        pd.Series(["30.4375"]),
        file="f",
        source="OS_days",
        column="os_months",
        unit=None,
    )
    assert out.iloc[0] == pytest.approx(1.0) and "from days" in notes[0]
    units = pd.Series(["days", "years"], name="survival_unit")
    out, _ = vocab.survival_to_months(
        pd.Series(["365.25", "1"]), file="f", source="t", column="os_months", unit=units
    )
    assert out.tolist() == pytest.approx([12.0, 12.0])


def test_events():
    values = pd.Series(["Dead", "alive", "1", "0", "1:DECEASED", ""])
    out, notes = vocab.normalize_events(values, file="f", source="s", column="os_event")
    assert out.tolist()[:5] == [1.0, 0.0, 1.0, 0.0, 1.0] and np.isnan(out.iloc[5])
    assert notes and "Dead -> 1" in notes[0]


def test_percentages_detected_and_said():
    table = pd.DataFrame(
        {"frac_nk": [5.0, 12.0, np.nan], "frac_cd8": [30.0, 0.5, 20.0]}
    )
    out, notes = vocab.fractions_from_percent(
        table, ["frac_nk", "frac_cd8"], file="f", sources={"frac_nk": "NK %"}
    )
    assert out["frac_nk"].tolist()[:2] == pytest.approx([0.05, 0.12])
    assert out["frac_cd8"].tolist() == pytest.approx([0.30, 0.005, 0.20])
    assert "percentages" in notes[0] and "`NK %`" in notes[0]


def test_fractions_left_alone():
    table = pd.DataFrame({"frac_nk": [0.05, 0.1]})
    out, notes = vocab.fractions_from_percent(table, ["frac_nk"], file="f", sources={})
    assert out.equals(table) and notes == []


def test_unknown_values_name_rows():
    with pytest.raises(DataError) as err:
        vocab.normalize_timepoint(pd.Series(["pre", "week 6?"]), file="f", source="tp")
    problem = err.value.problems[0]
    assert problem.column == "tp" and problem.rows == (3,) and "--set" in problem.fix


def test_rare_population_in_a_percent_table_is_flagged():
    table = pd.DataFrame({"frac_nk": [0.4, 0.8], "frac_cd8": [30.0, 12.0]})
    out, notes = vocab.fractions_from_percent(
        table, ["frac_nk", "frac_cd8"], file="f", sources={"frac_nk": "NK %"}
    )
    assert out["frac_nk"].tolist() == pytest.approx([0.004, 0.008])
    assert any(n.startswith("CHECK: `NK %` never exceeds 1") for n in notes)
