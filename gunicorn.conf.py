"""gunicorn settings for a shared lab server.

Run ``gunicorn -c gunicorn.conf.py app:server`` (``make serve``).

Values come from the same validated settings as the app (config.py), so a bad
environment variable stops the server before any worker starts. Defaults suit a
2-core machine; see README, "Deploy on a lab server".
"""

from __future__ import annotations

import logging
import os
import sys

from config import SettingsError, load_settings

try:
    _settings = load_settings()
    _graceful = int(os.environ.get("GRACEFUL_TIMEOUT") or 30)
    _max_requests = int(os.environ.get("MAX_REQUESTS") or 1000)
except SettingsError as _err:
    sys.stderr.write(f"\nConfiguration error: {_err}\n\n")
    raise SystemExit(2) from None
except ValueError:
    sys.stderr.write(
        "\nConfiguration error: GRACEFUL_TIMEOUT and MAX_REQUESTS must be whole "
        "numbers of seconds / requests. Fix: e.g. GRACEFUL_TIMEOUT=30 "
        "MAX_REQUESTS=1000, or unset them.\n\n"
    )
    raise SystemExit(2) from None

bind = [f"{_settings.host}:{_settings.port}"]
# Each worker is a process with its own read-only dataset cache; threads let one
# worker overlap requests that wait (HDF5 reads hold a lock, exports wait on the
# renderer). Default 3 workers x 4 threads on 2 cores (WORKERS, THREADS).
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
# Long exports run as background jobs, but a cold dataset load can take seconds.
timeout = _settings.timeout
# On SIGTERM (systemctl stop/reload) workers finish requests in flight first.
graceful_timeout = _graceful
keepalive = 5
# Recycle workers now and then (memory growth in numerical libraries); the jitter
# keeps them from restarting all at once.
max_requests = _max_requests
max_requests_jitter = max(_max_requests // 10, 1) if _max_requests else 0
# Datasets (HDF5 handles) must be opened after the fork: never preload the app.
preload_app = False

loglevel = _settings.log_level.lower()
errorlog = "-"
accesslog = os.environ.get("ACCESS_LOG", "-") or None
# Path only (%(U)s), never the query string or the referer: no request details that
# could one day carry a patient identifier. Callback bodies are never logged.
access_log_format = '%(h)s %(u)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
# nginx on the same host sets X-Forwarded-* (scheme for OIDC callbacks).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "icb-cohort-explorer"
# gunicorn 27's runtime control socket is one path per user: several instances
# (tests, a second deployment) would fight over it. Not needed to run the app.
control_socket_disable = True


def on_starting(server) -> None:
    """Say loudly when the server is reachable from the network without auth."""
    if warning := _settings.exposure_warning():
        log = logging.getLogger("gunicorn.error")
        log.warning("*" * 78)
        log.warning(warning)
        log.warning("*" * 78)


def post_worker_init(worker) -> None:
    """Finish Dash's set-up and read the default dataset before taking requests."""
    from app import warm_up_worker

    seconds = warm_up_worker()
    logging.getLogger("gunicorn.error").info(
        "worker %s: default dataset loaded in %.1f s", worker.pid, seconds
    )
