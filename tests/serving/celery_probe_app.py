"""A one-callback Dash app whose callback is a background job (Redis/Celery test).

Served by gunicorn with the project's gunicorn.conf.py and executed by a Celery worker
started as the README says (``celery -A <module>.celery_app worker``), both using
``components.background`` exactly as the real app does.
"""

from __future__ import annotations

import os

from dash import Dash, Input, Output, dcc, html

from components.background import get_background_manager

app = Dash(__name__, background_callback_manager=get_background_manager())
app.layout = html.Div([dcc.Input(id="probe-in", value=""), html.Div(id="probe-out")])


@app.callback(
    Output("probe-out", "children"),
    Input("probe-in", "value"),
    background=True,
    prevent_initial_call=True,
)
def square_in_worker(value):
    """Runs in the Celery worker: report where it ran and what it computed."""
    return f"pid={os.getpid()} square={int(value) ** 2}"


server = app.server
celery_app = app._background_manager.handle
