"""ICB Cohort Explorer: the Dash app shell.

Holds the navigation, the global filter sidebar and the page container; pages live in
``pages/`` and register themselves. ``server`` is the Flask app for
``gunicorn app:server``. No data is loaded here: pages ask ``data/`` per request.
"""

from __future__ import annotations

import logging
import os

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask import jsonify

import figures  # noqa: F401  (registers the shared plotly template)
from components import ids
from components.auth import install_auth
from components.background import get_background_manager
from components.cache import init_cache
from components.errors import handle_callback_error
from components.export_menu import export_all_panel
from components.filter_panel import filter_panel
from components.health import install_readiness
from components.security import install_security
from config import get_settings
from data.registry import list_datasets

APP_VERSION = "0.1.0"
log = logging.getLogger("icb")


def _nav_pages() -> list[dict]:
    return [p for p in dash.page_registry.values() if p.get("nav", True)]


def shell_layout() -> html.Div:
    """Navigation bar, sidebar with global filters, and the current page."""
    pages = _nav_pages()
    nav = dbc.Nav(
        [
            dbc.NavItem(
                dbc.NavLink(
                    page["name"],
                    id={"type": "nav-link", "path": page["relative_path"]},
                    href=page["relative_path"],
                    active="exact",
                )
            )
            for page in pages
        ],
        pills=True,
        className="shell-nav",
    )
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh="callback-nav"),
            dcc.Store(id=ids.FILTER_STORE),
            dcc.Store(id=ids.URL_SYNC),
            dcc.Store(id=ids.NAV_PATHS, data=[p["relative_path"] for p in pages]),
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand("ICB Cohort Explorer", className="fw-bold"),
                        nav,
                    ],
                    fluid=True,
                ),
                color="light",
                dark=False,  # dbc's default (dark) makes the links white on white
                className="shell-navbar border-bottom mb-3",
            ),
            dbc.Container(
                [
                    dbc.Alert(
                        id=ids.ERROR_ALERT,
                        is_open=False,
                        dismissable=True,
                        color="danger",
                        className="mb-3",
                    ),
                    # filter values of an opened link that the sidebar could not
                    # honour, named with what is shown instead (components.filter_panel)
                    html.Div(id=ids.LINK_NOTICE),
                    dbc.Row(
                        [
                            dbc.Col(
                                [filter_panel(), export_all_panel()],
                                md=3,
                                lg=2,
                                className="shell-sidebar",
                            ),
                            dbc.Col(dash.page_container, md=9, lg=10),
                        ]
                    ),
                ],
                fluid=True,
            ),
        ]
    )


def create_app() -> dash.Dash:
    """Build the Dash app (pages are imported from ``pages/``)."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder="pages",
        title="ICB Cohort Explorer",
        update_title=None,
        # Bootstrap 5.3.8 CSS is served from assets/ (the lab server may be offline).
        suppress_callback_exceptions=True,
        compress=True,
        on_error=handle_callback_error,
        url_base_pathname=settings.url_prefix,
        # diskcache locally, Celery + Redis when REDIS_URL is set
        background_callback_manager=get_background_manager(),
    )
    app.layout = shell_layout
    # Brotli quality 0 instead of Flask-Compress's 4: a 10^6-cell UMAP answer (7 MB of
    # typed arrays) compresses to 4.8 MB in 28 ms; quality 1 gave 4.6 MB in 42 ms and
    # quality 4 ~100 ms (measured in-process; README, "Performance").
    app.server.config["COMPRESS_BR_LEVEL"] = 0

    @app.server.route(f"{settings.url_prefix}healthz")
    def healthz():
        """Liveness: the process serves requests; lists the dataset names."""
        names = [e.name for e in list_datasets(get_settings().data_dir)]
        return jsonify({"status": "ok", "version": APP_VERSION, "datasets": names})

    # serving on a shared server: readiness probe, headers and error pages, the
    # shared cache, and access control last (it guards every route above)
    install_readiness(app)
    install_security(app, settings)
    init_cache(app.server, settings)
    install_auth(app, settings)
    if warning := settings.exposure_warning():
        log.warning(warning)
    return app


app = create_app()
server = app.server


def warm_up_worker() -> float:
    """Finish start-up in a fresh gunicorn worker before it serves; seconds taken.

    Dash completes its set-up (copying the pages' callbacks into the app) on the
    first request, and not thread-safely: it marks the set-up done before copying,
    so a second thread's first request can find no callback ("Callback function not
    found", HTTP 500; seen with gthread workers under concurrent first requests).
    One request here, before the worker's threads start, does it once. Then the
    default dataset is read into this worker's caches, and the statistics libraries
    are imported in the background while the worker already serves.
    """
    from components.health import preload_statistics, warm_up

    server.test_client().get(f"{get_settings().url_prefix}healthz")
    seconds = warm_up()
    preload_statistics()
    return seconds


if __name__ == "__main__":
    settings = get_settings()
    app.run(
        host=os.environ.get("HOST", settings.host),
        port=int(os.environ.get("PORT", settings.port)),
        debug=False,
    )
