"""The review UI's Flask application: settings, security, routes."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Response, jsonify, render_template
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from review_ui import security, ui_metrics
from review_ui.services import UiServices
from review_ui.sign_in_throttle import SignInThrottle, ThrottlePolicy
from review_ui.signing_key import ui_signing_key
from review_ui.views import accuracy, api, auth, groups, health, images, models, pages, runs, system, versions


def create_app(services: UiServices) -> Flask:
    settings = services.settings
    app = Flask(__name__)
    if settings.ui_trusted_proxies > 0:
        # Only then is X-Forwarded-For believed: the throttle counts per client address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.ui_trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.ui_trusted_proxies)
    app.config.update(
        SECRET_KEY=ui_signing_key(settings),
        SESSION_COOKIE_NAME="wastex_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.ui_secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.ui_session_idle_s),  # renewed by every request
        MAX_CONTENT_LENGTH=settings.ui_max_upload_bytes,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # documents keep their documented field order
    app.extensions["wastex_ui"] = services
    app.extensions[auth.THROTTLE] = SignInThrottle(services.sessions, ThrottlePolicy.from_settings(settings))
    security.install(app)
    if settings.metrics_enabled:
        ui_metrics.install(app, settings)
    for blueprint in (auth.blueprint, pages.blueprint, api.blueprint, images.blueprint, versions.blueprint,
                      models.blueprint, runs.blueprint, health.blueprint, accuracy.blueprint, groups.blueprint,
                      system.blueprint):
        app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response | str, int]:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"upload too large: at most {settings.ui_max_upload_bytes} bytes per request"
        if security.wants_json():
            return jsonify(error=message), status
        return render_template("error.html", status=status, title=error.name, message=message), status

    @app.errorhandler(DBAPIError)
    def database_down(error: DBAPIError) -> tuple[Response | str, int]:
        # The transaction did not commit: nothing was half-done, the same action can simply be sent again.
        message = "the database is unreachable: nothing was saved; try again in a moment"
        if security.wants_json():
            return jsonify(error=message), 503
        return render_template("error.html", status=503, title="Service Unavailable", message=message), 503

    return app
