"""Settings come from the environment, with generated local secrets instead of hard-coded ones."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.settings import load_settings


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("WASTEX_S3_ACCESS_KEY", "WASTEX_S3_SECRET_KEY", "WASTEX_POSTGRES_PASSWORD", "WASTEX_DATABASE_URL",
                 "WASTEX_KAFKA_BOOTSTRAP", "WASTEX_KAFKA_PORT", "WASTEX_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "state"
    monkeypatch.setenv("WASTEX_HOME", str(home))
    return home


def test_secrets_are_generated_once_and_private(clean_env: Path) -> None:
    first, second = load_settings(), load_settings()
    assert first.s3_secret_key == second.s3_secret_key
    assert first.postgres_password == second.postgres_password
    assert len(first.s3_secret_key) >= 24
    assert stat.S_IMODE((clean_env / "secrets.env").stat().st_mode) == 0o600


def test_the_shared_secrets_file_holds_no_ui_signing_key(clean_env: Path) -> None:
    settings = load_settings()
    assert "UI_SECRET_KEY" not in (clean_env / "secrets.env").read_text()
    assert not hasattr(settings, "ui_secret_key")


def test_an_older_secrets_file_with_a_ui_key_still_loads(clean_env: Path) -> None:
    clean_env.mkdir(parents=True)
    (clean_env / "secrets.env").write_text("S3_ACCESS_KEY=a\nS3_SECRET_KEY=b\nPOSTGRES_PASSWORD=c\nUI_SECRET_KEY=old\n")
    assert (load_settings().s3_secret_key, load_settings().postgres_password) == ("b", "c")


def test_session_and_sign_in_settings_have_working_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.ui_session_idle_s, defaults.ui_session_max_s) == (12 * 3600, 24 * 3600)
    assert (defaults.ui_signin_max_failures, defaults.ui_signin_max_client_failures) == (10, 50)
    assert (defaults.ui_signin_window_s, defaults.ui_signin_concurrency, defaults.ui_trusted_proxies) == (900, 2, 0)
    monkeypatch.setenv("WASTEX_UI_SESSION_MAX_S", "3600")
    monkeypatch.setenv("WASTEX_UI_SIGNIN_WINDOW_S", "2")
    custom = load_settings()
    assert (custom.ui_session_max_s, custom.ui_signin_window_s) == (3600, 2)
    monkeypatch.setenv("WASTEX_UI_SIGNIN_MAX_FAILURES", "ten")
    with pytest.raises(ValueError, match="WASTEX_UI_SIGNIN_MAX_FAILURES must be an integer"):
        load_settings()


def test_each_state_directory_gets_its_own_secrets(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    first = load_settings()
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "other"))
    assert load_settings().s3_secret_key != first.s3_secret_key


def test_environment_overrides_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_KAFKA_PORT", "19092")
    monkeypatch.setenv("WASTEX_S3_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("WASTEX_POSTGRES_PASSWORD", "pw")
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.s3_secret_key == "from-the-environment"
    assert s.database_url == "postgresql+psycopg2://wastex:pw@127.0.0.1:25432/wastex"
    monkeypatch.setenv("WASTEX_DATABASE_URL", "postgresql+psycopg2://u:p@db.example:5432/x")
    assert load_settings().database_url == "postgresql+psycopg2://u:p@db.example:5432/x"


def test_a_malformed_port_names_the_setting(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_MINIO_PORT", "nine-thousand")
    with pytest.raises(ValueError, match="WASTEX_MINIO_PORT must be an integer"):
        load_settings()


def test_trainer_settings_and_their_training_config(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training_job.candidate_run import train_config

    defaults = load_settings()
    assert (defaults.trainer_start_from, defaults.auto_promote) == ("production", True)
    assert (defaults.promote_min_gain, defaults.promote_max_class_drop) == (0.0, 0.05)
    assert train_config(defaults).time_budget_s == 20 * 60 and train_config(defaults).weights == "imagenet"
    for name, value in {"WASTEX_TRAINER_START_FROM": "Pretrained", "WASTEX_TRAINER_WEIGHTS": "none",
                        "WASTEX_TRAINER_MINUTES": "0", "WASTEX_TRAINER_EPOCHS": "1", "WASTEX_AUTO_PROMOTE": "false",
                        "WASTEX_PROMOTE_MIN_GAIN": "0.02"}.items():
        monkeypatch.setenv(name, value)
    custom = load_settings()
    assert (custom.trainer_start_from, custom.auto_promote, custom.promote_min_gain) == ("pretrained", False, 0.02)
    config = train_config(custom)
    assert (config.weights, config.time_budget_s, config.finetune_epochs) == (None, None, 1)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("WASTEX_TRAINER_START_FROM", "scratch", "WASTEX_TRAINER_START_FROM must be one of production, pretrained"),
    ("WASTEX_PROMOTE_MAX_CLASS_DROP", "five percent", "WASTEX_PROMOTE_MAX_CLASS_DROP must be a number"),
])
def test_a_malformed_trainer_setting_names_itself(clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                  value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_the_serving_runtime_is_the_registrys_unless_a_known_runtime_is_forced(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().serving_runtime == ""
    monkeypatch.setenv("WASTEX_SERVING_RUNTIME", "OpenVINO-F32")
    assert load_settings().serving_runtime == "openvino-f32"
    monkeypatch.setenv("WASTEX_SERVING_RUNTIME", "onnx")
    with pytest.raises(ValueError, match=r"WASTEX_SERVING_RUNTIME must be empty .* or one of openvino-f32"):
        load_settings()
