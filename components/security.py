"""Hardening of the Flask server behind Dash: headers, error pages, safe logging.

The browser gets short messages; the detail (with a reference number to find it) goes
to the server log. Nothing here logs request bodies: Dash callback bodies carry patient
identifiers (table rows, selections), URLs carry only filter values.
"""

from __future__ import annotations

import logging
import secrets

import dash
from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from config import Settings
from data.errors import redacted_traceback

log = logging.getLogger("icb.server")

# Dash renders its renderer bootstrap and string clientside callbacks as inline
# <script>s: they are allowed by hash (app.csp_hashes), never by 'unsafe-inline'.
# 'unsafe-eval' is needed by plotly.js itself: its WebGL layer (regl, used by the
# scattergl UMAP) compiles shaders' JavaScript with `new Function`; without it the
# UMAP shows "WebGL is not supported" (tests/pages/test_cd8_states.py checks in
# Chromium). No 'unsafe-inline' for scripts: inline ones are allowed by hash only.
# Inline styles are set by React components, hence 'unsafe-inline' for styles only.
_CSP = {
    "default-src": "'self'",
    "script-src": "'self' 'unsafe-eval'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "worker-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'self'",
}


def content_security_policy(app: dash.Dash) -> str:
    """The CSP header value, with hashes of the app's current inline scripts."""
    directives = dict(_CSP)
    directives["script-src"] += " " + " ".join(app.csp_hashes())
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def install_security(app: dash.Dash, settings: Settings) -> None:
    """Security headers, upload limit messages and short error pages on ``app``."""
    server = app.server
    server.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    server.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    server.debug = False  # never the Werkzeug debugger on a shared server
    if settings.secret_key:
        # one key for every worker: sessions and Dash's background-job handles
        server.secret_key = settings.secret_key
    if server.config.get("MAX_CONTENT_LENGTH") is None:
        # dcc.Upload checks max_size only in the browser; base64 in a JSON body
        # is 4/3 of the file, plus room for the rest of the callback
        server.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes * 4 // 3 + (
            1 << 20
        )

    @server.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")  # older browsers
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", content_security_policy(app))
        return response

    @server.errorhandler(RequestEntityTooLarge)
    def too_large(_err: RequestEntityTooLarge):
        log.warning(
            "request refused: %s %s larger than %d MB",
            request.method,
            request.path,
            settings.max_upload_mb,
        )
        return _short(
            413,
            f"The upload is larger than {settings.max_upload_mb} MB, the limit of "
            "this server (MAX_UPLOAD_MB). Split the file or ask the administrator.",
        )

    @server.errorhandler(Exception)
    def unexpected(err: Exception):
        if isinstance(err, HTTPException):
            return err  # 404, 405, ...: Werkzeug's short pages carry no detail
        ref = secrets.token_hex(4)
        # path only (no query string, no body): bodies may hold patient identifiers
        log.error(
            "unhandled error ref=%s on %s %s: %s",
            ref,
            request.method,
            request.path,
            redacted_traceback(err),
        )
        return _short(
            500,
            f"Internal error (reference {ref}). It was logged on the server; "
            "reload the page or tell the administrator the reference.",
        )


def _short(status: int, message: str):
    wants_json = request.path.endswith("_dash-update-component") or (
        request.accept_mimetypes.best == "application/json"
    )
    if wants_json:
        return jsonify({"error": message}), status
    return Response(message, status=status, mimetype="text/plain")
