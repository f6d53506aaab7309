"""Where Dash background callbacks (long exports, prepare-on-upload) run.

Without ``REDIS_URL``: a :class:`dash.DiskcacheManager` - jobs run in a subprocess
of the gunicorn worker, results in ``CACHE_DIR/background`` (shared by the workers of
one machine). With ``REDIS_URL``: a :class:`dash.CeleryManager` - jobs go through
Redis to Celery workers started with::

    celery -A worker.celery_app worker --concurrency 2 --loglevel INFO

(see README, "Deploy on a lab server"). Callbacks opt in with
``@callback(..., background=True)``; app.py passes the manager to Dash.
"""

from __future__ import annotations

from functools import lru_cache

from config import Settings, get_settings

#: Results of finished jobs are kept this long (seconds) before the store drops them.
RESULT_TTL = 3600


def make_celery(settings: Settings):
    """The Celery app for ``settings.redis_url`` (broker and result backend)."""
    from celery import Celery

    celery_app = Celery(
        "icb",
        broker=settings.redis_url,
        backend=settings.redis_url,
    )
    celery_app.conf.update(
        result_expires=RESULT_TTL,
        # a job that dies with its worker is retried elsewhere, not lost
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    return celery_app


def make_background_manager(settings: Settings):
    """A Dash background-callback manager: Celery + Redis or diskcache."""
    if settings.redis_url:
        from dash import CeleryManager

        return CeleryManager(make_celery(settings), expire=RESULT_TTL)
    import diskcache
    from dash import DiskcacheManager

    folder = settings.cache_dir / "background"
    folder.mkdir(parents=True, exist_ok=True)
    return DiskcacheManager(diskcache.Cache(str(folder)), expire=RESULT_TTL)


@lru_cache(maxsize=1)
def get_background_manager():
    """The manager of this process (built once, on first use, after the fork)."""
    return make_background_manager(get_settings())
