"""Celery worker entry point for background jobs when REDIS_URL is set.

Start next to gunicorn, with the same environment::

    celery -A worker.celery_app worker --concurrency 2 --loglevel INFO

Importing the app registers every ``background=True`` callback as a Celery task.
"""

from __future__ import annotations

import sys

from config import SettingsError, get_settings

try:
    if not get_settings().redis_url:
        sys.exit(
            "REDIS_URL is not set: background jobs run inside the web workers "
            "(diskcache). Fix: set REDIS_URL=redis://127.0.0.1:6379/0 for both "
            "gunicorn and this worker."
        )
except SettingsError as err:
    sys.exit(f"Configuration error: {err}")

# settings are checked first, for a clear message
from app import app

celery_app = app._background_manager.handle
