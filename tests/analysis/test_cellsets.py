"""Cell-set definitions: text round trip, clear errors, membership checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import cellsets
from analysis.cellsets import CellSetError, parse_set, set_to_string
from analysis.response import NON_RESPONDER, RESPONDER


@pytest.mark.parametrize(
    "text",
    [
        "gate",
        "not:gate",
        "gate:CD69.gt.0~HAVCR2.le.0.5",
        "state:Exhausted (HAVCR2+TOX+)",
        "response:R+state:CD69+BCL2+EOMES+GZMB+",
        "response:NR+gate",
        "patients:SYN-A|P001,SYN-B|P002",
        "lasso:0.000,0.000;1.000,0.000;1.000,1.000",
    ],
)
def test_round_trip(text):
    parsed = parse_set(text)
    assert set_to_string(parsed) == text
    assert parse_set(set_to_string(parsed)) == parsed


def test_plus_inside_state_names_stays_whole():
    parsed = parse_set("response:R+state:CD69+BCL2+EOMES+GZMB+")
    assert [t.kind for t in parsed.terms] == ["response", "state"]
    assert parsed.terms[1].value == "CD69+BCL2+EOMES+GZMB+"


def test_published_gate_rule_is_plain_gate_and_quotes_are_accepted():
    rule = "CD69.gt.0~BCL2.gt.0~EOMES.gt.0~GZMB.gt.0~HAVCR2.le.0~TNFRSF18.le.0"
    assert set_to_string(parse_set(f'gate:"{rule}"')) == "gate"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("response:maybe", "response:R or response:NR"),
        ("gate:CD69.gt", "cannot read gate marker"),
        ("colour:red", "unknown set term"),
        ("lasso:1,2;3", "x,y pairs"),
        ("lasso:1,2;3,4", "3 to"),
        ("patients:P001", "cohort|patient_id"),
        ("gate+gate", "twice"),
    ],
)
def test_bad_definitions_say_what_to_change(text, message):
    with pytest.raises(CellSetError, match=message):
        parse_set(text)


def test_saved_name_resolves_ignoring_case():
    parsed = parse_set("my cells", saved={"My cells": "state:Naive/stem-like"})
    assert parsed.name == "My cells" and parsed.label == "My cells"
    assert parsed.terms == (cellsets.Term("state", "Naive/stem-like"),)


def _context():
    # 6 cells of 3 patients; expression of the 6 published gate genes
    expression = {
        "CD69": np.array([1, 1, 0, 1, 1, 0.0]),
        "BCL2": np.array([1, 1, 1, 1, 1, 1.0]),
        "EOMES": np.array([1, 1, 1, 1, 1, 1.0]),
        "GZMB": np.array([1, 1, 1, 1, 0, 1.0]),
        "HAVCR2": np.array([0, 2, 0, 0, 0, 0.0]),
        "TNFRSF18": np.zeros(6),
    }
    return cellsets.CellContext(
        patients=pd.DataFrame(
            {
                "key": ["A|1", "A|2", "B|1"],
                "group": pd.array([RESPONDER, NON_RESPONDER, pd.NA], dtype="string"),
            }
        ),
        patient_codes=np.array([0, 0, 1, 1, 2, 2]),
        state_codes=np.array([0, 1, 0, 1, 1, -1]),
        state_names=["Naive", "Exhausted (HAVCR2+TOX+)"],
        umap=np.array([[0, 0], [2, 2], [0.5, 0.5], [5, 5], [0.2, 0.8], [3, 0]], float),
        expression=expression.__getitem__,
        genes=pd.Index(list(expression)),
    )


def test_membership_by_hand():
    ctx = _context()

    def members(text):
        return np.flatnonzero(cellsets.evaluate_set(parse_set(text), ctx)).tolist()

    # gate: CD69+ BCL2+ EOMES+ GZMB+ HAVCR2- TNFRSF18- -> cells 0 and 3
    assert members("gate") == [0, 3]
    assert members("not:gate") == [1, 2, 4, 5]
    assert members("gate:CD69.gt.0") == [0, 1, 3, 4]
    assert members("state:exhausted (havcr2+tox+)") == [1, 3, 4]
    assert members("response:R") == [0, 1]
    assert members("response:NR") == [2, 3]  # patient B|1 is not evaluable
    assert members("response:NR+state:Naive") == [2]
    assert members("patients:B|1,A|1") == [0, 1, 4, 5]
    # unit square: cells 0 (corner), 2 and 4 are inside
    inside = members("lasso:-0.1,-0.1;1,-0.1;1,1;-0.1,1")
    assert inside == [0, 2, 4]


def test_unknown_state_and_missing_gate_gene_are_clear():
    ctx = _context()
    with pytest.raises(CellSetError, match="states: Naive"):
        cellsets.evaluate_set(parse_set("state:Effector"), ctx)
    with pytest.raises(CellSetError, match="lacks"):
        cellsets.evaluate_set(parse_set("gate:FOO.gt.0"), ctx)


def test_polygon_from_plotly_lasso():
    selected = {"lassoPoints": {"x": [0, 1, 1], "y": [0, 0, 1]}}
    assert (
        cellsets.polygon_from_lasso(selected) == "0.000,0.000;1.000,0.000;1.000,1.000"
    )
    assert cellsets.polygon_from_lasso({"range": {}}) == ""
