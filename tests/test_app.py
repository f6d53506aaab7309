"""The Flask side of the app: health endpoint and pages served."""

from __future__ import annotations


def test_healthz_lists_datasets(demo_dir):
    import app

    response = app.server.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert "demo" in response.json["datasets"]


def test_pages_registered_have_no_placeholders():
    import dash

    import app  # noqa: F401

    paths = {p["path"] for p in dash.page_registry.values()}
    assert "/" in paths


def test_settings_reject_bad_port():
    import pytest

    from config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="PORT"):
        load_settings({"PORT": "eighty"})
