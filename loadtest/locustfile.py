"""Simulated lab members for ``make loadtest`` (locust, in its own venv .venv-load).

Each user behaves like a browser tab: it loads the shell and one page (layout from
the server), then fires the same callbacks the Dash renderer would, with the values
the layout and earlier responses gave it. The callbacks are found in the app's own
``_dash-dependencies``, so the scenarios follow the pages as they change.

Scenarios (request names start with them):

* ``filter``  - a sidebar filter changes -> sidebar sync -> every page callback
* ``nk``      - NK page: metric / response definition / timepoint / split change
* ``umap``    - CD8 page: recolour the UMAP (state, gene, gate, ...)
* ``gate``    - CD8 page: edit a gate threshold -> gate -> UMAP and gate panels
* ``export``  - one figure export (PNG) per user and minute
* ``load``    - page loads (layout, routing, initial callbacks)

Add a scenario: write a task that calls ``self.change(component_id, prop, value,
scenario)``; the renderer below fires whatever depends on it. Only loopback hosts
are accepted, and each user stops after ``LOAD_MAX_TASKS`` tasks.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from urllib.parse import urlparse

from locust import HttpUser, between, events, task
from locust.exception import StopUser

PAGES = {"overview": "/", "nk": "/nk-response", "cd8": "/cd8-states"}
MAX_TASKS = int(os.environ.get("LOAD_MAX_TASKS", "60"))
PREFIX = os.environ.get("URL_PREFIX") or "/"
# think time between a user's actions (s): a person reads a figure before the next click
WAIT = tuple(float(x) for x in os.environ.get("LOAD_WAIT", "5 15").split())
CHAIN_DEPTH = 4
_USER_NUMBER = itertools.count()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@events.init.add_listener
def _loopback_only(environment, **_kwargs) -> None:
    host = urlparse(environment.host or "").hostname
    if host not in LOOPBACK:
        raise SystemExit(f"load tests target loopback only, not {host!r}")


# Every request's time once all users run (the statistics window): run.py computes
# exact percentiles over groups of request types (e.g. everything but exports).
TIMES_FILE = os.environ.get("LOAD_TIMES_FILE")
_times: list[tuple[str, float]] = []


@events.request.add_listener
def _record(name, response_time, exception=None, **kwargs) -> None:
    if TIMES_FILE and _counting["on"] and exception is None:
        _times.append((name, response_time))


_counting = {"on": os.environ.get("LOAD_KEEP_RAMP_UP") == "1"}


@events.spawning_complete.add_listener
def _start_counting(**_kwargs) -> None:
    _counting["on"] = True


@events.quitting.add_listener
def _write_times(**_kwargs) -> None:
    if TIMES_FILE:
        with open(TIMES_FILE, "w") as handle:
            handle.writelines(f"{ms:.1f}\t{name}\n" for name, ms in _times)


def _key(cid) -> str:
    """Dash's string form of a component id (dict ids: sorted compact JSON)."""
    if isinstance(cid, dict):
        return json.dumps(cid, sort_keys=True, separators=(",", ":"))
    return cid


def _parse_id(raw):
    if isinstance(raw, str) and raw.startswith("{"):
        return json.loads(raw)
    return raw


def _matches(pattern: dict, cid) -> bool:
    if not isinstance(cid, dict) or set(cid) != set(pattern):
        return False
    return all(isinstance(v, list) or cid[k] == v for k, v in pattern.items())


def _wild(pattern) -> str | None:
    if not isinstance(pattern, dict):
        return None
    for value in pattern.values():
        if isinstance(value, list):
            return value[0]
    return None


def _label(dep: dict) -> str:
    """Request name: the callback's first output (pattern ids by their type)."""
    raw, prop = dep["output"].strip(".").split("...")[0].rsplit(".", 1)
    cid = _parse_id(raw)
    return f"{cid.get('type', 'pattern') if isinstance(cid, dict) else cid}.{prop}"


