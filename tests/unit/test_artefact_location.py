"""A scoring worker loads model artefacts only from the models bucket, whatever the registry row says."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from stream_apps.scoring.active_model import RegisteredModel, UnservableModel, artefact_location, fetch_artefact

DIGEST = "ab" * 32


def _settings(state_dir: Path = Path("/nonexistent")) -> SimpleNamespace:
    return SimpleNamespace(bucket_models="wastex-models", state_dir=state_dir)


def test_an_artefact_folder_in_the_models_bucket_is_where_the_worker_reads() -> None:
    registered = RegisteredModel("m-1", "s3://wastex-models/m-1", DIGEST)
    assert artefact_location(_settings(), registered) == ("wastex-models", "m-1")


@pytest.mark.parametrize("uri", [
    "s3://wastex-images/images/m-1",  # another bucket of the deployment
    "s3://wastex-models-evil/m-1",  # a bucket whose name merely starts like it
    "s3://wastex-models",  # the bucket itself, every object in it
    "s3://wastex-models/",
    "/srv/models/m-1",  # a local path
    "https://example.org/m-1.keras",
])
def test_an_artefact_registered_anywhere_else_is_refused_with_the_reason(uri: str) -> None:
    with pytest.raises(UnservableModel, match="not in the models bucket s3://wastex-models/: refusing to serve it"):
        artefact_location(_settings(), RegisteredModel("m-1", uri, DIGEST))


def test_a_cached_copy_with_the_registered_digest_is_not_served_from_a_row_outside_the_models_bucket(
        tmp_path: Path) -> None:
    cached = tmp_path / "models" / DIGEST
    cached.mkdir(parents=True)
    with pytest.raises(UnservableModel, match="s3://elsewhere/m-1"):
        fetch_artefact(_settings(tmp_path), RegisteredModel("m-1", "s3://elsewhere/m-1", DIGEST))
    assert cached.is_dir()  # refused before the cache was even looked at
