"""Operator roles and the admin audit trail: a labeller works the queue, an admin also moves models and datasets."""

from __future__ import annotations

import hashlib
import io
import re
import uuid

from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from infra.clients import db_sessions
from infra.db import audit
from infra.db.dataset_versions import VersionStore
from infra.db.models import AdminAudit, Operator
from infra.db.registry import production_model, promote
from infra.settings import Settings
from review_ui.cli import ui
from review_ui.operators import find_operator
from stream_apps.builder.cli import dataset
from tests.review_ui_support import (
    PASSWORD,
    FlaggedImages,
    SignedIn,
    add_operator,
    dataset_version,
    photo,
    registered_model,
)
from training_job.cli import model

NEEDS_ADMIN = "needs the admin role"


def audit_rows(settings: Settings, action: str, subject: str) -> list[AdminAudit]:
    with db_sessions(settings)() as session:
        return audit.recent(session, actions=[action], subject=subject)


def operator_row(settings: Settings, name: str) -> Operator:
    with db_sessions(settings)() as session:
        found = find_operator(session, name)
    assert found is not None
    return found


def test_a_labeller_cannot_promote_roll_back_activate_request_import_or_read_the_audit(
        app: Flask, deployment: Settings) -> None:
    first = registered_model(deployment, f"role-a-{uuid.uuid4().hex[:6]}")
    second = registered_model(deployment, f"role-b-{uuid.uuid4().hex[:6]}")
    promote(deployment, first, "test", source="test")
    version = dataset_version(deployment, f"rv-{uuid.uuid4().hex[:6]}")
    labeller = SignedIn(app, add_operator(deployment, f"lab-{uuid.uuid4().hex[:6]}", role="labeller"))
    assert labeller.get("/api/session").json["role"] == "labeller"

    for answer in (labeller.post(f"/models/{second}/promote"), labeller.post("/models/rollback"),
                   labeller.post(f"/versions/{version}/activate"), labeller.post("/versions", data={"name": "vx"}),
                   labeller.get("/import")):
        assert answer.status_code == 403
        assert NEEDS_ADMIN in answer.text and "<html" in answer.text
    imported = labeller.post("/api/import", data={"label": "glass", "files": (io.BytesIO(photo(7)), "a.jpg")},
                             content_type="multipart/form-data")
    assert imported.status_code == 403 and NEEDS_ADMIN in imported.json["error"]
    trail = labeller.get("/api/audit")
    assert trail.status_code == 403 and NEEDS_ADMIN in trail.json["error"]

    assert production_model(deployment).version == first
    assert VersionStore(db_sessions(deployment)).active() is None
    assert audit_rows(deployment, "promote", second) == [] and audit_rows(deployment, "activate", version) == []

    docs = labeller.get("/api").text
    assert re.search(r'/api/audit</td>\s*<td><span class="role-admin">admin', docs)
    assert re.search(r'/api/classes</td>\s*<td>any', docs)
    # The queue work stays open to a labeller.
    made = labeller.post("/api/classes", json={"name": f"Cork {uuid.uuid4().hex[:4]}"})
    assert made.status_code == 201


def test_an_admin_promotes_rolls_back_and_activates_and_the_trail_names_them(app: Flask, deployment: Settings) -> None:
    first = registered_model(deployment, f"adm-a-{uuid.uuid4().hex[:6]}")
    second = registered_model(deployment, f"adm-b-{uuid.uuid4().hex[:6]}")
    promote(deployment, first, "test", source="test")
    version = dataset_version(deployment, f"av-{uuid.uuid4().hex[:6]}")
    name = add_operator(deployment, f"adm-{uuid.uuid4().hex[:6]}", role="admin")
    admin = SignedIn(app, name)

    assert admin.post(f"/models/{second}/promote").status_code == 302
    assert production_model(deployment).version == second
    assert admin.post("/models/rollback").status_code == 302
    assert production_model(deployment).version == first
    assert admin.post(f"/versions/{version}/activate").status_code == 302
    assert VersionStore(db_sessions(deployment)).active().name == version

    [promoted] = audit_rows(deployment, "promote", second)
    assert promoted.operator == name and promoted.detail["previous"] == first
    [rolled_back] = audit_rows(deployment, "rollback", first)
    assert rolled_back.operator == name and rolled_back.detail["previous"] == second
    [activated] = audit_rows(deployment, "activate", version)
    assert activated.operator == name

    entries = admin.get(f"/api/audit?action=promote&action=rollback&subject={second}").json["entries"]
    assert [(e["operator"], e["action"], e["subject"]) for e in entries] == [(name, "promote", second)]
    assert admin.get("/api/audit?limit=0").status_code == 400
    models_page = admin.get("/models").text
    assert f'data-action="rollback" data-subject="{first}"' in models_page and name in models_page
    versions_page = admin.get("/versions").text
    assert f'data-action="activate" data-subject="{version}"' in versions_page


