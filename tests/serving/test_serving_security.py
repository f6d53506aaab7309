"""Security headers, short error pages, upload limit, readiness, shared cache."""

from __future__ import annotations

import json
import logging

import dash
import pytest
from dash import html
from flask import abort

from config import load_settings
from tests.serving.servers import ROOT


def _mini_app(tmp_path, **env):
    """A bare Dash app hardened like the real one (routes can still be added)."""
    from components.security import install_security

    settings = load_settings({"CACHE_DIR": str(tmp_path), **env})
    app = dash.Dash(__name__)
    app.layout = html.Div("ok", id="mini")

    @app.server.route("/boom")
    def boom():
        raise RuntimeError("secret detail: patient P123 row 7")

    @app.server.route("/gone")
    def gone():
        abort(404)

    install_security(app, settings)
    return app


def test_security_headers_on_pages_and_callbacks(demo_dir):
    import app

    client = app.server.test_client()
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp
    assert "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "sha256-" in csp  # Dash's inline renderer script, allowed by hash
    deps = client.get("/_dash-dependencies")
    assert deps.headers["X-Content-Type-Options"] == "nosniff"
    assert app.server.debug is False


def test_unexpected_error_is_short_in_browser_and_detailed_in_log(tmp_path, caplog):
    app = _mini_app(tmp_path)
    with caplog.at_level(logging.ERROR, logger="icb.server"):
        response = app.server.test_client().get("/boom")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Internal error (reference " in text
    assert "secret detail" not in text and "Traceback" not in text
    ref = text.split("reference ")[1].split(")")[0]
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    # the log finds the bug (type, function) but never quotes the message, which
    # can hold patient identifiers
    assert ref in logged and "RuntimeError" in logged and "in boom" in logged
    assert "P123" not in logged and "secret detail" not in logged


def test_callback_error_logs_no_message_text(tmp_path, caplog):
    """A failing callback: the browser gets a reference, the log type and stack only."""
    from dash import Input, Output, dcc

    from components import ids
    from components.errors import handle_callback_error
    from components.security import install_security

    app = dash.Dash(__name__, on_error=handle_callback_error)
    app.layout = html.Div(
        [dcc.Store(id="in", data=1), html.Div(id="out"), html.Div(id=ids.ERROR_ALERT)]
    )

    @app.callback(Output("out", "children"), Input("in", "data"))
    def explode(_value):
        raise KeyError("patient SECRET-PT-42 not found")

    install_security(app, load_settings({"CACHE_DIR": str(tmp_path)}))
    body = {
        "output": "out.children",
        "outputs": {"id": "out", "property": "children"},
        "inputs": [{"id": "in", "property": "data", "value": 1}],
        "changedPropIds": ["in.data"],
        "state": [],
    }
    with caplog.at_level(logging.WARNING, logger="icb"):
        response = app.server.test_client().post("/_dash-update-component", json=body)
    text = response.get_data(as_text=True)
    assert "SECRET-PT-42" not in text and "Traceback" not in text
    ref = text.split("reference ")[1].split(")")[0]
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert ref in logged and "KeyError" in logged and "in explode" in logged
    assert "SECRET-PT-42" not in logged


def test_http_errors_keep_their_status(tmp_path):
    app = _mini_app(tmp_path)
    response = app.server.test_client().get("/gone")
    assert response.status_code == 404
    assert "reference" not in response.get_data(as_text=True)


def test_upload_over_limit_refused_on_server(tmp_path):
    app = _mini_app(tmp_path, MAX_UPLOAD_MB="1")
    limit = app.server.config["MAX_CONTENT_LENGTH"]
    assert 1024 * 1024 < limit < 3 * 1024 * 1024
    body = json.dumps({"output": "x.children", "inputs": [], "pad": "A" * limit})
    response = app.server.test_client().post(
        "/_dash-update-component", data=body, content_type="application/json"
    )
    assert response.status_code == 413
    assert "MAX_UPLOAD_MB" in response.get_json()["error"]


def test_readyz_reports_datasets_and_renderer(demo_dir):
    import app

    response = app.server.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["default_dataset"] == {"name": "demo", "status": "ok"}
    assert body["datasets"]["demo"] == "ok"
    assert body["renderer"]["status"] in {"ok", "unknown"}


def test_readyz_not_ready_without_default_dataset(tmp_path, monkeypatch):
    from components import health

    monkeypatch.setattr(
        health, "get_settings", lambda: load_settings({"DATA_DIR": str(tmp_path)})
    )
    body, status = health.readiness()
    assert status == 503
    assert body["status"] == "not ready"
    assert "demo" in body["default_dataset"]["status"]


def _fig(panel) -> dict:
    return json.loads(panel.figure.to_json())


def test_panels_cache_is_shared_and_keyed_by_filter(demo_dir, tmp_path):
    """Two Flask apps on one cache folder (two workers) share entries; another
    filter is another entry; the cached panels equal freshly built ones."""
    from flask import Flask

    from components import cache as cache_mod
    from data.view import cohort_view
    from figures.reports import build_panels

    settings = load_settings({"CACHE_DIR": str(tmp_path)})
    worker_a, worker_b = Flask("a"), Flask("b")
    cache_mod.init_cache(worker_a, settings)
    cache_mod.init_cache(worker_b, settings)
    melanoma = cohort_view(
        {"tumor_type": ["melanoma"]}, data_dir=demo_dir.parent, default_dataset="demo"
    )
    everyone = cohort_view({}, data_dir=demo_dir.parent, default_dataset="demo")
    with worker_a.app_context():
        first = cache_mod.cached_panels("overview", melanoma)
    with worker_b.app_context():
        key = cache_mod.panels_key("overview", melanoma, None)
        assert cache_mod.cache.get(key) is not None  # written by the other worker
        again = cache_mod.cached_panels("overview", melanoma)
        other = cache_mod.cached_panels("overview", everyone)
    fresh = build_panels("overview", melanoma)
    for cached, built in zip(again, fresh, strict=True):
        # same figure (key order inside the template may differ after pickling)
        assert _fig(cached) == _fig(built)
        assert cached.table.equals(built.table)
    assert [_fig(p) for p in first] == [_fig(p) for p in again]
    assert _fig(other[0]) != _fig(first[0])
    assert any((tmp_path / "flask").iterdir())


def test_worker_module_refuses_without_redis(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import worker"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "REDIS_URL is not set" in done.stderr


@pytest.mark.parametrize("mode", ["basic"])
def test_secret_key_is_used_for_sessions(tmp_path, mode):
    app = _mini_app(tmp_path, SECRET_KEY="z" * 40)
    assert app.server.secret_key == "z" * 40
    assert app.server.config["SESSION_COOKIE_HTTPONLY"] is True


def test_dataset_id_from_browser_is_validated(demo_dir, caplog):
    """A forged dataset id (path traversal) in a callback body gets a short message."""
    import app

    client = app.server.test_client()
    deps = client.get("/_dash-dependencies").get_json()
    spec = next(d for d in deps if "overview-patients." in d["output"])
    outputs = []
    for part in spec["output"].strip(".").split("..."):
        component_id, prop = part.rsplit(".", 1)
        if component_id.startswith("{"):  # a pattern-matching id (page-state store)
            component_id = json.loads(component_id)
        outputs.append({"id": component_id, "property": prop})
    body = {
        "output": spec["output"],
        "outputs": outputs,
        # every input as the browser sends it; only the filter is forged
        "inputs": [
            {
                **spec_input,
                "value": {"dataset": "../../../etc"}
                if spec_input["id"] == "shell-filter"
                else None,
            }
            for spec_input in spec["inputs"]
        ],
        "changedPropIds": ["shell-filter.data"],
        "state": [{**spec_state, "value": None} for spec_state in spec["state"]],
    }
    with caplog.at_level(logging.WARNING):
        response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "is not a valid dataset name" in text  # shown in the shell's alert
    assert "Traceback" not in text
    # no patient row of any dataset reaches the browser
    table = response.get_json()["response"].get("overview-table", {})
    assert not table.get("rowData")


def test_readyz_not_ready_without_renderer(demo_dir, monkeypatch, tmp_path):
    from components import health

    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium"))
    status = health.renderer_status()
    assert status["status"] == "missing"
    body, code = health.readiness()
    assert code == 503 and body["renderer"]["status"] == "missing"


def test_worker_warm_up_loads_default_dataset(demo_dir):
    """gunicorn's post_worker_init hook: cohort, cell metadata and store are cached."""
    from components.health import warm_up
    from data import cells, registry

    registry._load_cached.cache_clear()
    cells._cell_store.cache_clear()
    seconds = warm_up()
    assert seconds > 0
    assert registry._load_cached.cache_info().currsize == 1
    assert cells._cell_store.cache_info().currsize == 1


def test_worker_warm_up_survives_a_broken_default(tmp_path, monkeypatch, caplog):
    from components import health
    from config import load_settings

    settings = load_settings({"DATA_DIR": str(tmp_path), "DEFAULT_DATASET": "absent"})
    monkeypatch.setattr(health, "get_settings", lambda: settings)
    with caplog.at_level(logging.WARNING, logger="icb.health"):
        health.warm_up()
    assert "not loaded" in caplog.text


def test_worker_warm_up_finishes_dash_setup_before_serving(demo_dir):
    """In a fresh process (as a gunicorn worker), warm-up copies every page callback
    into the app, so concurrent first requests cannot race Dash's lazy set-up."""
    import subprocess
    import sys

    code = (
        "import sys, threading;"
        "import app, dash._callback as c;"
        "from components.health import STATISTICS_MODULES;"
        "lazy = 'scipy.stats' not in sys.modules;"  # starting the app stays fast
        "before = len(app.app.callback_map);"
        "app.warm_up_worker();"
        "[t.join(60) for t in threading.enumerate() if t.name == 'icb-preload'];"
        "print(before, len(app.app.callback_map), len(c.GLOBAL_CALLBACK_MAP),"
        " int('PIL.Image' in sys.modules), int(lazy),"
        " int(all(m in sys.modules for m in STATISTICS_MODULES)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    before, after, pending, pil, lazy, preloaded = map(int, out.stdout.split()[-6:])
    assert before == 0 and after > 10 and pending == 0
    # statistics libraries: not imported by starting the app, but preloaded by the
    # worker's warm-up (in the background), so no first NK view waits 1.5 s for them
    assert lazy == 1 and preloaded == 1
    # imported before threads serve: plotly's encoder imports it lazily otherwise,
    # which raced an export thread's first import (HTTP 500 under load)
    assert pil == 1
