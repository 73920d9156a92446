"""The trainer starts a run from the production model only if its registry row names the models bucket."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from training_job.candidate_run import ModelMismatch, fetch_model


@pytest.mark.parametrize("uri", ["s3://wastex-images/images/m-1", "s3://wastex-models", "s3://wastex-models-x/m-1"])
def test_a_production_model_registered_outside_the_models_bucket_is_refused_before_anything_is_read(
        uri: str, tmp_path: Path) -> None:
    settings = SimpleNamespace(bucket_models="wastex-models")  # no S3 client: nothing may be fetched
    with pytest.raises(ModelMismatch, match="not in the models bucket s3://wastex-models/: refusing to start a run"):
        fetch_model(settings, SimpleNamespace(version="m-1", artefact_uri=uri), tmp_path / "production")
    assert not (tmp_path / "production").exists()
