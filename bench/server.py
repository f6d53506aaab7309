"""Run a Dash app in a subprocess and call its callbacks over HTTP, as a browser does.

The app is served by gunicorn (one worker, as deployed; the worker imports the app
after the fork), on loopback. Callback requests are built from the app's own
``/_dash-dependencies`` and the page layout's property values, then POSTed to
``/_dash-update-component``. Each response is measured twice: the raw JSON
(``Accept-Encoding: identity``) and the bytes on the wire with the encodings a
browser offers (``Accept-Encoding: gzip, br``; the app uses ``Dash(compress=True)``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BROWSER_ENCODINGS = "gzip, deflate, br"


def free_port(preferred: tuple[int, ...] = (8077, 8078, 8079)) -> int:
    """A free loopback port, one of ``preferred`` when possible."""
    for port in (*preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


@dataclass
class Response:
    """One callback answer: status, timings and sizes."""

    status: int
    ms: float
    raw_bytes: int
    wire_bytes: int
    encoding: str
    body: dict | None


class AppServer:
    """``gunicorn <module>:server`` in a subprocess; use as a context manager.

    Parameters
    ----------
    module
        Python module exposing ``server`` (``app`` for the ICB app).
    env
        Extra environment (``DATA_DIR``, ``DEFAULT_DATASET`` ...).
    """

    def __init__(
        self,
        module: str = "app",
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        port: int | None = None,
        workers: int = 1,
    ):
        self.module = module
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("LOG_LEVEL", "WARNING")
        self.cwd = cwd
        self.port = port or free_port()
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.session = requests.Session()
        #: the app's CACHE_DIR when the caller gives it one
        self.cache_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        cmd = [
            str(gunicorn),
            f"{self.module}:server",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ]
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "w"),  # noqa: SIM115 (closed with the process)
            start_new_session=True,
        )
        return self

    @property
    def log_path(self) -> Path:
        return Path(f"/tmp/icb-bench-{self.port}.log")

    def wait_ready(self, path: str = "/", timeout: float = 300.0) -> float:
        """Poll ``GET path`` until it answers 200; seconds since :meth:`start`."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                answer = self.session.get(self.url + path, timeout=120)
                if answer.status_code == 200:
                    return time.perf_counter() - self.started_at
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{self.url}{path} not ready after {timeout} s")

    def worker_pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def peak_rss_mb(self) -> float:
        """Largest peak resident set size (VmHWM) over the worker processes, MB."""
        peaks = []
        for pid in self.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024.0)
        return max(peaks) if peaks else float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------- callbacks

    def dependencies(self) -> list[dict]:
        return self.session.get(self.url + "/_dash-dependencies", timeout=30).json()

    def post(self, payload: dict, *, encodings: str = BROWSER_ENCODINGS) -> Response:
        """POST one callback request; time it and count raw and wire bytes."""
        start = time.perf_counter()
        answer = self.session.post(
            self.url + "/_dash-update-component",
            data=json.dumps(payload),
            headers={
                "Content-Type": "application/json",
                "Accept-Encoding": encodings,
            },
            stream=True,
            timeout=600,
        )
        wire = answer.raw.read(decode_content=False)
        ms = (time.perf_counter() - start) * 1000.0
        encoding = answer.headers.get("Content-Encoding", "identity")
        raw = _decode(wire, encoding)
        body = json.loads(raw) if answer.status_code == 200 and raw else None
        return Response(answer.status_code, ms, len(raw), len(wire), encoding, body)


def _decode(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        import brotli

        return brotli.decompress(data)
    if encoding == "gzip":
        import gzip

        return gzip.decompress(data)
    if encoding == "deflate":
        import zlib

        return zlib.decompress(data)
    return data


# ------------------------------------------------------------ request building


def _id_key(component_id: object) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return str(component_id)


def layout_values(layout: object) -> dict[tuple[str, str], object]:
    """(component id, property) -> value for every component with an id in a layout."""
    values: dict[tuple[str, str], object] = {}

    def walk(node: object) -> None:
        if isinstance(node, list | tuple):
            for child in node:
                walk(child)
            return
        if not hasattr(node, "to_plotly_json"):
            return
        props = node.to_plotly_json().get("props", {})
        if "id" in props:
            key = _id_key(props["id"])
            for prop, value in props.items():
                values[(key, prop)] = value
        for value in props.values():
            if hasattr(value, "to_plotly_json") or isinstance(value, list | tuple):
                walk(value)

    walk(layout)
    return values


def find_callback(dependencies: list[dict], output: str) -> dict:
    """The dependency entry whose output includes ``output`` ("id.prop")."""
    for dep in dependencies:
        outputs = dep["output"].strip(".").split("...")
        if output in outputs:
            return dep
    raise KeyError(f"no callback outputs {output!r}")


def _parse_output(spec: str) -> list[dict]:
    parts = spec.strip(".").split("...") if spec.startswith("..") else [spec]
    result = []
    for part in parts:
        component_id, prop = part.rsplit(".", 1)
        if component_id.startswith("{"):
            component_id = json.loads(component_id)
        result.append({"id": component_id, "property": prop})
    return result


def callback_payload(
    dep: dict,
    values: Mapping[tuple[str, str], object],
    *,
    changed: str | None = None,
) -> dict:
    """The JSON body a browser sends for ``dep`` given property ``values``.

    Properties missing from ``values`` are sent as ``None`` (as for a component whose
    property was never set).
    """
    outputs = _parse_output(dep["output"])

    def items(specs: list[dict]) -> list[dict]:
        return [
            {
                "id": spec["id"],
                "property": spec["property"],
                "value": values.get((_id_key(spec["id"]), spec["property"])),
            }
            for spec in specs
        ]

    inputs = items(dep["inputs"])
    if changed is None and dep["inputs"]:
        first = dep["inputs"][0]
        changed = f"{_id_key(first['id'])}.{first['property']}"
    return {
        "output": dep["output"],
        "outputs": outputs if dep["output"].startswith("..") else outputs[0],
        "inputs": inputs,
        "changedPropIds": [changed] if changed else [],
        "state": items(dep.get("state", [])),
    }


# -------------------------------------------------------------- reading answers

_ITEMSIZE = {"f8": 8, "f4": 4, "i4": 4, "u4": 4, "i2": 2, "u2": 2, "i1": 1, "u1": 1}


def array_length(value: object) -> int:
    """Number of elements of a plotly array (typed-array dict or list)."""
    if isinstance(value, dict) and "bdata" in value:
        size = len(base64.b64decode(value["bdata"]))
        return size // _ITEMSIZE.get(value.get("dtype", "f8"), 8)
    if isinstance(value, list | tuple):
        return len(value)
    return 0


def figure_points(figure: Mapping) -> int:
    """Points drawn by a figure: the sum of ``x`` lengths over its scatter traces."""
    return sum(
        array_length(trace.get("x"))
        for trace in figure.get("data", [])
        if trace.get("type", "scatter") in ("scatter", "scattergl")
    )


def response_outputs(body: Mapping) -> dict[str, object]:
    """``"id.prop" -> value`` of a callback answer."""
    result = {}
    for component_id, props in body.get("response", {}).items():
        for prop, value in props.items():
            result[f"{component_id}.{prop}"] = value
    return result
