"""A cache shared by the gunicorn workers: filesystem by default, Redis with REDIS_URL.

What pays off: a page's panels (figures + tables) for one dataset version, filter and
page state. They take 50-100 ms to build on the demo data and are the same for every
lab member looking at the same view, so any worker can answer from the cache. Keys
include the bundle files' modification times, so a re-imported dataset is rebuilt.

The cache stores pickles: ``CACHE_DIR`` must be private to the service user and Redis
reachable only by the app (loopback or a password), as for any pickle store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from flask import Flask
from flask_caching import Cache

from config import Settings
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


def panels_key(page: str, view, state: Mapping[str, object] | None) -> str:
    """Cache key of a page's panels: page, dataset files' versions, filter, state."""
    path = view.bundle.path
    stamps = [
        (path / name).stat().st_mtime_ns if (path / name).exists() else 0
        for name in _BUNDLE_FILES
    ]
    payload = json.dumps(
        [page, str(path), stamps, view.filter.to_dict(), dict(state or {})],
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
    key = panels_key(page, view, state)
    try:
        hit = cache.get(key)
    except Exception:  # any backend error: build instead of failing the page
        log.warning("cache read failed; building panels directly", exc_info=True)
        hit = None
    if hit is not None:
        return hit
    panels = build_panels(page, view, state)
    try:
        cache.set(key, panels)
    except Exception:
        log.warning("cache write failed", exc_info=True)
    return panels