def test_an_admins_import_and_version_request_are_audited(app: Flask, deployment: Settings,
                                                          flagged: FlaggedImages) -> None:
    name = add_operator(deployment, f"imp-{uuid.uuid4().hex[:6]}", role="admin")
    admin = SignedIn(app, name)
    label = f"Felt {uuid.uuid4().hex[:4]}"
    data = photo(71_001)
    answer = admin.post("/api/import", data={"label": label, "new_class": "true", "files": (io.BytesIO(data), "f.jpg")},
                        content_type="multipart/form-data")
    assert answer.status_code == 200, answer.json
    flagged.keys.append(f"images/{hashlib.sha256(data).hexdigest()}.jpg")
    [imported] = audit_rows(deployment, "import", label)
    assert imported.operator == name
    assert imported.detail["imported"] == 1 and imported.detail["class_created"] is True

    requested = f"req-{uuid.uuid4().hex[:6]}"
    assert admin.post("/versions", data={"name": requested, "notes": "audited"}).status_code == 302
    [request_row] = audit_rows(deployment, "version_request", requested)
    assert request_row.operator == name and request_row.detail["notes"] == "audited"


def test_the_cli_manages_roles_and_sessions_and_audits_each_change(deployment: Settings) -> None:
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    runner = CliRunner()
    name = f"cli-{uuid.uuid4().hex[:6]}"

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(ui, list(args), input=stdin, env=env)
        assert result.exit_code == 0, result.output
        return result.output

    run("create-operator", name, "--password-stdin", stdin=f"{PASSWORD}\n")
    created = operator_row(deployment, name)
    assert created.role == "labeller" and created.active and created.session_epoch == 0

    run("set-role", name, "admin")
    assert operator_row(deployment, name).role == "admin"
    run("logout-everywhere", name)
    assert operator_row(deployment, name).session_epoch == 1
    run("create-operator", name, "--reset", "--password-stdin", stdin=f"{PASSWORD} again\n")
    reset = operator_row(deployment, name)
    assert reset.session_epoch == 2 and reset.role == "admin"
    run("deactivate", name)
    deactivated = operator_row(deployment, name)
    assert not deactivated.active and deactivated.session_epoch == 3
    listing = run("operators")
    assert name in listing and "admin" in listing
    run("activate", name)
    assert operator_row(deployment, name).active

    with db_sessions(deployment)() as session:
        rows = list(session.scalars(select(AdminAudit).where(AdminAudit.subject == name).order_by(AdminAudit.id)))
    assert [row.action for row in rows] == ["operator_created", "role_changed", "sessions_ended", "password_reset",
                                            "operator_deactivated", "operator_activated"]
    assert all(row.operator.startswith("cli:") for row in rows)
    assert rows[1].detail == {"from": "labeller", "to": "admin"}

    refused = runner.invoke(ui, ["set-role", f"nobody-{uuid.uuid4().hex[:6]}", "admin"], env=env)
    assert refused.exit_code != 0 and "no operator named" in refused.output
    both = runner.invoke(ui, ["create-operator", name, "--reset", "--role", "labeller", "--password-stdin"],
                         input=f"{PASSWORD}\n", env=env)
    assert both.exit_code != 0 and "set-role" in both.output


def test_promotions_and_activations_from_the_cli_are_audited_as_the_os_user(deployment: Settings) -> None:
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    runner = CliRunner()
    first = registered_model(deployment, f"cli-a-{uuid.uuid4().hex[:6]}")
    second = registered_model(deployment, f"cli-b-{uuid.uuid4().hex[:6]}")
    version = dataset_version(deployment, f"cv-{uuid.uuid4().hex[:6]}")
    for group, args in ((model, ["promote", first]), (model, ["promote", second, "--by", "someone"]),
                        (model, ["rollback"]), (dataset, ["activate", version])):
        result = runner.invoke(group, args, env=env)
        assert result.exit_code == 0, result.output

    who = audit.cli_operator()
    [promoted] = audit_rows(deployment, "promote", second)
    assert promoted.operator == who and promoted.detail["promoted_by"] == "someone"
    [rolled_back] = audit_rows(deployment, "rollback", first)
    assert rolled_back.operator == who and rolled_back.detail["previous"] == second
    [activated] = audit_rows(deployment, "activate", version)
    assert activated.operator == who and who.startswith("cli:")
