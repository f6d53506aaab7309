"""The naive reference: a UMAP viewer written the usual way, for side-by-side numbers.

``px.scatter`` on a pandas DataFrame, the whole figure returned from the callback on
every change of colour, and the figure serialized with JSON lists (what plotly < 6 and
Dash 2 sent; ``.tolist()`` reproduces it with plotly 7). Served with
``Dash(compress=True)`` like the app, so the wire bytes compare like with like.

Expression values come from the app's own :class:`data.cells.CellStore`, so the
comparison isolates how the figure is built and sent, not how a gene is read.

Run: ``NAIVE_H5AD=path/to/cd8_cells.h5ad gunicorn bench.naive_app:server``.
"""

from __future__ import annotations

import base64
import os

import numpy as np
import pandas as pd
import plotly.express as px
from dash import Dash, Input, Output, dcc, html

from data.cells import open_cell_store

COLOR = "naive-color"
GRAPH = "naive-umap"


def _lists(value: object) -> object:
    """The figure dict with every array turned into a JSON list.

    plotly 7 keeps arrays as base64 typed arrays even in ``to_dict()``; they are
    decoded back into lists, as plotly < 6 sent them.
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if "shape" in value:
            shape = [int(v) for v in str(value["shape"]).split(",")]
            data = data.reshape(shape)
        return data.tolist()
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def _frame() -> pd.DataFrame:
    store = open_cell_store(os.environ["NAIVE_H5AD"])
    frame = store.obs[["patient_id", "cd8_state"]].copy()
    frame["umap_1"] = store.umap[:, 0]
    frame["umap_2"] = store.umap[:, 1]
    return frame


def umap_figure(color: str) -> dict:
    """px.scatter coloured by an obs column or a gene, as a list-serialized dict."""
    frame = _frame()
    if color not in frame.columns:
        store = open_cell_store(os.environ["NAIVE_H5AD"])
        frame[color] = store.gene(color)
    fig = px.scatter(frame, x="umap_1", y="umap_2", color=color, render_mode="webgl")
    return _lists(fig.to_dict())


app = Dash(__name__, compress=True)
app.layout = html.Div([dcc.Input(id=COLOR, value="cd8_state"), dcc.Graph(id=GRAPH)])


@app.callback(Output(GRAPH, "figure"), Input(COLOR, "value"))
def render(color):
    """The whole figure, rebuilt for every colour."""
    return umap_figure(color or "cd8_state")


server = app.server
