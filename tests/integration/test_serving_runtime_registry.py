"""Every registered model version carries the runtime chosen for it by measurement and the figures behind the
choice: `wastex model list` shows it, a scoring worker loads it, and WASTEX_SERVING_RUNTIME overrides it."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from infra.clients import db_sessions
from infra.db.models import ModelVersion
from infra.db.registry import promote
from infra.settings import Settings
from stream_apps.scoring.active_model import load_registered, registered_production
from tests.controlled_models import GREEN, METAL_GLASS, RED, controlled_model, photo
from tests.private_home import private_home
from training_job import cli
from training_job.model_registry import import_model
from training_job.runtime_check import CheckImages

pytestmark = pytest.mark.integration


def _row(deployment: Settings, version: str) -> ModelVersion:
    with db_sessions(deployment)() as session:
        return session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one()


def test_an_imported_model_records_its_measured_runtime_and_figures_and_the_model_list_shows_it(
        deployment: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = f"runtime-{uuid.uuid4().hex[:6]}"
    classes, weights = METAL_GLASS
    model_file = controlled_model(tmp_path / "model.keras", weights)
    imported = import_model(deployment, model_file, classes, version=version, tau_energy=-5.0, tau_softmax=0.7)
    row = _row(deployment, version)
    again = import_model(deployment, model_file, classes, version=version, tau_energy=-5.0, tau_softmax=0.7)

    check = row.runtime_check
    measured = {candidate["runtime"]: candidate for candidate in check["candidates"]}
    assert row.serving_runtime == imported.serving_runtime == check["chosen"]
    assert {"litert", "keras"} <= measured.keys() and all(figures["images_per_second"] > 0
                                                          for figures in measured.values())
    fastest = max((figures for figures in measured.values() if figures["accepted"]),
                  key=lambda figures: figures["images_per_second"])
    assert row.serving_runtime == fastest["runtime"] and not check["forced"]
    assert "non-waste photos" in check["check_images"]  # a user's import brings no images of its own
    # Grey photos tie exactly under this model (red = green): they have no top class to agree on.
    assert "left out: Keras has no top class on them" in check["check_images"]
    assert all(figures["top1_agreement"] == 1.0 for figures in measured.values())
    # The same content again keeps its row as it is: no second measurement.
    assert again.already_registered and again.serving_runtime == row.serving_runtime
    assert _row(deployment, version).runtime_check == check

    monkeypatch.setattr(cli.console, "width", 250)  # a narrow table would wrap the runtime's name
    listed = CliRunner().invoke(cli.model, ["list"], env={"WASTEX_TOPIC_PREFIX": deployment.topic_prefix,
                                                          "WASTEX_POSTGRES_DB": deployment.postgres_db})
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if version in line)
    assert f" {row.serving_runtime} " in line


def test_a_worker_loads_the_runtime_the_registry_chose_unless_the_setting_forces_one(
        deployment: Settings, tmp_path: Path) -> None:
    version = f"chosen-{uuid.uuid4().hex[:6]}"
    classes, weights = METAL_GLASS
    # Two unambiguous photos keep the measurement short; which runtime it picks is set by hand below.
    import_model(deployment, controlled_model(tmp_path / "model.keras", weights), classes, version=version,
                 tau_energy=-5.0, tau_softmax=0.7,
                 check_images=CheckImages([photo(RED, 1), photo(GREEN, 2)], [0, 1], "a red and a green photo"))
    promote(deployment, version, promoted_by="test", source="test")
    home, _ = private_home(deployment, tmp_path / "home")  # an artefact cache of the test's own

    served = {}
    for chosen in ("openvino-f32", "litert"):
        with db_sessions(deployment).begin() as session:
            session.execute(update(ModelVersion).where(ModelVersion.version == version)
                            .values(serving_runtime=chosen))
        registered = registered_production(home)
        served[chosen] = (registered.runtime, load_registered(home, registered).runtime.runtime)
    forced = dataclasses.replace(home, serving_runtime="keras")
    overridden = load_registered(forced, registered_production(forced))

    assert served == {"openvino-f32": ("openvino-f32", "openvino-f32"), "litert": ("litert", "litert")}
    assert overridden.runtime.runtime == "keras" and overridden.version == version
