"""Fixtures of isolated deployments (own topics, database and buckets on the shared servers), shared by the
integration and browser layers through `pytest_plugins` in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from infra.deployment import create_deployment, drop_deployment
from infra.settings import Settings
from review_ui.app import create_app
from review_ui.services import UiServices
from tests.review_ui_support import FlaggedImages


@pytest.fixture(scope="module")
def deployment(settings: Settings) -> Iterator[Settings]:
    """One deployment for the tests of a module."""
    isolated = create_deployment(settings)
    yield isolated
    drop_deployment(isolated)


@pytest.fixture()
def fresh_deployment(settings: Settings) -> Iterator[Settings]:
    """A deployment of one test's own, for tests that reuse names (versions called v1, say)."""
    isolated = create_deployment(settings)
    yield isolated
    drop_deployment(isolated)


@pytest.fixture(scope="module")
def flagged(deployment: Settings) -> Iterator[FlaggedImages]:
    images = FlaggedImages(deployment)
    yield images
    images.cleanup()


@pytest.fixture(scope="module")
def app(deployment: Settings) -> Iterator[Flask]:
    """The review UI app with its background services (projection, outbox drainer, count reader) running."""
    services = UiServices.create(deployment).start()
    yield create_app(services)
    services.stop()
