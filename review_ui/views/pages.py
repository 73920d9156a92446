"""The HTML pages: queue, review, classes, import, counts, API documentation."""

from __future__ import annotations

import inspect
import re
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import BadRequest, NotFound

from infra.db.models import ImportedImage, ReviewItem
from review_ui.class_registry import ClassNameError, ensure_class, list_classes
from review_ui.imports import ImportRefused
from review_ui.outbox import outbox_status
from review_ui.queue import QueryError, QueueFilter, facets, item_document, kind_counts, parse_paging, queue_page
from review_ui.roles import admin_only, is_admin, needs_admin
from review_ui.views.common import class_document, import_uploads, operator, outbox_warning, services

blueprint = Blueprint("pages", __name__)
SHORTCUT_KEYS = "1234567890"
API_ENDPOINT_PREFIXES = ("api.", "auth.api_", "images.", "groups.api_", "system.api_")
RECENT_IMPORTS = 20


def _classes(session: Any) -> list[dict[str, Any]]:
    """Classes with their digit shortcut (the first ten)."""
    return [{**class_document(c), "key": SHORTCUT_KEYS[i] if i < len(SHORTCUT_KEYS) else None}
            for i, c in enumerate(list_classes(session))]


@blueprint.app_context_processor
def role_flags() -> dict[str, bool]:
    """Every template knows whether to show admin controls (the routes refuse them to labellers anyway)."""
    return {"is_admin": is_admin()}


def _outbox_banner(session: Any) -> str | None:
    status = outbox_status(session)
    return outbox_warning(status.pending, status.last_error)


@blueprint.get("/")
def home() -> Response:
    return redirect(url_for("pages.queue"))


@blueprint.get("/queue")
def queue() -> tuple[str, int] | str:
    error = None
    try:
        queue_filter = QueueFilter.from_args(request.args)
        page, per_page = parse_paging(request.args)
    except QueryError as problem:
        error, queue_filter, (page, per_page) = str(problem), QueueFilter(), (1, 24)
    with services().sessions() as session:
        result = queue_page(session, queue_filter, page, per_page)
        html = render_template(
            "queue.html", items=[item_document(item) for item in result.items], result=result,
            queue=queue_filter, filter_args=queue_filter.to_args(), facets=facets(session),
            kinds=kind_counts(session, queue_filter),
            classes=_classes(session), error=error, outbox_warning=_outbox_banner(session))
    return (html, 400) if error else html


@blueprint.get("/review/<int:item_id>")
def review(item_id: int) -> tuple[str, int] | str:
    try:
        queue_filter = QueueFilter.from_args(request.args)
    except QueryError as problem:
        raise BadRequest(str(problem)) from None
    with services().sessions() as session:
        item = session.get(ReviewItem, item_id)
        if item is None:
            raise NotFound(f"no review item with id {item_id}")
        return render_template("review.html", item=item_document(item), classes=_classes(session),
                               filter_args=queue_filter.to_args(), outbox_warning=_outbox_banner(session))


@blueprint.route("/classes", methods=["GET", "POST"])
def classes() -> Response | tuple[str, int] | str:
    if request.method == "POST":
        try:
            with services().sessions() as session, session.begin():
                found, created = ensure_class(session, request.form.get("name", ""), operator())
                name = found.name
        except ClassNameError as error:
            with services().sessions() as session:
                return render_template("classes.html", classes=_classes(session), error=str(error),
                                       name=request.form.get("name", "")), 400
        flash(f"Class “{name}” created." if created else f"Class “{name}” already exists.",
              "ok" if created else "info")
        return redirect(url_for("pages.classes"))
    with services().sessions() as session:
        return render_template("classes.html", classes=_classes(session))


@blueprint.route("/import", methods=["GET", "POST"])
@admin_only
def import_page() -> tuple[str, int] | str:
    results, warning, error, status = None, None, None, 200
    if request.method == "POST":
        new_name = request.form.get("new_class_name", "").strip()
        label = new_name or request.form.get("label", "")
        try:
            results, warning = import_uploads(label, bool(new_name))
        except (ImportRefused, BadRequest) as problem:
            error, status = getattr(problem, "description", None) or str(problem), 400
    with services().sessions() as session:
        recent = list(session.scalars(select(ImportedImage).order_by(ImportedImage.id.desc()).limit(RECENT_IMPORTS)))
        html = render_template("import.html", classes=_classes(session), results=results, warning=warning,
                               error=error, recent=recent)
    return html, status


@blueprint.get("/counts")
def counts() -> str:
    svc = services()
    return render_template("counts.html", totals=svc.counts.totals(), history=svc.counts.history())


def readable_rule(rule: str) -> str:
    """/api/ood/<int:item_id>/<any(next, prev):direction> -> /api/ood/<item_id>/next|prev"""
    rule = re.sub(r"<any\(([^)]*)\):\w+>", lambda m: "|".join(p.strip() for p in m[1].split(",")), rule)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule)


def _documented_routes() -> list[dict[str, Any]]:
    routes = []
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith(API_ENDPOINT_PREFIXES):
            continue
        view = current_app.view_functions[rule.endpoint]
        doc = inspect.getdoc(view) or ""
        summary, _, details = doc.partition("\n")
        methods = sorted(m for m in rule.methods or () if m not in {"HEAD", "OPTIONS"})
        routes.append({"methods": methods, "rule": readable_rule(rule.rule), "summary": summary,
                       "details": details.strip(), "admin": needs_admin(view)})
    return sorted(routes, key=lambda r: (r["rule"], r["methods"]))


@blueprint.get("/api")
def api_docs() -> str:
    return render_template("api_docs.html", routes=_documented_routes())
