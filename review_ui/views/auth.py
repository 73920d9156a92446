"""Sign-in and sign-out, as pages and as JSON for API clients; sign-in goes through the throttle."""

from __future__ import annotations

from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from infra.db.models import Operator
from review_ui.operators import authenticate, log_out_everywhere
from review_ui.security import csrf_token, safe_next, sign_in
from review_ui.sign_in_throttle import SignInBusy, SignInThrottle
from review_ui.ui_metrics import count_failed_sign_in
from review_ui.views.common import json_body, services

blueprint = Blueprint("auth", __name__)
THROTTLE = "wastex_sign_in_throttle"  # the app extension holding the SignInThrottle
WRONG_CREDENTIALS = "wrong username or password"
BUSY_RETRY_S = 1
BUSY = f"too many sign-ins at once: try again in {BUSY_RETRY_S} s"


@dataclass(frozen=True)
class Denied:
    status: int
    message: str
    retry_after_s: int | None = None

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


def _try_sign_in(username: str, password: str) -> Operator | Denied:
    """Sign in unless the account or address is locked (then the password is not even checked) or too many
    password checks already run; a failure is recorded, a success clears the account's failures."""
    throttle: SignInThrottle = current_app.extensions[THROTTLE]
    client = request.remote_addr or "unknown"
    refusal = throttle.refusal(username, client)
    if refusal is not None:
        return Denied(429, refusal.message, refusal.retry_after_s)
    try:
        with throttle.password_check(), services().sessions() as db:
            operator = authenticate(db, username, password)
    except SignInBusy:
        return Denied(503, BUSY, BUSY_RETRY_S)
    if operator is None:
        count_failed_sign_in()
        throttle.record_failure(username, client)
        return Denied(401, WRONG_CREDENTIALS)
    throttle.clear(operator.username)
    sign_in(operator)
    return operator


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    outcome = _try_sign_in(request.form.get("username", ""), request.form.get("password", ""))
    if isinstance(outcome, Denied):
        page = render_template("login.html", next=request.form.get("next", ""), error=outcome.message)
        return make_response(page, outcome.status, outcome.headers())
    return redirect(safe_next(request.form.get("next"), url_for("pages.queue")))


@blueprint.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))


def _end_every_session() -> str:
    """Raise the operator's session epoch: this session and every other one end at their next request."""
    with services().sessions() as db, db.begin():
        name = log_out_everywhere(db, g.operator, by=g.operator).username
    session.clear()
    return name


@blueprint.post("/logout-everywhere")
def logout_everywhere() -> Response:
    name = _end_every_session()
    flash(f"Signed out everywhere: every session of {name} has ended.", "ok")
    return redirect(url_for("auth.login"))


@blueprint.get("/api/csrf")
def api_csrf() -> Response:
    """A CSRF token for this session (no sign-in needed), to send as X-CSRF-Token with POST /api/login.

    Returns {"csrf_token"}.
    """
    return jsonify(csrf_token=csrf_token())


@blueprint.post("/api/login")
def api_login() -> Response:
    """Sign in: JSON {"username", "password"} with the X-CSRF-Token header from GET /api/csrf.

    Returns {"operator", "csrf_token"} (a new token for the signed-in session) and sets the session cookie;
    401 on wrong credentials; 429 with Retry-After while the account or the client address is locked after too
    many failures (even the right password is refused then); 503 with Retry-After while too many sign-ins run.
    """
    body = json_body()
    outcome = _try_sign_in(str(body.get("username", "")), str(body.get("password", "")))
    if isinstance(outcome, Denied):
        return make_response(jsonify(error=outcome.message), outcome.status, outcome.headers())
    return jsonify(operator=outcome.username, csrf_token=csrf_token())


@blueprint.post("/api/logout-everywhere")
def api_logout_everywhere() -> Response:
    """End every session of the signed-in operator, this one included, on every device.

    Returns {"operator"}; the next request of any of those sessions answers 401 (pages go to /login).
    """
    return jsonify(operator=_end_every_session())
