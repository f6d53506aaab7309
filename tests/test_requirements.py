"""requirements.txt alone must run the app: every distribution the app imports at
start-up is in the dependency closure of requirements.txt (not only of the dev
requirements). `make run` once crashed on a fresh machine because DiskcacheManager
needs `multiprocess`, which only `dash[testing]` from requirements-dev.txt brought in.
.ci/run also proves it end to end (a runtime-only venv serving every page)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def runtime_closure(path: Path = ROOT / "requirements.txt") -> set[str]:
    """Canonical names of the distributions requirements.txt installs, transitively,
    with the extras it asks for (markers evaluated for this interpreter)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in _requirements(path)]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        names.add(canonicalize_name(name))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return names


def _distributions_imported_by_app() -> set[str]:
    code = (
        "import sys, app, components.background as b; b.get_background_manager(); "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    owners = metadata.packages_distributions()
    return {canonicalize_name(d) for mod in out for d in owners.get(mod, [])}


def test_closure_follows_extras():
    # hand check: dash's diskcache extra is what brings multiprocess
    closure = runtime_closure()
    assert "multiprocess" in closure
    assert "pytest" not in closure  # a test tool never sneaks into the runtime set


def test_every_distribution_the_app_imports_is_a_runtime_requirement():
    missing = _distributions_imported_by_app() - runtime_closure()
    assert not missing, (
        f"the app imports {sorted(missing)} at start-up, but requirements.txt does not "
        "install them (only the dev requirements do): add them to requirements.txt"
    )
