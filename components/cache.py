"""A cache shared by the gunicorn workers: filesystem by default, Redis with REDIS_URL.

What pays off: a page's panels (figures + tables) for one dataset version, filter and
page state. They take 0.05-0.1 s (overview) to 0.2-0.3 s (NK vs response) to build on
the demo data and are the same for every lab member looking at the same view, so any
worker can answer from the cache. Keys include the bundle files' modification times and
the code version, so a re-imported dataset or an updated release is rebuilt.

The cache stores pickles: ``CACHE_DIR`` must be private to the service user and Redis
reachable only by the app (loopback or a password), as for any pickle store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from flask import Flask, has_app_context
from flask_caching import Cache

from config import Settings
from data.errors import redacted_traceback
from figures.panel import Panel
from figures.reports import build_panels

log = logging.getLogger("icb.cache")

#: Configured once at start-up (``init_cache``); callbacks only read and write entries.
cache = Cache()

#: Seconds an entry lives; the key changes anyway when a dataset changes.
DEFAULT_TIMEOUT = 3600
_BUNDLE_FILES = ("dataset.json", "cohort.csv", "cd8_cells.h5ad")


def cache_config(settings: Settings) -> dict[str, object]:
    """Flask-Caching configuration for ``settings``."""
    if settings.redis_url:
        return {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": settings.redis_url,
            "CACHE_KEY_PREFIX": "icb-cache:",
            "CACHE_DEFAULT_TIMEOUT": DEFAULT_TIMEOUT,
        }
    return {
        "CACHE_TYPE": "FileSystemCache",
        "CACHE_DIR": str(settings.cache_dir / "flask"),
        "CACHE_THRESHOLD": 2000,  # entries; old ones are dropped beyond this
        "CACHE_DEFAULT_TIMEOUT": DEFAULT_TIMEOUT,
    }


def init_cache(server: Flask, settings: Settings) -> None:
    """Attach the shared cache to the Flask server."""
    if not settings.redis_url:
        (settings.cache_dir / "flask").mkdir(parents=True, exist_ok=True)
    cache.init_app(server, config=cache_config(settings))


@lru_cache(maxsize=1)
def code_stamp() -> str:
    """Version of the code that builds panels (data/, analysis/, figures/ sources).

    Part of every key, so panels cached by the previous release are never served
    after an update (read once per process: code does not change under a worker).
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for folder in ("data", "analysis", "figures"):
        for source in sorted((root / folder).rglob("*.py")):
            digest.update(
                f"{source.relative_to(root)}:{source.stat().st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:16]


def panels_key(page: str, view, state: Mapping[str, object] | None) -> str:
    """Cache key: code version, page, dataset files' versions, filter, state."""
    path = view.bundle.path
    stamps = [
        (path / name).stat().st_mtime_ns if (path / name).exists() else 0
        for name in _BUNDLE_FILES
    ]
    payload = json.dumps(
        [
            code_stamp(),
            page,
            str(path),
            stamps,
            view.filter.to_dict(),
            dict(state or {}),
        ],
        sort_keys=True,
        default=str,
    )
    return "panels:" + hashlib.sha256(payload.encode()).hexdigest()


def cached_panels(
    page: str, view, state: Mapping[str, object] | None = None
) -> list[Panel]:
    """``figures.reports.build_panels`` through the shared cache.

    A cache that cannot be reached (Redis down, disk full) costs speed, never the
    answer: the panels are built directly.
    """
    if not has_app_context():  # called as a plain function (CLI, unit tests)
        return build_panels(page, view, state)
    key = panels_key(page, view, state)
    try:
        hit = cache.get(key)
    except Exception as err:  # any backend error: build instead of failing the page
        log.warning(
            "cache read failed; building panels directly: %s", redacted_traceback(err)
        )
        hit = None
    if hit is not None:
        return hit
    panels = build_panels(page, view, state)
    try:
        cache.set(key, panels)
    except Exception as err:
        log.warning("cache write failed: %s", redacted_traceback(err))
    return panels
