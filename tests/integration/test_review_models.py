"""The review UI's model pages: the registry, which model serves, and an operator's promote and rollback."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask import Flask

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
