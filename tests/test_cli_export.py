"""`cli.py export` re-renders an export-all zip from its settings.json, headless."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import pytest

from figures import export
from figures.export import ExportSettings, read_provenance
from tests.conftest import DATA_DIR, ROOT

needs_browser = pytest.mark.skipif(
    export.browser_path() is None, reason="Chromium is not installed"
)


def _run(*args: str):
    return subprocess.run(
        [sys.executable, "cli.py", "--data-dir", str(DATA_DIR), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_browser
def test_export_all_zip_round_trips_through_the_cli(tmp_path, demo_bundle):
    from data.view import cohort_view
    from figures.reports import PAGE_BUILDERS

    flt = {"dataset": "demo", "tumor_type": ["melanoma", "NSCLC"]}
    view = cohort_view(flt, data_dir=DATA_DIR, default_dataset="demo")
    pages = {"overview": {}}
    if "nk-response" in PAGE_BUILDERS:
        pages["nk-response"] = {"metric": "nk_over_nk_cd8", "definition": "benefit"}
    document = export.settings_document(
        filter_state=flt,
        pages=pages,
        export=ExportSettings(format="pdf", preset="single"),
        dataset="demo",
    )
    archive = zipfile.ZipFile(io.BytesIO(export.export_zip(view, document)))
    (tmp_path / "settings.json").write_bytes(archive.read("settings.json"))

    out = tmp_path / "again"
    result = _run(
        "export", "--settings", str(tmp_path / "settings.json"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(archive.namelist())
    figures = [n for n in archive.namelist() if n.endswith(".pdf")]
    assert "overview/composition.pdf" in figures
    for name in archive.namelist():
        if name.endswith(".csv"):
            # the data behind each figure is identical to the last digit
            assert (out / name).read_bytes() == archive.read(name), name
    for name in figures:
        first = read_provenance(archive.read(name), "pdf")
        again = read_provenance((out / name).read_bytes(), "pdf")
        assert again["figure_sha256"] == first["figure_sha256"], name
        assert again["filters"] == "tumor type: melanoma, NSCLC"
        assert (out / name).read_bytes().startswith(b"%PDF")
    assert json.loads((out / "settings.json").read_text())["pages"] == pages


def test_export_cli_rejects_bad_settings_readably(tmp_path):
    bad = tmp_path / "settings.json"
    bad.write_text("{not json")
    result = _run("export", "--settings", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "settings.json" in result.stderr and "Traceback" not in result.stderr

    bad.write_text(json.dumps({"filter": {}, "pages": {"../../etc": {}}, "export": {}}))
    result = _run("export", "--settings", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "unknown page" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()
