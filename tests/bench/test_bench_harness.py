"""The benchmark harness on fake inputs: table, targets, ratios, request building.

No timing is asserted here; speed is measured by ``make bench``.
"""

from __future__ import annotations

import base64
import json

import numpy as np
from dash import dcc, html

from bench.harness import Row, markdown_table, timed, timed_each, write_json
from bench.server import (
    array_length,
    callback_payload,
    figure_points,
    find_callback,
    layout_values,
    response_outputs,
)


def _rows():
    return [
        Row("UMAP", "1M: server time", 50.0, "ms", target=("<", 100.0),
            references={"naive": 2000.0, "CELLxGENE": 110.0}),
        Row("UMAP", "1M: bytes", 6.5, "B", target=("<=", 6.0),
            references={"naive": 42.0}),
        Row("gate", "1M: gate", 300.0, "ms", target=("<", 300.0)),
        Row("export", "all", None, "s", note="no Chromium | skipped"),
        Row("memory", "rss", 800.0, "MB"),
    ]  # fmt: skip


def test_status_against_targets():
    met, missed, on_the_line, absent, untargeted = _rows()
    assert met.status == "met"
    assert missed.status == "missed"
    # "< 300" is missed at exactly 300: a target is never met by rounding
    assert on_the_line.status == "missed"
    assert absent.status == "-"
    assert untargeted.status == "-"


def test_ratio_is_reference_over_ours():
    row = _rows()[0]
    assert row.ratio("naive") == 40.0
    assert row.ratio("CELLxGENE") == 2.2
    assert row.ratio("missing") is None
    assert Row("x", "y", None, "ms", references={"naive": 1.0}).ratio("naive") is None


def test_markdown_table_has_one_line_per_row_and_the_ratios():
    table = markdown_table(_rows(), ["naive", "CELLxGENE"])
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(_rows())
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "measurement", "ours", "target", "status", "naive", "naive / ours",
        "CELLxGENE", "CELLxGENE / ours", "note",
    ]  # fmt: skip
    first = [c.strip() for c in lines[2].strip("|").split("|")]
    assert first[:8] == [
        "UMAP: 1M: server time", "50.0 ms", "< 100 ms", "met",
        "2,000 ms", "40.0x", "110 ms", "2.2x",
    ]  # fmt: skip
    second = [c.strip() for c in lines[3].strip("|").split("|")]
    assert second[1:6] == ["6.50 B", "<= 6.00 B", "missed", "42.0 B", "6.5x"]
    absent = [c.strip() for c in lines[5].strip("|").split("|")]
    assert absent[1] == "n/a"
    # a pipe inside a note must not break the table
    assert len(absent) == len(header)
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_json_record_keeps_samples_and_status(tmp_path):
    rows = _rows()
    rows[0].samples = [49.0, 50.0, 51.0, 50.0, 52.0]
    path = write_json(tmp_path / "r" / "x.json", rows, meta={"mode": "quick"})
    record = json.loads(path.read_text())
    assert record["mode"] == "quick"
    assert record["rows"][0]["status"] == "met"
    assert record["rows"][0]["samples"] == [49.0, 50.0, 51.0, 50.0, 52.0]
    assert record["rows"][3]["value"] is None


def test_timed_runs_warmup_then_takes_the_median():
    calls = []
    median, samples, result = timed(lambda: calls.append(1) or len(calls), runs=5)
    assert len(calls) == 6 and len(samples) == 5 and result == 6
    assert median == sorted(samples)[2]
    seen = []
    median, samples = timed_each(
        [lambda i=i: seen.append(i) for i in range(5)], warmup=lambda: seen.append("w")
    )
    assert seen == ["w", 0, 1, 2, 3, 4] and len(samples) == 5


def test_callback_payload_from_dependencies_and_layout():
    layout = html.Div(
        [
            dcc.Dropdown(id="p-color", options=["a", "b"], value="a"),
            html.Div(dcc.Store(id="p-drawn", data="sig")),
            dcc.Graph(id="p-umap"),
        ]
    )
    values = layout_values(layout)
    assert values[("p-color", "value")] == "a"
    assert values[("p-drawn", "data")] == "sig"
    deps = [
        {"output": "other.children", "inputs": [], "state": []},
        {
            "output": "..p-umap.figure...p-caption.children..",
            "inputs": [
                {"id": "shell-filter", "property": "data"},
                {"id": "p-color", "property": "value"},
            ],
            "state": [{"id": "p-drawn", "property": "data"}],
        },
    ]
    dep = find_callback(deps, "p-caption.children")
    values[("shell-filter", "data")] = {"dataset": "x"}
    payload = callback_payload(dep, values, changed="p-color.value")
    assert payload["output"] == "..p-umap.figure...p-caption.children.."
    assert payload["outputs"] == [
        {"id": "p-umap", "property": "figure"},
        {"id": "p-caption", "property": "children"},
    ]
    assert payload["inputs"][0]["value"] == {"dataset": "x"}
    assert payload["inputs"][1]["value"] == "a"
    assert payload["state"][0]["value"] == "sig"
    assert payload["changedPropIds"] == ["p-color.value"]
    single = callback_payload(deps[0], {})
    assert single["outputs"] == {"id": "other", "property": "children"}


def test_points_are_counted_in_typed_arrays_and_lists():
    xs = np.arange(7, dtype=np.float32)
    typed = {"dtype": "f4", "bdata": base64.b64encode(xs.tobytes()).decode()}
    assert array_length(typed) == 7
    assert array_length([1, 2, 3]) == 3
    figure = {
        "data": [
            {"type": "scattergl", "x": typed},
            {"type": "scattergl", "x": [0.0, 1.0]},
            {"type": "bar", "x": [1, 2, 3]},
        ]
    }
    assert figure_points(figure) == 9
    body = {"response": {"p-umap": {"figure": figure}, "p-n": {"children": "9"}}}
    assert response_outputs(body)["p-n.children"] == "9"


def test_naive_reference_sends_plain_json_lists():
    import plotly.express as px

    from bench.naive_app import _lists

    frame = {"x": np.array([0.5, 1.5], dtype=np.float32), "y": [2.0, 3.0]}
    figure = _lists(px.scatter(frame, x="x", y="y", render_mode="webgl").to_dict())
    trace = figure["data"][0]
    assert trace["x"] == [0.5, 1.5] and trace["y"] == [2.0, 3.0]
    assert "bdata" not in json.dumps(figure)
