"""CELLxGENE (1.3) on the same h5ad, when installed in its own venv.

Install: ``python3.11 -m venv bench/.venv-cellxgene && bench/.venv-cellxgene/bin/pip
install cellxgene==1.3.0`` (git-ignored; ``CELLXGENE`` overrides the executable).
Measured the way its browser client asks: the embedding
(``/layout/obs?layout-name=umap``), a category (``/annotations/obs``) and one gene
(``/data/var``), each a flatbuffers answer, with ``Accept-Encoding: gzip, br``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from bench.server import BROWSER_ENCODINGS, free_port

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v0.2"


def executable() -> Path | None:
    """The ``cellxgene`` command, or ``None`` when it is not installed."""
    candidates = [
        os.environ.get("CELLXGENE"),
        str(ROOT / "bench" / ".venv-cellxgene" / "bin" / "cellxgene"),
        shutil.which("cellxgene"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


class CellxgeneServer:
    """``cellxgene launch`` in a subprocess; use as a context manager."""

    def __init__(self, h5ad: Path, *, port: int | None = None):
        self.h5ad = h5ad
        self.port = port or free_port((8079, 8078, 8077))
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.started_at = 0.0
        self.var_index = "name_0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CellxgeneServer:
        exe = executable()
        if exe is None:
            raise FileNotFoundError("cellxgene is not installed")
        cmd = [
            str(exe),
            "launch",
            str(self.h5ad),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-annotations",
            "--disable-diffexp",
            "--embedding",
            "umap",
        ]
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(f"/tmp/icb-bench-cellxgene-{self.port}.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Seconds from launch until the dataset schema is served."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"cellxgene exited with {self.proc.returncode}")
            try:
                answer = self.session.get(self.url + API + "/schema", timeout=5)
                if answer.status_code == 200:
                    elapsed = time.perf_counter() - self.started_at
                    schema = answer.json()["schema"]
                    self.var_index = schema["annotations"]["var"]["index"]
                    return elapsed
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError("cellxgene not ready")

    def get(self, path: str) -> tuple[float, int, int]:
        """(ms, wire bytes, decoded bytes) of one binary API answer."""
        start = time.perf_counter()
        answer = self.session.get(
            self.url + API + path,
            headers={
                "Accept": "application/octet-stream",
                "Accept-Encoding": BROWSER_ENCODINGS,
            },
            stream=True,
            timeout=600,
        )
        wire = answer.raw.read(decode_content=False)
        ms = (time.perf_counter() - start) * 1000.0
        answer.raise_for_status()
        from bench.server import _decode

        raw = _decode(wire, answer.headers.get("Content-Encoding", "identity"))
        return ms, len(wire), len(raw)

    def embedding(self) -> tuple[float, int, int]:
        return self.get("/layout/obs?layout-name=umap")

    def category(self, name: str) -> tuple[float, int, int]:
        return self.get(f"/annotations/obs?annotation-name={name}")

    def gene(self, gene: str) -> tuple[float, int, int]:
        return self.get(f"/data/var?var:{self.var_index}={gene}")

    def peak_rss_mb(self) -> float:
        import psutil

        if self.proc is None:
            return float("nan")
        pids = [self.proc.pid] + [
            p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)
        ]
        peaks = []
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024.0)
        return max(peaks)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> CellxgeneServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
