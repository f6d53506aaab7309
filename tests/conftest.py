"""Shared fixtures: the demo bundle, small hand-built bundles, browser options."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"

# The app reads settings from the environment once: point it at the test data dir
# before anything imports `app` or `config.get_settings`.
os.environ.setdefault("DATA_DIR", str(ROOT / "data" / "datasets"))
DATA_DIR = Path(os.environ["DATA_DIR"])


def free_port() -> int:
    """A free loopback port (browser tests must not share the default 8050)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_setup_options():
    """Chromium options for dash.testing on a closed network, as root."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in (
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    return options


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo bundle in DATA_DIR (generated once if missing; `make test` makes it)."""
    from data.demo import write_demo

    path = DATA_DIR / "demo"
    if not (path / "dataset.json").exists():
        write_demo(path, progress=lambda _msg: None)
    return path


@pytest.fixture(scope="session")
def demo_bundle(demo_dir):
    from data.bundle import load_bundle

    return load_bundle(demo_dir)


def small_cohort() -> pd.DataFrame:
    """Twelve samples of eight patients in two cohorts; patient ids repeat across."""
    rows = [
        # sample, patient, cohort, tumor, treatment, timepoint, recist, nk, cd8
        ("A-P1-pre", "P1", "A", "melanoma", "anti-PD-1", "pre", "CR", 0.02, 0.30),
        ("A-P1-on", "P1", "A", "melanoma", "anti-PD-1", "on", "CR", 0.01, 0.35),
        ("A-P2-pre", "P2", "A", "melanoma", "anti-PD-1", "pre", "PR", 0.03, 0.25),
        ("A-P3-pre", "P3", "A", "melanoma", "anti-CTLA-4", "pre", "SD", 0.05, 0.20),
        ("A-P4-pre", "P4", "A", "melanoma", "anti-CTLA-4", "pre", "PD", 0.06, 0.10),
        ("A-P4-on", "P4", "A", "melanoma", "anti-CTLA-4", "on", "PD", 0.07, 0.10),
        ("B-P1-pre", "P1", "B", "NSCLC", "anti-PD-L1", "pre", "PR", 0.02, 0.28),
        ("B-P2-pre", "P2", "B", "NSCLC", "anti-PD-L1", "pre", "PD", 0.08, 0.12),
        ("B-P2-pre2", "P2", "B", "NSCLC", "anti-PD-L1", "pre", "PD", 0.06, 0.14),
        ("B-P3-pre", "P3", "B", "NSCLC", "anti-PD-1", "pre", "", 0.04, 0.20),
        ("B-P4-pre", "P4", "B", "NSCLC", "anti-PD-1", "pre", "NE", 0.05, 0.15),
        ("B-P4-on", "P4", "B", "NSCLC", "anti-PD-1", "on", "NE", 0.05, 0.16),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "sample_id", "patient_id", "cohort", "tumor_type", "treatment",
            "timepoint", "recist", "frac_nk", "frac_cd8",
        ],
    )  # fmt: skip
    frame["response"] = frame["recist"].map(
        {"CR": "R", "PR": "R", "SD": "NR", "PD": "NR"}
    )
    frame.loc[frame["sample_id"] == "B-P3-pre", "response"] = "R"
    frame["os_months"] = [
        30.0,
        30.0,
        25.5,
        12.0,
        6.0,
        6.0,
        40.0,
        3.0,
        3.0,
        20.0,
        9.0,
        9.0,
    ]
    frame["os_event"] = [0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1]
    return frame


def write_bundle(
    path: Path,
    cohort: pd.DataFrame | str | bytes,
    *,
    meta: dict | None = None,
    cells=None,
) -> Path:
    """Write a bundle folder from a frame (or raw cohort.csv content) for tests."""
    path.mkdir(parents=True, exist_ok=True)
    base = {
        "name": path.name,
        "title": "Test bundle",
        "description": "made by a test",
        "source": "tests",
        "license": "CC0-1.0",
        "synthetic": True,
        "version": "0",
    }
    (path / "dataset.json").write_text(json.dumps(meta if meta is not None else base))
    target = path / "cohort.csv"
    if isinstance(cohort, pd.DataFrame):
        cohort.to_csv(target, index=False)
    elif isinstance(cohort, bytes):
        target.write_bytes(cohort)
    else:
        target.write_text(cohort)
    if cells is not None:
        cells.write_h5ad(path / "cd8_cells.h5ad")
    return path


@pytest.fixture
def bundle_factory(tmp_path):
    def make(cohort=None, name="test", **kwargs) -> Path:
        return write_bundle(
            tmp_path / name, small_cohort() if cohort is None else cohort, **kwargs
        )

    return make


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------ Dash component trees (no browser)


def component_text(component) -> str:
    """All text of a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(component_text(c) for c in component)
    return component_text(getattr(component, "children", None))


def find_component(component, component_id):
    """The component with ``id`` in a tree (None when absent)."""
    if isinstance(component, list | tuple):
        for child in component:
            found = find_component(child, component_id)
            if found is not None:
                return found
        return None
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    return None if children is None else find_component(children, component_id)


#: outputs of update_overview by name (the callback returns a tuple)
