"""Sign-in, CSRF and response headers for every request of the review UI.

Deny by default: every endpoint needs a signed-in operator except the few listed in PUBLIC_ENDPOINTS.
A session counts while its operator is active, its epoch is the operator's (raised by logout-everywhere, a new
password or a deactivation) and it is younger than the absolute lifetime; the idle lifetime is the cookie's.
Every state-changing request carries the session's CSRF token (form field or X-CSRF-Token header).
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, flash, g, jsonify, redirect, request, session, url_for
from werkzeug.exceptions import BadRequest

from infra.db.models import Operator

# `metrics` (ui_metrics.METRICS_ENDPOINT) is for Prometheus, which signs in nowhere; it answers counts only.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "auth.api_csrf", "auth.api_login", "health.health", "metrics",
                              "static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SIGN_IN_FIRST = "sign in first: POST /api/login or the /login page"
SESSION_ENDED = ("your session was ended: signed out everywhere, password changed or account deactivated; "
                 "sign in again")
SESSION_TOO_OLD = "your session is over: sessions last at most {lifetime} from sign-in; sign in again"
# No inline script or style anywhere: scripts and styles come from /static only.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class CsrfError(BadRequest):
    description = "CSRF token missing or invalid: reload the page and try again"


def csrf_token() -> str:
    """The session's token, created on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def sign_in(operator: Operator) -> None:
    """A fresh session (no fixation): new token, the operator's id, name and session epoch, the sign-in time."""
    session.clear()
    session.permanent = True
    session["operator_id"] = operator.id
    session["operator"] = operator.username
    session["epoch"] = operator.session_epoch
    session["signed_in_at"] = time.time()  # wall clock: the lifetime outlasts a restart of the UI
    csrf_token()


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths are followed after sign-in (no open redirect); anything else goes to default."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _current_operator() -> Operator | str:
    """The session's operator, or why the session does not count."""
    operator_id = session.get("operator_id")
    if operator_id is None:
        return SIGN_IN_FIRST
    services = current_app.extensions["wastex_ui"]
    longest_s = services.settings.ui_session_max_s
    signed_in_at = session.get("signed_in_at")
    if not isinstance(signed_in_at, int | float) or time.time() - signed_in_at > longest_s:
        return SESSION_TOO_OLD.format(lifetime=f"{longest_s / 3600:g} h" if longest_s >= 3600 else f"{longest_s:g} s")
    with services.sessions() as db:
        operator = db.get(Operator, operator_id)
    if operator is None or not operator.active or operator.session_epoch != session.get("epoch"):
        return SESSION_ENDED
    return operator


def _require_sign_in() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    operator = _current_operator()
    if isinstance(operator, str):
        ended = operator != SIGN_IN_FIRST
        if ended:
            session.clear()  # an ended session keeps nothing, not even its CSRF token
        if wants_json():
            return jsonify(error=operator), 401
        if ended:
            flash(operator, "error")  # shown by the sign-in page
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    g.operator = operator.username
    g.operator_role = operator.role
    return None


def _check_csrf() -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    expected = session.get(CSRF_FIELD)
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        raise CsrfError()


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    def before() -> Response | None:
        denied = _require_sign_in()
        if denied is not None:
            return denied
        _check_csrf()
        return None

    app.before_request(before)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
