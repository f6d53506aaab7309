"""AUTH_MODE=basic under gunicorn behind a path prefix: every route but the health
probes refuses without credentials, and everything works with them."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
import requests
from werkzeug.routing import Rule

from tests.conftest import ROOT
from tests.serving.servers import callback_payload, gunicorn, post_callback

pytestmark = pytest.mark.slow

PREFIX = "/icb/"
SECRET = "s" * 48
USER, PASSWORD = "alice", "correct horse battery staple"


def _app_paths() -> list[tuple[str, str]]:
    """(method, path) of every Flask route of the app, with sample arguments.

    Taken from the app itself, so routes added later (downloads, exports) are
    checked too.
    """
    import app

    out = []
    for rule in app.server.url_map.iter_rules():
        assert isinstance(rule, Rule)
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"x\1", rule.rule)
        method = (
            "POST" if "POST" in rule.methods and "GET" not in rule.methods else "GET"
        )
        out.append((method, path))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_dir):
    tmp = tmp_path_factory.mktemp("auth")
    users = tmp / "users"
    # the users file is made with the CLI an admin would use
    done = subprocess.run(
        [sys.executable, "cli.py", "add-user", str(users), USER, "--password-stdin"],
        input=PASSWORD + "\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in users.read_text()
    with gunicorn(
        tmp,
        workers=2,
        prefix=PREFIX,
        AUTH_MODE="basic",
        AUTH_USERS_FILE=str(users),
        SECRET_KEY=SECRET,
    ) as (base, _proc, _log):
        yield base


def test_every_route_refuses_without_credentials(server):
    origin = server.removesuffix(PREFIX)
    checked = 0
    for method, path in _app_paths():
        if path.rstrip("/").endswith(("healthz", "readyz")):
            continue
        url = origin + PREFIX.rstrip("/") + path if path.startswith("/") else path
        response = requests.request(method, url, timeout=30)
        assert response.status_code == 401, (method, path, response.status_code)
        assert "Basic" in response.headers.get("WWW-Authenticate", "")
        assert "patient" not in response.text.lower()
        checked += 1
    for path in ("", "_dash-layout", "_dash-dependencies", "assets/icb.js", "nk"):
        assert requests.get(server + path, timeout=30).status_code == 401, path
    assert checked >= 5


def test_callbacks_and_downloads_refuse_without_credentials(server):
    auth = (USER, PASSWORD)
    payload = callback_payload(
        server, "overview-patients.", [{"dataset": "demo"}], auth=auth
    )
    with requests.Session() as session:
        refused = post_callback(session, server, payload)
        assert refused.status_code == 401
        assert "rowData" not in refused.text
        wrong = post_callback(session, server, payload, auth=(USER, "guess"))
        assert wrong.status_code == 401
        nobody = post_callback(session, server, payload, auth=("mallory", PASSWORD))
        assert nobody.status_code == 401
        garbled = post_callback(
            session, server, payload, headers={"Authorization": "Bearer abc"}
        )
        assert garbled.status_code in (401, 415)  # refused either way, never a 500
    # downloads (dcc.Download) travel in callback responses: every callback whose
    # output is a download component is refused too
    deps = requests.get(server + "_dash-dependencies", auth=auth, timeout=30).json()
    for dep in deps:
        if "download" in dep["output"].lower():
            body = {**payload, "output": dep["output"], "outputs": []}
            response = requests.post(
                server + "_dash-update-component", json=body, timeout=30
            )
            assert response.status_code == 401, dep["output"]


def test_works_with_credentials(server, demo_dir):
    auth = (USER, PASSWORD)
    page = requests.get(server, auth=auth, timeout=30)
    assert page.status_code == 200
    assert f'"url_base_pathname": "{PREFIX}"' in page.text.replace("'", '"') or (
        PREFIX + "_dash-component-suites" in page.text
    )
    assert requests.get(server + "_dash-layout", auth=auth, timeout=30).ok
    payload = callback_payload(
        server,
        "overview-patients.",
        [{"dataset": "demo", "tumor_type": ["melanoma"]}],
        auth=auth,
    )
    with requests.Session() as session:
        response = post_callback(session, server, payload, auth=auth)
    assert response.status_code == 200
    cohort = pd.read_csv(demo_dir / "cohort.csv")
    melanoma = cohort[cohort["tumor_type"] == "melanoma"]
    expected = len(melanoma[["cohort", "patient_id"]].drop_duplicates())
    assert (
        response.json()["response"]["overview-patients"]["children"] == f"{expected:,}"
    )


def test_probes_stay_open(server):
    assert requests.get(server + "healthz", timeout=30).json()["status"] == "ok"
    ready = requests.get(server + "readyz", timeout=60)
    assert ready.status_code == 200
    assert ready.json()["default_dataset"]["status"] == "ok"


@pytest.mark.browser
def test_app_renders_in_chromium_with_credentials_behind_prefix(server, demo_dir):
    """Chromium, sending the Authorization header as a browser does after the login
    prompt, gets the whole app (scripts, layout, callbacks) under /icb/."""
    import base64

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1400,1000", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options)
    try:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders",
            {"headers": {"Authorization": f"Basic {token}"}},
        )
        driver.get(server + "?tumor_type=RCC")
        cohort = pd.read_csv(demo_dir / "cohort.csv")
        rcc = cohort[cohort["tumor_type"] == "RCC"]
        expected = f"{len(rcc[['cohort', 'patient_id']].drop_duplicates()):,}"
        WebDriverWait(driver, 60).until(
            ec.text_to_be_present_in_element((By.ID, "overview-patients"), expected)
        )
        assert driver.current_url.startswith(server)
    finally:
        driver.quit()
