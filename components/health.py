"""Readiness probe: can this worker serve the default dataset and render exports?

``/healthz`` (app.py) says the process answers; ``/readyz`` says it is useful: the
default dataset loads (cached per worker afterwards), every dataset's metadata
reads, and a figure renderer for exports is present.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from importlib import import_module
from importlib.util import find_spec

import dash
from flask import jsonify

from config import get_settings
from data.cells import cell_obs
from data.errors import DataError
from data.registry import get_bundle, list_datasets

log = logging.getLogger("icb.health")


def renderer_status() -> dict[str, str]:
    """Status of the export renderer (Kaleido + Chromium), without starting it.

    Uses ``figures.export.renderer_status`` when the export module provides one;
    otherwise finds the browser as the export module does and reports ``ok`` (this
    worker's renderer is running), ``unknown`` (installed, not started yet: it starts
    on the first export) or ``missing``.
    """
    export = import_module("figures.export") if find_spec("figures.export") else None
    check = getattr(export, "renderer_status", None)
    if callable(check):
        return dict(check())
    if find_spec("kaleido") is None:
        return {"status": "missing", "detail": "the kaleido package is not installed"}
    find = getattr(export, "browser_path", None)
    if callable(find):  # the same search Kaleido itself will do
        browser = find()
    else:
        browser = os.environ.get("BROWSER_PATH") or next(
            filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None
        )
    running = getattr(export, "renderer_running", None)
    if browser and callable(running) and running():
        return {"status": "ok", "detail": f"renderer running, browser {browser}"}
    if not browser:
        return {
            "status": "missing",
            "detail": "no Chromium for Kaleido: install the `chromium` package or "
            "set BROWSER_PATH",
        }
    return {"status": "unknown", "detail": f"kaleido installed, browser {browser}"}


def warm_up() -> float:
    """Load the default dataset into this worker's caches; seconds taken.

    Called by each gunicorn worker before it accepts requests (gunicorn.conf.py), so
    the first lab member to reach a worker does not wait for the cohort, the cell
    metadata and the cell store to be read. A dataset that does not load is left
    to the pages (they show the problem); the worker starts anyway.
    """
    settings = get_settings()
    started = time.perf_counter()
    try:
        bundle = get_bundle(settings.default_dataset, settings.data_dir)
        cell_obs(bundle)  # the cell store: metadata, embedding, gene index
    except (DataError, OSError) as err:
        log.warning(
            "worker warm-up: default dataset %r not loaded (%s)",
            settings.default_dataset,
            type(err).__name__,
        )
    return time.perf_counter() - started


#: Imported lazily by analysis/ (so starting the app stays fast) and preloaded by
#: warm-up in the background: together 1.5 s, which the first NK view of every
#: worker would otherwise wait for.
STATISTICS_MODULES = (
    "scipy.stats",
    "statsmodels.formula.api",
    "statsmodels.duration.survfunc",
    "statsmodels.stats.multitest",
)


def preload_statistics() -> threading.Thread:
    """Import :data:`STATISTICS_MODULES` in a daemon thread; returns the thread."""

    def load() -> None:
        for name in STATISTICS_MODULES:
            import_module(name)

    thread = threading.Thread(target=load, name="icb-preload", daemon=True)
    thread.start()
    return thread


def readiness() -> tuple[dict[str, object], int]:
    """The probe's body and HTTP status (200 ready, 503 not ready)."""
    settings = get_settings()
    datasets = {}
    for entry in list_datasets(settings.data_dir):
        datasets[entry.name] = "ok" if entry.error is None else "invalid"
    try:
        get_bundle(settings.default_dataset, settings.data_dir)
        default = "ok"
    except DataError as err:
        default = str(err.problems[0]) if err.problems else str(err)
    renderer = renderer_status()
    ready = default == "ok" and renderer["status"] != "missing"
    body = {
        "status": "ready" if ready else "not ready",
        "default_dataset": {"name": settings.default_dataset, "status": default},
        "datasets": datasets,
        "renderer": renderer,
    }
    return body, 200 if ready else 503


def install_readiness(app: dash.Dash) -> None:
    """Add ``GET {URL_PREFIX}readyz``."""

    @app.server.route(f"{get_settings().url_prefix}readyz")
    def readyz():
        body, status = readiness()
        return jsonify(body), status
