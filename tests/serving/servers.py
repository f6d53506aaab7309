"""Helpers for serving tests: real gunicorn on a free loopback port, callback bodies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import ROOT, free_port

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0, **kwargs):
    """Poll ``url`` until it answers (any status); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            return requests.get(url, timeout=30, **kwargs)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process group (gunicorn master + workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def gunicorn(
    tmp_path: Path,
    workers: int = 3,
    prefix: str = "/",
    target: str = "app:server",
    **env_extra: str,
):
    """Run ``gunicorn -c gunicorn.conf.py app:server`` on a free loopback port.

    Yields ``(base_url, process, log_path)``; the access log goes to ``log_path``.
    """
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
        "THREADS": "2",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": str(log_path),
        "URL_PREFIX": prefix,
        "CACHE_DIR": str(tmp_path / "cache"),
        **env_extra,
    }
    with open(tmp_path / f"gunicorn-{port}.err", "w") as err:
        proc = subprocess.Popen(
            [*GUNICORN, target],
            cwd=ROOT,
            env=env,
            stdout=err,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}{prefix}"
    try:
        wait_http(f"{base}healthz", proc)
        yield base, proc, log_path
    finally:
        stop(proc)


def callback_payload(base: str, marker: str, values: list, **kwargs) -> dict:
    """The body the browser POSTs to run the callback whose output contains
    ``marker``, with ``values`` for its first inputs (later inputs and every state
    are sent as ``None``, as for controls whose options have not arrived yet).

    Built from the server's own callback map (``_dash-dependencies``), so it follows
    the page's outputs and inputs as they change.
    """
    deps = requests.get(f"{base}_dash-dependencies", timeout=30, **kwargs).json()
    spec = next(d for d in deps if marker in d["output"])
    outputs = []
    for part in spec["output"].strip(".").split("..."):
        comp, prop = part.rsplit(".", 1)
        if comp.startswith("{"):  # pattern-matching id, e.g. a page-state store
            comp = json.loads(comp)
        outputs.append({"id": comp, "property": prop})
    payload = {
        "output": spec["output"],
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": [{"id": i["id"], "property": i["property"]} for i in spec["inputs"]],
        "changedPropIds": [
            f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"
        ],
        "state": [
            {"id": i["id"], "property": i["property"], "value": None}
            for i in spec.get("state", [])
        ],
    }
    return with_inputs(payload, values)


def with_inputs(payload: dict, values: list) -> dict:
    """A copy of ``payload`` with ``values`` for its first inputs, ``None`` after."""
    if len(values) > len(payload["inputs"]):
        raise ValueError(f"{len(values)} values for {len(payload['inputs'])} inputs")
    padded = [*values, *[None] * (len(payload["inputs"]) - len(values))]
    inputs = [{**i, "value": v} for i, v in zip(payload["inputs"], padded, strict=True)]
    return {**payload, "inputs": inputs}


def post_callback(session, base: str, payload: dict, **kwargs) -> requests.Response:
    """POST a callback body as the browser does."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return session.post(
        f"{base}_dash-update-component",
        data=json.dumps(payload),
        headers=headers,
        timeout=60,
        **kwargs,
    )
