"""`cli.py validate` accepts the demo, rejects bad bundles with located messages."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, small_cohort


def _run(*args: str):
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_demo_ok(demo_dir):
    result = _run("validate", str(demo_dir))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_bad_bundle_exits_1_with_location(bundle_factory):
    cohort = small_cohort()
    cohort.loc[6, "recist"] = "Responder"
    result = _run("validate", str(bundle_factory(cohort)))
    assert result.returncode == 1
    assert "cohort.csv, column `recist`, row 8" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_hostile_name_refused(tmp_path):
    result = _run("--data-dir", str(tmp_path), "validate", "../../etc")
    assert result.returncode == 1
    assert "not a valid dataset name" in result.stderr
    assert "Traceback" not in result.stderr
