"""Typed settings read from environment variables, validated at start-up.

A bad value stops the process with a message naming the variable and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = ROOT / "data" / "datasets"
DEMO_NAME = "demo"
AUTH_MODES = ("none", "basic", "oidc")
# same rule as data.registry.check_dataset_name (config must not import data/)
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_SECRET_KEY_LENGTH = 32
_SECRET_FIX = (
    'generate one with `python -c "import secrets; '
    "print(secrets.token_urlsafe(48))\"` and keep it in the service's environment "
    "file"
)
# werkzeug.security.generate_password_hash writes `method$salt$hash`
_HASH_METHODS = ("scrypt", "pbkdf2")


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
    # access control (README, "Deploy on a lab server")
    auth_mode: str = "none"
    secret_key: str | None = field(default=None, repr=False)
    auth_users_file: Path | None = None
    oidc_metadata_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    # shared cache and background jobs: filesystem/diskcache unless REDIS_URL is set
    redis_url: str | None = field(default=None, repr=False)
    # gunicorn (gunicorn.conf.py); defaults suit a 2-core server
    workers: int = 3
    threads: int = 4
    timeout: int = 120

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def auth_enabled(self) -> bool:
        return self.auth_mode != "none"

    def exposure_warning(self) -> str | None:
        """A loud message when the app listens beyond this machine without auth."""
        if self.auth_enabled or is_loopback(self.host):
            return None
        return (
            f"SECURITY WARNING: listening on {self.host}:{self.port} with AUTH_MODE="
            "none - anyone who can reach this address sees every dataset. Set "
            "AUTH_MODE=basic (with AUTH_USERS_FILE and SECRET_KEY), or HOST=127.0.0.1 "
            "behind a reverse proxy that authenticates."
        )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it resolves to a reachable interface


def load_users_file(path: Path) -> dict[str, str]:
    """Read ``user:hash`` lines (werkzeug password hashes); raise on plain passwords.

    Blank lines and lines starting with ``#`` are ignored. Create entries with
    ``python cli.py add-user FILE NAME``.
    """
    var = "AUTH_USERS_FILE"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SettingsError(
            f"{var}={str(path)!r} cannot be read ({err.strerror}). Fix: point {var} "
            "at a readable file of `user:hash` lines made with `python cli.py "
            "add-user FILE NAME`."
        ) from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        method = hashed.split("$", 1)[0].split(":", 1)[0]
        if not sep or not name or method not in _HASH_METHODS or hashed.count("$") != 2:
            raise SettingsError(
                f"{var}={str(path)!r}, line {number}: expected `user:hash` with a "
                "werkzeug password hash (never a plain password). Fix: recreate the "
                "line with `python cli.py add-user FILE NAME`."
            )
        if name in users:
            raise SettingsError(
                f"{var}={str(path)!r}, line {number}: user {name!r} appears twice. "
                "Fix: keep one line per user."
            )
        users[name] = hashed
    if not users:
        raise SettingsError(
            f"{var}={str(path)!r} holds no users. Fix: add one with `python cli.py "
            "add-user FILE NAME`."
        )
    return users


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
    default_dataset = env.get("DEFAULT_DATASET") or DEMO_NAME
    if not _DATASET_NAME.match(default_dataset) or ".." in default_dataset:
        raise SettingsError(
            f"DEFAULT_DATASET={default_dataset!r} is not a dataset name. Fix: use the "
            "folder name of a bundle in DATA_DIR (letters, digits, '_', '-', '.')."
        )
    cache_dir = Path(env.get("CACHE_DIR") or ROOT / ".cache").expanduser()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise SettingsError(
            f"CACHE_DIR={str(cache_dir)!r} is a file, not a folder. Fix: point "
            "CACHE_DIR at a writable folder (it is created when missing)."
        )
    redis_url = env.get("REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(
            "REDIS_URL must start with redis://, rediss:// or unix://. Fix: e.g. "
            "REDIS_URL=redis://127.0.0.1:6379/0, or unset it to use the local "
            "filesystem cache."
        )
    auth = _auth_settings(env)
    return Settings(
        data_dir=data_dir,
        default_dataset=default_dataset,
        host=env.get("HOST") or "127.0.0.1",
        port=_int(env, "PORT", 8050, 1, 65535),
        cache_dir=cache_dir,
        max_upload_mb=_int(env, "MAX_UPLOAD_MB", 50, 1, 10_000),
        log_level=log_level,
        url_prefix=prefix,
        max_points_on_screen=_int(env, "MAX_POINTS", 200_000, 1_000, 5_000_000),
        redis_url=redis_url,
        workers=_int(env, "WORKERS", 3, 1, 64),
        threads=_int(env, "THREADS", 4, 1, 64),
        timeout=_int(env, "TIMEOUT", 120, 10, 3600),
        **auth,
    )


def _auth_settings(env: dict[str, str]) -> dict[str, object]:
    """AUTH_MODE and what each mode needs; SECRET_KEY whenever auth is on."""
    mode = (env.get("AUTH_MODE") or "none").strip().lower()
    if mode not in AUTH_MODES:
        raise SettingsError(
            f"AUTH_MODE={mode!r} is not known. Fix: use none (local use), basic "
            "(users file) or oidc (your institute's single sign-on)."
        )
    secret = env.get("SECRET_KEY") or None
    if mode == "none":
        return {"auth_mode": mode, "secret_key": secret}
    if not secret or len(secret) < MIN_SECRET_KEY_LENGTH:
        problem = "is not set" if not secret else "is too short"
        raise SettingsError(
            f"SECRET_KEY {problem}: AUTH_MODE={mode} signs session cookies with it "
            f"and needs at least {MIN_SECRET_KEY_LENGTH} characters. Fix: "
            f"{_SECRET_FIX}."
        )
    out: dict[str, object] = {"auth_mode": mode, "secret_key": secret}
    if mode == "basic":
        raw = env.get("AUTH_USERS_FILE")
        if not raw:
            raise SettingsError(
                "AUTH_USERS_FILE is not set: AUTH_MODE=basic needs a users file. Fix: "
                "create one with `python cli.py add-user /etc/icb/users NAME` and set "
                "AUTH_USERS_FILE=/etc/icb/users."
            )
        path = Path(raw).expanduser()
        load_users_file(path)  # fail at start-up, not at the first login
        out["auth_users_file"] = path
    else:
        for var in ("OIDC_SERVER_METADATA_URL", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"):
            if not env.get(var):
                raise SettingsError(
                    f"{var} is not set: AUTH_MODE=oidc needs it. Fix: register the "
                    "app with your identity provider (redirect URI "
                    "https://HOST/PREFIX/oidc/idp/callback) and set "
                    "OIDC_SERVER_METADATA_URL, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET."
                )
        url = env["OIDC_SERVER_METADATA_URL"]
        if not url.startswith("https://"):
            raise SettingsError(
                f"OIDC_SERVER_METADATA_URL={url!r} must be an https:// URL. Fix: use "
                "the provider's .well-known/openid-configuration address."
            )
        out.update(
            oidc_metadata_url=url,
            oidc_client_id=env["OIDC_CLIENT_ID"],
            oidc_client_secret=env["OIDC_CLIENT_SECRET"],
        )
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once (environment does not change at run time)."""
    return load_settings()
