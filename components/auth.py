"""Access control for a shared server: HTTP basic auth or OIDC, via dash-auth.

``AUTH_MODE=none`` (local use) adds nothing. ``basic`` checks a users file of
werkzeug password hashes (``python cli.py add-user FILE NAME``); ``oidc`` sends people
to the institute's identity provider. Every route is protected - pages, Dash's
``_dash-layout``/``_dash-update-component``, assets and downloads - except the health
probes, which reveal only dataset names and readiness.
"""

from __future__ import annotations

import binascii
import logging
from functools import cache

import dash
import flask
from werkzeug.security import check_password_hash, generate_password_hash

from config import Settings, load_users_file

log = logging.getLogger("icb.auth")

#: Paths (after URL_PREFIX) that stay open for load balancers and systemd probes.
OPEN_PATHS = ("healthz", "readyz")


@cache
def _dummy_hash() -> str:
    """Checked for unknown users too, so a wrong name costs as long as a wrong
    password (no user enumeration by timing). Made on first use: hashing takes
    ~0.1 s, which every start without auth would otherwise pay."""
    return generate_password_hash("not-a-password")


def password_checker(users: dict[str, str]):
    """``auth_func`` for dash-auth: constant-work check against werkzeug hashes."""
    _dummy_hash()  # computed now, at start-up with auth on, not at the first login

    def check(username: str, password: str) -> bool:
        hashed = users.get(username)
        ok = check_password_hash(hashed or _dummy_hash(), password)
        return bool(hashed) and ok

    return check


class _OpenProbes:
    """Mixin: let the health probes through and refuse malformed headers cleanly."""

    open_paths: frozenset[str] = frozenset()

    def is_authorized(self) -> bool:
        if flask.request.path in self.open_paths:
            return True
        try:
            return super().is_authorized()
        except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
            # dash-auth splits the Authorization header without checks: a header
            # that is not `Basic base64(user:password)` is a refusal, not a 500
            return False


@cache
def _auth_classes() -> tuple[type, type]:
    """dash-auth's classes with open probes (dash-auth is imported only with auth on:
    it takes ~0.15 s to import)."""
    from dash_auth import BasicAuth, OIDCAuth

    class HashedBasicAuth(_OpenProbes, BasicAuth):
        """Basic auth against hashed passwords; probes open."""

    class ProbeFriendlyOIDCAuth(_OpenProbes, OIDCAuth):
        """OIDC login; probes open."""

    return HashedBasicAuth, ProbeFriendlyOIDCAuth


def install_auth(app: dash.Dash, settings: Settings) -> object | None:
    """Protect ``app`` according to ``settings.auth_mode``; return the auth object."""
    prefix = settings.url_prefix
    open_paths = frozenset(f"{prefix}{p}" for p in OPEN_PATHS)
    if settings.auth_mode == "none":
        return None
    HashedBasicAuth, ProbeFriendlyOIDCAuth = _auth_classes()
    if settings.auth_mode == "basic":
        assert settings.auth_users_file is not None  # checked by load_settings
        users = load_users_file(settings.auth_users_file)
        auth = HashedBasicAuth(
            app, auth_func=password_checker(users), secret_key=settings.secret_key
        )
        auth.open_paths = open_paths
        log.info("basic auth on: %d user(s) from AUTH_USERS_FILE", len(users))
        return auth
    auth = ProbeFriendlyOIDCAuth(
        app,
        secret_key=settings.secret_key,
        # TLS ends at the reverse proxy; the identity provider must call back on https
        force_https_callback=True,
        login_route=f"{prefix}oidc/<idp>/login",
        logout_route=f"{prefix}oidc/logout",
        callback_route=f"{prefix}oidc/<idp>/callback",
        secure_session=True,
    )
    auth.open_paths = open_paths
    auth.register_provider(
        "idp",
        server_metadata_url=settings.oidc_metadata_url,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        token_endpoint_auth_method="client_secret_post",
    )
    log.info("OIDC auth on: provider metadata %s", settings.oidc_metadata_url)
    return auth
