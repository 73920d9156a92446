"""Sign-in and sign-out, as pages and as JSON for API clients."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, render_template, request, session, url_for

from review_ui.operators import authenticate
from review_ui.security import csrf_token, safe_next, sign_in
from review_ui.views.common import json_body, services

blueprint = Blueprint("auth", __name__)
WRONG_CREDENTIALS = "wrong username or password"


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    with services().sessions() as db:
        operator = authenticate(db, request.form.get("username", ""), request.form.get("password", ""))
    if operator is None:
        return render_template("login.html", next=request.form.get("next", ""), error=WRONG_CREDENTIALS), 401
    sign_in(operator)
    return redirect(safe_next(request.form.get("next"), url_for("pages.queue")))


@blueprint.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.get("/api/csrf")
def api_csrf() -> Response:
    """A CSRF token for this session (no sign-in needed), to send as X-CSRF-Token with POST /api/login.

    Returns {"csrf_token"}.
    """
    return jsonify(csrf_token=csrf_token())


@blueprint.post("/api/login")
def api_login() -> Response | tuple[Response, int]:
    """Sign in: JSON {"username", "password"} with the X-CSRF-Token header from GET /api/csrf.

    Returns {"operator", "csrf_token"} (a new token for the signed-in session) and sets the session cookie;
    401 on wrong credentials.
    """
    body = json_body()
    with services().sessions() as db:
        operator = authenticate(db, str(body.get("username", "")), str(body.get("password", "")))
    if operator is None:
        return jsonify(error=WRONG_CREDENTIALS), 401
    sign_in(operator)
    return jsonify(operator=operator.username, csrf_token=csrf_token())
