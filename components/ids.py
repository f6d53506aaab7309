"""Component ids of the app shell (pages prefix their own ids with the page name)."""

from __future__ import annotations

from data import schema

URL = "shell-url"
FILTER_STORE = "shell-filter"
URL_SYNC = "shell-url-sync"
NAV_PATHS = "shell-nav-paths"
DATASET = "shell-filter-dataset"
DATASET_INFO = "shell-dataset-info"
ERROR_ALERT = "shell-error"
#: Where the shell says which values of an opened link it could not honour.
LINK_NOTICE = "shell-link-notice"
LINK_NOTICE_ALERT = "shell-link-notice-alert"


def filter_dropdown(field: str) -> str:
    """Id of the sidebar dropdown for one cohort field."""
    return f"shell-filter-{field}"


FIELD_DROPDOWNS = [filter_dropdown(f) for f in schema.FILTER_FIELDS]


def page_state(page: str) -> dict[str, str]:
    """Id of a page's ``dcc.Store`` holding its control state.

    Every page keeps the state its panel builder takes (the keys it also writes to
    the URL) in this store, so exports and the CLI can rebuild its figures.
    """
    return {"type": "page-state", "page": page}
