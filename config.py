"""Typed settings read from environment variables, validated at start-up.

A bad value stops the process with a message naming the variable and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = ROOT / "data" / "datasets"
DEMO_NAME = "demo"


class SettingsError(ValueError):
    """An environment variable has a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, from the environment (see README, 'Configuration')."""

    data_dir: Path = DEFAULT_DATA_DIR
    default_dataset: str = DEMO_NAME
    host: str = "127.0.0.1"
    port: int = 8050
    cache_dir: Path = ROOT / ".cache"
    max_upload_mb: int = 50
    log_level: str = "INFO"
    url_prefix: str = "/"
    max_points_on_screen: int = 200_000

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a whole number. Fix: set {name} to an integer "
            f"between {low} and {high}, or unset it (default {default})."
        ) from None
    if not low <= value <= high:
        raise SettingsError(
            f"{name}={value} is out of range. Fix: use a value between {low} and "
            f"{high}."
        )
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate settings from ``env`` (default: ``os.environ``)."""
    env = dict(os.environ if env is None else env)
    log_level = env.get("LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(
            f"LOG_LEVEL={log_level!r} is not a log level. Fix: use DEBUG, INFO, "
            "WARNING, ERROR or CRITICAL."
        )
    prefix = env.get("URL_PREFIX", "/") or "/"
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise SettingsError(
            f"URL_PREFIX={prefix!r} must start and end with '/'. Fix: e.g. "
            "URL_PREFIX=/icb/."
        )
    data_dir = Path(env.get("DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise SettingsError(
            f"DATA_DIR={str(data_dir)!r} is a file, not a folder. Fix: point DATA_DIR "
            "at the folder holding dataset bundles."
        )
    return Settings(
        data_dir=data_dir,
        default_dataset=env.get("DEFAULT_DATASET") or DEMO_NAME,
        host=env.get("HOST") or "127.0.0.1",
        port=_int(env, "PORT", 8050, 1, 65535),
        cache_dir=Path(env.get("CACHE_DIR") or ROOT / ".cache").expanduser(),
        max_upload_mb=_int(env, "MAX_UPLOAD_MB", 50, 1, 10_000),
        log_level=log_level,
        url_prefix=prefix,
        max_points_on_screen=_int(env, "MAX_POINTS", 200_000, 1_000, 5_000_000),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once (environment does not change at run time)."""
    return load_settings()
