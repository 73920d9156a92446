"""The per-request baseline of `wastex bench scoring` answers as the seeds' `/predict` did: one image per request,
its class, confidence and OOD decision from the model's own thresholds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.per_request import create_predict_app
from schemas.model_artefact import KERAS_FILE, ArtefactInfo, write_artefact_info
from tests.controlled_models import GREEN, GREY, METAL_GLASS, RED, controlled_model, photo

pytestmark = pytest.mark.unit


def test_each_posted_photo_gets_its_class_or_an_ood_decision(tmp_path: Path) -> None:
    classes, weights = METAL_GLASS
    controlled_model(tmp_path / KERAS_FILE, weights)
    write_artefact_info(tmp_path, ArtefactInfo(classes, -5.0, 0.7))
    client = create_predict_app(tmp_path).test_client()

    answers = {name: client.post("/predict", data={"file": (io.BytesIO(photo(colour, 1)), "photo.jpg")}).get_json()
               for name, colour in (("red", RED), ("green", GREEN), ("grey", GREY))}

    assert (answers["red"]["class"], answers["red"]["ood"]) == ("metal", False)
    assert (answers["green"]["class"], answers["green"]["ood"]) == ("glass", False)
    assert answers["grey"]["ood"] is True and answers["grey"]["confidence"] == pytest.approx(0.5)

