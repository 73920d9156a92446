"""The review UI's model pages: the registry, which model serves, and an operator's promote and rollback."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask import Flask
from markupsafe import escape
from sqlalchemy import select

from infra.clients import db_sessions
from infra.db.models import ModelVersion
from infra.db.registry import production_model, promote
from infra.settings import Settings
from infra.topic_reader import TopicReader
from tests.controlled_models import METAL_GLASS, METAL_GLASS_PAPER, import_controlled
from tests.review_ui_support import SignedIn, add_operator


def test_an_operator_promotes_and_rolls_back_models(app: Flask, deployment: Settings, tmp_path: Path) -> None:
    first = import_controlled(deployment, tmp_path, f"ui-first-{uuid.uuid4().hex[:6]}", METAL_GLASS)
    second = import_controlled(deployment, tmp_path, f"ui-second-{uuid.uuid4().hex[:6]}", METAL_GLASS_PAPER)
    promote(deployment, first, promoted_by="test", source="test")
    name = f"mod-{uuid.uuid4().hex[:6]}"
    operator = SignedIn(app, add_operator(deployment, name))

    page = operator.get("/models").text
    assert f'data-model="{first}" class="serving"' in page and f'data-model="{second}"' in page
    assert "metal, glass, paper" in page

    assert operator.client.post(f"/models/{second}/promote").status_code == 400  # no CSRF token
    assert production_model(deployment).version == first

    answer = operator.post(f"/models/{second}/promote")
    assert answer.status_code == 302
    assert production_model(deployment).version == second
    page = operator.get("/models").text
    assert f'data-model="{second}" class="serving"' in page and f"Roll back to {first}" in page

    assert operator.post("/models/rollback").status_code == 302
    assert production_model(deployment).version == first

    answer = operator.post("/models/no-such-model/promote", follow_redirects=True)
    assert "no model version" in answer.text and production_model(deployment).version == first

    promotions = TopicReader.collect(deployment, 3.0, "models.promoted")["models.promoted"]
    mine = [(e.payload["model_version"], e.payload["action"], e.payload["promoted_by"], e.source)
            for e in promotions if e.payload["promoted_by"] == name]
    assert mine == [(second, "promote", name, "review_ui"), (first, "rollback", name, "review_ui")]


def test_the_models_page_shows_each_versions_runtime_and_the_figures_behind_it(app: Flask, deployment: Settings,
                                                                                tmp_path: Path) -> None:
    version = import_controlled(deployment, tmp_path, f"ui-runtime-{uuid.uuid4().hex[:6]}", METAL_GLASS)
    with db_sessions(deployment)() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one()
    operator = SignedIn(app, add_operator(deployment, f"rt-{uuid.uuid4().hex[:6]}"))

    page = operator.get("/models").text
    start = page.index(f'data-model="{version}"')
    end = page.find("data-model=", start + 1)
    shown = page[start:end if end > 0 else len(page)]  # this version's table row, its figures included
    assert f'<span class="serving-runtime">{row.serving_runtime}</span>' in shown
    for candidate in row.runtime_check["candidates"]:
        assert f'data-runtime="{candidate["runtime"]}"' in shown
        assert f"{candidate['images_per_second']:.1f}" in shown
        assert str(escape("accepted" if candidate["accepted"] else f"rejected: {candidate['reason']}")) in shown
    assert "non-waste photos labelled with the Keras model&#39;s top class" in shown  # escaped as every text
