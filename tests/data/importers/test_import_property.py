"""Property-based: random tables and bytes fed to the clinical importer either import
(and then pass bundle validation) or raise DataError, never anything else."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.bundle import validate_cohort
from data.errors import DataError
from data.importers.clinical import as_csv_strings, build_cohort
from data.importers.reading import read_table_bytes

COLUMNS = ["id", "pt", "cancer", "drug", "bor", "resp", "os", "event", "nk", "cd8"]
MAPPING = {
    "sample_id": "id",
    "patient_id": "pt",
    "tumor_type": "cancer",
    "treatment": "drug",
    "recist": "bor",
    "response": "resp",
    "os_months": "os",
    "os_event": "event",
    "frac_nk": "nk",
    "frac_cd8": "cd8",
}
cell = st.one_of(
    st.sampled_from(
        [
            "",
            "NA",
            "R",
            "NR",
            "CR",
            "PD",
            "Responder",
            "nivolumab",
            "ipilimumab",
            "PD-1/PD-L1",
            "chemo",
            "0",
            "1",
            "0.5",
            "50",
            "150",
            "-1",
            "inf",
            "nan",
            "dead",
            "alive",
            "pre",
            "x",
            "P1",
            "P2",
        ]
    ),
    st.text(max_size=5),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@st.composite
def tables(draw) -> tuple[pd.DataFrame, dict[str, str]]:
    """A valid table, then a few random cells replaced and maybe a column dropped."""
    n_rows = draw(st.integers(0, 6))
    valid = {
        "id": [f"S{i}" for i in range(n_rows)],
        "pt": [f"P{i}" for i in range(n_rows)],
        "cancer": ["melanoma"] * n_rows,
        "drug": ["nivolumab"] * n_rows,
        "bor": ["PR"] * n_rows,
        "resp": ["R"] * n_rows,
        "os": ["12.5"] * n_rows,
        "event": ["1"] * n_rows,
        "nk": ["0.05"] * n_rows,
        "cd8": ["0.2"] * n_rows,
    }
    frame = pd.DataFrame(valid, dtype=str)
    for _ in range(draw(st.integers(0, 4)) if n_rows else 0):
        row = draw(st.integers(0, n_rows - 1))
        frame.loc[row, draw(st.sampled_from(COLUMNS))] = draw(cell)
    for column in draw(st.lists(st.sampled_from(COLUMNS), max_size=2, unique=True)):
        frame = frame.drop(columns=column)
    mapping = {t: s for t, s in MAPPING.items() if s in frame and draw(st.booleans())}
    return frame, mapping


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.booleans())
def test_clinical_importer_imports_or_raises_data_error(table, guess):
    frame, mapping = table
    try:
        cohort, _report = build_cohort(
            frame,
            file="random.csv",
            mapping=mapping,
            constants={"tumor_type": "x"} if "tumor_type" not in mapping else None,
            guess=guess,
        )
    except DataError as err:
        assert err.problems and all(p.file for p in err.problems)
        return
    problems, typed = validate_cohort(as_csv_strings(cohort))
    assert typed is not None, problems
    assert not [p for p in problems if p.severity == "error"]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["t.csv", "t.tsv", "t.xlsx"]))
def test_table_reader_on_random_bytes(raw, name):
    try:
        frame = read_table_bytes(raw, file=name)
    except DataError as err:
        assert err.problems[0].file == name
        return
    assert isinstance(frame, pd.DataFrame)
