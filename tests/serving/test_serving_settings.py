"""Start-up validation: each bad value names its variable and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
from werkzeug.security import generate_password_hash

from config import SettingsError, is_loopback, load_settings, load_users_file
from tests.conftest import ROOT

SECRET = "k" * 40


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users"
    path.write_text(f"# lab members\nalice:{generate_password_hash('pw-alice-123')}\n")
    return path


def test_defaults_are_local_and_open():
    s = load_settings({})
    assert (s.auth_mode, s.host, s.redis_url, s.url_prefix) == (
        "none",
        "127.0.0.1",
        None,
        "/",
    )
    assert (s.workers, s.threads) == (3, 4)
    assert s.exposure_warning() is None


@pytest.mark.parametrize(
    ("env", "variable", "fix"),
    [
        ({"AUTH_MODE": "ldap"}, "AUTH_MODE", "basic"),
        ({"AUTH_MODE": "basic"}, "SECRET_KEY", "secrets.token_urlsafe"),
        ({"AUTH_MODE": "basic", "SECRET_KEY": "short"}, "SECRET_KEY", "at least 32"),
        ({"AUTH_MODE": "oidc"}, "SECRET_KEY", "Fix"),
        ({"AUTH_MODE": "basic", "SECRET_KEY": SECRET}, "AUTH_USERS_FILE", "add-user"),
        (
            {"AUTH_MODE": "basic", "SECRET_KEY": SECRET, "AUTH_USERS_FILE": "/nope"},
            "AUTH_USERS_FILE",
            "add-user",
        ),
        ({"AUTH_MODE": "oidc", "SECRET_KEY": SECRET}, "OIDC_", "identity provider"),
        (
            {
                "AUTH_MODE": "oidc",
                "SECRET_KEY": SECRET,
                "OIDC_SERVER_METADATA_URL": "http://idp/.well-known/openid-configuration",
                "OIDC_CLIENT_ID": "icb",
                "OIDC_CLIENT_SECRET": "x",
            },
            "OIDC_SERVER_METADATA_URL",
            "https",
        ),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL", "redis://"),
        ({"WORKERS": "0"}, "WORKERS", "between 1"),
        ({"WORKERS": "many"}, "WORKERS", "integer"),
        ({"THREADS": "-1"}, "THREADS", "between"),
        ({"TIMEOUT": "1"}, "TIMEOUT", "between 10"),
        ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB", "between 1"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "DEBUG"),
        ({"URL_PREFIX": "icb"}, "URL_PREFIX", "/icb/"),
        ({"DEFAULT_DATASET": "../etc"}, "DEFAULT_DATASET", "folder name"),
        ({"PORT": "70000"}, "PORT", "between 1 and 65535"),
    ],
)
def test_bad_values_name_variable_and_fix(env, variable, fix):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert variable in str(err.value)
    assert fix in str(err.value)
    assert "Fix" in str(err.value)


def test_basic_auth_settings(users_file):
    s = load_settings(
        {"AUTH_MODE": "basic", "SECRET_KEY": SECRET, "AUTH_USERS_FILE": str(users_file)}
    )
    assert s.auth_enabled and s.auth_users_file == users_file
    assert SECRET not in repr(s)  # secrets stay out of logs and tracebacks


def test_users_file_refuses_plain_passwords(tmp_path):
    plain = tmp_path / "users"
    plain.write_text("alice:hunter2\n")
    with pytest.raises(SettingsError, match=r"line 1.*never a plain password"):
        load_users_file(plain)
    twice = tmp_path / "twice"
    hashed = generate_password_hash("x" * 12)
    twice.write_text(f"bob:{hashed}\nbob:{hashed}\n")
    with pytest.raises(SettingsError, match="twice"):
        load_users_file(twice)
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n")
    with pytest.raises(SettingsError, match="no users"):
        load_users_file(empty)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("lab-server.example.org", False),
    ],
)
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_public_bind_without_auth_warns(users_file):
    open_ = load_settings({"HOST": "0.0.0.0"})
    assert "SECURITY WARNING" in open_.exposure_warning()
    assert "AUTH_MODE" in open_.exposure_warning()
    guarded = load_settings(
        {
            "HOST": "0.0.0.0",
            "AUTH_MODE": "basic",
            "SECRET_KEY": SECRET,
            "AUTH_USERS_FILE": str(users_file),
        }
    )
    assert guarded.exposure_warning() is None


def test_gunicorn_stops_on_bad_setting_with_message(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AUTH_MODE": "basic", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:server"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Configuration error: SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_gunicorn_config_values(monkeypatch):
    """The committed gunicorn.conf.py reads workers etc. from the environment."""
    import runpy

    monkeypatch.setenv("WORKERS", "5")
    monkeypatch.setenv("THREADS", "4")
    monkeypatch.setenv("TIMEOUT", "90")
    monkeypatch.setenv("MAX_REQUESTS", "500")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["workers"], conf["threads"], conf["timeout"]) == (5, 4, 90)
    assert conf["max_requests"] == 500 and 0 < conf["max_requests_jitter"] < 500
    assert conf["preload_app"] is False  # HDF5 files are opened after the fork
    assert "%(q)s" not in conf["access_log_format"]  # no query strings in logs
    assert "%(r)s" not in conf["access_log_format"]
    assert "%(f)s" not in conf["access_log_format"]


def test_gunicorn_warns_loudly_on_public_bind_without_auth(monkeypatch, caplog):
    """The banner is logged by gunicorn's master at start (no socket opened here)."""
    import logging
    import runpy

    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("AUTH_MODE", "none")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        conf["on_starting"](None)
    text = caplog.text
    assert "SECURITY WARNING" in text and "0.0.0.0" in text and "*" * 40 in text
    monkeypatch.setenv("HOST", "127.0.0.1")
    caplog.clear()
    quiet = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    quiet["on_starting"](None)
    assert "SECURITY WARNING" not in caplog.text
