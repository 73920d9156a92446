"""The review UI's session signing key lives in a file only the UI reads, or in WASTEX_UI_SECRET_KEY."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from infra.settings import Settings, load_settings
from review_ui.signing_key import SigningKeyError, key_path, ui_signing_key


@pytest.fixture()
def ui_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.delenv("WASTEX_UI_SECRET_KEY", raising=False)
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    return load_settings()


def test_the_key_is_made_once_in_a_private_file_of_the_ui(ui_settings: Settings) -> None:
    first, second = ui_signing_key(ui_settings), ui_signing_key(ui_settings)
    assert first == second and len(first) >= 32
    path = key_path(ui_settings)
    assert path == ui_settings.state_dir / "ui" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first not in (ui_settings.state_dir / "secrets.env").read_text()
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_each_state_directory_gets_its_own_key(ui_settings: Settings, tmp_path: Path) -> None:
    other = dataclasses.replace(ui_settings, state_dir=tmp_path / "other")
    assert ui_signing_key(other) != ui_signing_key(ui_settings)


def test_the_environment_overrides_the_file_but_not_with_a_short_key(ui_settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_UI_SECRET_KEY", "k" * 40)
    assert ui_signing_key(ui_settings) == "k" * 40
    assert not key_path(ui_settings).exists()
    monkeypatch.setenv("WASTEX_UI_SECRET_KEY", "secret")
    with pytest.raises(SigningKeyError, match="too short"):
        ui_signing_key(ui_settings)


def test_a_key_file_others_can_read_is_refused_with_the_fix(ui_settings: Settings) -> None:
    ui_signing_key(ui_settings)
    key_path(ui_settings).chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        ui_signing_key(ui_settings)


def test_an_empty_key_file_says_to_delete_it(ui_settings: Settings) -> None:
    path = key_path(ui_settings)
    path.parent.mkdir(parents=True)
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match="delete it"):
        ui_signing_key(ui_settings)
