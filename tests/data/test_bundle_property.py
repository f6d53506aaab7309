"""Property-based: any table fed to the cohort validator yields problems or a typed
table, never an unexpected exception, and never a changed file on disk."""

from __future__ import annotations

import hashlib

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data.bundle import load_bundle, validate_bundle, validate_cohort
from data.errors import DataError
from tests.conftest import small_cohort, write_bundle

cell = st.one_of(
    st.sampled_from(
        ["", "CR", "Resp", "pre", "baseline", "0.5", "-1", "inf", "NaN", "x"]
    ),
    st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@st.composite
def mutated_cohort(draw) -> pd.DataFrame:
    frame = small_cohort().astype(str).replace("nan", "")
    for _ in range(draw(st.integers(0, 6))):
        row = draw(st.integers(0, len(frame) - 1))
        column = draw(st.sampled_from(list(frame.columns)))
        frame.loc[row, column] = draw(cell)
    if draw(st.booleans()):
        frame = frame.drop(columns=draw(st.sampled_from(list(frame.columns))))
    return frame


@settings(max_examples=150, deadline=None)
@given(mutated_cohort())
def test_validator_never_raises(frame):
    problems, typed = validate_cohort(frame)
    errors = [p for p in problems if p.severity == "error"]
    assert (typed is None) == bool(errors)
    for problem in errors:
        assert problem.file == "cohort.csv" and problem.message


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(raw=b"\n\x01")  # blank header line: pandas took the next line as header
def test_loader_on_arbitrary_bytes(tmp_path, raw):
    folder = write_bundle(tmp_path / "b", raw)
    before = hashlib.sha256((folder / "cohort.csv").read_bytes()).hexdigest()
    try:
        load_bundle(folder)
    except DataError as err:
        assert str(err)
    validate_bundle(folder)
    assert hashlib.sha256((folder / "cohort.csv").read_bytes()).hexdigest() == before
