"""The scoring worker's model holder follows the registry's production row, not announcements, and never gives up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from infra.retry import Degradation
from schemas.events import Event, EventType
from schemas.ood_scores import Thresholds
from stream_apps.scoring import model_holder
from stream_apps.scoring.active_model import ActiveModel, RegisteredModel, UnservableModel
from stream_apps.scoring.model_holder import ANNOUNCED_RECHECK_S, ModelHolder

CHECK_S = 30.0
FIRST = RegisteredModel("m-1", "s3://models/m-1", "a1" * 32)
SECOND = RegisteredModel("m-2", "s3://models/m-2", "b2" * 32)


class FakeRuntime:
    runtime = "fake"
    input_size = 4

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return np.zeros((len(pixels), 2), np.float32)


class FakeRegistry:
    """What the registry says serves, and what loading a registered model does."""

    def __init__(self, production: RegisteredModel | None) -> None:
        self.production = production
        self.read_error: Exception | None = None
        self.load_error: Exception | None = None

    def read(self, settings: object) -> RegisteredModel | None:
        if self.read_error is not None:
            raise self.read_error
        return self.production

    def load(self, settings: object, registered: RegisteredModel, threads: int | None = None) -> ActiveModel:
        if self.load_error is not None:
            raise self.load_error
        return ActiveModel(registered.version, registered.digest, ["metal", "glass"], Thresholds(), FakeRuntime())


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry(FIRST)
    monkeypatch.setattr(model_holder, "registered_production", fake.read)
    monkeypatch.setattr(model_holder, "load_registered", fake.load)
    return fake


def _holder(degradation: Degradation) -> ModelHolder:
    return ModelHolder(SimpleNamespace(registry_check_s=CHECK_S, retry_max_delay_s=4.0), 2, degradation)


def _promoted(registered: RegisteredModel) -> Event:
    return Event("e1", EventType.MODEL_PROMOTED, 1, "2026-03-01T12:00:00.000Z", "test",
                 {"model_version": registered.version, "artefact_digest": registered.digest})


def _serving(holder: ModelHolder) -> tuple[str, str] | None:
    return None if holder.current is None else (holder.current.version, holder.current.digest)


def test_the_registrys_production_model_serves_and_is_checked_again_on_the_timer(registry: FakeRegistry) -> None:
    async def scenario() -> list[tuple[float, tuple[str, str] | None]]:
        holder = _holder(Degradation())
        steps = [(await holder.look(), _serving(holder))]
        registry.production = SECOND  # changed without an announcement
        steps.append((await holder.look(), _serving(holder)))
        return steps

    assert asyncio.run(scenario()) == [(CHECK_S, (FIRST.version, FIRST.digest)),
                                       (CHECK_S, (SECOND.version, SECOND.digest))]


def test_a_failed_load_keeps_the_old_model_retries_with_growing_delays_and_reports_it(registry: FakeRegistry) -> None:
    degradation = Degradation()

    async def scenario() -> list[tuple[float, tuple[str, str] | None, str]]:
        holder = _holder(degradation)
        steps = [(await holder.look(), _serving(holder), degradation.report()["status"])]
        registry.production = SECOND
        for error in (ConnectionError("minio refused"), UnservableModel("digest differs"),
                      ConnectionError("minio refused"), ConnectionError("minio refused")):
            registry.load_error = error
            steps.append((await holder.look(), _serving(holder), degradation.report()["status"]))
        registry.load_error = None
        steps.append((await holder.look(), _serving(holder), degradation.report()["status"]))
        return steps

    first, second = (FIRST.version, FIRST.digest), (SECOND.version, SECOND.digest)
    assert asyncio.run(scenario()) == [
        (CHECK_S, first, "ok"),
        (0.5, first, "degraded"), (1.0, first, "degraded"), (2.0, first, "degraded"), (4.0, first, "degraded"),
        (CHECK_S, second, "ok"),
    ]


def test_a_registry_that_cannot_be_read_at_start_is_waited_for(registry: FakeRegistry) -> None:
    degradation = Degradation()
    registry.read_error = OperationalError("SELECT", {}, ConnectionRefusedError("postgres is down"))

    async def scenario() -> tuple[float, dict, float, tuple[str, str] | None]:
        holder = _holder(degradation)
        waiting = await holder.look()
        report = degradation.report()
        registry.read_error = None
        serving = await holder.look()
        ready = await holder.ready()
        return waiting, report, serving, (ready.version, ready.digest)

    waiting, report, serving, served = asyncio.run(scenario())
    assert (waiting, report["status"], [entry["for"] for entry in report["waiting"]]) == (0.5, "degraded", ["model"])
    assert (serving, served) == (CHECK_S, (FIRST.version, FIRST.digest))


def test_an_announcement_the_registry_does_not_show_yet_is_looked_for_again_soon(registry: FakeRegistry) -> None:
    async def scenario() -> list[float]:
        holder = _holder(Degradation())
        delays = [await holder.look()]
        holder.announced(_promoted(SECOND))  # sent just before the registry commits
        delays.append(await holder.look())
        registry.production = SECOND
        delays.append(await holder.look())
        delays.append(await holder.look())
        return delays

    assert asyncio.run(scenario()) == [CHECK_S, ANNOUNCED_RECHECK_S, CHECK_S, CHECK_S]


def test_a_model_of_the_same_name_but_other_content_is_swapped_in(registry: FakeRegistry) -> None:
    async def scenario() -> tuple[str, str] | None:
        holder = _holder(Degradation())
        await holder.look()
        registry.production = RegisteredModel(FIRST.version, FIRST.artefact_uri, "c3" * 32)
        await holder.look()
        return _serving(holder)

    assert asyncio.run(scenario()) == (FIRST.version, "c3" * 32)


def test_announcements_the_registry_never_shows_are_each_dropped_with_a_warning_and_nothing_changes(
        registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    forged = [RegisteredModel("forged", "s3://elsewhere/forged", "f0" * 32),  # an unregistered version
              RegisteredModel(FIRST.version, FIRST.artefact_uri, "f1" * 32)]  # the serving name, other bytes

    async def scenario() -> tuple[list[float], tuple[str, str] | None]:
        holder = _holder(Degradation())
        delays = [await holder.look()]
        for registered in forged:
            holder.announced(_promoted(registered))
        delays.append(await holder.look())  # looked for again soon: the registry may not have committed yet
        monkeypatch.setattr(model_holder, "ANNOUNCED_WAIT_S", 0.0)  # ... but not for ever
        delays.append(await holder.look())
        return delays, _serving(holder)

    with caplog.at_level("WARNING", logger=model_holder.__name__):
        delays, serving = asyncio.run(scenario())
    assert delays == [CHECK_S, ANNOUNCED_RECHECK_S, CHECK_S] and serving == (FIRST.version, FIRST.digest)
    assert [record.getMessage() for record in caplog.records] == [
        f"ignoring the announcement of model {registered.version} (digest {registered.digest}): the registry's "
        f"production model is {FIRST.version} (digest {FIRST.digest}), and only the registry says what serves"
        for registered in forged]


def test_an_announcement_superseded_by_a_later_one_the_registry_shows_is_not_awaited(registry: FakeRegistry) -> None:
    async def scenario() -> list[float]:
        holder = _holder(Degradation())
        delays = [await holder.look()]
        holder.announced(_promoted(RegisteredModel("m-0", "s3://models/m-0", "c3" * 32)))  # promoted, then replaced
        holder.announced(_promoted(SECOND))
        registry.production = SECOND
        delays.append(await holder.look())
        return delays

    assert asyncio.run(scenario()) == [CHECK_S, CHECK_S]
