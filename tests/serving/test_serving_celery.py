"""REDIS_URL set: a background callback goes gunicorn -> Redis -> Celery worker -> back.

Starts a real ``redis-server`` (Debian package, installed by .ci/run) on a free
loopback port, a Celery worker with the documented command, and gunicorn with the
project's gunicorn.conf.py; then runs one job through Dash's own HTTP protocol.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.serving.servers import callback_payload, gunicorn, post_callback, stop

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        REDIS is None and os.environ.get("CI") != "true",
        reason="redis-server is not installed (apt-get install redis-server); "
        "in CI this test must run",
    ),
]
PROBE = "tests.serving.celery_probe_app"


@pytest.fixture
def redis_url(tmp_path):
    assert REDIS, "redis-server missing in CI: .ci/run must install it"
    port = free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop(proc)
                raise
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


def _end_id(page_html: str) -> str:
    config = re.search(
        r'<script id="_dash-config" type="application/json">(.*?)</script>',
        page_html,
        re.S,
    )
    assert config, "no _dash-config in the page"
    return json.loads(config.group(1))["end_id"]


def test_background_job_runs_in_celery_worker(redis_url, tmp_path):
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", f"{PROBE}.celery_app", "worker",
         "--pool", "solo", "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "celery.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        with gunicorn(
            tmp_path,
            workers=2,
            target=f"{PROBE}:server",
            REDIS_URL=redis_url,
            PYTHONPATH=str(ROOT),
        ) as (base, _proc, _log):
            answer = _run_job(base, worker, tmp_path)
    finally:
        stop(worker)
    # computed by the Celery worker process, not by a gunicorn worker
    assert answer == f"pid={worker.pid} square=144"


def _run_job(base: str, worker: subprocess.Popen, tmp_path) -> str:
    """Start the job as the browser does, poll until done, return the output."""
    end_id = _end_id(requests.get(base, timeout=30).text)
    payload = callback_payload(base, "probe-out.", ["12"])
    blank = {**payload, "inputs": [{**i, "value": None} for i in payload["inputs"]]}
    with requests.Session() as session:
        started = post_callback(session, base, payload, params={"endId": end_id})
        assert started.status_code == 200, started.text[:300]
        handles = started.json()
        assert {"cacheKey", "job"} <= set(handles), handles
        deadline = time.monotonic() + 90
        while True:
            polled = post_callback(
                session, base, blank, params={"endId": end_id, **handles}
            )
            assert polled.status_code in (200, 204), polled.text[:300]
            if polled.status_code == 200 and "response" in polled.json():
                return polled.json()["response"]["probe-out"]["children"]
            assert time.monotonic() < deadline, "job did not finish in 90 s"
            assert worker.poll() is None, (tmp_path / "celery.log").read_text()
            time.sleep(0.3)


def test_worker_module_registers_the_apps_background_callbacks(redis_url, tmp_path):
    """`celery -A worker.celery_app worker` knows every background callback of the
    real app (e.g. export-all), each as a Celery task."""
    code = (
        "import worker, dash\n"
        "tasks = [t for t in worker.celery_app.tasks"
        " if t.startswith('background_callback_')]\n"
        "manager = worker.app._background_manager\n"
        "print(type(manager).__name__, len(tasks), len(manager.func_registry))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, "CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, n_tasks, n_callbacks = done.stdout.split()[-3:]
    assert kind == "CeleryManager"
    assert int(n_tasks) == int(n_callbacks) >= 1
