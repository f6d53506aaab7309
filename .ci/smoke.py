"""Smoke test of a running app, as a browser meets it: every page and its callbacks.

Run against a server started the README's way (`make run` or `make serve`), from a
venv that has the runtime requirements only; it uses the standard library alone:

    python .ci/smoke.py http://127.0.0.1:8050 [TIMEOUT_S [SERVER_PID]]

For every page in the navigation (and an unknown path, which must give the 404 page)
it fetches the HTML, asks Dash's page router for the layout exactly as the browser
does, resolves the global filter through the sidebar callback, then POSTs every
server-side callback of the page that the filter drives, with the property values of
the page's own layout. Fails (exit 1) on any HTTP error, a callback answered with the
app's error alert, or a page whose callbacks produced nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

FILTER = "shell-filter"
ERROR_ALERT = "shell-error"
ROUTER_OUTPUT = "_pages_content.children"


def _request(url: str, body: dict | None = None, timeout: float = 120) -> tuple:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept-Encoding": "identity"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(base: str, timeout: float, pid: int | None = None) -> None:
    """Poll /healthz until it answers; fail at once when the server process ``pid``
    has exited (a crash at start-up must not wait out the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise SystemExit(
                    f"FAIL: the server (pid {pid}) exited before {base} answered"
                ) from None
        try:
            status, _ = _request(f"{base}/healthz", timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: {base}/healthz did not answer within {timeout} s")
        time.sleep(0.5)


def _id_key(component_id: object) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return str(component_id)


def _outputs(spec: str) -> list[dict]:
    parts = spec.strip(".").split("...") if spec.startswith("..") else [spec]
    result = []
    for part in parts:
        component_id, prop = part.rsplit(".", 1)
        if component_id.startswith("{"):
            component_id = json.loads(component_id)
        result.append({"id": component_id, "property": prop})
    return result


def _layout_values(node: object, values: dict) -> dict:
    """(id key, prop) -> value for every component with an id in layout JSON."""
    if isinstance(node, list):
        for child in node:
            _layout_values(child, values)
    elif isinstance(node, dict) and "props" in node and "type" in node:
        props = node["props"]
        if "id" in props:
            key = _id_key(props["id"])
            for prop, value in props.items():
                values[(key, prop)] = value
        for value in props.values():
            if isinstance(value, dict | list):
                _layout_values(value, values)
    return values


def _payload(dep: dict, values: dict, changed: str | None = None) -> dict:
    def items(specs: list[dict]) -> list[dict]:
        return [
            {
                "id": s["id"],
                "property": s["property"],
                "value": values.get((_id_key(s["id"]), s["property"])),
            }
            for s in specs
        ]

    outputs = _outputs(dep["output"])
    first = dep["inputs"][0]
    return {
        "output": dep["output"],
        "outputs": outputs if dep["output"].startswith("..") else outputs[0],
        "inputs": items(dep["inputs"]),
        "changedPropIds": [changed or f"{_id_key(first['id'])}.{first['property']}"],
        "state": items(dep.get("state", [])),
    }


def _call(base: str, dep: dict, values: dict, changed: str | None = None) -> dict:
    status, body = _request(
        f"{base}/_dash-update-component", _payload(dep, values, changed)
    )
    if status == 204:  # PreventUpdate: nothing to check
        return {}
    if status != 200:
        raise AssertionError(f"HTTP {status} for {dep['output'][:80]}: {body[:300]!r}")
    answer = json.loads(body)
    side = answer.get("sideUpdate", {}).get(ERROR_ALERT, {})
    if side.get("is_open"):
        raise AssertionError(
            f"callback {dep['output'][:80]} showed the error alert: {side}"
        )
    return answer.get("response", {})


def _find(deps: list[dict], output: str) -> dict:
    for dep in deps:
        if output in dep["output"].strip(".").split("..."):
            return dep
    raise AssertionError(f"no callback outputs {output}")


def check_page(
    base: str, deps: list[dict], path: str, shell: dict, datasets: list[str]
) -> int:
    """Fetch one page and run its filter-driven callbacks; number of callbacks run."""
    status, html = _request(f"{base}{path}")
    assert status == 200, f"GET {path}: HTTP {status}"
    assert b"ICB Cohort Explorer" in html, f"GET {path}: not the app's page"
    router = _find(deps, ROUTER_OUTPUT)
    location = {
        ("_pages_location", "pathname"): path,
        ("_pages_location", "search"): "",
        ("_pages_location", "hash"): "",
        ("_pages_location", "href"): f"{base}{path}",
    }
    response = _call(base, router, location)
    layout = response.get("_pages_content", {}).get("children")
    assert layout, f"{path}: the page router returned no layout"
    text = json.dumps(layout)
    assert "Something went wrong" not in text, f"{path}: layout shows an error"
    if path == "/data":  # its layout is the dataset list (callbacks need an upload)
        missing = [name for name in datasets if name not in text]
        assert not missing, f"/data does not list dataset(s) {missing}"
    values = _layout_values(layout, dict(shell))
    page_ids = {key for key, _prop in values if (key, _prop) not in shell}
    ran = 0
    for dep in deps:
        if dep.get("clientside_function") or dep.get("background"):
            continue
        inputs = {_id_key(i["id"]) for i in dep["inputs"]}
        outputs = {_id_key(o["id"]) for o in _outputs(dep["output"])}
        if FILTER in inputs and outputs <= page_ids:
            _call(base, dep, values, changed=f"{FILTER}.data")
            ran += 1
    return ran


def main(argv: list[str]) -> int:
    base = (argv[1] if len(argv) > 1 else "http://127.0.0.1:8050").rstrip("/")
    timeout = float(argv[2]) if len(argv) > 2 else 180
    wait_ready(base, timeout, pid=int(argv[3]) if len(argv) > 3 else None)
    status, health = _request(f"{base}/healthz")
    datasets = json.loads(health)["datasets"]
    assert datasets, "/healthz lists no dataset"
    status, body = _request(f"{base}/_dash-layout")
    assert status == 200, f"/_dash-layout: HTTP {status}"
    shell_layout = json.loads(body)
    shell = _layout_values(shell_layout, {})
    paths = shell[("shell-nav-paths", "data")]
    status, body = _request(f"{base}/_dash-dependencies")
    deps = json.loads(body)
    # the sidebar resolves the (empty) query into the global filter, as on page load
    sidebar = _find(deps, f"{FILTER}.data")
    answer = _call(base, sidebar, {("shell-url", "search"): ""}, "shell-url.search")
    shell[(FILTER, "data")] = answer[FILTER]["data"]
    failures = []
    for path in [*paths, "/no-such-page"]:
        try:
            ran = check_page(base, deps, path, shell, datasets)
        except AssertionError as err:
            failures.append(f"{path}: {err}")
            print(f"FAIL {path}: {err}")
            continue
        print(f"ok   {path}: page served, {ran} filter-driven callback(s) answered")
        if path == "/data":
            print(f"ok   /data lists every dataset of /healthz: {datasets}")
        if ran == 0 and path in ("/", "/nk-response", "/cd8-states"):
            failures.append(f"{path}: no callback ran")
    if failures:
        print(f"smoke test FAILED on {base}: {len(failures)} problem(s)")
        return 1
    print(f"smoke test passed on {base}: {len(paths) + 1} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
