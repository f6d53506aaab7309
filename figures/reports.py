"""Which panels each page shows, built without Dash (used by pages, export and CLI).

Each builder takes a :class:`data.view.CohortView` and the page's control state (the
same keys the page keeps in its URL) and returns a list of :class:`figures.panel.Panel`.
Builders are imported lazily so the CLI loads only what it renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from figures.panel import Panel

#: page id -> "module:function"
PAGE_BUILDERS: dict[str, str] = {
    "overview": "figures.overview:overview_panels",
    "nk-response": "figures.nk:nk_panels",
    "cd8-states": "figures.cd8:cd8_panels",
    "mechanism": "figures.mechanism:mechanism_panels",
    "compare": "figures.de:de_panels",
    # issue 17: pooled NK vs response across datasets (state carries "datasets")
    "evidence": "figures.evidence:evidence_panels",
}


def build_panels(
    page: str, view, state: Mapping[str, object] | None = None
) -> list[Panel]:
    """Panels of ``page`` for ``view`` and the page ``state``."""
    if page not in PAGE_BUILDERS:
        raise ValueError(f"unknown page {page!r}; pages: {', '.join(PAGE_BUILDERS)}")
    module, function = PAGE_BUILDERS[page].split(":")
    return getattr(import_module(module), function)(view, dict(state or {}))