class DashTab(HttpUser):
    """One browser tab on one page."""

    wait_time = between(*WAIT)

    # ------------------------------------------------------------ renderer model
    def on_start(self) -> None:
        self.tasks_done = 0
        self.components: dict[str, dict] = {}
        # users take the pages in turn, so every page gets a third of them
        self.page = list(PAGES)[next(_USER_NUMBER) % len(PAGES)]
        self.next_export = time.monotonic() + random.uniform(5, 60)
        deps = self.client.get(
            f"{PREFIX}_dash-dependencies", name="load: dependencies"
        ).json()
        self.callbacks = [d for d in deps if not d.get("clientside_function")]
        self._harvest(
            self.client.get(f"{PREFIX}_dash-layout", name="load: layout").json(),
            force=True,
        )
        path = PAGES[self.page]
        self._set("_pages_location", "pathname", path)
        self._set("_pages_location", "search", "")
        self._set("shell-url", "search", "")
        self._set("shell-url", "pathname", path)
        self.change("_pages_location", "pathname", path, "load")
        self.change("shell-url", "search", "", "load")

    def _set(self, cid, prop, value) -> None:
        self.components.setdefault(_key(cid), {"id": cid, "props": {}})["props"][
            prop
        ] = value

    def _get(self, cid, prop):
        return self.components.get(_key(cid), {}).get("props", {}).get(prop)

    def _harvest(self, node, force: bool = False) -> None:
        """Record every component (id and props) in a layout fragment."""
        if isinstance(node, list):
            for item in node:
                self._harvest(item)
        elif isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and "type" in node:
                if "id" in props:
                    entry = self.components.setdefault(
                        _key(props["id"]), {"id": props["id"], "props": {}}
                    )
                    entry["props"].update(
                        {k: v for k, v in props.items() if k != "children"}
                    )
                for value in props.values():
                    self._harvest(value)
            elif force:
                for value in node.values():
                    self._harvest(value)

    def _resolve(self, item: dict, match: dict | None):
        """Request entry for one dependency item: value(s) from the tab's state."""
        pattern = _parse_id(item["id"])
        prop = item["property"]
        wild = _wild(pattern)
        if wild is None:
            return {"id": pattern, "property": prop, "value": self._get(pattern, prop)}
        if wild == "MATCH" and match is not None:
            cid = {
                k: (match[k] if isinstance(v, list) else v) for k, v in pattern.items()
            }
            return {"id": cid, "property": prop, "value": self._get(cid, prop)}
        found = [
            c["id"] for c in self.components.values() if _matches(pattern, c["id"])
        ]
        return [{"id": c, "property": prop, "value": self._get(c, prop)} for c in found]

    def _present(self, dep: dict, match: dict | None) -> bool:
        """A callback runs only when its outputs are on the page."""
        for part in dep["output"].strip(".").split("..."):
            raw, _prop = part.rsplit(".", 1)
            pattern = _parse_id(raw)
            if _wild(pattern) is None:
                if _key(pattern) in self.components:
                    return True
            elif any(_matches(pattern, c["id"]) for c in self.components.values()):
                return True
        return False

    def change(
        self, cid, prop, value, scenario: str, depth: int = 0, source=None
    ) -> None:
        """Set ``cid.prop`` and fire every callback that depends on it (chained)."""
        self._set(cid, prop, value)
        if depth > CHAIN_DEPTH:
            return
        for dep in self.callbacks:
            if dep is source:
                continue  # Dash never re-fires a callback from its own outputs
            trigger = None
            for item in dep["inputs"]:
                pattern = _parse_id(item["id"])
                if item["property"] != prop:
                    continue
                if pattern == cid or (
                    isinstance(pattern, dict) and _matches(pattern, cid)
                ):
                    trigger = item
                    break
            if trigger is None:
                continue
            match = cid if isinstance(cid, dict) else None
            if not self._present(dep, match):
                continue
            self._fire(dep, cid, prop, match, scenario, depth)

    def _fire(self, dep, cid, prop, match, scenario, depth) -> None:
        multi = dep["output"].startswith("..")
        outputs = []
        for part in dep["output"].strip(".").split("..."):
            raw, out_prop = part.rsplit(".", 1)
            outputs.append(self._resolve({"id": raw, "property": out_prop}, match))
        body = {
            "output": dep["output"],
            "outputs": outputs if multi else outputs[0],
            "inputs": [self._resolve(i, match) for i in dep["inputs"]],
            "changedPropIds": [f"{_key(cid)}.{prop}"],
            "state": [self._resolve(s, match) for s in dep["state"]],
        }
        name = f"{scenario}: {_label(dep)}"
        with self.client.post(
            f"{PREFIX}_dash-update-component",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code == 204:
                response.success()  # PreventUpdate: nothing to change
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            try:
                result = response.json().get("response", {})
            except ValueError:
                response.failure("not JSON")
                return
            if "error" in response.text[:200] and "response" not in response.text[:50]:
                response.failure(response.text[:200])
                return
            response.success()
        changed = []
        for out_key, props in result.items():
            out_id = _parse_id(out_key)
            for out_prop, value in props.items():
                if isinstance(value, dict) and "__dash_patch_update" in value:
                    continue  # a Patch: the browser merges it into the figure
                if self._get(out_id, out_prop) != value:
                    changed.append((out_id, out_prop, value))
                self._set(out_id, out_prop, value)
                self._harvest(value)
        for out_id, out_prop, value in changed:
            self.change(out_id, out_prop, value, scenario, depth + 1, source=dep)

    # ------------------------------------------------------------------- tasks
    def _count(self) -> None:
        self.tasks_done += 1
        if self.tasks_done > MAX_TASKS:
            raise StopUser()

    def _options(self, cid, prop="options") -> list:
        options = self._get(cid, prop) or []
        return [o["value"] if isinstance(o, dict) else o for o in options]

    @task(3)
    def filter_change(self) -> None:
        self._count()
        field = random.choice(["tumor_type", "treatment", "cohort", "response"])
        dropdown = f"shell-filter-{field}"
        values = self._options(dropdown)
        if not values:
            return
        chosen = random.sample(values, k=random.randint(0, min(2, len(values))))
        self.change(dropdown, "value", chosen, "filter")

    @task(3)
    def page_update(self) -> None:
        self._count()
        if self.page == "nk":
            control = random.choice(["metric", "definition", "timepoint", "split"])
            cid = f"nk-response-{control}"
            values = self._options(cid)
            if values:
                self.change(cid, "value", random.choice(values), "nk")
        elif self.page == "cd8":
            values = self._options("cd8-states-color")
            if values:
                self.change("cd8-states-color", "value", random.choice(values), "umap")
        else:
            self.filter_change()

    @task(2)
    def gate_edit(self) -> None:
        if self.page != "cd8":
            return
        self._count()
        rows = [
            c["id"]
            for c in self.components.values()
            if isinstance(c["id"], dict)
            and c["id"].get("type") == "cd8-states-threshold"
        ]
        if not rows:
            return
        row = random.choice(rows)
        value = round(random.uniform(0.0, 2.0), 2)
        self.change(row, "value", value, "gate")

    @task(1)
    def export_figure(self) -> None:
        if time.monotonic() < self.next_export:
            return
        self._count()
        self.next_export = time.monotonic() + 60  # one export per user and minute
        buttons = [
            c["id"]
            for c in self.components.values()
            if isinstance(c["id"], dict) and c["id"].get("type") == "export-go"
        ]
        if buttons:
            button = random.choice(buttons)
            clicks = (self._get(button, "n_clicks") or 0) + 1
            self.change(button, "n_clicks", clicks, "export")
