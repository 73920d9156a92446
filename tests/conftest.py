"""Fixtures shared by every test layer; each test is marked after the folder it lives in."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import Settings, load_settings

LAYERS = ("unit", "integration", "browser")
pytest_plugins = ["tests.deployments", "tests.trashnet_slices"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()
