"""AUTH_MODE=oidc under gunicorn: without a session nothing is served but the probes.

No identity provider is reachable here, so this checks the refusing half only: pages
send the visitor to the provider's login route, callbacks and layouts give no data.
"""

from __future__ import annotations

import pytest
import requests

from tests.serving.servers import gunicorn, post_callback

pytestmark = pytest.mark.slow


def test_oidc_refuses_without_session(tmp_path, demo_dir):
    with gunicorn(
        tmp_path,
        workers=1,
        prefix="/icb/",
        AUTH_MODE="oidc",
        SECRET_KEY="o" * 40,
        # a closed loopback port: the provider is never reached in this test
        OIDC_SERVER_METADATA_URL="https://127.0.0.1:9/.well-known/openid-configuration",
        OIDC_CLIENT_ID="icb-test",
        OIDC_CLIENT_SECRET="not-a-secret",
    ) as (base, _proc, _log):
        assert requests.get(base + "healthz", timeout=30).status_code == 200
        for path in ("", "_dash-layout", "_dash-dependencies", "nk-response"):
            response = requests.get(base + path, timeout=30, allow_redirects=False)
            assert response.status_code in (302, 500), (path, response.status_code)
            assert "shell-filter" not in response.text
        # auth runs before Dash reads the body: the overview's trigger is enough
        payload = {
            "output": "overview-patients.children",
            "outputs": {"id": "overview-patients", "property": "children"},
            "inputs": [
                {"id": "shell-filter", "property": "data", "value": {"dataset": "demo"}}
            ],
            "changedPropIds": ["shell-filter.data"],
            "state": [],
        }
        with requests.Session() as session:
            refused = post_callback(session, base, payload, allow_redirects=False)
        assert refused.status_code in (302, 500)
        assert "rowData" not in refused.text
